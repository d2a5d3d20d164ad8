//! The wire format, versions 1 and 2 (both frozen): field layout, limits, encoding and
//! zero-copy decoding.
//!
//! ```text
//! token = base64url-nopad( body || tag )
//! body  = version:u8 (1 or 2) || purpose:u8 || field*  (field ids strictly ascending)
//! field = id:u8 || len:u8 || value[len]
//! tag   = first 16 bytes of HMAC-SHA256 over the MAC input (see `mac.rs`)
//! ```
//!
//! Version 2 has every v1 field plus issued-at, a use limit, the upload limits (maximum
//! size, content types), a scopes list (`scopes.rs`), a recipient, a file version, the
//! per-link response overrides (download name, disposition, cache max-age), the refresh
//! state's kept query, and the `api` purpose. The same claims have exactly one encoding: a
//! body is v2 exactly when it carries a v2-only field (every id from `0x0c` up) or a v2-only
//! purpose.
//!
//! `docs/token-format.md` is the normative description (§17 for v2); this file and that one
//! change together.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::fields::{
    download_name_problem, Disposition, FileVersion, IpNet, Methods, RefreshMarker,
};
use super::scopes::{self, ScopeEntry, Scopes};
use super::Purpose;
use crate::path;

/// Format version carried in the first body byte of a token without v2-only fields.
pub const VERSION: u8 = VERSION_1;
/// Version 1: frozen (spec §1-§16).
pub const VERSION_1: u8 = 1;
/// Version 2 (spec §17, frozen); every v1 field plus the v2-only ids from `0x0c` up (`0x10`
/// is never in a body) and the v2-only `api` purpose.
pub const VERSION_2: u8 = 2;
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
    /// v2: issued-at, unix seconds, u64 big-endian.
    pub const ISSUED_AT: u8 = 0x0c;
    /// v2: use limit, u32 big-endian, at least 1; needs a token id.
    pub const USES: u8 = 0x0d;
    /// v2: largest upload in bytes, u64 big-endian, at least 1; upload tokens only.
    pub const MAX_SIZE: u8 = 0x0e;
    /// v2: allowed upload media types, a sorted comma-separated list; upload tokens only.
    pub const CONTENT_TYPES: u8 = 0x0f;
    /// Never on the wire: the exact request path, appended to the MAC input only.
    pub const BOUND_PATH: u8 = 0x10;
    /// v2: several (methods, exact path or prefix) entries; no `prefix`, no `methods`, no
    /// path binding (see `scopes.rs`).
    pub const SCOPES: u8 = 0x11;
    /// v2: who the token was handed to, passed upstream as `X-Mediagate-Recipient`.
    pub const RECIPIENT: u8 = 0x12;
    /// v2: the version of the one file an exact-path download token is bound to (8 bytes,
    /// [`super::FileVersion`]).
    pub const FILE_VERSION: u8 = 0x13;
    /// v2: the download file name (UTF-8) sent in `Content-Disposition`; download tokens only.
    pub const FILENAME: u8 = 0x14;
    /// v2: `Content-Disposition` type, one byte (1 inline, 2 attachment); download tokens only.
    pub const DISPOSITION: u8 = 0x15;
    /// v2: `Cache-Control: private, max-age=N`, u32 big-endian seconds; download tokens only.
    pub const MAX_AGE: u8 = 0x16;
    /// v2: the query a refresh keeps (raw, without the token parameter); refresh states only.
    pub const KEPT_QUERY: u8 = 0x17;
    /// v2: a playback grant's origin, u64 big-endian unix seconds: the expiry of the link it
    /// was exchanged for (spec §13.3.1); download tokens only, never later than `exp`.
    pub const PLAYBACK_OF: u8 = 0x18;
    /// The highest id of a v1 body.
    pub const LAST_V1: u8 = REFRESH;
    /// The lowest v2-only id: every id from here up (`BOUND_PATH` is never in a body) exists
    /// in v2 bodies only, so a v2 body must carry one or a v2-only purpose (a range, so that
    /// ids added later count without a change here).
    pub const FIRST_V2: u8 = ISSUED_AT;
    /// The highest id of a v2 body: the last assigned one.
    pub const LAST_V2: u8 = PLAYBACK_OF;
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
    /// Content-type list length (one length byte).
    pub const CONTENT_TYPES: usize = 255;
    /// Length of one name (type or subtype) of a media type (RFC 6838 §4.2).
    pub const MEDIA_NAME: usize = 127;
    /// Download file name length in bytes (one length byte).
    pub const FILENAME: usize = 255;
    /// Kept query length in bytes (one length byte); a longer query is not refreshed.
    pub const KEPT_QUERY: usize = 255;
    /// Scopes list length (one length byte).
    pub const SCOPES: usize = super::scopes::MAX_BYTES;
    /// Recipient length (as the subject's).
    pub const RECIPIENT: usize = 128;
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
    /// One exact canonical path, a canonical prefix ending in `/`, or (v2) a scopes list.
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
    /// v2: unix seconds at which the token was minted (revocation by time); less than
    /// `expires`.
    pub issued_at: Option<u64>,
    /// v2: how many uses the token grants (counted by the stateful edge); needs `token_id`.
    pub uses: Option<u32>,
    /// v2, upload tokens only: the largest body in bytes.
    pub max_size: Option<u64>,
    /// v2, upload tokens only: allowed media types, the wire form (lower case, ascending,
    /// comma-separated, e.g. `image/jpeg,image/png`); see [`canonical_content_types`].
    pub content_types: Option<String>,
    /// v2, download tokens only: the download file name (see [`download_name_problem`]).
    pub filename: Option<String>,
    /// v2, download tokens only: inline or attachment.
    pub disposition: Option<Disposition>,
    /// v2, download tokens only: `Cache-Control: private, max-age=N` seconds.
    pub max_age: Option<u32>,
    /// v2, refresh states only: the media URL's query without the token parameter, raw (see
    /// [`is_kept_query`]).
    pub kept_query: Option<String>,
    /// v2, exact-path download tokens only: the version of the file the token is bound to.
    pub file_version: Option<FileVersion>,
    /// v2: who the token was handed to (visible ASCII or space, 1-128 bytes, as `subject`).
    pub recipient: Option<String>,
    /// v2, download tokens only: set by the playback exchange only, the expiry of the link
    /// this grant was exchanged for. A token with one is never exchanged again.
    pub playback_of: Option<u64>,
}

/// The path scope of a token being minted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Exactly this canonical path; it is bound through the MAC, not carried on the wire.
    Exact(String),
    /// Every path below this canonical prefix (which ends with `/`).
    Prefix(String),
    /// v2: several (methods, path or prefix) entries, in their canonical order
    /// ([`scopes::canonical_scopes`]); the token carries no `methods` field then.
    List(Vec<ScopeEntry>),
}

