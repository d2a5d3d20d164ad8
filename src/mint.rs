//! Minting signed URLs: the one place that turns a request for access into a token and a URL.
//!
//! Two layers:
//! - [`MintInput`] is the front end: a request as a person or a backend writes it. The flags
//!   of `mediagate sign` and the JSON body of `POST /mint` both become one, and
//!   [`MintInput::resolve`] is the single place that checks it (spec §8.1): it refuses rather
//!   than repairs, so every claim has one spelling.
//! - [`mint`] turns a [`MintRequest`] into a token under the configured limits (canonical
//!   paths, lifetime cap, field rules). `sign`, `/mint` and the refresh flow share it.
//!
//! Version 2 (spec §17) is chosen here, never asked for: a token with a use limit, upload
//! limits, a response override, a file version, a scopes list, a recipient, the `api`
//! purpose or a forced issued-at is v2 and carries `issued_at = now`; every other token stays
//! v1, byte for byte what earlier releases minted. Upload tokens are single-use unless told
//! otherwise, and a counted token without a token id gets a random one.
//!
//! Every token is signed with the signing key or the key the caller names, and only when
//! that key is allowed the token's purpose (`[keys.purposes]`): a key kept for API tokens
//! never signs a media link.

use std::path::Path;

use serde::Deserialize;

use crate::config::{Config, Duration, LinkForm, Site};
use crate::files::{self, FileError};
use crate::keys::Key;
use crate::path;
use crate::token::scopes::{self, ScopeEntry, ScopeRef};
use crate::token::{
    self, Claims, Disposition, FileVersion, IpNet, Methods, Purpose, RefreshMarker, Scope,
};

/// What a front end may ask for: a `refresh_state` is minted by the refresh flow only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MintPurpose {
    /// A download link (GET and HEAD unless `methods` says otherwise).
    #[default]
    Download,
    /// An upload slot (POST and PUT unless `methods` narrows it; single-use by default).
    Upload,
    /// A call to an application endpoint behind `protect-api.conf` (GET and HEAD unless
    /// `methods` says otherwise).
    Api,
}

impl From<MintPurpose> for Purpose {
    fn from(purpose: MintPurpose) -> Purpose {
        match purpose {
            MintPurpose::Download => Purpose::Download,
            MintPurpose::Upload => Purpose::Upload,
            MintPurpose::Api => Purpose::Api,
        }
    }
}

/// One entry of `scopes` as the caller wrote it: `{"methods": ["GET", "HEAD"], "path":
/// "/api/v1/foo/", "prefix": true}` (`sign --scope GET,HEAD:/api/v1/foo/`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeInput {
    /// Method names, exactly as HTTP spells them; at least one.
    pub methods: Vec<String>,
    /// The path as it appears in a URL (percent-encoded; decoded once). With `prefix`, a
    /// folder ending in `/`.
    pub path: String,
    /// Everything below `path` instead of exactly `path`.
    #[serde(default)]
    pub prefix: bool,
}

impl ScopeInput {
    /// Parses `sign --scope`: `METHODS:PATH`, methods comma-separated (`GET,HEAD:/api/v1/`);
    /// a `PATH` ending in `/` is a prefix.
    pub fn parse_flag(text: &str) -> Result<ScopeInput, String> {
        let (methods, path) = text.split_once(':').ok_or_else(|| {
            format!("scope {text:?}: write METHODS:PATH, e.g. GET,HEAD:/api/v1/foo/")
        })?;
        Ok(ScopeInput {
            methods: methods.split(',').map(str::to_owned).collect(),
            path: path.to_owned(),
            prefix: path.ends_with('/'),
        })
    }

    /// The entry with its path canonicalised once and its methods parsed; refused, never
    /// repaired.
    fn resolve(&self) -> Result<ScopeEntry, MintError> {
        let methods = Methods::from_names(self.methods.iter().map(String::as_str))
            .map_err(|error| MintError::Scopes(format!("scope {:?}: {error}", self.path)))?;
        let path = canonical_url_path(&self.path)?;
        Ok(ScopeEntry {
            methods,
            prefix: self.prefix,
            path,
        })
    }
}

