//! The session-domain half of the refresh flow. Pure: no hyper, no clock.
//!
//! nginx on the session domain first asks the application whether the logged-in user may see
//! the path (`auth_request`); only then does it forward the request here, with the internal
//! secret, the name of its `server { }` block, the path the application was asked about and the
//! application's optional narrowing ("grant") headers. We re-derive the media path from the
//! refresh URL, check the signed `state` the media side issued for exactly that path and site,
//! check that the session server forwarding it is that site's, mint a token and send the
//! browser back. Every redirect target is assembled from configuration, the canonical path and
//! the query the verified state keeps (which the media side signed): nothing else from the
//! request is copied into a URL.
//!
//! Nothing of the state is read before its tag is checked: the site is found from the
//! forwarding server and the refresh URL's path, and the state must then verify for it.

use crate::config::{Config, Duration, LinkForm, Site};
use crate::keys::Key;
use crate::mint;
use crate::path;
use crate::reason::Reason;
use crate::token::{self, Claims, Purpose, RefreshMarker, Request, Scope, TokenBuf};

/// What the application said, beyond "yes" (all optional, all can only narrow).
#[derive(Debug, Clone, Copy, Default)]
pub struct Grant<'a> {
    /// Shorter lifetime (`600`, `10m`).
    pub ttl: Option<&'a str>,
    /// A folder containing the path, in the same decoded form as `X-Media-Path`, ending in
    /// `/`, which the token may cover instead of the one file.
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
    /// The media URL's other query parameters, raw, from the verified state only: the
    /// refreshed URL gets them back, and nobody can add to them.
    pub kept_query: Option<String>,
    /// The key that signed the state: the media side knows it, so tokens minted with it can
    /// always be verified there (a refresh can never loop on `unknown_key`).
    key: &'c Key,
}

/// Checks the refresh URL `uri` (the session domain's raw `$request_uri`), forwarded by the
/// session `server { }` named `server_name` (nginx's `$server_name`).
pub fn check_target<'c>(
    config: &'c Config,
    server_name: &str,
    uri: &str,
    now: u64,
) -> Result<RefreshTarget<'c>, Reason> {
    let (raw_path, query) = path::split_uri(uri);
    let state = path::query_param(query.unwrap_or(""), "state")
        .map_err(|()| Reason::BadState)?
        .filter(|state| !state.is_empty())
        .ok_or(Reason::BadState)?;
    // Sites refreshing through this session server whose refresh location the URL is in.
    // Usually one; several sites may share a session domain and even a refresh path, and the
    // state, signed for one site id, decides between them.
    let mut reason = Reason::UnknownHost;
    for site in &config.sites {
        let Some(refresh) = site.refresh.as_ref() else {
            continue;
        };
        if !refresh.session_host.eq_ignore_ascii_case(server_name) {
            continue;
        }
        let Some(media_raw) = raw_path
            .strip_prefix(refresh.refresh_path.as_str())
            .filter(|rest| rest.starts_with('/'))
        else {
            reason = Reason::BadPath;
            continue;
        };
        let Ok(canonical) = path::canonicalize(media_raw) else {
            reason = Reason::BadPath;
            continue;
        };
        match verify_state(config, site, state, &canonical, now) {
            Ok((marker, kept_query, key)) => {
                return Ok(RefreshTarget {
                    site,
                    path: canonical.into_owned(),
                    marker,
                    kept_query,
                    key,
                })
            }
            Err(denied) => reason = denied,
        }
    }
    Err(reason)
}