/// Why a string is not a well-formed token (v1 or v2). Maps to the `malformed` reason; the text is
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
    /// Format version: [`VERSION_1`] or [`VERSION_2`].
    pub version: u8,
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
    /// v2: issued-at (unix seconds), less than `expires`.
    pub issued_at: Option<u64>,
    /// v2: use limit (at least 1); a token with one always has a `token_id`.
    pub uses: Option<u32>,
    /// v2, upload tokens only: largest body in bytes (at least 1).
    pub max_size: Option<u64>,
    /// v2, upload tokens only: the allowed media types as carried (lower case, ascending,
    /// comma-separated); see [`Token::content_types_iter`] and [`Token::content_type_allowed`].
    pub content_types: Option<&'a str>,
    /// v2, download tokens only: the download file name (valid UTF-8, see
    /// [`download_name_problem`]).
    pub filename: Option<&'a str>,
    /// v2, download tokens only: inline or attachment.
    pub disposition: Option<Disposition>,
    /// v2, download tokens only: browser cache lifetime in seconds.
    pub max_age: Option<u32>,
    /// v2, refresh states only: the query the refreshed URL keeps (see [`is_kept_query`]).
    pub kept_query: Option<&'a str>,
    /// v2, exact-path download tokens only: the file version the token is bound to.
    pub file_version: Option<FileVersion>,
    /// v2: the scopes list; a token with one has neither `prefix` nor `methods_field`.
    pub scopes: Option<Scopes<'a>>,
    /// v2: the recipient.
    pub recipient: Option<&'a str>,
    /// v2: a playback grant's origin (the expiry of the link it was exchanged for).
    pub playback_of: Option<u64>,
    /// The body bytes the MAC covers.
    pub body: &'a [u8],
    /// The tag.
    pub tag: &'a [u8],
}

impl<'a> Token<'a> {
    /// True when the MAC input binds the request path: a token with neither a prefix nor a
    /// scopes list (those carry their paths in the signed body).
    pub fn binds_path(&self) -> bool {
        self.prefix.is_none() && self.scopes.is_none()
    }

    /// Allowed methods (for a token with a scopes list, the entries decide instead), with the default applied: POST and PUT for a v2 upload token, GET and
    /// HEAD otherwise (v1 is frozen: a v1 token without a methods field allows GET and HEAD,
    /// whatever its purpose).
    pub fn methods(&self) -> Methods {
        let default = if self.purpose == Purpose::Upload && self.version >= VERSION_2 {
            Methods::WRITE
        } else {
            Methods::READ
        };
        self.methods_field.unwrap_or(default)
    }

    /// The allowed media types, in their (ascending) wire order; empty when the token does
    /// not restrict them.
    pub fn content_types_iter(&self) -> impl Iterator<Item = &'a str> + 'a {
        self.content_types
            .into_iter()
            .flat_map(|list| list.split(','))
    }

    /// True when the token carries a per-link response override (download name, disposition
    /// or cache max-age): something a site must allow (`accel.overrides`).
    pub fn has_overrides(&self) -> bool {
        self.filename.is_some() || self.disposition.is_some() || self.max_age.is_some()
    }

    /// True when a request with this `Content-Type` header value may upload: always when the
    /// token restricts nothing, else when the header's media type (before any `;`
    /// parameters, surrounding spaces and tabs ignored, compared ignoring ASCII case, as
    /// RFC 9110 §8.3.1 says media types are) is one of the token's. An empty media type never
    /// matches a restriction.
    pub fn content_type_allowed(&self, content_type: &str) -> bool {
        if self.content_types.is_none() {
            return true;
        }
        let media_type = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim_matches([' ', '\t']);
        !media_type.is_empty()
            && self
                .content_types_iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(media_type))
    }
}

impl Token<'_> {
    /// The claims this token carries, owned, for signing the same link again (a playback
    /// grant: the same claims with a later expiry). An exact-path token carries no path (it
    /// is bound through the MAC), so `exact_path` says which one it was verified for; a token
    /// with a prefix or a scopes list ignores it. Signing the result with the token's own key
    /// gives back the token, byte for byte: no field is dropped, added or reordered.
    pub fn claims(&self, exact_path: &str) -> Claims {
        let scope = match (self.prefix, self.scopes) {
            (Some(prefix), _) => Scope::Prefix(prefix.to_owned()),
            (None, Some(scopes)) => Scope::List(
                scopes
                    .iter()
                    .map(|entry| ScopeEntry {
                        methods: entry.methods,
                        prefix: entry.prefix,
                        path: entry.path.to_owned(),
                    })
                    .collect(),
            ),
            (None, None) => Scope::Exact(exact_path.to_owned()),
        };
        Claims {
            purpose: self.purpose,
            expires: self.expires,
            not_before: self.not_before,
            scope,
            host: self.host.map(str::to_owned),
            methods: self.methods_field,
            ip: self.ip,
            token_id: self.token_id.map(str::to_owned),
            subject: self.subject.map(str::to_owned),
            data: self.data.map(<[u8]>::to_vec),
            refresh: self.refresh,
            issued_at: self.issued_at,
            uses: self.uses,
            max_size: self.max_size,
            content_types: self.content_types.map(str::to_owned),
            filename: self.filename.map(str::to_owned),
            disposition: self.disposition,
            max_age: self.max_age,
            kept_query: self.kept_query.map(str::to_owned),
            file_version: self.file_version,
            recipient: self.recipient.map(str::to_owned),
            playback_of: self.playback_of,
        }
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
            issued_at: None,
            uses: None,
            max_size: None,
            content_types: None,
            filename: None,
            disposition: None,
            max_age: None,
            kept_query: None,
            file_version: None,
            recipient: None,
            playback_of: None,
        }
    }

    /// True when any v2-only field or a v2-only purpose is set: such claims are encoded as
    /// version 2, all others as version 1 (one encoding per set of claims).
    pub fn needs_v2(&self) -> bool {
        self.purpose.is_v2_only()
            || self.issued_at.is_some()
            || self.uses.is_some()
            || self.max_size.is_some()
            || self.content_types.is_some()
            || self.filename.is_some()
            || self.disposition.is_some()
            || self.max_age.is_some()
            || self.kept_query.is_some()
            || self.file_version.is_some()
            || matches!(self.scope, Scope::List(_))
            || self.recipient.is_some()
            || self.playback_of.is_some()
    }

    /// The version [`Claims::encode_body`] writes.
    pub fn version(&self) -> u8 {
        if self.needs_v2() {
            VERSION_2
        } else {
            VERSION_1
        }
    }

    /// The body bytes for key id `kid`, after checking every field against the format's
    /// limits so that we never mint a token that verification would reject as malformed.
    /// The version is chosen here: v2 exactly when a v2-only field is set.
    pub fn encode_body(&self, kid: &str) -> Result<Vec<u8>, Malformed> {
        let mut body = Vec::with_capacity(64);
        body.push(self.version());
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
        if let Some(issued_at) = self.issued_at {
            push_field(&mut body, id::ISSUED_AT, &issued_at.to_be_bytes())?;
        }
        if let Some(uses) = self.uses {
            push_field(&mut body, id::USES, &uses.to_be_bytes())?;
        }
        if let Some(max_size) = self.max_size {
            push_field(&mut body, id::MAX_SIZE, &max_size.to_be_bytes())?;
        }
        if let Some(content_types) = &self.content_types {
            push_field(&mut body, id::CONTENT_TYPES, content_types.as_bytes())?;
        }
        if let Scope::List(entries) = &self.scope {
            let value = scopes::encode(entries).map_err(Malformed)?;
            push_field(&mut body, id::SCOPES, &value)?;
        }
        if let Some(recipient) = &self.recipient {
            push_field(&mut body, id::RECIPIENT, recipient.as_bytes())?;
        }
        if let Some(version) = self.file_version {
            push_field(&mut body, id::FILE_VERSION, &version.to_bytes())?;
        }
        if let Some(filename) = &self.filename {
            push_field(&mut body, id::FILENAME, filename.as_bytes())?;
        }
        if let Some(disposition) = self.disposition {
            push_field(&mut body, id::DISPOSITION, &[disposition as u8])?;
        }
        if let Some(max_age) = self.max_age {
            push_field(&mut body, id::MAX_AGE, &max_age.to_be_bytes())?;
        }
        if let Some(kept_query) = &self.kept_query {
            push_field(&mut body, id::KEPT_QUERY, kept_query.as_bytes())?;
        }
        if let Some(origin) = self.playback_of {
            push_field(&mut body, id::PLAYBACK_OF, &origin.to_be_bytes())?;
        }
        // The rules across fields, exactly as the decoder checks them.
        V2Facts {
            version: self.version(),
            has_scopes: matches!(self.scope, Scope::List(_)),
            has_prefix_or_methods: matches!(self.scope, Scope::Prefix(_)) || self.methods.is_some(),
            purpose: self.purpose,
            has_v2_field: self.needs_v2(),
            expires: self.expires,
            issued_at: self.issued_at,
            has_uses: self.uses.is_some(),
            has_token_id: self.token_id.is_some(),
            has_upload_limits: self.max_size.is_some() || self.content_types.is_some(),
            has_overrides: self.filename.is_some()
                || self.disposition.is_some()
                || self.max_age.is_some(),
            has_kept_query: self.kept_query.is_some(),
            has_file_version: self.file_version.is_some(),
            has_prefix: matches!(self.scope, Scope::Prefix(_)),
            playback_of: self.playback_of,
        }
        .check()?;
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

impl Token<'_> {
    /// The same token, its bytes copied into `buf` and parsed again there. Parsing checks
    /// structure only, so this computes no MAC: it lets a caller that tried several tokens in
    /// a scratch buffer keep the one it chose with another buffer's lifetime.
    pub(crate) fn copy_into<'b>(&self, buf: &'b mut TokenBuf) -> Result<Token<'b>, Malformed> {
        let len = self.body.len() + self.tag.len();
        let raw = buf
            .0
            .get_mut(..len)
            .ok_or(Malformed("token would be longer than 1024 characters"))?;
        let (body, tag) = raw.split_at_mut(self.body.len());
        body.copy_from_slice(self.body);
        tag.copy_from_slice(self.tag);
        parse(&buf.0[..len])
    }
}