/// A path as it appears in a URL, canonicalised once (spec §8.1): no raw `?`, and a URL form
/// that a verifier will not refuse as too long.
fn canonical_url_path(raw: &str) -> Result<String, MintError> {
    if raw.contains('?') {
        // A query is not part of the signed path (spec §7.1 stops at the first `?`); a
        // file name containing `?` is written `%3F`.
        return Err(MintError::QueryInPath(raw.to_owned()));
    }
    let canonical = path::canonicalize(raw)
        .map_err(|error| MintError::BadPath(raw.to_owned(), error))?
        .into_owned();
    // Such a segment carries a token (spec §13.3): nginx serves the path without it, so a
    // link for the path with it could never open the file it names.
    if path::split_grant(&canonical) != Ok(None) {
        return Err(MintError::BadField(
            "a path segment may not begin with ~mg~ (that segment carries a token)",
        ));
    }
    // The URL carries the encoded form, which can be three times longer than the canonical
    // one; never mint a link whose path the verifier will refuse as too long.
    if path::encode_path(&canonical).len() > path::MAX_PATH_LEN {
        return Err(MintError::BadPath(raw.to_owned(), path::PathError::TooLong));
    }
    Ok(canonical)
}

/// A request for a token as the caller wrote it: `mediagate sign`'s flags or `POST /mint`'s
/// JSON body (the field names are the JSON names). Nothing here is trusted yet.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MintInput {
    /// The path as it appears in a URL (percent-encoded; decoded once). With `prefix`, a
    /// folder ending in `/`. With `scopes`, optional: the path the link points at, which an
    /// entry must cover (default: the first entry's path).
    #[serde(default)]
    pub path: String,
    /// Scope the token to everything below `path` instead of exactly `path`.
    #[serde(default)]
    pub prefix: bool,
    /// Lifetime (`600`, `"10m"`); `None` uses `token.default_ttl`.
    pub ttl: Option<Duration>,
    /// Method names, exactly as HTTP spells them (`GET`); `None` means GET and HEAD.
    pub methods: Option<Vec<String>>,
    /// Client address or network, e.g. `203.0.113.0/24`.
    pub ip: Option<String>,
    /// Media host to bind to; `None` binds the site's media host when several sites exist.
    pub host: Option<String>,
    /// Subject / recipient for audit and upstream headers.
    pub subject: Option<String>,
    /// Token id.
    pub token_id: Option<String>,
    /// Opaque data, base64url without padding.
    pub data: Option<String>,
    /// Not-before, unix seconds.
    pub not_before: Option<u64>,
    /// Site id: whose media origin starts the URL and, with several sites, whose media host
    /// the token is bound to (default: the first site).
    pub site: Option<String>,
    /// `"download"` (default), `"upload"` or `"api"`.
    pub purpose: Option<MintPurpose>,
    /// Key id to sign with (default: `keys.signing`); the key must be allowed the purpose.
    pub key: Option<String>,
    /// Bind the link to the current version of its file under the site's `files_root`: it
    /// stops working once the file is replaced or changed (exact-path downloads only).
    #[serde(default)]
    pub bind_version: bool,
    /// Use limit (at least 1); upload tokens default to 1. A token id is generated when none
    /// is given.
    pub uses: Option<u32>,
    /// Upload tokens only: the largest body in bytes.
    pub max_size: Option<u64>,
    /// Upload tokens only: allowed media types, each `type/subtype` in lower case without
    /// parameters, each named once (any order; sorted here).
    pub content_types: Option<Vec<String>>,
    /// Stamp the token with the time it was minted even when nothing else needs version 2
    /// (revocation of "everything key K signed before T" can then place it).
    #[serde(default)]
    pub issued_at: bool,
    /// Download tokens only: the file name the browser saves the file as (UTF-8; needs
    /// `"filename"` in `accel.overrides`).
    pub filename: Option<String>,
    /// Download tokens only: `"inline"` or `"attachment"` (needs `"disposition"` in
    /// `accel.overrides`).
    pub disposition: Option<String>,
    /// Download tokens only: how long the browser may keep the file (`3600`, `"1h"`; at most
    /// 2^32-1 seconds; needs `"max_age"` in `accel.overrides`).
    pub max_age: Option<Duration>,
    /// v2: several (methods, path or prefix) entries instead of `path`/`prefix` and
    /// `methods`; at least two, in any order (sorted here), no method granted twice for a
    /// path.
    pub scopes: Option<Vec<ScopeInput>>,
    /// v2: who the token is handed to (`X-Mediagate-Recipient` upstream).
    pub recipient: Option<String>,
    /// How the link carries the token: `"query"` (default) or `"path"` (spec §13.3).
    #[serde(default)]
    pub form: LinkForm,
}

