//! The v1 wire format: field layout, limits, encoding and zero-copy decoding.
//!
//! ```text
//! token = base64url-nopad( body || tag )
//! body  = version:u8 (=1) || purpose:u8 || field*      (field ids strictly ascending)
//! field = id:u8 || len:u8 || value[len]
//! tag   = first 16 bytes of HMAC-SHA256 over the MAC input (see `mac.rs`)
//! ```
//!
//! `docs/token-format.md` is the normative description; this file and that one change together.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::fields::{IpNet, Methods, RefreshMarker};
use super::Purpose;
use crate::path;

/// Format version carried in the first body byte.
pub const VERSION: u8 = 1;
/// Tag length in bytes: HMAC-SHA256 truncated to 128 bits (see the spec for why that is enough).
pub const TAG_LEN: usize = 16;
/// Longest token string accepted, in characters. Longer input is rejected before decoding.
pub const MAX_TOKEN_CHARS: usize = 1024;
/// Decoded size of the longest token; the decode buffer lives on the stack.
pub const MAX_TOKEN_BYTES: usize = MAX_TOKEN_CHARS / 4 * 3;

/// Field ids, in the order they must appear.
pub mod id {
    /// Key id (required).
    pub const KID: u8 = 0x01;
    /// Expiry, unix seconds, u64 big-endian (required).
    pub const EXPIRES: u8 = 0x02;
    /// Not-before, unix seconds, u64 big-endian.
    pub const NOT_BEFORE: u8 = 0x03;
    /// Path prefix scope; absent means the token is bound to one exact path.
    pub const PREFIX: u8 = 0x04;
    /// Media host the token is valid on.
    pub const HOST: u8 = 0x05;
    /// Allowed methods bit set; absent means GET and HEAD.
    pub const METHODS: u8 = 0x06;
    /// Client IP network.
    pub const IP: u8 = 0x07;
    /// Token id, for use counting, revocation and audit.
    pub const TOKEN_ID: u8 = 0x08;
    /// Subject / recipient, for audit and upstream headers.
    pub const SUBJECT: u8 = 0x09;
    /// Small opaque application data.
    pub const DATA: u8 = 0x0a;
    /// Refresh marker (attempt, chain start).
    pub const REFRESH: u8 = 0x0b;
    /// Never on the wire: the exact request path, appended to the MAC input only.
    pub const BOUND_PATH: u8 = 0x10;
}

/// Field length limits (inclusive), enforced both when minting and when decoding.
pub mod limit {
    /// Key id length.
    pub const KID: usize = 32;
    /// Host name length.
    pub const HOST: usize = 253;
    /// Token id length.
    pub const TOKEN_ID: usize = 64;
    /// Subject length.
    pub const SUBJECT: usize = 128;
    /// Opaque data length.
    pub const DATA: usize = 255;
    /// Prefix length (one length byte).
    pub const PREFIX: usize = 255;
}

/// What a token grants, with every optional field; the input to minting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// What the token may be used for.
    pub purpose: Purpose,
    /// Unix seconds; the token is expired when `now >= expires`.
    pub expires: u64,
    /// Unix seconds before which the token is not valid.
    pub not_before: Option<u64>,
    /// One exact canonical path, or a canonical prefix ending in `/`.
    pub scope: Scope,
    /// Media host name (lower case).
    pub host: Option<String>,
    /// Allowed methods; `None` means GET and HEAD.
    pub methods: Option<Methods>,
    /// Client address or network.
    pub ip: Option<IpNet>,
    /// Token id.
    pub token_id: Option<String>,
    /// Subject / recipient.
    pub subject: Option<String>,
    /// Opaque data.
    pub data: Option<Vec<u8>>,
    /// Set by the refresh flow only.
    pub refresh: Option<RefreshMarker>,
}

/// The path scope of a token being minted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Exactly this canonical path; it is bound through the MAC, not carried on the wire.
    Exact(String),
    /// Every path below this canonical prefix (which ends with `/`).
    Prefix(String),
}