fn parse(raw: &[u8]) -> Result<Token<'_>, Malformed> {
    if raw.len() < 2 + TAG_LEN {
        return Err(Malformed("too short"));
    }
    let (body, tag) = raw.split_at(raw.len() - TAG_LEN);
    // Dispatch on the version: it decides which ids exist (spec §16).
    let version = body[0];
    let last_known_id = match version {
        VERSION_1 => id::LAST_V1,
        VERSION_2 => id::LAST_V2,
        _ => return Err(Malformed("unknown version")),
    };
    let purpose = Purpose::from_byte(body[1])
        .filter(|purpose| version == VERSION_2 || !purpose.is_v2_only())
        .ok_or(Malformed("unknown purpose"))?;
    let mut token = Token {
        version,
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
        issued_at: None,
        uses: None,
        max_size: None,
        content_types: None,
        filename: None,
        disposition: None,
        max_age: None,
        kept_query: None,
        file_version: None,
        scopes: None,
        recipient: None,
        playback_of: None,
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
        // Ids past the version's last are unknown; unassigned ids below it (and the
        // never-carried binding id) are refused by `validate_field`.
        if *field > last_known_id {
            return Err(Malformed("unknown field"));
        }
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
            id::ISSUED_AT => token.issued_at = Some(be_u64(value)),
            id::USES => token.uses = Some(be_u32(value)),
            id::MAX_SIZE => token.max_size = Some(be_u64(value)),
            id::CONTENT_TYPES => token.content_types = Some(ascii(value)),
            id::FILENAME => token.filename = Some(utf8(value)),
            id::DISPOSITION => token.disposition = Disposition::from_byte(value[0]),
            id::MAX_AGE => token.max_age = Some(be_u32(value)),
            id::KEPT_QUERY => token.kept_query = Some(ascii(value)),
            id::FILE_VERSION => token.file_version = FileVersion::from_wire(value),
            id::SCOPES => token.scopes = Some(Scopes::validated(value)),
            id::RECIPIENT => token.recipient = Some(ascii(value)),
            id::PLAYBACK_OF => token.playback_of = Some(be_u64(value)),
            _ => return Err(Malformed("unknown field")),
        }
    }
    if !rest.is_empty() {
        return Err(Malformed("truncated field header"));
    }
    if token.kid.is_empty() || token.expires == 0 {
        return Err(Malformed("missing kid or exp"));
    }
    V2Facts {
        version,
        has_scopes: token.scopes.is_some(),
        has_prefix_or_methods: token.prefix.is_some() || token.methods_field.is_some(),
        purpose,
        // Ids ascend, so the last one is the highest: one range check counts every v2-only
        // id, including ones added after this line was written.
        has_v2_field: last_id >= id::FIRST_V2 || purpose.is_v2_only(),
        expires: token.expires,
        issued_at: token.issued_at,
        has_uses: token.uses.is_some(),
        has_token_id: token.token_id.is_some(),
        has_upload_limits: token.max_size.is_some() || token.content_types.is_some(),
        has_overrides: token.has_overrides(),
        has_kept_query: token.kept_query.is_some(),
        has_file_version: token.file_version.is_some(),
        has_prefix: token.prefix.is_some(),
        playback_of: token.playback_of,
    }
    .check()?;
    Ok(token)
}

/// The fields the cross-field rules of v2 look at (spec §17), gathered from [`Claims`] when
/// minting and from a [`Token`] when decoding, so both apply exactly the same rules.
struct V2Facts {
    version: u8,
    has_scopes: bool,
    has_prefix_or_methods: bool,
    purpose: Purpose,
    /// Some id from [`id::FIRST_V2`] up is present, or the purpose is v2-only.
    has_v2_field: bool,
    expires: u64,
    issued_at: Option<u64>,
    has_uses: bool,
    has_token_id: bool,
    has_upload_limits: bool,
    has_overrides: bool,
    has_kept_query: bool,
    has_file_version: bool,
    has_prefix: bool,
    playback_of: Option<u64>,
}