impl MintInput {
    /// Checks the input and turns it into a [`MintRequest`] for the chosen site (`None` only
    /// when no site is configured).
    ///
    /// With more than one site and no explicit `host`, the token is bound to the site's media
    /// host: the sites share one key ring, so an unbound token for `/media/x.pdf` on one site
    /// would open `/media/x.pdf` on every other.
    pub fn resolve<'c>(
        &self,
        config: &'c Config,
    ) -> Result<(MintRequest, Option<&'c Site>), MintError> {
        let site = match &self.site {
            Some(id) => Some(
                config
                    .site_by_id(id)
                    .ok_or_else(|| MintError::UnknownSite(id.clone()))?,
            ),
            None => config.sites.first(),
        };
        if self.path.contains('?') {
            // A query is not part of the signed path (spec §7.1 stops at the first `?`); a
            // file name containing `?` is written `%3F`.
            return Err(MintError::QueryInPath(self.path.clone()));
        }
        let scopes = match &self.scopes {
            Some(entries) => {
                let entries = entries
                    .iter()
                    .map(ScopeInput::resolve)
                    .collect::<Result<Vec<_>, _>>()?;
                Some(scopes::canonical_scopes(entries).map_err(MintError::Scopes)?)
            }
            None => None,
        };
        let methods = self
            .methods
            .as_ref()
            .map(|names| Methods::from_names(names.iter().map(String::as_str)))
            .transpose()
            .map_err(MintError::Input)?;
        let ip = self
            .ip
            .as_deref()
            .map(str::parse::<IpNet>)
            .transpose()
            .map_err(MintError::Input)?;
        let data = self
            .data
            .as_deref()
            .map(|data| {
                use base64::Engine;
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(data)
                    .map_err(|_| MintError::Input("data must be base64url without padding".into()))
            })
            .transpose()?;
        let content_types = self
            .content_types
            .as_ref()
            .map(|types| token::canonical_content_types(types.iter().map(String::as_str)))
            .transpose()
            .map_err(MintError::Input)?;
        let disposition = self
            .disposition
            .as_deref()
            .map(str::parse::<Disposition>)
            .transpose()
            .map_err(MintError::Input)?;
        let max_age = self
            .max_age
            .map(|age| {
                u32::try_from(age.0).map_err(|_| {
                    MintError::Input(format!(
                        "max_age {} seconds is more than a token carries (at most {})",
                        age.0,
                        u32::MAX
                    ))
                })
            })
            .transpose()?;
        let host = match (&self.host, site) {
            (Some(host), _) => Some(host.clone()),
            (None, Some(site)) if config.sites.len() > 1 => Some(site.media_host.clone()),
            (None, _) => None,
        };
        if self.bind_version && site.is_none_or(|site| site.files_root.is_none()) {
            return Err(MintError::NoFilesRoot(
                site.map_or_else(String::new, |site| site.id.clone()),
            ));
        }
        let request = MintRequest {
            key: self.key.clone(),
            file_version: None,
            path: self.path.clone(),
            prefix: self.prefix,
            ttl: self.ttl.map(|ttl| ttl.0),
            methods,
            ip,
            host,
            subject: self.subject.clone(),
            token_id: self.token_id.clone(),
            data,
            not_before: self.not_before,
            refresh: None,
            purpose: self.purpose.unwrap_or_default().into(),
            uses: self.uses,
            max_size: self.max_size,
            content_types,
            issued_at: self.issued_at,
            filename: self.filename.clone(),
            disposition,
            max_age,
            scopes,
            recipient: self.recipient.clone(),
            form: self.form,
        };
        Ok((request, site))
    }
}