/// Why a string is not a well-formed v1 token. Maps to the `malformed` reason; the text is
/// for `mediagate inspect` and debug logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed token: {0}")]
pub struct Malformed(pub &'static str);

/// Stack buffer a token is decoded into; [`Token`] borrows from it, so decoding allocates
/// nothing.
pub struct TokenBuf([u8; MAX_TOKEN_BYTES]);

impl TokenBuf {
    /// An empty buffer.
    pub fn new() -> TokenBuf {
        TokenBuf([0; MAX_TOKEN_BYTES])
    }
}

impl Default for TokenBuf {
    fn default() -> Self {
        Self::new()
    }
}

/// A decoded (not yet verified) token, borrowing from a [`TokenBuf`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token<'a> {
    /// Purpose byte.
    pub purpose: Purpose,
    /// Key id.
    pub kid: &'a str,
    /// Expiry (unix seconds).
    pub expires: u64,
    /// Not-before (unix seconds).
    pub not_before: Option<u64>,
    /// Prefix scope; `None` for an exact-path token.
    pub prefix: Option<&'a str>,
    /// Media host.
    pub host: Option<&'a str>,
    /// Methods field as carried; see [`Token::methods`].
    pub methods_field: Option<Methods>,
    /// Client network.
    pub ip: Option<IpNet>,
    /// Token id.
    pub token_id: Option<&'a str>,
    /// Subject.
    pub subject: Option<&'a str>,
    /// Opaque data.
    pub data: Option<&'a [u8]>,
    /// Refresh marker.
    pub refresh: Option<RefreshMarker>,
    /// The body bytes the MAC covers.
    pub body: &'a [u8],
    /// The tag.
    pub tag: &'a [u8],
}

impl Token<'_> {
    /// Allowed methods, with the GET/HEAD default applied.
    pub fn methods(&self) -> Methods {
        self.methods_field.unwrap_or(Methods::READ)
    }
}

impl Claims {
    /// A download token for one exact path, with every optional field empty.
    pub fn download(scope: Scope, expires: u64) -> Claims {
        Claims {
            purpose: Purpose::Download,
            expires,
            not_before: None,
            scope,
            host: None,
            methods: None,
            ip: None,
            token_id: None,
            subject: None,
            data: None,
            refresh: None,
        }
    }

    /// The body bytes for key id `kid`, after checking every field against the format's
    /// limits so that we never mint a token that verification would reject as malformed.
    pub fn encode_body(&self, kid: &str) -> Result<Vec<u8>, Malformed> {
        let mut body = Vec::with_capacity(64);
        body.push(VERSION);
        body.push(self.purpose as u8);
        push_field(&mut body, id::KID, kid.as_bytes())?;
        push_field(&mut body, id::EXPIRES, &self.expires.to_be_bytes())?;
        if let Some(nbf) = self.not_before {
            push_field(&mut body, id::NOT_BEFORE, &nbf.to_be_bytes())?;
        }
        if let Scope::Prefix(prefix) = &self.scope {
            push_field(&mut body, id::PREFIX, prefix.as_bytes())?;
        }
        if let Some(host) = &self.host {
            push_field(&mut body, id::HOST, host.as_bytes())?;
        }
        if let Some(methods) = self.methods {
            push_field(&mut body, id::METHODS, &[methods.bits()])?;
        }
        if let Some(ip) = self.ip {
            push_field(&mut body, id::IP, &ip.to_wire())?;
        }
        if let Some(token_id) = &self.token_id {
            push_field(&mut body, id::TOKEN_ID, token_id.as_bytes())?;
        }
        if let Some(subject) = &self.subject {
            push_field(&mut body, id::SUBJECT, subject.as_bytes())?;
        }
        if let Some(data) = &self.data {
            push_field(&mut body, id::DATA, data)?;
        }
        if let Some(marker) = self.refresh {
            push_field(&mut body, id::REFRESH, &marker.to_wire())?;
        }
        if let Scope::Exact(path) = &self.scope {
            if !path::is_canonical(path) {
                return Err(Malformed("exact path is not canonical"));
            }
        }
        // Decodable, but never verifiable: a minter refuses what no request can match.
        if let Some(host) = &self.host {
            if let Some(problem) = unmatchable_host(host) {
                return Err(Malformed(problem));
            }
        }
        if self.ip.is_some_and(|ip| ip.is_ipv4_mapped()) {
            return Err(Malformed(
                "ip is an IPv4-mapped IPv6 network, which never contains a client \
                 (IPv4-mapped clients are compared as IPv4): write the IPv4 network",
            ));
        }
        if body.len() + TAG_LEN > MAX_TOKEN_BYTES {
            return Err(Malformed("token would be longer than 1024 characters"));
        }
        Ok(body)
    }
}