impl V2Facts {
    fn check(&self) -> Result<(), Malformed> {
        if self.version == VERSION_1 {
            // Unreachable from both callers (v1 bodies cannot carry v2-only ids or purposes
            // and claims with one encode as v2); kept so the rule reads complete.
            return match self.has_v2_field {
                true => Err(Malformed("v2 fields in a v1 body")),
                false => Ok(()),
            };
        }
        if !self.has_v2_field {
            return Err(Malformed(
                "version 2 without a v2 field (the same claims are spelled as version 1)",
            ));
        }
        if self.issued_at.is_some_and(|iat| iat >= self.expires) {
            return Err(Malformed("issued-at must be earlier than the expiry"));
        }
        if self.has_uses && !self.has_token_id {
            return Err(Malformed(
                "a use limit needs a token id (uses are counted per key id and token id)",
            ));
        }
        if self.has_upload_limits && self.purpose != Purpose::Upload {
            return Err(Malformed(
                "max_size and content types belong in upload tokens only",
            ));
        }
        // A response override shapes how a download is served: an upload slot or a refresh
        // state has no download to shape.
        if self.has_overrides && self.purpose != Purpose::Download {
            return Err(Malformed(
                "filename, disposition and max-age belong in download tokens only",
            ));
        }
        if self.has_kept_query && self.purpose != Purpose::RefreshState {
            return Err(Malformed("a kept query belongs in refresh states only"));
        }
        // A version names one file: a prefix or a scopes list covers many (and binds no
        // path), and only downloads read a file.
        if self.has_file_version
            && (self.purpose != Purpose::Download || self.has_prefix || self.has_scopes)
        {
            return Err(Malformed(
                "a file version belongs in exact-path download tokens only",
            ));
        }
        // A playback grant continues a download link, and never ends before the link it was
        // exchanged for.
        if let Some(origin) = self.playback_of {
            if self.purpose != Purpose::Download || origin > self.expires {
                return Err(Malformed(
                    "a playback grant's origin belongs in download tokens, no later than their expiry",
                ));
            }
        }
        // The list is the whole scope: a prefix or a methods field beside it would be a
        // second, contradicting one.
        if self.has_scopes && self.has_prefix_or_methods {
            return Err(Malformed(
                "a token with scopes carries neither a prefix nor a methods field",
            ));
        }
        Ok(())
    }
}

/// The single definition of what each field may contain, shared by minting and decoding.
fn validate_field(field: u8, value: &[u8]) -> Result<(), Malformed> {
    if field == id::SCOPES {
        return scopes::check(value).map_err(Malformed);
    }
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
        id::RECIPIENT => {
            (1..=limit::RECIPIENT).contains(&value.len())
                && value.iter().all(|&b| b == b' ' || b.is_ascii_graphic())
        }
        id::DATA => (1..=limit::DATA).contains(&value.len()),
        id::REFRESH => RefreshMarker::from_wire(value).is_some(),
        id::ISSUED_AT | id::MAX_SIZE | id::PLAYBACK_OF => value.len() == 8 && be_u64(value) != 0,
        id::USES => value.len() == 4 && be_u32(value) != 0,
        id::CONTENT_TYPES => {
            value.len() <= limit::CONTENT_TYPES
                && std::str::from_utf8(value).is_ok_and(is_canonical_content_types)
        }
        id::FILENAME => download_name_problem(value).is_none(),
        id::DISPOSITION => value.len() == 1 && Disposition::from_byte(value[0]).is_some(),
        id::MAX_AGE => value.len() == 4,
        id::KEPT_QUERY => is_kept_query(value),
        id::FILE_VERSION => value.len() == 8,
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
        id::REFRESH => "bad refresh marker",
        id::ISSUED_AT => "bad issued-at",
        id::USES => "bad uses: a u32 of at least 1",
        id::MAX_SIZE => "bad max_size: a u64 of at least 1",
        id::FILENAME => "bad filename: 1-255 bytes of UTF-8 without control or bidirectional formatting characters, '/' or '\\', not \".\" or \"..\", no space at either end",
        id::DISPOSITION => "bad disposition: one byte, 1 (inline) or 2 (attachment)",
        id::MAX_AGE => "bad max-age: a u32 (4 bytes)",
        id::KEPT_QUERY => "bad kept query: 1-255 bytes of URL query characters in non-empty '&'-separated pairs, '%' only before two hex digits",
        id::FILE_VERSION => "bad file version: exactly 8 bytes",
        id::RECIPIENT => "bad recipient",
        id::PLAYBACK_OF => "bad playback origin: a u64 of at least 1",
        _ => "bad content types: lower-case type/subtype names, ascending, comma-separated, no duplicates, no parameters, 1-255 bytes",
    }
}

fn be_u64(value: &[u8]) -> u64 {
    // Callers validated the length; a short slice reads as 0, which validation rejects.
    value.try_into().map_or(0, u64::from_be_bytes)
}

fn be_u32(value: &[u8]) -> u32 {
    value.try_into().map_or(0, u32::from_be_bytes)
}

/// True for the one spelling of a content-type list (spec §17): 1-255 bytes, media types
/// `type/subtype` separated by single commas, strictly ascending (so no duplicates).
pub fn is_canonical_content_types(list: &str) -> bool {
    if list.is_empty() || list.len() > limit::CONTENT_TYPES {
        return false;
    }
    let mut previous: Option<&str> = None;
    for media_type in list.split(',') {
        if !is_canonical_media_type(media_type) || previous.is_some_and(|p| p >= media_type) {
            return false;
        }
        previous = Some(media_type);
    }
    true
}

/// A lower-case `type/subtype` of RFC 6838 restricted names (§4.2): each 1-127 characters,
/// starting with a letter or digit, then letters, digits and `! # $ & - ^ _ . +`. No
/// parameters, no spaces, no upper case.
pub fn is_canonical_media_type(media_type: &str) -> bool {
    let restricted_name = |name: &str| {
        let bytes = name.as_bytes();
        (1..=limit::MEDIA_NAME).contains(&bytes.len())
            && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
            && bytes
                .iter()
                .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$&-^_.+".contains(&b))
    };
    media_type
        .split_once('/')
        .is_some_and(|(kind, subtype)| restricted_name(kind) && restricted_name(subtype))
}

/// The wire form of a list of media types a person wrote (`sign --content-type`, `/mint`'s
/// `content_types`): refuses, never repairs, every type that is not already in its one
/// spelling (upper case, parameters, spaces, duplicates), then sorts. The error names the
/// offending entry.
pub fn canonical_content_types<'t>(
    types: impl IntoIterator<Item = &'t str>,
) -> Result<String, String> {
    let mut list: Vec<&str> = Vec::new();
    for media_type in types {
        if media_type.contains(';') {
            return Err(format!(
                "content type {media_type:?} has parameters: give the media type only (type/subtype)"
            ));
        }
        if media_type.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(format!(
                "content type {media_type:?} must be lower case (write {:?})",
                media_type.to_ascii_lowercase()
            ));
        }
        if !is_canonical_media_type(media_type) {
            return Err(format!(
                "content type {media_type:?} is not a media type type/subtype (RFC 6838 names: a-z 0-9 ! # $ & - ^ _ . +, no spaces)"
            ));
        }
        if list.contains(&media_type) {
            return Err(format!("content type {media_type} is named twice"));
        }
        list.push(media_type);
    }
    if list.is_empty() {
        return Err("empty content type list".into());
    }
    list.sort_unstable();
    let joined = list.join(",");
    if joined.len() > limit::CONTENT_TYPES {
        return Err(format!(
            "content types take {} bytes; at most {} fit in a token",
            joined.len(),
            limit::CONTENT_TYPES
        ));
    }
    Ok(joined)
}

/// True for a kept query (v2 field `0x17`, spec §17.1): 1-255 bytes, `&`-separated pairs that
/// are never empty (so no leading, trailing or doubled `&`), each byte an RFC 3986 query
/// character (unreserved, sub-delims, `:`, `@`, `/`, `?`) or a `%` followed by two hex digits.
/// It is the raw query as received, so nothing in it is normalised: a query outside these
/// rules is not kept (and not refreshed), never repaired.
pub fn is_kept_query(value: &[u8]) -> bool {
    if value.is_empty() || value.len() > limit::KEPT_QUERY {
        return false;
    }
    value.split(|&b| b == b'&').all(|pair| {
        !pair.is_empty()
            && pair.iter().enumerate().all(|(at, &b)| match b {
                b'%' => pair
                    .get(at + 1..at + 3)
                    .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)),
                b => b.is_ascii_alphanumeric() || b"-._~!$'()*+,;=:@/?".contains(&b),
            })
    })
}

