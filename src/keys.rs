//! The key ring: named HMAC keys, one of them used for signing, all of them for verifying.
//!
//! Rotation without downtime: add the new key everywhere, switch `signing` to it, and remove
//! the old one once the longest-lived token signed with it has expired. Secrets live in
//! [`Secret`], whose `Debug` and `Display` print `***`; keys never appear in logs or errors.
//!
//! A key can be limited to [`Purposes`] (`[keys.purposes]`): a key handed to an API minter
//! then can neither make media links nor have one accepted, and a leaked one opens only what
//! its purposes name.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::token::{is_kid, Purpose};

/// Shortest secret accepted, in bytes (256 bits, the HMAC-SHA256 block-size sweet spot).
pub const MIN_SECRET_LEN: usize = 32;

/// Secret key material. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wraps raw bytes.
    pub fn new(bytes: Vec<u8>) -> Secret {
        Secret(bytes)
    }

    /// Decodes base64 in either alphabet, with or without padding, ignoring surrounding
    /// whitespace (secret files usually end with a newline).
    pub fn from_base64(text: &str) -> Result<Secret, KeyError> {
        let normalised: String = text
            .trim()
            .trim_end_matches('=')
            .chars()
            .map(|c| match c {
                '+' => '-',
                '/' => '_',
                other => other,
            })
            .collect();
        URL_SAFE_NO_PAD
            .decode(normalised)
            .map(Secret)
            .map_err(|_| KeyError::NotBase64)
    }

    /// 32 fresh random bytes from the operating system.
    pub fn generate() -> Result<Secret, KeyError> {
        let mut bytes = vec![0; MIN_SECRET_LEN];
        getrandom::getrandom(&mut bytes).map_err(|_| KeyError::NoRandomness)?;
        Ok(Secret(bytes))
    }

    /// The canonical text form (base64url without padding) for key files and `keygen`.
    pub fn to_base64(&self) -> String {
        URL_SAFE_NO_PAD.encode(&self.0)
    }

    /// The raw bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Errors building keys. None of them carries secret material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Occurs when a secret is not valid base64.
    #[error("secret is not valid base64")]
    NotBase64,
    /// Occurs when a secret is shorter than [`MIN_SECRET_LEN`] bytes.
    #[error("secret has {0} bytes; at least 32 random bytes are required")]
    TooShort(usize),
    /// Occurs when a key id is empty, too long or has characters outside `A-Za-z0-9._-`.
    #[error("key id {0:?} must be 1-32 characters of A-Z a-z 0-9 . _ -")]
    BadId(String),
    /// Occurs when two keys share an id.
    #[error("key id {0:?} is defined twice")]
    DuplicateId(String),
    /// Occurs when the signing key id names no configured key.
    #[error("signing key {0:?} is not among the configured keys")]
    UnknownSigningKey(String),
    /// Occurs when the ring would be empty.
    #[error("no keys configured")]
    Empty,
    /// Occurs when the operating system cannot provide random bytes.
    #[error("the operating system could not provide random bytes")]
    NoRandomness,
}

/// The purposes a key may sign, and that tokens it signed are accepted for: a set of
/// [`Purpose`]s.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Purposes(u8);

impl Purposes {
    /// Every purpose: a key without a `[keys.purposes]` entry.
    pub const ALL: Purposes = Purposes(0b1111);

    /// The set of these purposes; `None` when empty (a key for nothing is a mistake).
    pub fn of(purposes: impl IntoIterator<Item = Purpose>) -> Option<Purposes> {
        let bits = purposes
            .into_iter()
            .fold(0, |bits, purpose| bits | Self::bit(purpose));
        (bits != 0).then_some(Purposes(bits))
    }

    fn bit(purpose: Purpose) -> u8 {
        1 << (purpose as u8 - 1)
    }

    /// True when `purpose` is in the set.
    pub fn allows(self, purpose: Purpose) -> bool {
        self.0 & Self::bit(purpose) != 0
    }

    /// The purposes in the set, in byte order.
    pub fn iter(self) -> impl Iterator<Item = Purpose> {
        Purpose::ALL
            .into_iter()
            .filter(move |purpose| self.allows(*purpose))
    }
}

impl fmt::Display for Purposes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(Purpose::as_str).collect();
        f.write_str(&names.join(", "))
    }
}

impl fmt::Debug for Purposes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Purposes({self})")
    }
}

/// One named key, with its HMAC state precomputed (the key schedule is done once, not per
/// request), and the purposes it may serve.
#[derive(Clone)]
pub struct Key {
    id: String,
    mac: Hmac<Sha256>,
    purposes: Purposes,
}

impl Key {
    /// Builds a key after checking the id and the secret's length.
    pub fn new(id: &str, secret: &Secret) -> Result<Key, KeyError> {
        if !is_kid(id.as_bytes()) {
            return Err(KeyError::BadId(id.to_owned()));
        }
        if secret.0.len() < MIN_SECRET_LEN {
            return Err(KeyError::TooShort(secret.0.len()));
        }
        let mac = Hmac::<Sha256>::new_from_slice(&secret.0).map_err(|_| KeyError::TooShort(0))?;
        Ok(Key {
            id: id.to_owned(),
            mac,
            purposes: Purposes::ALL,
        })
    }

    /// This key, limited to `purposes`.
    pub fn with_purposes(self, purposes: Purposes) -> Key {
        Key { purposes, ..self }
    }

    /// What the key may sign and have accepted.
    pub fn purposes(&self) -> Purposes {
        self.purposes
    }