/// Why a `host` value that decodes could still never equal nginx's `$host`, or `None` when it
/// can: a minting rule only (spec §4), since v1 decoders accept every value of the host
/// alphabet. `$host` is a lower-case name without port or trailing dot, or an IPv6 literal in
/// brackets.
pub fn unmatchable_host(host: &str) -> Option<&'static str> {
    if let Some(inner) = host.strip_prefix('[') {
        let literal = inner
            .strip_suffix(']')
            .is_some_and(|addr| addr.parse::<std::net::Ipv6Addr>().is_ok());
        return (!literal).then_some(
            "host is not an IPv6 literal like [2001:db8::1] (a port or zone id never matches nginx's $host)",
        );
    }
    if host.contains(':') {
        return Some("host must not include a port (nginx's $host has none)");
    }
    let labels_ok = host.split('.').all(|label| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    });
    (!labels_ok).then_some(
        "host must be a lower-case name (a-z 0-9 - between single dots, no trailing dot) or [IPv6]",
    )
}

/// Appends one field after validating its value exactly as the decoder will.
fn push_field(body: &mut Vec<u8>, field: u8, value: &[u8]) -> Result<(), Malformed> {
    validate_field(field, value)?;
    body.push(field);
    // validate_field bounds every value to 255 bytes.
    body.push(value.len() as u8);
    body.extend_from_slice(value);
    Ok(())
}

/// Encodes body and tag as the token string.
pub fn encode_token(body: &[u8], tag: &[u8; TAG_LEN]) -> String {
    let mut raw = Vec::with_capacity(body.len() + TAG_LEN);
    raw.extend_from_slice(body);
    raw.extend_from_slice(tag);
    URL_SAFE_NO_PAD.encode(raw)
}

/// Decodes `text` into `buf` and parses its fields. Checks structure only, not the MAC.
pub fn decode<'a>(text: &str, buf: &'a mut TokenBuf) -> Result<Token<'a>, Malformed> {
    if text.len() > MAX_TOKEN_CHARS {
        return Err(Malformed("longer than 1024 characters"));
    }
    // The strict engine rejects padding and non-zero trailing bits, so each token has
    // exactly one spelling (no malleability for caches or replay counters).
    let len = URL_SAFE_NO_PAD
        .decode_slice(text, &mut buf.0)
        .map_err(|_| Malformed("not base64url without padding"))?;
    parse(&buf.0[..len])
}

