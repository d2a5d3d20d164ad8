//! The session-domain half of the refresh flow. Pure: no hyper, no clock.
//!
//! nginx on the session domain first asks the application whether the logged-in user may see
//! the path (`auth_request`); only then does it forward the request here, with the internal
//! secret and the application's optional narrowing ("grant") headers. We re-derive the media
//! path from the refresh URL, check the signed `state` the media side issued for exactly that
//! path, mint a token and send the browser back. Every redirect target is assembled from
//! configuration and the canonical path: nothing from the request is copied into a URL.

use crate::config::{Config, Duration, Site};
use crate::mint::{mint, MintRequest};
use crate::path;
use crate::reason::Reason;
use crate::token::{self, Purpose, RefreshMarker, Request, TokenBuf};

/// What the application said, beyond "yes" (all optional, all can only narrow).
#[derive(Debug, Clone, Copy, Default)]
pub struct Grant<'a> {
    /// Shorter lifetime (`600`, `10m`).
    pub ttl: Option<&'a str>,
    /// A prefix (containing the path) the token may cover instead of the one file.
    pub prefix: Option<&'a str>,
    /// Subject / user recorded in the token for audit.
    pub subject: Option<&'a str>,
}

/// A checked refresh URL: which site, which media path, which refresh attempt.
#[derive(Debug)]
pub struct RefreshTarget<'c> {
    /// The site the state was issued for.
    pub site: &'c Site,
    /// Canonical media path.
    pub path: String,
    /// The state's marker (attempt, chain start).
    pub marker: RefreshMarker,
    /// The state string (validated).
    state: String,
}

/// Checks the refresh URL `uri` (the session domain's raw `$request_uri`).
pub fn check_target<'c>(
    config: &'c Config,
    uri: &str,
    now: u64,
) -> Result<RefreshTarget<'c>, Reason> {
    let (raw_path, query) = path::split_uri(uri);
    let state = path::query_param(query.unwrap_or(""), "state")
        .map_err(|()| Reason::BadState)?
        .filter(|state| !state.is_empty())
        .ok_or(Reason::BadState)?;
    // The site id is read before the MAC is checked only to find which refresh_path to strip;
    // the state is then verified for exactly that path and must name the same site.
    let site_id = {
        let mut buf = TokenBuf::new();
        let unverified = token::decode(state, &mut buf).map_err(|_| Reason::BadState)?;
        unverified.subject.ok_or(Reason::BadState)?.to_owned()
    };
    let site = config.site_by_id(&site_id).ok_or(Reason::BadState)?;
    let refresh = site.refresh.as_ref().ok_or(Reason::BadState)?;
    let media_raw = raw_path
        .strip_prefix(refresh.refresh_path.as_str())
        .filter(|rest| rest.starts_with('/'))
        .ok_or(Reason::BadPath)?;
    let canonical = path::canonicalize(media_raw).map_err(|_| Reason::BadPath)?;
    let mut buf = TokenBuf::new();
    let request = Request {
        path: &canonical,
        method: "GET",
        host: None,
        client_ip: None,
    };
    let verified = token::verify(
        state,
        &mut buf,
        Purpose::RefreshState,
        &request,
        &config.keys,
        config.token.limits,
        now,
    )
    .map_err(|_| Reason::BadState)?;
    if verified.subject != Some(site.id.as_str()) {
        return Err(Reason::BadState);
    }
    let marker = verified.refresh.ok_or(Reason::BadState)?;
    if marker.attempt > config.refresh.max_attempts {
        return Err(Reason::RefreshLoop);
    }
    Ok(RefreshTarget {
        site,
        path: canonical.into_owned(),
        marker,
        state: state.to_owned(),
    })
}

/// Mints a fresh token for an approved refresh and returns the media URL to redirect to.
pub fn approve(
    config: &Config,
    target: &RefreshTarget<'_>,
    grant: Grant<'_>,
    now: u64,
) -> Result<String, Reason> {
    let mut ttl = config.refresh.token_ttl;
    if let Some(granted) = grant.ttl {
        let granted = Duration::parse(granted).map_err(|_| Reason::BadRequest)?.0;
        ttl = ttl.min(granted);
    }
    let prefix = match grant.prefix {
        Some(raw) => {
            let prefix = path::canonical_prefix(raw).map_err(|_| Reason::BadRequest)?;
            if !path::is_within(&target.path, &prefix) {
                return Err(Reason::OutOfScope);
            }
            Some(prefix)
        }
        None => None,
    };
    let request = MintRequest {
        prefix: prefix.is_some(),
        path: prefix.unwrap_or_else(|| target.path.clone()),
        ttl: Some(ttl),
        host: Some(target.site.media_host.clone()),
        subject: grant.subject.map(str::to_owned),
        refresh: Some(target.marker),
        ..MintRequest::default()
    };
    let minted = mint(config, &request, now).map_err(|_| Reason::BadRequest)?;
    Ok(format!(
        "{}{}?{}={}",
        target.site.media_origin,
        path::encode_path(&target.path),
        config.token.param,
        minted.token
    ))
}

/// Where to send a user the application says is not logged in: the site's login URL with the
/// refresh URL (session-relative, rebuilt from checked parts) as return path.
pub fn login_location(target: &RefreshTarget<'_>) -> Option<String> {
    let refresh = target.site.refresh.as_ref()?;
    let login = refresh.login_url.as_ref()?;
    let back = format!(
        "{}{}?state={}",
        refresh.refresh_path,
        path::encode_path(&target.path),
        target.state
    );
    let separator = if login.contains('?') { '&' } else { '?' };
    Some(format!(
        "{login}{separator}{}={}",
        path::encode_component(&refresh.login_param),
        path::encode_component(&back)
    ))
}