/// What to mint. `path` is the URL form (percent-encoded; it is canonicalised here, once).
#[derive(Debug, Clone, Default)]
pub struct MintRequest {
    /// The file path, or the prefix (ending in `/`) when `prefix` is set.
    pub path: String,
    /// Scope the token to everything below `path` instead of exactly `path`.
    pub prefix: bool,
    /// Lifetime in seconds; `None` uses `token.default_ttl`.
    pub ttl: Option<u64>,
    /// Allowed methods; `None` means GET and HEAD.
    pub methods: Option<Methods>,
    /// Client address or network.
    pub ip: Option<IpNet>,
    /// Media host to bind the token to (lower case, as nginx's `$host`).
    pub host: Option<String>,
    /// Subject / recipient for audit and upstream headers.
    pub subject: Option<String>,
    /// Token id.
    pub token_id: Option<String>,
    /// Opaque data.
    pub data: Option<Vec<u8>>,
    /// Not-before, unix seconds.
    pub not_before: Option<u64>,
    /// Set by the refresh flow only.
    pub refresh: Option<RefreshMarker>,
    /// [`Purpose::Download`] (default) or [`Purpose::Upload`].
    pub purpose: Purpose,
    /// Use limit (at least 1). An upload token without one is single-use.
    pub uses: Option<u32>,
    /// Upload tokens only: the largest body in bytes (at least 1).
    pub max_size: Option<u64>,
    /// Upload tokens only: allowed media types in the wire form
    /// ([`token::canonical_content_types`]).
    pub content_types: Option<String>,
    /// Force an issued-at (and so version 2) on a token that would otherwise be v1.
    pub issued_at: bool,
    /// Download tokens only: the download file name.
    pub filename: Option<String>,
    /// Download tokens only: inline or attachment.
    pub disposition: Option<Disposition>,
    /// Download tokens only: `Cache-Control: private, max-age=N` seconds.
    pub max_age: Option<u32>,
    /// Key id to sign with; `None` signs with `keys.signing`.
    pub key: Option<String>,
    /// The version of the file the token is bound to ([`resolve_file_version`]).
    pub file_version: Option<FileVersion>,
    /// v2: canonical entries in their one order ([`scopes::canonical_scopes`]); replaces
    /// `prefix` and `methods`. `path` is then the link's path (empty: the first entry's).
    pub scopes: Option<Vec<ScopeEntry>>,
    /// v2: who the token is handed to.
    pub recipient: Option<String>,
    /// How [`Minted::path_and_query`] carries the token.
    pub form: LinkForm,
}

/// A minted token and where it points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Minted {
    /// The token string.
    pub token: String,
    /// Canonical path (or prefix) the token is scoped to.
    pub path: String,
    /// The path, percent-encoded, with the token (no origin): as the query parameter, or in
    /// a path segment when minted in [`LinkForm::Path`].
    pub path_and_query: String,
    /// Expiry, unix seconds.
    pub expires: u64,
    /// The token id the token carries, as given or (for a counted token without one)
    /// generated: the name of its counter, history and revocation.
    pub token_id: Option<String>,
    /// Issued-at, unix seconds, when the token is version 2.
    pub issued_at: Option<u64>,
}