    /// True when the key may sign, and have accepted, tokens of `purpose`.
    pub fn allows(&self, purpose: Purpose) -> bool {
        self.purposes.allows(purpose)
    }

    /// The key id carried in tokens.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// A fresh MAC state keyed with this key.
    pub(crate) fn mac(&self) -> Hmac<Sha256> {
        self.mac.clone()
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.purposes == Purposes::ALL {
            write!(f, "Key({:?}, ***)", self.id)
        } else {
            write!(f, "Key({:?}, ***, {})", self.id, self.purposes)
        }
    }
}

/// All keys this server knows; one signs, all verify.
#[derive(Clone, Debug)]
pub struct KeyRing {
    keys: Vec<Key>,
    signing: usize,
}

impl KeyRing {
    /// Builds a ring; `signing` must name one of `keys`.
    pub fn new(keys: Vec<Key>, signing: &str) -> Result<KeyRing, KeyError> {
        if keys.is_empty() {
            return Err(KeyError::Empty);
        }
        for (index, key) in keys.iter().enumerate() {
            if keys[..index].iter().any(|other| other.id == key.id) {
                return Err(KeyError::DuplicateId(key.id.clone()));
            }
        }
        let signing = keys
            .iter()
            .position(|key| key.id == signing)
            .ok_or_else(|| KeyError::UnknownSigningKey(signing.to_owned()))?;
        Ok(KeyRing { keys, signing })
    }

    /// The key new tokens are signed with.
    pub fn signing_key(&self) -> &Key {
        &self.keys[self.signing]
    }

    /// The key with id `kid`, if this ring has it. Rings hold a handful of keys, so a linear
    /// scan beats hashing.
    pub fn get(&self, kid: &str) -> Option<&Key> {
        self.keys.iter().find(|key| key.id == kid)
    }

    /// All key ids, signing key first.
    pub fn ids(&self) -> Vec<&str> {
        let mut ids = vec![self.signing_key().id()];
        ids.extend(
            self.keys
                .iter()
                .map(Key::id)
                .filter(|id| *id != self.signing_key().id()),
        );
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let secret = Secret::new(vec![7; 32]);
        assert_eq!(format!("{secret:?} {secret}"), "*** ***");
        let key = Key::new("k1", &secret).unwrap();
        assert_eq!(format!("{key:?}"), "Key(\"k1\", ***)");
        let ring = KeyRing::new(vec![key], "k1").unwrap();
        assert!(!format!("{ring:?}").contains("7, 7"));
    }

    #[test]
    fn secrets_decode_from_either_base64_alphabet() {
        let bytes: Vec<u8> = (0..=255u8)
            .cycle()
            .take(40)
            .map(|b| b.wrapping_mul(37))
            .collect();
        let standard = base64::engine::general_purpose::STANDARD.encode(&bytes);
        let url = URL_SAFE_NO_PAD.encode(&bytes);
        assert_eq!(
            Secret::from_base64(&format!("{standard}\n")).unwrap().0,
            bytes
        );
        assert_eq!(Secret::from_base64(&url).unwrap().0, bytes);
        assert_eq!(Secret::from_base64("not base64!"), Err(KeyError::NotBase64));
    }

    #[test]
    fn short_secrets_and_bad_ids_are_refused() {
        assert_eq!(
            Key::new("k1", &Secret::new(vec![1; 31])).unwrap_err(),
            KeyError::TooShort(31)
        );
        assert!(matches!(
            Key::new("k 1", &Secret::new(vec![1; 32])),
            Err(KeyError::BadId(_))
        ));
        let key = Key::new("a", &Secret::new(vec![1; 32])).unwrap();
        assert!(matches!(
            KeyRing::new(vec![key.clone(), key.clone()], "a"),
            Err(KeyError::DuplicateId(_))
        ));
        assert!(matches!(
            KeyRing::new(vec![key], "b"),
            Err(KeyError::UnknownSigningKey(_))
        ));
    }

    #[test]
    fn purposes_are_a_set_printed_in_byte_order() {
        assert_eq!(Purposes::of([]), None);
        let api = Purposes::of([Purpose::Api]).unwrap();
        assert!(api.allows(Purpose::Api));
        assert!(!api.allows(Purpose::Download) && !api.allows(Purpose::RefreshState));
        let two = Purposes::of([Purpose::RefreshState, Purpose::Download]).unwrap();
        assert_eq!(two.to_string(), "download, refresh_state");
        assert_eq!(
            Purposes::ALL.iter().collect::<Vec<_>>(),
            Purpose::ALL.to_vec()
        );
        let key = Key::new("api-1", &Secret::new(vec![1; 32]))
            .unwrap()
            .with_purposes(api);
        assert!(key.allows(Purpose::Api) && !key.allows(Purpose::Upload));
        assert_eq!(format!("{key:?}"), "Key(\"api-1\", ***, api)");
    }

    #[test]
    fn rotation_keeps_old_keys_for_verifying() {
        let old = Key::new("2026-10", &Secret::new(vec![1; 32])).unwrap();
        let new = Key::new("2026-11", &Secret::new(vec![2; 32])).unwrap();
        let ring = KeyRing::new(vec![old, new], "2026-11").unwrap();
        assert_eq!(ring.signing_key().id(), "2026-11");
        assert!(ring.get("2026-10").is_some());
        assert_eq!(ring.ids(), ["2026-11", "2026-10"]);
    }
}