fn parse(raw: &[u8]) -> Result<Token<'_>, Malformed> {
    if raw.len() < 2 + TAG_LEN {
        return Err(Malformed("too short"));
    }
    let (body, tag) = raw.split_at(raw.len() - TAG_LEN);
    if body[0] != VERSION {
        return Err(Malformed("unknown version"));
    }
    let purpose = Purpose::from_byte(body[1]).ok_or(Malformed("unknown purpose"))?;
    let mut token = Token {
        purpose,
        kid: "",
        expires: 0,
        not_before: None,
        prefix: None,
        host: None,
        methods_field: None,
        ip: None,
        token_id: None,
        subject: None,
        data: None,
        refresh: None,
        body,
        tag,
    };
    let mut rest = &body[2..];
    let mut last_id = 0u8;
    while let [field, len, tail @ ..] = rest {
        let len = usize::from(*len);
        if *field <= last_id {
            return Err(Malformed("fields out of order or repeated"));
        }
        last_id = *field;
        let value = tail
            .get(..len)
            .ok_or(Malformed("field runs past the end"))?;
        rest = &tail[len..];
        validate_field(*field, value)?;
        match *field {
            id::KID => token.kid = ascii(value),
            id::EXPIRES => token.expires = be_u64(value),
            id::NOT_BEFORE => token.not_before = Some(be_u64(value)),
            id::PREFIX => token.prefix = Some(ascii_or_utf8(value)?),
            id::HOST => token.host = Some(ascii(value)),
            id::METHODS => token.methods_field = Methods::from_bits(value[0]),
            id::IP => token.ip = IpNet::from_wire(value),
            id::TOKEN_ID => token.token_id = Some(ascii(value)),
            id::SUBJECT => token.subject = Some(ascii(value)),
            id::DATA => token.data = Some(value),
            id::REFRESH => token.refresh = RefreshMarker::from_wire(value),
            _ => return Err(Malformed("unknown field")),
        }
    }
    if !rest.is_empty() {
        return Err(Malformed("truncated field header"));
    }
    if token.kid.is_empty() || token.expires == 0 {
        return Err(Malformed("missing kid or exp"));
    }
    Ok(token)
}

/// The single definition of what each field may contain, shared by minting and decoding.
fn validate_field(field: u8, value: &[u8]) -> Result<(), Malformed> {
    let ok = match field {
        id::KID => is_kid(value),
        id::EXPIRES | id::NOT_BEFORE => value.len() == 8 && be_u64(value) != 0,
        id::PREFIX => {
            value.len() <= limit::PREFIX
                && std::str::from_utf8(value)
                    .is_ok_and(|prefix| prefix.ends_with('/') && path::is_canonical(prefix))
        }
        id::HOST => {
            (1..=limit::HOST).contains(&value.len())
                && value
                    .iter()
                    .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.:[]".contains(&b))
        }
        id::METHODS => value.len() == 1 && Methods::from_bits(value[0]).is_some(),
        id::IP => IpNet::from_wire(value).is_some(),
        id::TOKEN_ID => {
            (1..=limit::TOKEN_ID).contains(&value.len()) && value.iter().all(u8::is_ascii_graphic)
        }
        id::SUBJECT => {
            (1..=limit::SUBJECT).contains(&value.len())
                && value.iter().all(|&b| b == b' ' || b.is_ascii_graphic())
        }
        id::DATA => (1..=limit::DATA).contains(&value.len()),
        id::REFRESH => RefreshMarker::from_wire(value).is_some(),
        _ => return Err(Malformed("unknown field")),
    };
    if ok {
        Ok(())
    } else {
        Err(Malformed(field_error(field)))
    }
}

/// Key ids: 1 to 32 of `A-Z a-z 0-9 . _ -`.
pub fn is_kid(value: &[u8]) -> bool {
    (1..=limit::KID).contains(&value.len())
        && value
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

fn field_error(field: u8) -> &'static str {
    match field {
        id::KID => "bad kid",
        id::EXPIRES => "bad exp",
        id::NOT_BEFORE => "bad nbf",
        id::PREFIX => "prefix is not a canonical path ending in '/'",
        id::HOST => "bad host: 1-253 characters of a-z 0-9 - . : [ ] (lower case only)",
        id::METHODS => "bad methods",
        id::IP => "bad ip network",
        id::TOKEN_ID => "bad token id",
        id::SUBJECT => "bad subject",
        id::DATA => "bad data",
        _ => "bad refresh marker",
    }
}

fn be_u64(value: &[u8]) -> u64 {
    // Callers validated the length; a short slice reads as 0, which validation rejects.
    value.try_into().map_or(0, u64::from_be_bytes)
}

/// Values validated as ASCII are valid UTF-8; the fallback keeps this panic-free regardless.
fn ascii(value: &[u8]) -> &str {
    std::str::from_utf8(value).unwrap_or("")
}

fn ascii_or_utf8(value: &[u8]) -> Result<&str, Malformed> {
    std::str::from_utf8(value).map_err(|_| Malformed("prefix is not UTF-8"))
}