/// Values validated as ASCII are valid UTF-8; the fallback keeps this panic-free regardless.
fn ascii(value: &[u8]) -> &str {
    std::str::from_utf8(value).unwrap_or("")
}

/// Values validated as UTF-8 (the file name); the fallback keeps this panic-free regardless.
fn utf8(value: &[u8]) -> &str {
    std::str::from_utf8(value).unwrap_or("")
}

fn ascii_or_utf8(value: &[u8]) -> Result<&str, Malformed> {
    std::str::from_utf8(value).map_err(|_| Malformed("prefix is not UTF-8"))
}

#[cfg(test)]
mod tests {
    //! The v2 rules, one test each; v1 is pinned byte for byte by `tests/vectors/tokens.json`
    //! and v2 by `tests/vectors/tokens-v2.json`.
    use super::*;
    use crate::keys::{Key, Secret};
    use crate::token::{mac, sign, Disposition};

    const EXP: u64 = 1_800_000_600;

    fn key() -> Key {
        Key::new("k1", &Secret::new((0..32).collect())).unwrap()
    }

    fn upload() -> Claims {
        Claims {
            purpose: Purpose::Upload,
            issued_at: Some(EXP - 600),
            uses: Some(1),
            token_id: Some("t1".into()),
            ..Claims::download(Scope::Exact("/uploads/a.bin".into()), EXP)
        }
    }

    /// Signs raw body bytes, so that malformed bodies reach the decoder with a valid tag.
    fn signed(body: &[u8]) -> String {
        encode_token(body, &mac::tag(&key(), body, Some("/uploads/a.bin")))
    }

    fn decode_body(body: &[u8]) -> Result<(), Malformed> {
        let mut buf = TokenBuf::new();
        decode(&signed(body), &mut buf).map(|_| ())
    }

    /// `version purpose kid=k1 exp=EXP` followed by `fields`.
    fn body(version: u8, purpose: u8, fields: &[(u8, &[u8])]) -> Vec<u8> {
        let mut body = vec![version, purpose, id::KID, 2, b'k', b'1', id::EXPIRES, 8];
        body.extend_from_slice(&EXP.to_be_bytes());
        for (field, value) in fields {
            body.push(*field);
            body.push(value.len() as u8);
            body.extend_from_slice(value);
        }
        body
    }

    /// A verified token's claims, signed again with its key, are the token it came from:
    /// what a playback grant changes (the expiry) is the only thing that can differ.
    #[test]
    fn a_tokens_claims_sign_back_to_the_same_token() {
        let v1 = Claims {
            not_before: Some(EXP - 900),
            host: Some("media.example.org".into()),
            methods: Some(Methods::READ),
            ip: Some("192.0.2.0/24".parse().unwrap()),
            token_id: Some("t-1".into()),
            subject: Some("user 7".into()),
            data: Some(vec![0, 1, 255]),
            refresh: Some(RefreshMarker {
                attempt: 2,
                started: EXP - 1000,
            }),
            ..Claims::download(Scope::Exact("/media/a b.mp4".into()), EXP)
        };
        let v2_prefix = Claims {
            scope: Scope::Prefix("/media/clip/".into()),
            issued_at: Some(EXP - 600),
            filename: Some("Clip é.mp4".into()),
            disposition: Some(Disposition::Inline),
            max_age: Some(60),
            recipient: Some("partner".into()),
            ..v1.clone()
        };
        let v2_bound = Claims {
            file_version: Some(FileVersion::from_bytes([1, 2, 3, 4, 5, 6, 7, 8])),
            issued_at: Some(EXP - 600),
            ..v1.clone()
        };
        let scoped = Claims {
            methods: None,
            scope: Scope::List(vec![
                ScopeEntry {
                    methods: Methods::READ,
                    prefix: true,
                    path: "/media/a/".into(),
                },
                ScopeEntry {
                    methods: Methods::READ,
                    prefix: false,
                    path: "/media/b.pdf".into(),
                },
            ]),
            ..v1.clone()
        };
        let state = Claims {
            purpose: Purpose::RefreshState,
            kept_query: Some("x=1&y=a%20b".into()),
            ..v1.clone()
        };
        for claims in [v1, v2_prefix, v2_bound, scoped, upload(), state] {
            let text = sign(&claims, &key()).unwrap();
            let mut buf = TokenBuf::new();
            let token = decode(&text, &mut buf).unwrap();
            let path = match &claims.scope {
                Scope::Exact(path) => path.as_str(),
                _ => "/ignored",
            };
            assert_eq!(token.claims(path), claims);
            assert_eq!(sign(&token.claims(path), &key()).unwrap(), text);
        }
    }

    #[test]
    fn claims_without_v2_fields_encode_as_v1_and_with_one_as_v2() {
        let plain = Claims::download(Scope::Exact("/a".into()), EXP);
        assert_eq!(plain.encode_body("k1").unwrap()[0], VERSION_1);
        let stamped = Claims {
            issued_at: Some(EXP - 1),
            ..plain.clone()
        };
        let body = stamped.encode_body("k1").unwrap();
        assert_eq!(body[0], VERSION_2);
        assert_eq!(&body[body.len() - 10..][..2], &[id::ISSUED_AT, 8]);
        // The version byte is signed: the v1 and v2 tags of otherwise equal bodies differ.
        let mut as_v1 = body.clone();
        as_v1[0] = VERSION_1;
        assert_ne!(
            mac::tag(&key(), &body, Some("/a")),
            mac::tag(&key(), &as_v1, Some("/a"))
        );
    }

    #[test]
    fn v2_upload_round_trips_every_field() {
        let claims = Claims {
            max_size: Some(10 << 20),
            content_types: Some("image/jpeg,image/png".into()),
            ..upload()
        };
        let text = sign(&claims, &key()).unwrap();
        let mut buf = TokenBuf::new();
        let token = decode(&text, &mut buf).unwrap();
        assert_eq!(token.version, VERSION_2);
        assert_eq!(token.purpose, Purpose::Upload);
        assert_eq!(token.issued_at, Some(EXP - 600));
        assert_eq!(token.uses, Some(1));
        assert_eq!(token.token_id, Some("t1"));
        assert_eq!(token.max_size, Some(10 << 20));
        assert_eq!(token.content_types, Some("image/jpeg,image/png"));
        assert_eq!(
            token.content_types_iter().collect::<Vec<_>>(),
            ["image/jpeg", "image/png"]
        );
    }

    #[test]
    fn v2_body_without_a_v2_field_is_malformed() {
        assert_eq!(
            decode_body(&body(2, 1, &[])),
            Err(Malformed(
                "version 2 without a v2 field (the same claims are spelled as version 1)"
            ))
        );
        // The same bytes as version 1 are fine.
        assert_eq!(decode_body(&body(1, 1, &[])), Ok(()));
    }

