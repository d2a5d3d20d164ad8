//! Verification: one token against one request, checked in a fixed order so that every
//! failure maps to exactly one [`Reason`].
//!
//! Order: structure, purpose, key, MAC, key purpose, expiry, not-before, lifetime cap, host,
//! scope, method, client IP. The MAC comes before any claim is trusted, so a reason such as
//! `expired` is only ever reported for an authentic token. The key-purpose check comes right
//! after the MAC: `key_purpose` then means that a holder of the key really signed a token of a
//! purpose the key is not allowed (an alert worth raising), never that someone typed a key id
//! into a forged token. For a token with a scopes list (v2), scope and method are one walk over
//! the entries: no entry covers the path is `out_of_scope`, entries cover it but none allows
//! the method is `method`.
//!
//! Trust is a type, not a convention. [`decode`] yields a [`Token`]: bytes anyone could have
//! written. Only [`verify`] makes an [`Authentic`] (the tag matched one of our keys; its fields
//! are what a key holder signed, though its claims may still refuse this request) or a
//! [`Verified`] (authentic, and its claims admit this request). Decisions beyond the verdict
//! itself (the refresh flow's loop guard, grant headers, audit fields) take one of those two,
//! so a field of a forged or unknown-key token cannot reach them.

use std::net::IpAddr;
use std::ops::Deref;

use super::scopes::Admission;
use super::wire::{decode, Token, TokenBuf};
use super::{mac, Purpose};
use crate::keys::KeyRing;
use crate::path;
use crate::reason::Reason;

/// The request a token is checked against. `path` must already be canonical.
#[derive(Debug, Clone, Copy)]
pub struct Request<'r> {
    /// Canonical request path.
    pub path: &'r str,
    /// HTTP method as sent (case-sensitive).
    pub method: &'r str,
    /// Media host the request arrived on (lower case), if known.
    pub host: Option<&'r str>,
    /// Client address, if known.
    pub client_ip: Option<IpAddr>,
}

/// Clock tolerances and caps, from configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Seconds of clock skew tolerated for not-before (never for expiry).
    pub leeway: u64,
    /// Tokens claiming to live longer than this from now are refused.
    pub max_lifetime: u64,
}

/// A token whose tag matched one of our keys. Only [`verify`] constructs one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Authentic<'a>(Token<'a>);

impl<'a> Authentic<'a> {
    /// The signed fields.
    pub fn token(&self) -> &Token<'a> {
        &self.0
    }
}

/// An authentic token whose claims admit the request. Only [`verify`] constructs one; it
/// dereferences to the signed fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified<'a>(Token<'a>);

impl<'a> Deref for Verified<'a> {
    type Target = Token<'a>;

    fn deref(&self) -> &Token<'a> {
        &self.0
    }
}

impl<'a> Verified<'a> {
    /// The same verified token, held by `buf` instead of the buffer it was verified in: for a
    /// caller that verifies several candidates in a scratch buffer (a request's grant
    /// cookies) and returns the one that passed, without computing its MAC a second time.
    /// `None` only if the bytes that parsed a moment ago did not parse again, which they
    /// always do: a caller treats it as a token that did not verify.
    pub fn keep_in<'b>(self, buf: &'b mut TokenBuf) -> Option<Verified<'b>> {
        self.0.copy_into(buf).ok().map(Verified)
    }
}

/// A failed verification: the reason, and the token when its tag matched one of our keys
/// (reasons after the MAC: `expired`, `out_of_scope`, ...). For `malformed`,
/// `wrong_purpose`, `unknown_key`, `bad_signature` and `key_purpose` nothing of the token is
/// passed on: a key used beyond its purposes has no say in any later decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denied<'a> {
    /// Why.
    pub reason: Reason,
    /// The token, if it was authentic.
    pub authentic: Option<Authentic<'a>>,
}

