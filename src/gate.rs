//! The media-domain decision: given the original request nginx describes, allow it, send the
//! browser to the session domain for a fresh token, or deny it with a reason.
//!
//! Pure (no hyper, no clock): the HTTP layer extracts a [`MediaRequest`] and turns the
//! [`Outcome`] into a response in `decision.rs`. Both nginx modes (auth_request and
//! X-Accel-Redirect) share this function, so they can never disagree.

use std::borrow::Cow;
use std::net::IpAddr;

use crate::config::{Config, Site};
use crate::mint;
use crate::path;
use crate::reason::Reason;
use crate::token::{self, Purpose, RefreshMarker, Request, TokenBuf, Verified};

/// The original request, as nginx reported it.
#[derive(Debug, Clone, Copy)]
pub struct MediaRequest<'a> {
    /// Raw `$request_uri`: path and query, still percent-encoded.
    pub uri: &'a str,
    /// Original method.
    pub method: &'a str,
    /// nginx's `$server_name`: the name of the `server { }` block that took the request. It
    /// selects the site. It comes from nginx's configuration, never from the client's `Host`
    /// header, so a client cannot have one site's rules (public prefixes, host binding)
    /// applied to another site's files.
    pub server_name: &'a str,
    /// Client address (`$remote_addr`).
    pub client_ip: Option<IpAddr>,
}

/// What to do with a media request.
// Lives on the stack for one request; boxing the token would allocate on the hot path.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Outcome<'a> {
    /// Serve the file at `path` (canonical). `token` is `None` for public paths.
    Allow {
        /// Canonical path to serve.
        path: Cow<'a, str>,
        /// The verified token, if the path was not public.
        token: Option<Verified<'a>>,
        /// The site the request belongs to.
        site: &'a Site,
    },
    /// Redirect the browser to the session domain for a fresh token.
    Refresh {
        /// Absolute refresh URL, built from configuration and the canonical path only.
        location: String,
        /// Why the current token (if any) did not do.
        reason: Reason,
        /// The site whose session domain is asked.
        site: &'a Site,
    },
    /// Refuse, with a reason.
    Deny {
        /// Why.
        reason: Reason,
        /// The site, when the server name named one.
        site: Option<&'a Site>,
    },
}

impl<'a> Outcome<'a> {
    /// The reason to report: `None` when allowed.
    pub fn reason(&self) -> Option<Reason> {
        match self {
            Outcome::Allow { .. } => None,
            Outcome::Refresh { reason, .. } | Outcome::Deny { reason, .. } => Some(*reason),
        }
    }

    /// The site the request was decided for, if any.
    pub fn site(&self) -> Option<&'a Site> {
        match self {
            Outcome::Allow { site, .. } | Outcome::Refresh { site, .. } => Some(site),
            Outcome::Deny { site, .. } => *site,
        }
    }

    fn deny(reason: Reason, site: &'a Site) -> Outcome<'a> {
        Outcome::Deny {
            reason,
            site: Some(site),
        }
    }
}

/// Decides a media request at unix time `now`. `buf` holds the decoded token.
pub fn decide<'a>(
    config: &'a Config,
    request: &MediaRequest<'a>,
    buf: &'a mut TokenBuf,
    now: u64,
) -> Outcome<'a> {
    let Some(site) = config.site_for_host(request.server_name) else {
        return Outcome::Deny {
            reason: Reason::UnknownHost,
            site: None,
        };
    };
    let (raw_path, query) = path::split_uri(request.uri);
    let Ok(canonical) = path::canonicalize(raw_path) else {
        return Outcome::deny(Reason::BadPath, site);
    };
    // Public prefixes are decided on the canonical path, so `/public/../private` cannot count.
    if site
        .public_prefixes
        .iter()
        .any(|prefix| path::is_within(&canonical, prefix))
    {
        return Outcome::Allow {
            path: canonical,
            token: None,
            site,
        };
    }
    let text = match path::query_param(query.unwrap_or(""), &config.token.param) {
        Ok(Some(text)) if !text.is_empty() => text,
        Ok(_) => return refresh_or_deny(config, site, &canonical, Reason::MissingToken, None, now),
        Err(()) => return Outcome::deny(Reason::Malformed, site),
    };
    let verified = {
        let token_request = Request {
            path: &canonical,
            method: request.method,
            // The configured host of the site nginx chose, not what the client typed.
            host: Some(&site.media_host),
            client_ip: request.client_ip,
        };
        token::verify(
            text,
            buf,
            Purpose::Download,
            &token_request,
            &config.keys,
            config.token.limits,
            now,
        )
    };
    match verified {
        // With several sites sharing the keys, a token bound to no host would open the same
        // path on every site: only host-bound tokens count (minters bind by default then).
        Ok(token) if token.host.is_none() && config.sites.len() > 1 => {
            Outcome::deny(Reason::WrongHost, site)
        }
        Ok(token) => Outcome::Allow {
            path: canonical,
            token: Some(token),
            site,
        },
        Err(denied) => {
            // Only an authentic token's marker may continue a refresh chain: a forged or
            // unknown-key token's fields never reach the loop guard or the next state.
            let previous = denied
                .authentic
                .and_then(|authentic| authentic.token().refresh);
            refresh_or_deny(config, site, &canonical, denied.reason, previous, now)
        }
    }
}

/// A refreshable failure becomes a redirect to the session domain, unless the site has none
/// or the browser is already going round in circles.
fn refresh_or_deny<'a>(
    config: &Config,
    site: &'a Site,
    canonical: &str,
    reason: Reason,
    previous: Option<RefreshMarker>,
    now: u64,
) -> Outcome<'a> {
    let Some(refresh) = site.refresh.as_ref().filter(|_| reason.is_refreshable()) else {
        return Outcome::deny(reason, site);
    };
    let Some(marker) = next_marker(config, previous, now) else {
        return Outcome::deny(Reason::RefreshLoop, site);
    };
    // The session side re-reads the path from the refresh URL, where it is percent-encoded
    // and may have grown past the path limit: such a round trip could only end in an error.
    let encoded = path::encode_path(canonical);
    if encoded.len() > path::MAX_PATH_LEN {
        return Outcome::deny(reason, site);
    }
    match mint::refresh_state(config, &site.id, canonical, marker, now) {
        Ok(state) => Outcome::Refresh {
            location: format!(
                "{}{}{encoded}?state={state}",
                refresh.session_origin, refresh.refresh_path,
            ),
            reason,
            site,
        },
        // Only a path too long for the format gets here; fail closed.
        Err(_) => Outcome::deny(reason, site),
    }
}

/// The marker for the next refresh. A token minted by a refresh that fails again within the
/// loop window continues its chain; anything else starts a new one. The window is measured on
/// this (media) side's clock only, so clock skew between the two sides cannot hide a loop.
fn next_marker(
    config: &Config,
    previous: Option<RefreshMarker>,
    now: u64,
) -> Option<RefreshMarker> {
    let fresh = RefreshMarker {
        attempt: 1,
        started: now,
    };
    let marker = match previous {
        // `started` is ours: the session side copies it from a state this side signed, and
        // the token carrying it was authentic. A chain "started" in the future is not one.
        Some(previous)
            if previous.started <= now && now - previous.started < config.refresh.loop_window =>
        {
            RefreshMarker {
                attempt: previous.attempt.saturating_add(1),
                started: previous.started,
            }
        }
        _ => fresh,
    };
    (marker.attempt <= config.refresh.max_attempts).then_some(marker)
}