    #[test]
    fn v2_ids_are_unknown_in_a_v1_body_and_unknown_versions_are_malformed() {
        let iat = (EXP - 1).to_be_bytes();
        assert_eq!(
            decode_body(&body(1, 1, &[(id::ISSUED_AT, &iat)])),
            Err(Malformed("unknown field"))
        );
        assert_eq!(decode_body(&body(2, 1, &[(id::ISSUED_AT, &iat)])), Ok(()));
        for version in [0, 3, 0xff] {
            assert_eq!(
                decode_body(&body(version, 1, &[(id::ISSUED_AT, &iat)])),
                Err(Malformed("unknown version"))
            );
        }
        // 0x10 stays the binding id, never a body field, in v2 too.
        assert_eq!(
            decode_body(&body(2, 1, &[(id::ISSUED_AT, &iat), (0x10, b"x")])),
            Err(Malformed("unknown field"))
        );
    }

    #[test]
    fn issued_at_must_be_nonzero_eight_bytes_and_before_the_expiry() {
        let at = |iat: u64| decode_body(&body(2, 1, &[(id::ISSUED_AT, &iat.to_be_bytes())]));
        assert_eq!(at(EXP - 1), Ok(()));
        let late = Err(Malformed("issued-at must be earlier than the expiry"));
        assert_eq!(at(EXP), late);
        assert_eq!(at(EXP + 1), late);
        assert_eq!(at(0), Err(Malformed("bad issued-at")));
        assert_eq!(
            decode_body(&body(2, 1, &[(id::ISSUED_AT, &[0, 0, 0, 1])])),
            Err(Malformed("bad issued-at"))
        );
        let claims = Claims {
            issued_at: Some(EXP),
            ..Claims::download(Scope::Exact("/a".into()), EXP)
        };
        assert_eq!(claims.encode_body("k1"), late.map(|()| Vec::new()));
    }

    #[test]
    fn uses_needs_a_token_id_exactly_four_bytes_and_at_least_one() {
        let one = 1u32.to_be_bytes();
        assert_eq!(
            decode_body(&body(2, 1, &[(id::TOKEN_ID, b"t"), (id::USES, &one)])),
            Ok(())
        );
        assert_eq!(
            decode_body(&body(2, 1, &[(id::USES, &one)])),
            Err(Malformed(
                "a use limit needs a token id (uses are counted per key id and token id)"
            ))
        );
        let bad = Err(Malformed("bad uses: a u32 of at least 1"));
        for value in [&[0u8, 0, 0, 0][..], &[0, 0, 1], &[0, 0, 0, 0, 1]] {
            assert_eq!(
                decode_body(&body(2, 1, &[(id::TOKEN_ID, b"t"), (id::USES, value)])),
                bad
            );
        }
        let minted = |uses, token_id: Option<&str>| {
            Claims {
                uses: Some(uses),
                token_id: token_id.map(str::to_owned),
                ..Claims::download(Scope::Exact("/a".into()), EXP)
            }
            .encode_body("k1")
            .map(|_| ())
        };
        assert_eq!(minted(0, Some("t")), bad);
        assert!(minted(1, None).is_err());
        assert_eq!(minted(u32::MAX, Some("t")), Ok(()));
    }

    #[test]
    fn upload_limits_belong_in_upload_tokens_only() {
        let size = 1024u64.to_be_bytes();
        let iat = (EXP - 1).to_be_bytes();
        let not_upload = Err(Malformed(
            "max_size and content types belong in upload tokens only",
        ));
        for purpose in [1, 3] {
            assert_eq!(
                decode_body(&body(2, purpose, &[(id::MAX_SIZE, &size)])),
                not_upload
            );
            assert_eq!(
                decode_body(&body(2, purpose, &[(id::CONTENT_TYPES, b"image/png")])),
                not_upload
            );
        }
        assert_eq!(decode_body(&body(2, 2, &[(id::MAX_SIZE, &size)])), Ok(()));
        assert_eq!(
            decode_body(&body(2, 2, &[(id::MAX_SIZE, &0u64.to_be_bytes())])),
            Err(Malformed("bad max_size: a u64 of at least 1"))
        );
        // An upload token needs some v2 field to be v2 at all; iat alone will do.
        assert_eq!(decode_body(&body(2, 2, &[(id::ISSUED_AT, &iat)])), Ok(()));
        let download = Claims {
            max_size: Some(1),
            ..Claims::download(Scope::Exact("/a".into()), EXP)
        };
        assert_eq!(download.encode_body("k1").map(|_| ()), not_upload);
    }

    #[test]
    fn content_types_have_one_spelling() {
        for good in [
            "image/png",
            "image/jpeg,image/png",
            "application/vnd.api+json,text/plain",
            "a/b",
        ] {
            assert!(is_canonical_content_types(good), "{good}");
            assert_eq!(
                decode_body(&body(2, 2, &[(id::CONTENT_TYPES, good.as_bytes())])),
                Ok(()),
                "{good}"
            );
        }
        for bad in [
            "",
            "image/png,image/jpeg",
            "image/png,image/png",
            "Image/png",
            "image/png;q=1",
            "image/png, text/plain",
            "image/png,",
            ",image/png",
            "image",
            "image/",
            "/png",
            "image/png/x",
            "-image/png",
            "image/*",
            "*/*",
        ] {
            assert!(!is_canonical_content_types(bad), "{bad:?}");
            assert!(
                decode_body(&body(2, 2, &[(id::CONTENT_TYPES, bad.as_bytes())])).is_err(),
                "{bad:?}"
            );
        }
        let long = format!("a/{}", "b".repeat(128));
        assert!(!is_canonical_media_type(&long));
        assert!(is_canonical_media_type(&long[..long.len() - 1]));
    }

    #[test]
    fn content_types_from_people_are_refused_unless_canonical_then_sorted() {
        assert_eq!(
            canonical_content_types(["image/png", "image/jpeg"]),
            Ok("image/jpeg,image/png".into())
        );
        for (bad, says) in [
            (&["Image/PNG"][..], "lower case"),
            (&["text/plain; charset=utf-8"], "parameters"),
            (&["image/png", "image/png"], "named twice"),
            (&["image/ png"], "not a media type"),
            (&[], "empty"),
        ] {
            let error = canonical_content_types(bad.iter().copied()).unwrap_err();
            assert!(error.contains(says), "{bad:?}: {error}");
        }
        let many: Vec<String> = (0..30).map(|i| format!("image/x-{i:04}")).collect();
        let error = canonical_content_types(many.iter().map(String::as_str)).unwrap_err();
        assert!(error.contains("at most 255"), "{error}");
    }

    #[test]
    fn content_type_allowed_compares_the_media_type_only() {
        let claims = Claims {
            content_types: Some("image/png,text/plain".into()),
            ..upload()
        };
        let text = sign(&claims, &key()).unwrap();
        let mut buf = TokenBuf::new();
        let token = decode(&text, &mut buf).unwrap();
        for allowed in [
            "image/png",
            "IMAGE/PNG",
            "text/plain; charset=utf-8",
            "text/plain;charset=utf-8",
            " text/plain ; charset=utf-8",
        ] {
            assert!(token.content_type_allowed(allowed), "{allowed:?}");
        }
        for refused in [
            "",
            ";",
            "image/jpeg",
            "image/png2",
            "image",
            "text/plain,image/png",
        ] {
            assert!(!token.content_type_allowed(refused), "{refused:?}");
        }
        let text = sign(&upload(), &key()).unwrap();
        let mut buf = TokenBuf::new();
        let unrestricted = decode(&text, &mut buf).unwrap();
        assert!(unrestricted.content_type_allowed("anything/at-all"));
        assert!(unrestricted.content_type_allowed(""));
        assert_eq!(unrestricted.content_types_iter().count(), 0);
    }