/// Verifies `state` as this side's refresh state for `site` and `canonical`: its marker, its
/// kept query and the key that signed it.
fn verify_state<'c>(
    config: &'c Config,
    site: &Site,
    state: &str,
    canonical: &str,
    now: u64,
) -> Result<(RefreshMarker, Option<String>, &'c Key), Reason> {
    let mut buf = TokenBuf::new();
    let request = Request {
        path: canonical,
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
    // The media side never keeps the token parameter; a kept query naming it (in any
    // spelling, e.g. after token.param changed) would make the refreshed URL ambiguous.
    if let Some(kept) = verified.kept_query {
        if path::query_param(kept, &config.token.param) != Ok(None) {
            return Err(Reason::BadState);
        }
    }
    let key = config.keys.get(verified.kid).ok_or(Reason::BadState)?;
    Ok((marker, verified.kept_query.map(str::to_owned), key))
}

/// Mints a fresh token for an approved refresh and returns the media URL to redirect to.
///
/// `approved` is the path the application was asked about (`X-Media-Path`, as nginx decoded
/// it): it must be exactly the path minted, byte for byte.
pub fn approve(
    config: &Config,
    target: &RefreshTarget<'_>,
    approved: &str,
    grant: Grant<'_>,
    now: u64,
) -> Result<String, Reason> {
    if approved.as_bytes() != target.path.as_bytes() {
        return Err(Reason::BadPath);
    }
    let mut ttl = config.refresh.token_ttl;
    if let Some(granted) = grant.ttl {
        let granted = Duration::parse(granted).map_err(|_| Reason::BadRequest)?.0;
        if granted == 0 {
            return Err(Reason::BadRequest);
        }
        ttl = ttl.min(granted);
    }
    // The grant is already decoded (the application read it from X-Media-Path): taken as
    // is, never decoded again, and refused unless it is a canonical folder.
    let scope = match grant.prefix {
        Some(prefix) if prefix.ends_with('/') && path::is_canonical(prefix) => {
            if !path::is_within(&target.path, prefix) {
                return Err(Reason::OutOfScope);
            }
            Scope::Prefix(prefix.to_owned())
        }
        Some(_) => return Err(Reason::BadRequest),
        None => Scope::Exact(target.path.clone()),
    };
    // The state's key signs the link (the media side knows it); a key not allowed download
    // links never does, whatever this side's configuration let through.
    if !target.key.allows(Purpose::Download) {
        return Err(Reason::KeyPurpose);
    }
    let claims = Claims {
        host: Some(target.site.media_host.clone()),
        subject: grant.subject.map(str::to_owned),
        refresh: Some(target.marker),
        ..Claims::download(scope, now + ttl)
    };
    let token = token::sign(&claims, target.key).map_err(|_| Reason::BadRequest)?;
    // The kept query comes from the verified state only, byte for byte as the media side
    // received it; the fresh token goes last.
    let origin = &target.site.media_origin;
    let kept = target.kept_query.as_deref();
    Ok(match target.site.link_form {
        LinkForm::Query => format!(
            "{origin}{}?{}{}={token}",
            path::encode_path(&target.path),
            kept.map_or_else(String::new, |kept| format!("{kept}&")),
            config.token.param,
        ),
        // The token goes right after the granted prefix (or in the file's folder), so that
        // what a playlist there names relatively carries it too.
        LinkForm::Path => {
            let prefix = match &claims.scope {
                Scope::Prefix(prefix) => Some(prefix.as_str()),
                _ => None,
            };
            format!(
                "{origin}{}{}",
                path::grant_path(&target.path, prefix, &token),
                kept.map_or_else(String::new, |kept| format!("?{kept}")),
            )
        }
    })
}

/// Where to send a user the application says is not logged in: the site's login URL with a
/// refresh URL (session-relative, rebuilt from checked parts) as return path; `None` when the
/// site has no login URL.
///
/// The way back carries a new state with the attempt advanced, signed with the key that signed
/// the incoming one (the media side has it). A login detour and a media-side refresh share one
/// counter: both mean "a fresh link was not obtained". So a browser that withholds the session
/// cookie (an `<img>` on another site, third-party cookies blocked) and an application whose
/// login answers at once go round at most `refresh.max_attempts` times and then end on
/// `refresh_loop` instead of redirecting forever. `started` is copied: the chain's window
/// stays measured on the media side's clock.
pub fn login_location(
    config: &Config,
    target: &RefreshTarget<'_>,
    now: u64,
) -> Result<Option<String>, Reason> {
    let Some(refresh) = target.site.refresh.as_ref() else {
        return Ok(None);
    };
    let Some(login) = refresh.login_url.as_ref() else {
        return Ok(None);
    };
    let attempt = target.marker.attempt.saturating_add(1);
    if attempt > config.refresh.max_attempts {
        return Err(Reason::RefreshLoop);
    }
    let marker = RefreshMarker {
        attempt,
        started: target.marker.started,
    };
    let state = mint::refresh_state_signed_by(
        config,
        target.key,
        &target.site.id,
        &target.path,
        marker,
        target.kept_query.as_deref(),
        now,
    )
    .map_err(|_| Reason::BadState)?;
    let back = format!(
        "{}{}?state={state}",
        refresh.refresh_path,
        path::encode_path(&target.path),
    );
    let separator = if login.contains('?') { '&' } else { '?' };
    Ok(Some(format!(
        "{login}{separator}{}={}",
        path::encode_component(&refresh.login_param),
        path::encode_component(&back)
    )))
}