/// Why minting was refused. Messages are safe to show to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MintError {
    /// Occurs when the path is not canonical.
    #[error("path {0:?} is not canonical: {1}")]
    BadPath(String, path::PathError),
    /// Occurs when the path given to a front end contains a raw `?`.
    #[error("path {0:?} contains '?': a query is not part of the signed path (write a '?' in a file name as %3F)")]
    QueryInPath(String),
    /// Occurs when a prefix does not end with `/`.
    #[error("prefix {0:?} must end with '/' (a prefix names a folder: matching stops at whole segments)")]
    PrefixWithoutSlash(String),
    /// Occurs when the TTL is zero or above `token.max_lifetime`.
    #[error("ttl must be between 1 and {0} seconds")]
    BadTtl(u64),
    /// Occurs when `not_before` is not before the expiry: the token could never be valid.
    #[error("not_before must be earlier than the expiry ({0})")]
    EmptyWindow(u64),
    /// Occurs when a field breaks the token format's limits or can never match a request.
    #[error("{0}")]
    BadField(&'static str),
    /// Occurs when a method list, IP network or data value is not spelled as documented.
    #[error("{0}")]
    Input(String),
    /// Occurs when the requested site id is not configured.
    #[error("unknown site {0:?}")]
    UnknownSite(String),
    /// Occurs when a use limit of 0 is asked for: such a token could never be used.
    #[error("uses must be at least 1 (leave it out for a token without a use limit)")]
    ZeroUses,
    /// Occurs when a download token is given an upload-only setting (`max_size`,
    /// `content_types`) or an upload token a method other than POST and PUT.
    #[error("{0}")]
    NotForPurpose(&'static str),
    /// Occurs when a response override is asked for that `accel.overrides` does not list:
    /// the verifier would refuse the token (`override_not_allowed`).
    #[error("{0} is not among accel.overrides: this deployment refuses tokens that carry it")]
    OverrideNotAllowed(&'static str),
    /// Occurs when a download file name breaks the rules of spec §17.1 (control characters,
    /// `/`, `\`, bidirectional formatting characters, ...).
    #[error("filename {0:?}: {1}")]
    BadFilename(String, &'static str),
    /// Occurs when a scopes list is not in its one spelling, is combined with `prefix` or
    /// `methods`, or does not cover the link's path.
    #[error("{0}")]
    Scopes(String),
    /// Occurs when the operating system cannot provide random bytes for a token id.
    #[error("no randomness available to generate a token id")]
    NoRandomness,
    /// Occurs when the requested key id names no configured key.
    #[error("unknown key {0:?}")]
    UnknownKey(String),
    /// Occurs when the key to sign with is not allowed the token's purpose
    /// (`[keys.purposes]`).
    #[error("key {key:?} may not sign {purpose} tokens (keys.purposes allows it: {allowed})")]
    KeyPurpose {
        /// The key id.
        key: String,
        /// The purpose asked for.
        purpose: &'static str,
        /// What the key may sign.
        allowed: String,
    },
    /// Occurs when a link bound to a file version is asked for on a site without a
    /// `files_root` (the site id; empty when no site is configured).
    #[error("site {0:?} has no files_root: links bound to a file version need one")]
    NoFilesRoot(String),
    /// Occurs when the file a link is to be bound to has no version (missing, not a regular
    /// file, or outside `files_root`).
    #[error("cannot bind {0:?} to its file version: {1}")]
    File(String, String),
}

/// Length of a generated token id in random bytes (22 base64url characters): ids of
/// different tokens must never collide, since a counter is keyed by key id and token id.
pub const GENERATED_TOKEN_ID_BYTES: usize = 16;

/// A fresh random token id: [`GENERATED_TOKEN_ID_BYTES`] bytes from the operating system,
/// base64url without padding.
pub fn generate_token_id() -> Result<String, MintError> {
    use base64::Engine;
    let mut bytes = [0u8; GENERATED_TOKEN_ID_BYTES];
    getrandom::getrandom(&mut bytes).map_err(|_| MintError::NoRandomness)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Parses a size for `sign --max-size`: a byte count in plain decimal, optionally followed
/// by `K`, `M` or `G` (1024-based): `1048576`, `512K`, `10M`, `2G`. At least 1 byte.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let (digits, unit) = match text.as_bytes().last() {
        Some(b'K') => (&text[..text.len() - 1], 1u64 << 10),
        Some(b'M') => (&text[..text.len() - 1], 1 << 20),
        Some(b'G') => (&text[..text.len() - 1], 1 << 30),
        _ => (text, 1),
    };
    let plain = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    let bad = || {
        format!(
            "size {text:?}: use a byte count, or a number with K, M or G (1024-based), e.g. 10M"
        )
    };
    let number: u64 = if plain {
        digits.parse().map_err(|_| bad())?
    } else {
        return Err(bad());
    };
    match number.checked_mul(unit) {
        Some(0) => Err(format!("size {text:?} must be at least 1 byte")),
        Some(size) => Ok(size),
        None => Err(bad()),
    }
}

/// Mints a download or upload token for `request` at unix time `now`.
pub fn mint(config: &Config, request: &MintRequest, now: u64) -> Result<Minted, MintError> {
    let canonical = match &request.scopes {
        Some(entries) => scoped_link_path(request, entries)?,
        None => canonical_url_path(&request.path)?,
    };
    // Refused, not repaired: `/media/a` could be meant as a file or a folder.
    if request.prefix && !canonical.ends_with('/') {
        return Err(MintError::PrefixWithoutSlash(request.path.clone()));
    }
    let encoded_path = path::encode_path(&canonical);
    let max = config.token.limits.max_lifetime;
    let ttl = request.ttl.unwrap_or(config.token.default_ttl);
    if ttl == 0 || ttl > max {
        return Err(MintError::BadTtl(max));
    }
    if request.not_before.is_some_and(|nbf| nbf >= now + ttl) {
        return Err(MintError::EmptyWindow(now + ttl));
    }
    let key = signing_key(config, request.key.as_deref(), request.purpose)?;
    let upload = request.purpose == Purpose::Upload;
    // A file version names one file: a prefix or a scopes list covers many (spec §17.1).
    if request.file_version.is_some()
        && (request.purpose != Purpose::Download || request.prefix || request.scopes.is_some())
    {
        return Err(MintError::NotForPurpose(ONE_FILE_ONLY));
    }
    // This deployment's verifier would refuse the link as `bad_path`.
    if request.form == LinkForm::Path && !config.token.from_path {
        return Err(MintError::NotForPurpose(
            "a link in path form needs \"path\" in token.sources (this configuration refuses such links)",
        ));
    }
    // Only media locations read a token from the path, and a scopes list has no one place
    // in a path for it.
    if request.form == LinkForm::Path
        && (request.purpose != Purpose::Download || request.scopes.is_some())
    {
        return Err(MintError::NotForPurpose(
            "a link in path form is a download link for one path or prefix (no scopes, uploads or API calls)",
        ));
    }
    if request.purpose == Purpose::RefreshState {
        return Err(MintError::NotForPurpose(
            "refresh_state tokens are minted by the refresh flow only",
        ));
    }
    if !upload && (request.max_size.is_some() || request.content_types.is_some()) {
        return Err(MintError::NotForPurpose(
            "max_size and content types limit uploads: they need an upload token (--upload, \"purpose\": \"upload\")",
        ));
    }
    // An upload slot grants writing only: a GET in it would let a slot download.
    let scope_methods = request.scopes.iter().flatten().map(|entry| entry.methods);
    if upload
        && request
            .methods
            .into_iter()
            .chain(scope_methods)
            .any(|m| m.bits() & !Methods::WRITE.bits() != 0)
    {
        return Err(MintError::NotForPurpose(
            "an upload token allows POST and/or PUT only",
        ));
    }
    let overrides =
        request.filename.is_some() || request.disposition.is_some() || request.max_age.is_some();
    if overrides && request.purpose != Purpose::Download {
        return Err(MintError::NotForPurpose(
            "filename, disposition and max_age shape a download: they need a download token",
        ));
    }
    if let Some(refused) = config.accel.overrides.refused(
        request.filename.is_some(),
        request.disposition.is_some(),
        request.max_age.is_some(),
    ) {
        return Err(MintError::OverrideNotAllowed(refused));
    }
    if let Some(name) = &request.filename {
        if let Some(problem) = token::download_name_problem(name.as_bytes()) {
            return Err(MintError::BadFilename(name.clone(), problem));
        }
    }
    // Upload slots are single-use unless told otherwise (issue 9).
    let uses = match request.uses.or(upload.then_some(1)) {
        Some(0) => return Err(MintError::ZeroUses),
        uses => uses,
    };
    // A counter is keyed by key id and token id, so a counted token always has one.
    let token_id = match (&request.token_id, uses) {
        (None, Some(_)) => Some(generate_token_id()?),
        (token_id, _) => token_id.clone(),
    };
    // Every v2 token is stamped (upload tokens are always v2): revocation by time needs it.
    let v2 = upload
        || request.purpose.is_v2_only()
        || request.file_version.is_some()
        || uses.is_some()
        || request.max_size.is_some()
        || request.content_types.is_some()
        || overrides
        || request.issued_at
        || request.scopes.is_some()
        || request.recipient.is_some();
    let scope = match (&request.scopes, request.prefix) {
        (Some(entries), _) => Scope::List(entries.clone()),
        (None, true) => Scope::Prefix(canonical.clone()),
        (None, false) => Scope::Exact(canonical.clone()),
    };
    let claims = Claims {
        purpose: request.purpose,
        issued_at: v2.then_some(now),
        uses,
        max_size: request.max_size,
        content_types: request.content_types.clone(),
        filename: request.filename.clone(),
        disposition: request.disposition,
        max_age: request.max_age,
        not_before: request.not_before,
        // Never lower-cased here: one spelling, refused when it is not nginx's `$host`.
        host: request.host.clone(),
        methods: request.methods,
        ip: request.ip,
        token_id,
        subject: request.subject.clone(),
        data: request.data.clone(),
        refresh: request.refresh,
        file_version: request.file_version,
        recipient: request.recipient.clone(),
        ..Claims::download(scope, now + ttl)
    };
    let token = token::sign(&claims, key).map_err(|error| MintError::BadField(error.0))?;
    let path_and_query = match request.form {
        LinkForm::Query => format!("{encoded_path}?{}={token}", config.token.param),
        // Right after the prefix, or in the file's folder: where the verifier expects it.
        LinkForm::Path => {
            let prefix = request.prefix.then_some(canonical.as_str());
            path::grant_path(&canonical, prefix, &token)
        }
    };
    Ok(Minted {
        token,
        path: canonical,
        path_and_query,
        expires: claims.expires,
        token_id: claims.token_id,
        issued_at: claims.issued_at,
    })
}

/// The key a token of `purpose` is signed with: `kid`, or the signing key; refused unless the
/// key is allowed the purpose.
pub fn signing_key<'c>(
    config: &'c Config,
    kid: Option<&str>,
    purpose: Purpose,
) -> Result<&'c Key, MintError> {
    let key = match kid {
        Some(kid) => config
            .keys
            .get(kid)
            .ok_or_else(|| MintError::UnknownKey(kid.to_owned()))?,
        None => config.keys.signing_key(),
    };
    if key.allows(purpose) {
        Ok(key)
    } else {
        Err(MintError::KeyPurpose {
            key: key.id().to_owned(),
            purpose: purpose.as_str(),
            allowed: key.purposes().to_string(),
        })
    }
}

