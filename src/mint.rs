//! Minting signed URLs: the one place that turns a request for access into a token and a URL.
//! Used by `mediagate sign`, `POST /mint` and the refresh flow, so all three enforce the same
//! limits (canonical paths, lifetime cap, field rules).

use crate::config::Config;
use crate::path;
use crate::token::{self, Claims, IpNet, Methods, Purpose, RefreshMarker, Scope};

/// What to mint. Paths are raw (they are canonicalised here).
#[derive(Debug, Clone, Default)]
pub struct MintRequest {
    /// The file path, or the prefix when `prefix` is set.
    pub path: String,
    /// Scope the token to everything below `path` instead of exactly `path`.
    pub prefix: bool,
    /// Lifetime in seconds; `None` uses `token.default_ttl`.
    pub ttl: Option<u64>,
    /// Allowed methods; `None` means GET and HEAD.
    pub methods: Option<Methods>,
    /// Client address or network.
    pub ip: Option<IpNet>,
    /// Media host to bind the token to.
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
}

/// A minted token and where it points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Minted {
    /// The token string.
    pub token: String,
    /// Canonical path (or prefix) the token is scoped to.
    pub path: String,
    /// The path, percent-encoded, with the token as query parameter (no origin).
    pub path_and_query: String,
    /// Expiry, unix seconds.
    pub expires: u64,
}

/// Why minting was refused. Messages are safe to show to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MintError {
    /// Occurs when the path is not canonical.
    #[error("path {0:?} is not canonical: {1}")]
    BadPath(String, path::PathError),
    /// Occurs when the TTL is zero or above `token.max_lifetime`.
    #[error("ttl must be between 1 and {0} seconds")]
    BadTtl(u64),
    /// Occurs when a field breaks the token format's limits.
    #[error("{0}")]
    BadField(&'static str),
}

/// Mints a download token for `request` at unix time `now`.
pub fn mint(config: &Config, request: &MintRequest, now: u64) -> Result<Minted, MintError> {
    let canonical = if request.prefix {
        path::canonical_prefix(&request.path)
    } else {
        path::canonicalize(&request.path).map(|path| path.into_owned())
    }
    .map_err(|error| MintError::BadPath(request.path.clone(), error))?;
    let encoded_path = path::encode_path(&canonical);
    // The URL carries the encoded form, which can be three times longer than the canonical
    // one; never mint a link whose path the verifier will refuse as too long.
    if encoded_path.len() > path::MAX_PATH_LEN {
        return Err(MintError::BadPath(
            request.path.clone(),
            path::PathError::TooLong,
        ));
    }
    if let Some(host) = &request.host {
        // Compared with nginx's $host, which never carries a port (`[v6]` literals may
        // contain colons inside their brackets).
        let port = host
            .rsplit_once(':')
            .is_some_and(|(_, tail)| !tail.ends_with(']'));
        if port {
            return Err(MintError::BadField(
                "host must not include a port (nginx's $host has none)",
            ));
        }
    }
    let max = config.token.limits.max_lifetime;
    let ttl = request.ttl.unwrap_or(config.token.default_ttl);
    if ttl == 0 || ttl > max {
        return Err(MintError::BadTtl(max));
    }
    let scope = if request.prefix {
        Scope::Prefix(canonical.clone())
    } else {
        Scope::Exact(canonical.clone())
    };
    let claims = Claims {
        not_before: request.not_before,
        host: request.host.as_ref().map(|host| host.to_ascii_lowercase()),
        methods: request.methods,
        ip: request.ip,
        token_id: request.token_id.clone(),
        subject: request.subject.clone(),
        data: request.data.clone(),
        refresh: request.refresh,
        ..Claims::download(scope, now + ttl)
    };
    let token = token::sign(&claims, config.keys.signing_key())
        .map_err(|error| MintError::BadField(error.0))?;
    let path_and_query = format!("{encoded_path}?{}={token}", config.token.param);
    Ok(Minted {
        token,
        path: canonical,
        path_and_query,
        expires: claims.expires,
    })
}

/// Signs a refresh `state` bound to `canonical_path` for the site `site_id`.
pub fn refresh_state(
    config: &Config,
    site_id: &str,
    canonical_path: &str,
    marker: RefreshMarker,
    now: u64,
) -> Result<String, MintError> {
    let claims = Claims {
        purpose: Purpose::RefreshState,
        // The site id travels in the subject field: it selects configuration, never a URL.
        subject: Some(site_id.to_owned()),
        refresh: Some(marker),
        ..Claims::download(
            Scope::Exact(canonical_path.to_owned()),
            now + config.refresh.state_ttl,
        )
    };
    token::sign(&claims, config.keys.signing_key()).map_err(|error| MintError::BadField(error.0))
}