    #[test]
    fn upload_methods_default_to_post_and_put_in_v2_only() {
        let mut buf = TokenBuf::new();
        let text = sign(&upload(), &key()).unwrap();
        let v2 = decode(&text, &mut buf).unwrap();
        assert_eq!(v2.methods(), Methods::WRITE);
        assert!(v2.methods().allows("POST") && v2.methods().allows("PUT"));
        assert!(!v2.methods().allows("GET") && !v2.methods().allows("HEAD"));
        // v1 is frozen: a v1 upload token without methods still means GET and HEAD.
        let v1_upload = Claims {
            purpose: Purpose::Upload,
            ..Claims::download(Scope::Exact("/uploads/a.bin".into()), EXP)
        };
        let text = sign(&v1_upload, &key()).unwrap();
        let mut buf = TokenBuf::new();
        let v1 = decode(&text, &mut buf).unwrap();
        assert_eq!((v1.version, v1.methods()), (VERSION_1, Methods::READ));
        // A v2 download keeps GET and HEAD.
        let download = Claims {
            issued_at: Some(EXP - 1),
            ..Claims::download(Scope::Exact("/a".into()), EXP)
        };
        let text = sign(&download, &key()).unwrap();
        let mut buf = TokenBuf::new();
        assert_eq!(decode(&text, &mut buf).unwrap().methods(), Methods::READ);
    }

    fn download(fields: &[(u8, &[u8])]) -> Result<(), Malformed> {
        decode_body(&body(2, 1, fields))
    }

    #[test]
    fn response_overrides_round_trip_and_make_the_token_v2() {
        let claims = Claims {
            filename: Some("Résumé 2026 \"final\".pdf".into()),
            disposition: Some(Disposition::Attachment),
            max_age: Some(3600),
            ..Claims::download(Scope::Exact("/uploads/a.bin".into()), EXP)
        };
        let text = sign(&claims, &key()).unwrap();
        let mut buf = TokenBuf::new();
        let token = decode(&text, &mut buf).unwrap();
        assert_eq!(token.version, VERSION_2);
        assert_eq!(token.filename, Some("Résumé 2026 \"final\".pdf"));
        assert_eq!(token.disposition, Some(Disposition::Attachment));
        assert_eq!(token.max_age, Some(3600));
        assert!(token.has_overrides());
        // Each override alone is a v2-only field.
        assert_eq!(download(&[(id::DISPOSITION, &[1])]), Ok(()));
        assert_eq!(download(&[(id::MAX_AGE, &0u32.to_be_bytes())]), Ok(()));
        assert_eq!(download(&[(id::FILENAME, b"a.pdf")]), Ok(()));
    }

    #[test]
    fn hostile_file_names_are_malformed_when_forged_and_refused_when_minted() {
        let bad = Err(Malformed(field_error(id::FILENAME)));
        for name in [
            &b"a\r\nSet-Cookie: x=1.pdf"[..],
            b"a\nb.pdf",
            b"a\0.pdf",
            b"../a.pdf",
            b"a\\b.pdf",
            "x\u{202e}fdp.exe".as_bytes(),
            b"\xc3(.pdf",
            b"",
        ] {
            assert_eq!(download(&[(id::FILENAME, name)]), bad, "{name:?}");
            if let Ok(text) = std::str::from_utf8(name) {
                let claims = Claims {
                    filename: Some(text.into()),
                    ..Claims::download(Scope::Exact("/a".into()), EXP)
                };
                assert_eq!(claims.encode_body("k1").map(|_| ()), bad, "{name:?}");
            }
        }
    }

    #[test]
    fn disposition_and_max_age_have_one_width() {
        let bad_disposition = Err(Malformed(field_error(id::DISPOSITION)));
        for value in [&[0u8][..], &[3], &[1, 1], &[]] {
            assert_eq!(download(&[(id::DISPOSITION, value)]), bad_disposition);
        }
        let bad_age = Err(Malformed(field_error(id::MAX_AGE)));
        for value in [&[0u8, 0, 1][..], &[0, 0, 0, 0, 1], &[]] {
            assert_eq!(download(&[(id::MAX_AGE, value)]), bad_age);
        }
        assert_eq!(download(&[(id::MAX_AGE, &u32::MAX.to_be_bytes())]), Ok(()));
    }

    #[test]
    fn overrides_belong_in_download_tokens_and_kept_queries_in_refresh_states() {
        let iat = (EXP - 1).to_be_bytes();
        let not_download = Err(Malformed(
            "filename, disposition and max-age belong in download tokens only",
        ));
        for purpose in [2, 3] {
            for field in [
                (id::FILENAME, &b"a.pdf"[..]),
                (id::DISPOSITION, &[2]),
                (id::MAX_AGE, &[0, 0, 0, 60]),
            ] {
                assert_eq!(
                    decode_body(&body(2, purpose, &[(id::ISSUED_AT, &iat), field])),
                    not_download
                );
            }
        }
        let not_state = Err(Malformed("a kept query belongs in refresh states only"));
        for purpose in [1, 2] {
            assert_eq!(
                decode_body(&body(2, purpose, &[(id::KEPT_QUERY, b"x=1")])),
                not_state
            );
        }
        assert_eq!(
            decode_body(&body(2, 3, &[(id::KEPT_QUERY, b"x=1")])),
            Ok(())
        );
        let upload_named = Claims {
            filename: Some("a.pdf".into()),
            ..upload()
        };
        assert_eq!(upload_named.encode_body("k1").map(|_| ()), not_download);
    }

    #[test]
    fn kept_queries_are_raw_query_pairs_with_one_spelling() {
        for good in [
            "x=1",
            "x=1&y=a%20b",
            "a",
            "a=&b",
            "q=a+b&r=%E2%82%AC&s=/x?y:z@w;v,u!$'()*",
            "X=%2f%2F",
        ] {
            assert!(is_kept_query(good.as_bytes()), "{good:?}");
            assert_eq!(
                decode_body(&body(2, 3, &[(id::KEPT_QUERY, good.as_bytes())])),
                Ok(())
            );
        }
        let long = "a".repeat(256);
        for bad in [
            "",
            "&x=1",
            "x=1&",
            "x=1&&y=2",
            "x=%2",
            "x=%zz",
            "x=a b",
            "x=\"",
            "x=<",
            "x=1#f",
            "x=é",
            "x=1\r\ny",
            long.as_str(),
        ] {
            assert!(!is_kept_query(bad.as_bytes()), "{bad:?}");
        }
        assert!(is_kept_query(&long.as_bytes()[..255]));
    }