/// Why a file version cannot go into a token that does not name exactly one file to download.
const ONE_FILE_ONLY: &str =
    "a file version binds one file: exact-path download links only (no --prefix, --scope, --upload or --api)";

/// The version of the file `request` names below `root` (the site's `files_root`), for a
/// link bound to it. Blocking (a `stat`): the async `/mint` runs it on the blocking pool.
pub fn resolve_file_version(root: &Path, request: &MintRequest) -> Result<FileVersion, MintError> {
    if request.prefix || request.scopes.is_some() {
        return Err(MintError::NotForPurpose(ONE_FILE_ONLY));
    }
    let canonical = path::canonicalize(&request.path)
        .map_err(|error| MintError::BadPath(request.path.clone(), error))?;
    files::version_of(root, &canonical).map_err(|error| {
        let why = match error {
            // Never the resolved target of a link out of the root: only that it is one.
            FileError::Io(error) => format!("cannot read it ({})", error.kind()),
            other => other.to_string(),
        };
        MintError::File(canonical.into_owned(), why)
    })
}

/// The canonical path a scopes token's link points at: the request's `path` when given (an
/// entry must cover it), else the first entry's. Refuses `prefix` and `methods` beside the
/// list: the list is the whole scope.
fn scoped_link_path(request: &MintRequest, entries: &[ScopeEntry]) -> Result<String, MintError> {
    if request.prefix || request.methods.is_some() {
        return Err(MintError::Scopes(
            "scopes replace prefix and methods: give each entry its methods and path \
             (a path ending in '/' with \"prefix\": true, on the command line any path \
             ending in '/', is a prefix)"
                .into(),
        ));
    }
    let first = entries
        .first()
        .ok_or_else(|| MintError::Scopes("empty scope list".into()))?;
    if request.path.is_empty() {
        return Ok(first.path.clone());
    }
    let canonical = canonical_url_path(&request.path)?;
    let covered = entries.iter().any(|entry| {
        ScopeRef {
            methods: entry.methods,
            prefix: entry.prefix,
            path: &entry.path,
        }
        .covers(&canonical)
    });
    if !covered {
        return Err(MintError::Scopes(format!(
            "path {:?} is outside every scope: the link would be refused as out_of_scope",
            request.path
        )));
    }
    Ok(canonical)
}

