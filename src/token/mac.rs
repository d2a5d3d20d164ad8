//! The MAC input and tag: the only place that decides which bytes are signed.
//!
//! ```text
//! mac_input = "mediagate" 0x00 || body || binding
//! binding   = 0x10 || len:u16be || canonical path    (exact-path tokens)
//!           = empty                                  (prefix tokens: the prefix is in body)
//! tag       = HMAC-SHA256(key, mac_input)[0..16]
//! ```
//!
//! The body is a sequence of length-prefixed fields in strictly ascending id order and the
//! binding uses an id above every wire field, so the MAC input parses back into exactly one
//! set of fields: no value can shift into another. The purpose byte sits inside the body, so a
//! refresh `state` or an upload slot can never pass for a download token.

use hmac::Mac;

use super::wire::{id, TAG_LEN};
use crate::keys::Key;

/// Domain-separation prefix: keeps these MACs apart from anything else a reused key signs.
pub const DOMAIN: &[u8] = b"mediagate\0";

/// Computes the tag of `body` (and, for exact-path tokens, `bound_path`) under `key`.
pub fn tag(key: &Key, body: &[u8], bound_path: Option<&str>) -> [u8; TAG_LEN] {
    let mut mac = key.mac();
    feed(&mut mac, body, bound_path);
    let full = mac.finalize().into_bytes();
    let mut tag = [0; TAG_LEN];
    tag.copy_from_slice(&full[..TAG_LEN]);
    tag
}

/// Checks `tag` in constant time.
pub fn tag_matches(key: &Key, body: &[u8], bound_path: Option<&str>, tag: &[u8]) -> bool {
    let mut mac = key.mac();
    feed(&mut mac, body, bound_path);
    // verify_truncated_left compares the leading bytes in constant time.
    tag.len() == TAG_LEN && mac.verify_truncated_left(tag).is_ok()
}

/// The exact MAC input as bytes, for `mediagate inspect` and the spec's test vectors.
pub fn input(body: &[u8], bound_path: Option<&str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(DOMAIN.len() + body.len() + 64);
    out.extend_from_slice(DOMAIN);
    out.extend_from_slice(body);
    if let Some(path) = bound_path {
        out.extend_from_slice(&binding_header(path));
        out.extend_from_slice(path.as_bytes());
    }
    out
}

fn feed(mac: &mut impl Mac, body: &[u8], bound_path: Option<&str>) {
    mac.update(DOMAIN);
    mac.update(body);
    if let Some(path) = bound_path {
        mac.update(&binding_header(path));
        mac.update(path.as_bytes());
    }
}

fn binding_header(path: &str) -> [u8; 3] {
    // Canonical paths are at most 4096 bytes (path::MAX_PATH_LEN), so u16 always suffices;
    // saturating keeps this total even if that limit were raised by mistake.
    let len = u16::try_from(path.len()).unwrap_or(u16::MAX).to_be_bytes();
    [id::BOUND_PATH, len[0], len[1]]
}