    #[test]
    fn every_id_above_the_binding_id_is_v2_only_and_unassigned_ones_are_unknown() {
        // A v1 body knows none of them.
        for field in [
            id::SCOPES,
            id::RECIPIENT,
            id::FILE_VERSION,
            id::FILENAME,
            id::DISPOSITION,
            id::MAX_AGE,
            id::KEPT_QUERY,
        ] {
            assert_eq!(
                decode_body(&body(1, 1, &[(field, &[1])])),
                Err(Malformed("unknown field"))
            );
        }
        // The binding id and ids past the last assigned one stay unknown in v2.
        for field in [id::BOUND_PATH, id::LAST_V2 + 1, 0xff] {
            assert_eq!(
                download(&[(field, &[1])]),
                Err(Malformed("unknown field")),
                "{field:#x}"
            );
        }
    }

    #[test]
    fn the_api_purpose_exists_in_version_2_only_and_makes_claims_v2() {
        // Purpose 4 in a v1 body is an unknown purpose: v1 is frozen.
        assert_eq!(
            decode_body(&body(1, 4, &[])),
            Err(Malformed("unknown purpose"))
        );
        // In v2 it is enough on its own: it is the v2-only part.
        assert_eq!(decode_body(&body(2, 4, &[])), Ok(()));
        assert_eq!(
            decode_body(&body(2, 5, &[])),
            Err(Malformed("unknown purpose"))
        );
        let claims = Claims {
            purpose: Purpose::Api,
            ..Claims::download(Scope::Prefix("/api/v1/".into()), EXP)
        };
        assert_eq!(claims.version(), VERSION_2);
        let mut buf = TokenBuf::new();
        let text = sign(&claims, &key()).unwrap();
        let token = decode(&text, &mut buf).unwrap();
        assert_eq!((token.version, token.purpose), (VERSION_2, Purpose::Api));
        assert_eq!(token.methods(), Methods::READ);
    }

    #[test]
    fn a_file_version_is_eight_bytes_in_exact_path_download_tokens_only() {
        let version = [1, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(
            decode_body(&body(2, 1, &[(id::FILE_VERSION, &version)])),
            Ok(())
        );
        // An id above 0x10 makes the body v2 by itself; in v1 it is unknown.
        assert_eq!(
            decode_body(&body(1, 1, &[(id::FILE_VERSION, &version)])),
            Err(Malformed("unknown field"))
        );
        for bad in [&version[..7], &[0; 9][..]] {
            assert_eq!(
                decode_body(&body(2, 1, &[(id::FILE_VERSION, bad)])),
                Err(Malformed("bad file version: exactly 8 bytes"))
            );
        }
        let misplaced = Err(Malformed(
            "a file version belongs in exact-path download tokens only",
        ));
        for purpose in [2, 3, 4] {
            assert_eq!(
                decode_body(&body(2, purpose, &[(id::FILE_VERSION, &version)])),
                misplaced
            );
        }
        assert_eq!(
            decode_body(&body(
                2,
                1,
                &[(id::PREFIX, b"/media/"), (id::FILE_VERSION, &version)]
            )),
            misplaced
        );
        // Unassigned ids (past the last assigned one) stay unknown.
        for unassigned in [id::LAST_V2 + 1, 0xff] {
            assert_eq!(
                decode_body(&body(2, 1, &[(unassigned, b"x")])),
                Err(Malformed("unknown field")),
                "{unassigned:#x}"
            );
        }
        let bound = Claims {
            file_version: Some(FileVersion::from_bytes(version)),
            ..Claims::download(Scope::Exact("/media/a.pdf".into()), EXP)
        };
        let mut buf = TokenBuf::new();
        let text = sign(&bound, &key()).unwrap();
        let token = decode(&text, &mut buf).unwrap();
        assert_eq!(token.version, VERSION_2);
        assert_eq!(token.file_version, Some(FileVersion::from_bytes(version)));
        let prefix = Claims {
            scope: Scope::Prefix("/media/".into()),
            ..bound
        };
        assert_eq!(prefix.encode_body("k1").map(|_| ()), misplaced);
        // A scopes list binds no path and covers several: no file version beside it either.
        let scoped = Claims {
            scope: Scope::List(vec![
                ScopeEntry {
                    methods: Methods::READ,
                    prefix: false,
                    path: "/media/a.pdf".into(),
                },
                ScopeEntry {
                    methods: Methods::READ,
                    prefix: false,
                    path: "/media/b.pdf".into(),
                },
            ]),
            ..prefix
        };
        assert_eq!(scoped.encode_body("k1").map(|_| ()), misplaced);
        let mut scopes = vec![1, 0, 2];
        scopes.extend_from_slice(b"/a");
        scopes.extend_from_slice(&[1, 0, 2]);
        scopes.extend_from_slice(b"/b");
        assert_eq!(decode_body(&body(2, 1, &[(id::SCOPES, &scopes)])), Ok(()));
        assert_eq!(
            decode_body(&body(
                2,
                1,
                &[(id::SCOPES, &scopes), (id::FILE_VERSION, &version)]
            )),
            misplaced
        );
    }

    proptest::proptest! {
        /// Any claims the encoder accepts decode back to exactly those claims, in the
        /// version the encoder chose.
        #[test]
        fn encode_then_decode_round_trips_v1_and_v2(
            purpose in proptest::sample::select(vec![Purpose::Download, Purpose::Upload, Purpose::RefreshState]),
            expires in 2u64..=u64::MAX,
            issued_before in proptest::option::of(1u64..=u64::MAX),
            uses in proptest::option::of(1u32..=u32::MAX),
            token_id in proptest::option::of("[!-~]{1,64}"),
            max_size in proptest::option::of(1u64..=u64::MAX),
            content_types in proptest::option::of(proptest::collection::btree_set("[a-z0-9][a-z0-9.+-]{0,8}/[a-z0-9][a-z0-9.+-]{0,8}", 1..6)),
            methods in proptest::option::of(1u8..0x80),
            recipient in proptest::option::of("[ -~]{1,128}"),
        ) {
            // Generated within the rules (a use limit brings a token id, upload limits come
            // with uploads, issued-at precedes the expiry): every case must mint.
            let upload = purpose == Purpose::Upload;
            let claims = Claims {
                purpose,
                issued_at: issued_before.map(|before| expires - before.min(expires - 1)),
                token_id: token_id.or_else(|| uses.map(|_| "t".to_owned())),
                uses,
                max_size: max_size.filter(|_| upload),
                content_types: content_types
                    .filter(|_| upload)
                    .map(|set| set.into_iter().collect::<Vec<_>>().join(",")),
                methods: methods.and_then(Methods::from_bits),
                recipient,
                ..Claims::download(Scope::Exact("/uploads/a.bin".into()), expires)
            };
            let text = sign(&claims, &key()).expect("claims within the rules mint");
            let mut buf = TokenBuf::new();
            let token = decode(&text, &mut buf).expect("a minted token decodes");
            proptest::prop_assert_eq!(token.version, claims.version());
            proptest::prop_assert_eq!(token.purpose, claims.purpose);
            proptest::prop_assert_eq!(token.expires, claims.expires);
            proptest::prop_assert_eq!(token.issued_at, claims.issued_at);
            proptest::prop_assert_eq!(token.uses, claims.uses);
            proptest::prop_assert_eq!(token.token_id, claims.token_id.as_deref());
            proptest::prop_assert_eq!(token.max_size, claims.max_size);
            proptest::prop_assert_eq!(token.content_types, claims.content_types.as_deref());
            proptest::prop_assert_eq!(token.methods_field, claims.methods);
            proptest::prop_assert_eq!(token.recipient, claims.recipient.as_deref());
        }
    }
}