impl Denied<'_> {
    /// True when verification got as far as the MAC, the one costly step: every reason but
    /// `malformed`, `wrong_purpose` and `unknown_key`, which [`verify`] finds before it. A
    /// caller that tries several candidates bounds the MACs it computes with this.
    pub fn computed_mac(&self) -> bool {
        !matches!(
            self.reason,
            Reason::Malformed | Reason::WrongPurpose | Reason::UnknownKey
        )
    }

    fn unauthenticated(reason: Reason) -> Self {
        Denied {
            reason,
            authentic: None,
        }
    }
}

/// Verifies `text` for `request` at unix time `now`.
// A denial carries the decoded token (as large as the allowed one): it lives on the stack for
// one request, and boxing it would allocate for every expired link.
#[allow(clippy::result_large_err)]
pub fn verify<'a>(
    text: &str,
    buf: &'a mut TokenBuf,
    purpose: Purpose,
    request: &Request<'_>,
    keys: &KeyRing,
    limits: Limits,
    now: u64,
) -> Result<Verified<'a>, Denied<'a>> {
    let token = decode(text, buf).map_err(|_| Denied::unauthenticated(Reason::Malformed))?;
    if token.purpose != purpose {
        return Err(Denied::unauthenticated(Reason::WrongPurpose));
    }
    let key = keys
        .get(token.kid)
        .ok_or(Denied::unauthenticated(Reason::UnknownKey))?;
    let bound_path = token.binds_path().then_some(request.path);
    if !mac::tag_matches(key, token.body, bound_path, token.tag) {
        return Err(Denied::unauthenticated(Reason::BadSignature));
    }
    if !key.allows(token.purpose) {
        return Err(Denied::unauthenticated(Reason::KeyPurpose));
    }
    match check_claims(&token, request, limits, now) {
        Ok(()) => Ok(Verified(token)),
        Err(reason) => Err(Denied {
            reason,
            authentic: Some(Authentic(token)),
        }),
    }
}

