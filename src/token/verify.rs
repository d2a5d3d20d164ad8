//! Verification: one token against one request, checked in a fixed order so that every
//! failure maps to exactly one [`Reason`].
//!
//! Order: structure, purpose, key, MAC, expiry, not-before, lifetime cap, host, scope, method,
//! client IP. The MAC comes before any claim is trusted, so a reason such as `expired` is only
//! ever reported for an authentic token (and the refresh flow may rely on its fields).

use std::net::IpAddr;

use super::wire::{decode, Token, TokenBuf};
use super::{mac, Purpose, RefreshMarker};
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

/// A failed verification: the reason, and the token's refresh marker when it decoded far
/// enough to have one (authentic only for reasons checked after the MAC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denied {
    /// Why.
    pub reason: Reason,
    /// The refresh marker, for telling a refresh loop from an old link.
    pub refresh: Option<RefreshMarker>,
}

/// Verifies `text` for `request` at unix time `now`.
pub fn verify<'a>(
    text: &str,
    buf: &'a mut TokenBuf,
    purpose: Purpose,
    request: &Request<'_>,
    keys: &KeyRing,
    limits: Limits,
    now: u64,
) -> Result<Token<'a>, Denied> {
    let token = decode(text, buf).map_err(|_| Denied {
        reason: Reason::Malformed,
        refresh: None,
    })?;
    let deny = |reason| Denied {
        reason,
        refresh: token.refresh,
    };
    if token.purpose != purpose {
        return Err(deny(Reason::WrongPurpose));
    }
    let key = keys.get(token.kid).ok_or(deny(Reason::UnknownKey))?;
    let bound_path = match token.prefix {
        Some(_) => None,
        None => Some(request.path),
    };
    if !mac::tag_matches(key, token.body, bound_path, token.tag) {
        return Err(deny(Reason::BadSignature));
    }
    check_claims(&token, request, limits, now).map_err(deny)?;
    Ok(token)
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
    if let Some(prefix) = token.prefix {
        if !path::is_within(request.path, prefix) {
            return Err(Reason::OutOfScope);
        }
    }
    if !token.methods().allows(request.method) {
        return Err(Reason::Method);
    }
    if let Some(net) = token.ip {
        if !request.client_ip.is_some_and(|ip| net.contains(ip)) {
            return Err(Reason::Ip);
        }
    }
    Ok(())
}