/// Signs a refresh `state` bound to `canonical_path` for the site `site_id`, with the signing
/// key (the media side starting a chain). `kept_query` is the media URL's query without the
/// token parameter, raw ([`token::is_kept_query`]), which the refreshed URL gets back.
pub fn refresh_state(
    config: &Config,
    site_id: &str,
    canonical_path: &str,
    marker: RefreshMarker,
    kept_query: Option<&str>,
    now: u64,
) -> Result<String, MintError> {
    refresh_state_signed_by(
        config,
        config.keys.signing_key(),
        site_id,
        canonical_path,
        marker,
        kept_query,
        now,
    )
}

/// [`refresh_state`] signed with `key`: the session side's login detour re-signs a state with
/// the key that signed the incoming one, which the media side is known to have.
pub fn refresh_state_signed_by(
    config: &Config,
    key: &Key,
    site_id: &str,
    canonical_path: &str,
    marker: RefreshMarker,
    kept_query: Option<&str>,
    now: u64,
) -> Result<String, MintError> {
    if !key.allows(Purpose::RefreshState) {
        return Err(MintError::KeyPurpose {
            key: key.id().to_owned(),
            purpose: Purpose::RefreshState.as_str(),
            allowed: key.purposes().to_string(),
        });
    }
    let claims = Claims {
        purpose: Purpose::RefreshState,
        // The site id travels in the subject field: it selects configuration, never a URL.
        subject: Some(site_id.to_owned()),
        refresh: Some(marker),
        // Signed, so nobody between the two sides can add a parameter to the way back.
        kept_query: kept_query.map(str::to_owned),
        ..Claims::download(
            Scope::Exact(canonical_path.to_owned()),
            now + config.refresh.state_ttl,
        )
    };
    token::sign(&claims, key).map_err(|error| MintError::BadField(error.0))
}