/// The checks after the MAC; public so `inspect` can explain a token it could not sign-check.
pub fn check_claims(
    token: &Token<'_>,
    request: &Request<'_>,
    limits: Limits,
    now: u64,
) -> Result<(), Reason> {
    if now >= token.expires {
        return Err(Reason::Expired);
    }
    if token
        .not_before
        .is_some_and(|nbf| now.saturating_add(limits.leeway) < nbf)
    {
        return Err(Reason::NotYetValid);
    }
    if token.expires - now > limits.max_lifetime {
        return Err(Reason::Lifetime);
    }
    if let Some(host) = token.host {
        if !request
            .host
            .is_some_and(|got| got.eq_ignore_ascii_case(host))
        {
            return Err(Reason::WrongHost);
        }
    }
    if let Some(scopes) = token.scopes {
        // Decoding refused a prefix or methods field beside the list: it is the whole scope.
        match scopes.admit(request.path, request.method) {
            Admission::Allowed => {}
            Admission::NoPath => return Err(Reason::OutOfScope),
            Admission::NoMethod => return Err(Reason::Method),
        }
    } else {
        if let Some(prefix) = token.prefix {
            if !path::is_within(request.path, prefix) {
                return Err(Reason::OutOfScope);
            }
        }
        if !token.methods().allows(request.method) {
            return Err(Reason::Method);
        }
    }
    if let Some(net) = token.ip {
        if !request.client_ip.is_some_and(|ip| net.contains(ip)) {
            return Err(Reason::Ip);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{Key, Purposes, Secret};
    use crate::token::{sign, Claims, Scope};

    #[test]
    fn a_key_not_allowed_the_purpose_is_refused_after_the_mac_and_passes_nothing_on() {
        let secret = Secret::new(vec![9; 32]);
        let api_only = Purposes::of([Purpose::Api]).unwrap();
        let key = Key::new("api", &secret).unwrap();
        let ring = KeyRing::new(vec![key.clone().with_purposes(api_only)], "api").unwrap();
        let limits = Limits {
            leeway: 30,
            max_lifetime: 3600,
        };
        let request = Request {
            path: "/media/a.pdf",
            method: "GET",
            host: None,
            client_ip: None,
        };
        let now = 1_800_000_000;
        // Signed by the key's holder with a purpose the ring does not allow it.
        let download = sign(
            &Claims::download(Scope::Exact("/media/a.pdf".into()), now + 60),
            &key,
        )
        .unwrap();
        let mut buf = TokenBuf::new();
        let denied = verify(
            &download,
            &mut buf,
            Purpose::Download,
            &request,
            &ring,
            limits,
            now,
        )
        .unwrap_err();
        assert_eq!(
            (denied.reason, denied.authentic),
            (Reason::KeyPurpose, None)
        );
        // A forged tag under the same key id stays bad_signature: only a real signature
        // raises key_purpose.
        let mut forged = download.clone();
        let last = forged.pop().unwrap();
        forged.push(if last == 'A' { 'Q' } else { 'A' });
        let mut buf = TokenBuf::new();
        let denied = verify(
            &forged,
            &mut buf,
            Purpose::Download,
            &request,
            &ring,
            limits,
            now,
        )
        .unwrap_err();
        assert_eq!(denied.reason, Reason::BadSignature);
        // The allowed purpose verifies.
        let api = sign(
            &Claims {
                purpose: Purpose::Api,
                ..Claims::download(Scope::Exact("/media/a.pdf".into()), now + 60)
            },
            &key,
        )
        .unwrap();
        let mut buf = TokenBuf::new();
        assert!(verify(&api, &mut buf, Purpose::Api, &request, &ring, limits, now).is_ok());
    }

    #[test]
    fn a_verified_token_kept_in_another_buffer_is_the_same_and_only_mac_checks_count() {
        let secret = Secret::new(vec![7; 32]);
        let key = Key::new("k", &secret).unwrap();
        let ring = KeyRing::new(vec![key.clone()], "k").unwrap();
        let limits = Limits {
            leeway: 30,
            max_lifetime: 3600,
        };
        let request = Request {
            path: "/media/photos/a.png",
            method: "GET",
            host: None,
            client_ip: None,
        };
        let now = 1_800_000_000;
        let folder = |expires| {
            let claims = Claims {
                subject: Some("alice".into()),
                ..Claims::download(Scope::Prefix("/media/photos/".into()), expires)
            };
            sign(&claims, &key).unwrap()
        };
        let good = folder(now + 60);
        let mut scratch = TokenBuf::new();
        let verified = verify(
            &good,
            &mut scratch,
            Purpose::Download,
            &request,
            &ring,
            limits,
            now,
        )
        .unwrap();
        let mut kept_buf = TokenBuf::new();
        let kept = verified.keep_in(&mut kept_buf).unwrap();
        let mut again = TokenBuf::new();
        let direct = verify(
            &good,
            &mut again,
            Purpose::Download,
            &request,
            &ring,
            limits,
            now,
        );
        assert_eq!(Ok(kept), direct);
        assert_eq!(kept.subject, Some("alice"));
        assert_eq!(kept.prefix, Some("/media/photos/"));

        let mut forged = good.clone().into_bytes();
        let at = forged.len() - 5;
        forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        let unknown = sign(
            &Claims::download(Scope::Prefix("/media/photos/".into()), now + 60),
            &Key::new("other", &secret).unwrap(),
        )
        .unwrap();
        let expired = folder(now);
        for (text, purpose, reason, computed_mac) in [
            ("not a token", Purpose::Download, Reason::Malformed, false),
            (good.as_str(), Purpose::Api, Reason::WrongPurpose, false),
            (
                unknown.as_str(),
                Purpose::Download,
                Reason::UnknownKey,
                false,
            ),
            (
                forged.as_str(),
                Purpose::Download,
                Reason::BadSignature,
                true,
            ),
            (expired.as_str(), Purpose::Download, Reason::Expired, true),
        ] {
            let mut buf = TokenBuf::new();
            let denied = verify(text, &mut buf, purpose, &request, &ring, limits, now).unwrap_err();
            assert_eq!(
                (denied.reason, denied.computed_mac()),
                (reason, computed_mac)
            );
        }
    }
}
