//! The media-domain decision: given the original request nginx describes, allow it, send the
//! browser to the session domain for a fresh token, or deny it with a reason.
//!
//! Pure (no hyper, no clock): the HTTP layer extracts a [`MediaRequest`] and turns the
//! [`Outcome`] into a response in `decision.rs`. Both nginx modes (auth_request and
//! X-Accel-Redirect) share this function, so they can never disagree.

use std::borrow::Cow;
use std::net::IpAddr;

use crate::config::{Config, Site, TokenSource};
use crate::cookie;
use crate::mint;
use crate::path;
use crate::reason::Reason;
use crate::store::revoked::{Revocable, Revoked};
use crate::token::{self, Purpose, RefreshMarker, Request, Token, TokenBuf, Verified};

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
    /// The client's `Authorization` header, as forwarded. Read only when `token.sources`
    /// has `"authorization"`.
    pub authorization: Authorization<'a>,
    /// The client's `Cookie` header, as forwarded. Read only on a site with a
    /// `cookie_grant`, for a download, when no other source holds a token.
    pub cookie: CookieHeader<'a>,
    /// The purpose the location expects: [`Purpose::Download`] for media,
    /// [`Purpose::Api`] behind `protect-api.conf`. Set by nginx's configuration
    /// (`X-Mediagate-Purpose` in the auth location), never by the client.
    pub purpose: Purpose,
}

/// The `Authorization` header of the original request, as the HTTP layer found it. The
/// header's syntax is judged here, not there, so that `decide` sees every input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Authorization<'a> {
    /// No `Authorization` header.
    Absent,
    /// Exactly one, as text.
    One(&'a str),
    /// More than one, or not UTF-8: which one would be meant cannot be told.
    Unreadable,
}

/// The `Cookie` header of the original request, as the HTTP layer found it. Bytes: other
/// cookies of the host may hold any octets, and only the grant's value is ever read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieHeader<'a> {
    /// No `Cookie` header.
    Absent,
    /// Exactly one (nginx joins a client's several into one, as HTTP/2 intermediaries must).
    One(&'a [u8]),
    /// More than one: not what the snippets send, so not guessed at.
    Unreadable,
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
        /// Where the token came from (`None` for public paths). An answer for a token
        /// from a header must not be cached under a key made of the URL alone.
        source: Option<TokenSource>,
        /// The site's grant cookie, when this allow grants one (spec §13.4: a prefix link
        /// from the URL without a use limit, on a site with a `cookie_grant`). Never on any
        /// other outcome.
        set_cookie: Option<GrantCookie>,
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
    /// Send a player to the same link in path form, with a playback grant ([`exchange`]):
    /// the token was good, and seeks after the query token expired must keep working.
    Exchange {
        /// Absolute URL on the media origin: the file's path with the grant segment, then
        /// the rest of the request's query.
        location: String,
        /// The query token it was exchanged for (its fields name the grant in the audit).
        token: Verified<'a>,
        /// The site the request belongs to.
        site: &'a Site,
    },
    /// Refuse with 401 and `WWW-Authenticate`: the request's `Authorization` header names
    /// an accepted scheme but is not a well-formed credential (RFC 9110 §11.6.1).
    Challenge {
        /// Why (`malformed`).
        reason: Reason,
        /// The site the request belongs to.
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
            Outcome::Allow { .. } | Outcome::Exchange { .. } => None,
            Outcome::Refresh { reason, .. }
            | Outcome::Challenge { reason, .. }
            | Outcome::Deny { reason, .. } => Some(*reason),
        }
    }

    /// The site the request was decided for, if any.
    pub fn site(&self) -> Option<&'a Site> {
        match self {
            Outcome::Allow { site, .. }
            | Outcome::Exchange { site, .. }
            | Outcome::Refresh { site, .. }
            | Outcome::Challenge { site, .. } => Some(site),
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

/// Decides a media request at unix time `now`, with the revocations in force. `buf` holds
/// the decoded token.
///
/// Use limits are not decided here: an allowed token with a use limit still needs the store
/// (the HTTP edge asks it after this returns), so that tokens without one never wait on I/O.
pub fn decide<'a>(
    config: &'a Config,
    request: &MediaRequest<'a>,
    buf: &'a mut TokenBuf,
    now: u64,
    revoked: &Revoked,
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
    // A token segment (`/media/clip/~mg~<token>/seg0.ts`) names the file without it, which is
    // what nginx serves (protect.conf's rewrite takes the same segment out): everything below
    // decides about that file. With the path source off, nginx would still take the segment
    // out, so such a path is refused rather than read as a file name.
    let (canonical, in_path) = match path::split_grant(&canonical) {
        Ok(None) => (canonical, None),
        // Only media locations: an API location hands the raw URL, segment and all, to the
        // application, which would see another path than the one decided here.
        Ok(Some(mut grant)) if config.token.from_path && request.purpose == Purpose::Download => {
            let file = std::mem::take(&mut grant.file);
            (Cow::Owned(file), Some((canonical, grant)))
        }
        Ok(Some(_)) | Err(_) => return Outcome::deny(Reason::BadPath, site),
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
            source: None,
            set_cookie: None,
            site,
        };
    }
    let path_token = in_path
        .as_ref()
        .map(|(full, grant)| &full[grant.token.clone()]);
    let (text, source) = match request_token(config, request, path_token) {
        Ok(Some(found)) => found,
        Ok(None) if request.purpose == Purpose::Api => {
            return api_denial(config, site, Reason::MissingToken)
        }
        // The browser sends the grant cookie with every request of its folder: it counts only
        // when the request carries no token of its own, so a fresh link always wins. Verified
        // there, once; a cookie that opens nothing here is as good as none (missing_token).
        Ok(None) => {
            return match grant_cookie_token(config, site, request, &canonical, now, revoked, buf) {
                Ok(Some(token)) => Outcome::Allow {
                    path: canonical,
                    token: Some(token),
                    source: Some(TokenSource::Cookie),
                    // A cookie's allow never renews the cookie (grant_cookie).
                    set_cookie: None,
                    site,
                },
                Err(()) => Outcome::deny(Reason::Malformed, site),
                Ok(None) => refresh_or_deny(
                    config,
                    site,
                    (&canonical, query),
                    Reason::MissingToken,
                    None,
                    now,
                ),
            };
        }
        Err(TokenProblem::Malformed) => return Outcome::deny(Reason::Malformed, site),
        Err(TokenProblem::Challenge) => {
            return Outcome::Challenge {
                reason: Reason::Malformed,
                site,
            }
        }
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
            request.purpose,
            &token_request,
            &config.keys,
            config.token.limits,
            now,
        )
    };
    match verified {
        Ok(token) => match refusal(config, &token, revoked) {
            Some(reason) => Outcome::deny(reason, site),
            // One URL per path-carried link: the segment sits right after the token's prefix,
            // or in the folder of its exact path, so relative URLs below it keep it and `../`
            // leaves it. Anywhere else the link was edited by hand.
            None if in_path.as_ref().is_some_and(|(_, grant)| {
                !grant_in_place(&token, &canonical[..grant.base_len], &canonical)
            }) =>
            {
                Outcome::deny(Reason::OutOfScope, site)
            }
            None => Outcome::Allow {
                set_cookie: grant_cookie(site, request, &token, text, source, now),
                path: canonical,
                token: Some(token),
                source: Some(source),
                site,
            },
        },
        // An API client follows no browser refresh flow (and a refresh mints media links,
        // which an API location refuses): what a fresh token could cure is a 401 challenge
        // there, when the header source is on, and a plain denial otherwise.
        Err(denied) if request.purpose == Purpose::Api => api_denial(config, site, denied.reason),
        // A revoked link stays revoked once it has also expired (or is refused for any other
        // reason a refresh could cure): a refresh would hand its holder a fresh link.
        Err(denied)
            if denied
                .authentic
                .is_some_and(|authentic| revoked.covers(revocable(authentic.token()))) =>
        {
            Outcome::deny(Reason::Revoked, site)
        }
        Err(denied) => {
            // Only an authentic token's marker may continue a refresh chain: a forged or
            // unknown-key token's fields never reach the loop guard or the next state.
            let previous = denied
                .authentic
                .and_then(|authentic| authentic.token().refresh);
            refresh_or_deny(
                config,
                site,
                (&canonical, query),
                denied.reason,
                previous,
                now,
            )
        }
    }
}

/// The playback exchange (spec §13.3.1), a step after [`decide`]: a player's ranged
/// `GET` allowed with a query-form download token, on a site with a `playback_grant`, is sent
/// to the same link in path form, whose token carries the original's expiry as its origin
/// (`playback_of`) and expires at `max(its expiry, now + playback_grant)`. Browsers send every
/// later range of a media element (seeks) to the URL its first load was redirected to, so the
/// element keeps playing after the page's link expired; what a page or a person fetches
/// whole (no `Range`) is served as it is.
///
/// A grant is never exchanged again, wherever it is carried: that is what its origin field
/// is for. So a grant lives at most `playback_grant` past the link it came from (which
/// `config` keeps within `token.max_lifetime`), and a revocation that outlives the link by
/// `token.max_lifetime` covers every grant of it.
///
/// Everything else comes back unchanged: another outcome, a public path, a token from the
/// path or from a header (no query link to replace), a token with a use limit (its ranged
/// requests continue by holder instead), a scopes list (no path form), a site without the
/// option. So is a link that cannot be given in path form exactly (a key that may not sign
/// downloads, a query that cannot be kept raw, a path too long): the request is then served
/// as before.
///
/// `ranged` says the original request had a non-empty `Range` header; `now` is the time
/// `outcome` was decided at. Pure: the grant is signed here, nothing is stored.
pub fn exchange<'a>(
    config: &Config,
    outcome: Outcome<'a>,
    request: &MediaRequest<'_>,
    ranged: bool,
    now: u64,
) -> Outcome<'a> {
    let Outcome::Allow {
        path,
        token: Some(token),
        source: Some(TokenSource::Query),
        site,
        ..
    } = &outcome
    else {
        return outcome;
    };
    let Some(grant) = site.playback_grant else {
        return outcome;
    };
    if !ranged
        || request.method != "GET"
        || request.purpose != Purpose::Download
        || token.uses.is_some()
        || token.playback_of.is_some()
        || !config.token.from_path
    {
        return outcome;
    }
    match playback_link(config, site, path, token, request.uri, grant, now) {
        Some(location) => Outcome::Exchange {
            location,
            token: *token,
            site,
        },
        None => outcome,
    }
}

/// The path-form link of a playback grant for `token`, which verified for the canonical
/// `file` requested as `uri`: `None` when there is none to give exactly. The segment goes
/// where the gate will look for it (after the token's prefix, or in the file's folder); the
/// token is signed by the key that signed the original, with the same claims, the original's
/// expiry as its origin and the grant's expiry; the query keeps every other parameter, raw
/// ([`kept_query`]). A key not allowed
/// download links, a query that cannot be kept, and a path the gate would refuse as too long
/// all mean no exchange.
fn playback_link(
    config: &Config,
    site: &Site,
    file: &str,
    token: &Token<'_>,
    uri: &str,
    grant: u64,
    now: u64,
) -> Option<String> {
    if token.scopes.is_some() {
        return None;
    }
    let key = config
        .keys
        .get(token.kid)
        .filter(|key| key.allows(Purpose::Download))?;
    let kept = kept_query(path::split_uri(uri).1, &config.token.param).ok()?;
    // `grant` is at most max_lifetime (configuration refuses more), and the original
    // verified, so its expiry is within max_lifetime of now already.
    let claims = token::Claims {
        expires: token.expires.max(now.saturating_add(grant)),
        playback_of: Some(token.expires),
        ..token.claims(file)
    };
    let text = token::sign(&claims, key).ok()?;
    let link = path::grant_path(file, token.prefix, &text);
    if link.len() > path::MAX_PATH_LEN {
        return None;
    }
    Some(match kept {
        Some(kept) => format!("{}{link}?{kept}", site.media_origin),
        None => format!("{}{link}", site.media_origin),
    })
}

/// True when a path-carried token's segment is where the token's scope puts it: right after
/// its prefix, or in the folder of its exact path. A scopes list has no such place.
fn grant_in_place(token: &Token<'_>, base: &str, file: &str) -> bool {
    token.scopes.is_none() && path::grant_base(token.prefix, file) == base
}

/// Why a verified token is still refused, if it is.
fn refusal(config: &Config, token: &Token<'_>, revoked: &Revoked) -> Option<Reason> {
    if token.host.is_none() && config.sites.len() > 1 {
        // With several sites sharing the keys, a token bound to no host would open the same
        // path on every site: only host-bound tokens count (minters bind by default then).
        Some(Reason::WrongHost)
    } else if !config.accel.overrides.admit(token) {
        // A per-link override the operator did not opt into: serving without it would hand
        // out something other than what was minted, honouring it would let any minter shape
        // this site's responses. Not refreshable: a refresh cannot change what was asked.
        Some(Reason::OverrideNotAllowed)
    } else if revoked.covers(revocable(token)) {
        // Revoked is final: a refresh would only hand the same holder a new link.
        Some(Reason::Revoked)
    } else {
        None
    }
}

/// The grant cookie an allow grants ([`Outcome::Allow`]). An answer that grants one is never
/// cached, sent or not: a cached one would answer browsers without the cookie too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantCookie {
    /// The `Set-Cookie` value the answer sends: none when the request carried this very
    /// cookie already (the grant's name, the same token, so the same folder and expiry), as
    /// every segment of a playlist does after the first.
    pub set_cookie: Option<String>,
}

impl GrantCookie {
    /// The `Set-Cookie` value the answer sends, if any.
    pub fn to_send(&self) -> Option<&str> {
        self.set_cookie.as_deref()
    }
}

/// The grant cookie an allow grants, if any: on a site with a `cookie_grant`, for a
/// download allowed with a prefix token from the URL (query or path segment) that has no use
/// limit, the token itself, for the token's folder, until the token expires. Its `Set-Cookie`
/// value is built only when `held` (the request's `Cookie` header) lacks it.
///
/// Only a prefix token: the cookie then opens what the link opens, a folder, and no more
/// (an exact link's cookie would be a folder-wide credential for one file, or a cookie per
/// file). Never a token with a use limit: each of its uses must be asked for with the link.
/// Never a token from a header or from the cookie itself: the first is an API client's, and
/// the second would only renew a cookie with the same expiry.
fn grant_cookie(
    site: &Site,
    request: &MediaRequest<'_>,
    token: &Token<'_>,
    text: &str,
    source: TokenSource,
    now: u64,
) -> Option<GrantCookie> {
    let grant = site.cookie_grant.as_ref()?;
    let prefix = token.prefix?;
    if !matches!(source, TokenSource::Query | TokenSource::Path)
        || request.purpose != Purpose::Download
        || token.uses.is_some()
    {
        return None;
    }
    let held = match request.cookie {
        CookieHeader::One(header) => {
            cookie::values(header, &grant.name).any(|value| value == text.as_bytes())
        }
        CookieHeader::Absent | CookieHeader::Unreadable => false,
    };
    if held {
        return Some(GrantCookie { set_cookie: None });
    }
    let set_cookie = cookie::set_cookie(grant, text, prefix, token.expires.saturating_sub(now))?;
    Some(GrantCookie {
        set_cookie: Some(set_cookie),
    })
}

/// The site's grant cookie that opens this request, verified into `buf`: on a site with a
/// `cookie_grant`, for a download only. `Ok(None)` when no cookie of the grant's name does,
/// `Err(())` for a `Cookie` header that cannot be read (repeated).
///
/// A cookie is an ambient credential: the browser sends whatever the host's cookie jar holds
/// for the path, including cookies a sibling subdomain planted with a longer `Path` (sent
/// first, RFC 6265 §5.4). So a cookie that does not open this request (forged, expired,
/// another folder, revoked, refused, undecodable) is skipped, never the answer: a planted
/// cookie must not shadow the real grant behind it, nor turn the request into a denial that
/// outlives it. The first cookie whose token verifies and is not refused wins. Values that
/// fail before the MAC (not a token, another purpose, an unknown key) cost next to nothing
/// and are skipped without counting; at most [`cookie::MAX_TRIED`] MACs are computed.
fn grant_cookie_token<'a>(
    config: &Config,
    site: &Site,
    request: &MediaRequest<'_>,
    canonical: &str,
    now: u64,
    revoked: &Revoked,
    buf: &'a mut TokenBuf,
) -> Result<Option<Verified<'a>>, ()> {
    let Some(grant) = site.cookie_grant.as_ref() else {
        return Ok(None);
    };
    if request.purpose != Purpose::Download {
        return Ok(None);
    }
    let header = match request.cookie {
        CookieHeader::Absent => return Ok(None),
        CookieHeader::Unreadable => return Err(()),
        CookieHeader::One(header) => header,
    };
    let token_request = Request {
        path: canonical,
        method: request.method,
        host: Some(&site.media_host),
        client_ip: request.client_ip,
    };
    // Candidates are tried here and only the winner is moved into `buf` (no second MAC).
    let mut scratch = TokenBuf::new();
    let mut macs = 0;
    for value in cookie::values(header, &grant.name) {
        // A value that is not UTF-8 is no token.
        let Ok(text) = std::str::from_utf8(value) else {
            continue;
        };
        let verified = token::verify(
            text,
            &mut scratch,
            Purpose::Download,
            &token_request,
            &config.keys,
            config.token.limits,
            now,
        );
        match verified {
            // Only what a grant cookie is ever set from (a prefix link without a use limit,
            // [`grant_cookie`]): a counted or exact link planted as a cookie by a sibling
            // subdomain would otherwise spend its uses on, or deny, every request here.
            Ok(token)
                if token.prefix.is_some()
                    && token.uses.is_none()
                    && refusal(config, &token, revoked).is_none() =>
            {
                return Ok(token.keep_in(buf));
            }
            Err(denied) if !denied.computed_mac() => continue,
            Ok(_) | Err(_) => {}
        }
        macs += 1;
        if macs == cookie::MAX_TRIED {
            break;
        }
    }
    Ok(None)
}

/// A denial at an API location: 401 with `WWW-Authenticate` for what a new token cures
/// (with the `Authorization` source on), 403 for everything else.
fn api_denial<'a>(config: &Config, site: &'a Site, reason: Reason) -> Outcome<'a> {
    if reason.is_refreshable() && config.token.from_authorization {
        Outcome::Challenge { reason, site }
    } else {
        Outcome::deny(reason, site)
    }
}

/// Why a request's token could not be read (see [`request_token`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenProblem {
    /// A query parameter that is repeated or spelled another way, or a token in both sources.
    Malformed,
    /// An `Authorization` header of an accepted scheme that is not a well-formed credential.
    Challenge,
}

/// The request's token and where it came from: `Ok(None)` when it has none. Each configured
/// source is read, and its own syntax judged, before any is used; `in_path` is the token of
/// the path's token segment, when the caller found one ([`path::split_grant`]). Shared by the
/// media gate and the upload edge, so both read tokens the same way.
pub fn request_token<'t>(
    config: &Config,
    request: &MediaRequest<'t>,
    in_path: Option<&'t str>,
) -> Result<Option<(&'t str, TokenSource)>, TokenProblem> {
    let (_, query) = path::split_uri(request.uri);
    let mut in_query = None;
    if config.token.from_query {
        match path::query_param(query.unwrap_or(""), &config.token.param) {
            Ok(Some(text)) if !text.is_empty() => in_query = Some(text),
            Ok(_) => {}
            Err(()) => return Err(TokenProblem::Malformed),
        }
    }
    let mut in_header = None;
    if config.token.from_authorization {
        in_header = header_token(request.authorization, &config.token.auth_schemes)
            .map_err(|()| TokenProblem::Challenge)?;
    }
    // Exactly one source per request, even when two hold the same string: which of two
    // credentials nginx, the application and mediagate each read would differ.
    let mut found = None;
    for (text, source) in [
        (in_query, TokenSource::Query),
        // `decide` refuses a token segment with the source off already; this function
        // stands on its own for every caller.
        (
            in_path.filter(|_| config.token.from_path),
            TokenSource::Path,
        ),
        (in_header, TokenSource::Authorization),
    ] {
        if let Some(text) = text {
            if found.is_some() {
                return Err(TokenProblem::Malformed);
            }
            found = Some((text, source));
        }
    }
    Ok(found)
}

/// The fields of an authenticated token that a revocation can name.
pub fn revocable<'t>(token: &'t Token<'_>) -> Revocable<'t> {
    Revocable {
        kid: token.kid,
        token_id: token.token_id,
        subject: token.subject,
        issued_at: token.issued_at,
    }
}

/// The token in an `Authorization` header: `Ok(None)` when there is none or the header
/// belongs to another scheme (`Basic` for a password prompt in front of the site is not ours
/// to judge), `Err` when it names one of `schemes` (ignoring case, RFC 9110 §11.1) but is not
/// `<scheme> 1*SP <token68>`: the scheme alone, empty credentials, a space, comma or tab in
/// them, or a header that is repeated or not UTF-8. Nothing is trimmed or repaired.
fn header_token<'a>(header: Authorization<'a>, schemes: &[String]) -> Result<Option<&'a str>, ()> {
    let value = match header {
        Authorization::Absent => return Ok(None),
        Authorization::Unreadable => return Err(()),
        Authorization::One(value) => value,
    };
    // An empty header says "no credentials" in no scheme's syntax.
    if value.trim_matches([' ', '\t']).is_empty() {
        return Err(());
    }
    let scheme_len = value
        .bytes()
        .position(|b| !is_tchar(b))
        .unwrap_or(value.len());
    let (scheme, rest) = value.split_at(scheme_len);
    if !schemes
        .iter()
        .any(|accepted| accepted.eq_ignore_ascii_case(scheme))
    {
        return Ok(None);
    }
    // `Bearer` alone, `Bearer,x` and `Bearer\tx` are ours and broken.
    let credentials = rest.strip_prefix(' ').ok_or(())?.trim_start_matches(' ');
    if is_token68(credentials) {
        Ok(Some(credentials))
    } else {
        Err(())
    }
}

/// `tchar` (RFC 9110 §5.6.2): the bytes of an authentication scheme. Configuration checks
/// `token.auth_schemes` with it, so a scheme that validates is one this parser can match.
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `token68` (RFC 9110 §11.2): `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
/// Whether the text is a v1 token is the decoder's business; this is the header's syntax.
fn is_token68(text: &str) -> bool {
    let body = text.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

/// Why a media URL's query cannot be kept through a refresh (see [`kept_query`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the query cannot be kept exactly (longer than 255 bytes, an empty pair, or a byte outside the URL query characters)")]
pub struct QueryNotKept;

/// The media URL's query without the token parameter, raw, for the refresh state (token
/// field `kept_query`): `Ok(None)` when nothing else is left, [`QueryNotKept`] when the rest cannot
/// be kept as it is ([`token::is_kept_query`]: longer than 255 bytes, an empty pair such as
/// `a=1&&b=2`, a byte outside the URL query characters). Every pair named exactly `param` is
/// left out (other spellings of it never get this far: reading the token refuses them), so the
/// refreshed URL carries exactly one token. Nothing is decoded or re-encoded.
pub fn kept_query(query: Option<&str>, param: &str) -> Result<Option<String>, QueryNotKept> {
    let Some(query) = query.filter(|query| !query.is_empty()) else {
        return Ok(None);
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| pair.split_once('=').map_or(*pair, |(name, _)| name) != param)
        .collect();
    if kept.is_empty() {
        return Ok(None);
    }
    let kept = kept.join("&");
    if token::is_kept_query(kept.as_bytes()) {
        Ok(Some(kept))
    } else {
        Err(QueryNotKept)
    }
}

/// A refreshable failure becomes a redirect to the session domain, unless the site has none
/// or the browser is already going round in circles.
///
/// The rest of the media URL's query is signed into the state, so the refreshed link is the
/// link the browser asked for. A query that cannot be kept exactly ([`kept_query`]) fails
/// closed, as a path too long for the round trip does: a refreshed URL without some of its
/// parameters is another request (another range of a manifest, another response type), and
/// handing it out silently would be repairing the link, not healing it.
fn refresh_or_deny<'a>(
    config: &Config,
    site: &'a Site,
    (canonical, query): (&str, Option<&str>),
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
    let Ok(kept) = kept_query(query, &config.token.param) else {
        return Outcome::deny(reason, site);
    };
    match mint::refresh_state(config, &site.id, canonical, marker, kept.as_deref(), now) {
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

#[cfg(test)]
pub(crate) mod tests {
    use super::{kept_query, QueryNotKept};
    use super::{Authorization, MediaRequest, Outcome};
    use crate::config::{Config, TokenSource};
    use crate::store::revoked::Revoked;
    use crate::token::{self, Claims, Methods, Purpose, Scope, ScopeEntry, TokenBuf};
    use figment::providers::Format;

    const NOW: u64 = 1_800_000_000;
    const HOUR: u64 = 3600;

    /// One site on `https://media.example.org` with `site` added to its table (e.g.
    /// `playback_grant = "4h"`) and `top` added before it (other tables).
    /// Path tokens are on unless `top` has its own `[token]` table.
    pub(crate) fn config_with(top: &str, site: &str) -> Config {
        validated(top, site).unwrap()
    }

    /// [`config_with`]'s configuration, or the problems configuration finds in it.
    fn validated(top: &str, site: &str) -> Result<Config, crate::config::ConfigError> {
        let top = if top.contains("[token]") {
            top.to_owned()
        } else {
            format!("[token]\nsources = [\"query\", \"path\"]\n{top}")
        };
        let text = format!(
            r#"
{top}
[keys]
dev_key = false
[keys.secrets]
k1 = "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI"
[internal]
secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3I"
[[sites]]
id = "demo"
media_origin = "https://media.example.org"
session_origin = "https://www.example.org"
{site}
"#
        );
        let raw: crate::config::raw::RawConfig = figment::Figment::from(
            figment::providers::Toml::string(crate::config::DEFAULT_TOML),
        )
        .merge(figment::providers::Toml::string(&text))
        .extract()
        .unwrap();
        crate::config::validate(&raw)
    }

    /// A link for `/media/clip/a.mp4` with a subject and a token id, bound to the site's
    /// host, expiring in a minute.
    pub(crate) fn claims() -> Claims {
        Claims {
            host: Some("media.example.org".into()),
            subject: Some("u1".into()),
            token_id: Some("t1".into()),
            ..Claims::download(Scope::Exact("/media/clip/a.mp4".into()), NOW + 60)
        }
    }

    pub(crate) fn signed(config: &Config, claims: &Claims) -> String {
        token::sign(claims, config.keys.signing_key()).unwrap()
    }

    /// What the gate and then the exchange make of `GET uri` (ranged or not) at `now`: the
    /// exchange's location, or the outcome's reason and source when there is none.
    fn played(
        config: &Config,
        method: &str,
        uri: &str,
        ranged: bool,
        now: u64,
    ) -> Result<String, (Option<crate::reason::Reason>, Option<TokenSource>)> {
        let request = MediaRequest {
            uri,
            method,
            server_name: "media.example.org",
            client_ip: None,
            authorization: Authorization::Absent,
            cookie: super::CookieHeader::Absent,
            purpose: Purpose::Download,
        };
        let mut buf = TokenBuf::new();
        let outcome = super::decide(config, &request, &mut buf, now, &Revoked::default());
        match super::exchange(config, outcome, &request, ranged, now) {
            Outcome::Exchange { location, .. } => Ok(location),
            Outcome::Allow { source, .. } => Err((None, source)),
            other => Err((other.reason(), None)),
        }
    }

    /// The exchange's location for `claims`: the same claims, the original's expiry as the
    /// grant's origin, and `expires`.
    fn grant_url(config: &Config, claims: &Claims, expires: u64, base: &str, rest: &str) -> String {
        let grant = signed(
            config,
            &Claims {
                expires,
                playback_of: Some(claims.expires),
                ..claims.clone()
            },
        );
        format!("https://media.example.org{base}~mg~{grant}/{rest}")
    }

    #[test]
    fn a_ranged_get_of_a_query_link_is_sent_to_the_same_link_in_path_form() {
        let config = config_with("", r#"playback_grant = "4h""#);
        let claims = claims();
        let uri = format!("/media/clip/a.mp4?token={}", signed(&config, &claims));
        let expected = grant_url(&config, &claims, NOW + 4 * HOUR, "/media/clip/", "a.mp4");
        assert_eq!(
            played(&config, "GET", &uri, true, NOW),
            Ok(expected.clone())
        );
        // What a player then asks for: the grant, which is never exchanged again, and still
        // plays once the original link expired.
        let grant_uri = expected.strip_prefix("https://media.example.org").unwrap();
        assert_eq!(
            played(&config, "GET", grant_uri, true, NOW),
            Err((None, Some(TokenSource::Path)))
        );
        assert_eq!(
            played(&config, "GET", &uri, true, NOW + 60),
            Err((Some(crate::reason::Reason::Expired), None))
        );
        assert_eq!(
            played(&config, "GET", grant_uri, true, NOW + 4 * HOUR - 1),
            Err((None, Some(TokenSource::Path)))
        );
        // Not a player's range: served as it is.
        assert_eq!(
            played(&config, "GET", &uri, false, NOW),
            Err((None, Some(TokenSource::Query)))
        );
        assert_eq!(
            played(&config, "HEAD", &uri, true, NOW),
            Err((None, Some(TokenSource::Query)))
        );
    }

    #[test]
    fn the_grant_expires_at_the_later_of_the_two() {
        let config = config_with("", r#"playback_grant = "4h""#);
        let long = Claims {
            expires: NOW + 6 * HOUR,
            ..claims()
        };
        let uri = format!("/media/clip/a.mp4?token={}", signed(&config, &long));
        assert_eq!(
            played(&config, "GET", &uri, true, NOW),
            Ok(grant_url(
                &config,
                &long,
                NOW + 6 * HOUR,
                "/media/clip/",
                "a.mp4"
            ))
        );
    }

    #[test]
    fn a_grant_is_never_exchanged_again_wherever_it_is_carried() {
        // Taken out of its path segment and sent as a query link with a range, a grant must
        // not buy another `playback_grant` (else it could be renewed for ever, past every
        // revocation's horizon): it is served as it is.
        let config = config_with("", r#"playback_grant = "4h""#);
        let original = claims();
        let location = grant_url(&config, &original, NOW + 4 * HOUR, "/media/clip/", "a.mp4");
        let grant = location
            .split_once("~mg~")
            .and_then(|(_, rest)| rest.split_once('/'))
            .map(|(token, _)| token.to_owned())
            .unwrap();
        let later = NOW + 3 * HOUR;
        let as_query = format!("/media/clip/a.mp4?token={grant}");
        assert_eq!(
            played(&config, "GET", &as_query, true, later),
            Err((None, Some(TokenSource::Query)))
        );
        // And it ends when it says: the original's expiry plus the grant, at most.
        assert_eq!(
            played(&config, "GET", &as_query, true, NOW + 4 * HOUR),
            Err((Some(crate::reason::Reason::Expired), None))
        );
    }

    #[test]
    fn a_playback_grant_needs_the_path_source_and_fits_max_lifetime() {
        let refused =
            |token: &str, site: &str| validated(&format!("[token]\n{token}"), site).unwrap_err().0;
        assert_eq!(
            refused(
                "sources = [\"query\", \"path\"]\nmax_lifetime = \"3h\"",
                "playback_grant = \"4h\""
            ),
            ["sites[0].playback_grant: longer than token.max_lifetime (10800 s)"]
        );
        assert_eq!(
            refused(
                "sources = [\"query\"]",
                "playback_grant = \"4h\"\nlink_form = \"path\""
            ),
            [
                "sites[0].link_form: \"path\" hands out links with the token in the path, and \
                 token.sources has no \"path\"",
                "sites[0].playback_grant: the grant is a link in path form, and token.sources \
                 has no \"path\"",
            ]
        );
    }

    #[test]
    fn a_prefix_token_goes_after_its_prefix_with_every_claim_kept() {
        let config = config_with("", r#"playback_grant = "1h""#);
        let claims = Claims {
            scope: Scope::Prefix("/media/".into()),
            issued_at: Some(NOW - 10),
            recipient: Some("partner".into()),
            data: Some(vec![1, 2, 3]),
            ..claims()
        };
        let uri = format!("/media/clip/a%20b.mp4?token={}", signed(&config, &claims));
        assert_eq!(
            played(&config, "GET", &uri, true, NOW),
            Ok(grant_url(
                &config,
                &claims,
                NOW + HOUR,
                "/media/",
                "clip/a%20b.mp4"
            ))
        );
    }

    #[test]
    fn the_rest_of_the_query_is_kept_raw_or_there_is_no_exchange() {
        let config = config_with("", r#"playback_grant = "4h""#);
        let token = signed(&config, &claims());
        let base = grant_url(&config, &claims(), NOW + 4 * HOUR, "/media/clip/", "a.mp4");
        let uri = format!("/media/clip/a.mp4?a=1&token={token}&b=x%20y");
        assert_eq!(
            played(&config, "GET", &uri, true, NOW),
            Ok(format!("{base}?a=1&b=x%20y"))
        );
        // An empty pair cannot be kept exactly: plain allow, as before.
        let uri = format!("/media/clip/a.mp4?a=1&&token={token}");
        assert_eq!(
            played(&config, "GET", &uri, true, NOW),
            Err((None, Some(TokenSource::Query)))
        );
    }

    #[test]
    fn what_has_no_path_form_or_no_grant_is_served_as_before() {
        let query = Err((None, Some(TokenSource::Query)));
        // A use limit: its ranged requests continue by holder.
        let config = config_with("", r#"playback_grant = "4h""#);
        let counted = Claims {
            uses: Some(3),
            ..claims()
        };
        let uri = format!("/media/clip/a.mp4?token={}", signed(&config, &counted));
        assert_eq!(played(&config, "GET", &uri, true, NOW), query);
        // A scopes list is never path-carried.
        let scoped = Claims {
            scope: Scope::List(vec![
                ScopeEntry {
                    methods: Methods::READ,
                    prefix: true,
                    path: "/media/".into(),
                },
                ScopeEntry {
                    methods: Methods::READ,
                    prefix: false,
                    path: "/other.pdf".into(),
                },
            ]),
            ..claims()
        };
        let uri = format!("/media/clip/a.mp4?token={}", signed(&config, &scoped));
        assert_eq!(played(&config, "GET", &uri, true, NOW), query);
        // No playback_grant on the site (with the path source off, configuration refuses
        // one: a_playback_grant_needs_the_path_source).
        let uri = format!("/media/clip/a.mp4?token={}", signed(&config, &claims()));
        assert_eq!(played(&config_with("", ""), "GET", &uri, true, NOW), query);
    }

    #[test]
    fn the_kept_query_is_the_raw_query_without_the_token_parameter() {
        let kept = |query| kept_query(query, "token");
        assert_eq!(kept(None), Ok(None));
        assert_eq!(kept(Some("")), Ok(None));
        assert_eq!(kept(Some("token=stale")), Ok(None));
        assert_eq!(kept(Some("token")), Ok(None));
        assert_eq!(
            kept(Some("x=1&y=a%20b&token=stale")),
            Ok(Some("x=1&y=a%20b".into()))
        );
        assert_eq!(
            kept(Some("token=stale&x=1&y=a%20b")),
            Ok(Some("x=1&y=a%20b".into()))
        );
        // Kept as received: no decoding, no re-encoding, order unchanged.
        assert_eq!(
            kept(Some("b=%2f&a=+&token=t&c")),
            Ok(Some("b=%2f&a=+&c".into()))
        );
        // `tokens` and `xtoken` are other parameters.
        assert_eq!(
            kept(Some("tokens=1&xtoken=2&token=t")),
            Ok(Some("tokens=1&xtoken=2".into()))
        );
    }

    #[test]
    fn a_query_that_cannot_be_kept_exactly_is_refused_not_repaired() {
        let long = format!("x={}&token=t", "a".repeat(254));
        for query in [
            "x=1&&token=t",
            "x=1&token=t&",
            "&x=1",
            "x=a b&token=t",
            "x=%zz",
            "x=\u{e9}",
            long.as_str(),
        ] {
            assert_eq!(
                kept_query(Some(query), "token"),
                Err(QueryNotKept),
                "{query:?}"
            );
        }
        let fits = format!("x={}&token=t", "a".repeat(253));
        assert_eq!(
            kept_query(Some(&fits), "token").unwrap().unwrap().len(),
            255
        );
    }
}

#[cfg(test)]
mod cookie_tests {
    use super::*;
    use crate::mint::{mint, MintRequest};

    const NOW: u64 = 1_800_000_000;

    /// A site with a grant cookie `mg` (same_site strict) and a second site without one.
    fn config() -> Config {
        let mut random = [0u8; 8];
        getrandom::getrandom(&mut random).unwrap();
        let file = std::env::temp_dir().join(format!(
            "mediagate-gate-{}.toml",
            random
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        ));
        std::fs::write(
            &file,
            "[keys]\ndev_key = false\n[keys.secrets]\n\
             k1 = \"QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI\"\n\
             [[sites]]\nid = \"a\"\nmedia_origin = \"https://media.example.org\"\n\
             session_origin = \"https://www.example.org\"\n\
             cookie_grant = { name = \"mg\", same_site = \"strict\" }\n\
             [[sites]]\nid = \"b\"\nmedia_origin = \"https://media-b.example.org\"\n",
        )
        .unwrap();
        let config = crate::config::load_with_env(Some(&file), Vec::new());
        std::fs::remove_file(&file).unwrap();
        config.unwrap()
    }

    /// A token for `path` (a folder when it ends in `/`) on site `host`, minted at `at`.
    fn token(config: &Config, path: &str, host: &str, at: u64, uses: Option<u32>) -> String {
        let request = MintRequest {
            path: path.into(),
            prefix: path.ends_with('/'),
            ttl: Some(600),
            host: Some(host.into()),
            uses,
            token_id: uses.map(|_| "t1".into()),
            issued_at: uses.is_some(),
            ..MintRequest::default()
        };
        mint(config, &request, at).unwrap().token
    }

    /// What the gate makes of `uri` with a `Cookie` header on `host`: the reason (`None`
    /// for an allow), the source, and the cookie to set.
    fn ask(
        config: &Config,
        host: &str,
        uri: &str,
        cookie: CookieHeader<'_>,
    ) -> (Option<Reason>, Option<TokenSource>, Option<String>) {
        ask_revoked(config, host, uri, cookie, &Revoked::default())
    }

    /// A browser's `GET` of `uri` on `host`, with this `Cookie` header and no other token.
    fn download<'a>(host: &'a str, uri: &'a str, cookie: CookieHeader<'a>) -> MediaRequest<'a> {
        MediaRequest {
            uri,
            method: "GET",
            server_name: host,
            client_ip: None,
            authorization: Authorization::Absent,
            cookie,
            purpose: Purpose::Download,
        }
    }

    /// [`ask`] with these revocations in force.
    fn ask_revoked(
        config: &Config,
        host: &str,
        uri: &str,
        cookie: CookieHeader<'_>,
        revoked: &Revoked,
    ) -> (Option<Reason>, Option<TokenSource>, Option<String>) {
        let request = download(host, uri, cookie);
        let mut buf = TokenBuf::new();
        match decide(config, &request, &mut buf, NOW, revoked) {
            Outcome::Allow {
                source, set_cookie, ..
            } => (
                None,
                source,
                set_cookie
                    .as_ref()
                    .and_then(GrantCookie::to_send)
                    .map(str::to_owned),
            ),
            outcome => (outcome.reason(), None, None),
        }
    }

    const A: &str = "media.example.org";

    #[test]
    fn a_prefix_link_sets_the_grant_cookie_for_its_folder_until_it_expires() {
        let config = config();
        let folder = token(&config, "/media/photos/", A, NOW - 100, None);
        let uri = format!("/media/photos/a.png?token={folder}");
        assert_eq!(
            ask(&config, A, &uri, CookieHeader::Absent),
            (
                None,
                Some(TokenSource::Query),
                Some(format!(
                    "mg={folder}; Path=/media/photos/; Max-Age=500; Secure; HttpOnly; SameSite=Strict"
                ))
            )
        );
        // An exact link, a link with a use limit, another site: no cookie.
        let exact = token(&config, "/media/photos/a.png", A, NOW, None);
        let uri = format!("/media/photos/a.png?token={exact}");
        assert_eq!(
            ask(&config, A, &uri, CookieHeader::Absent),
            (None, Some(TokenSource::Query), None)
        );
        let counted = token(&config, "/media/photos/", A, NOW, Some(3));
        let uri = format!("/media/photos/a.png?token={counted}");
        assert_eq!(
            ask(&config, A, &uri, CookieHeader::Absent),
            (None, Some(TokenSource::Query), None)
        );
        let b = "media-b.example.org";
        let other = token(&config, "/media/photos/", b, NOW, None);
        let uri = format!("/media/photos/a.png?token={other}");
        assert_eq!(
            ask(&config, b, &uri, CookieHeader::Absent),
            (None, Some(TokenSource::Query), None)
        );
    }

    #[test]
    fn a_request_that_holds_the_grant_cookie_is_not_sent_it_again() {
        let config = config();
        let folder = token(&config, "/media/photos/", A, NOW - 100, None);
        let uri = format!("/media/photos/a.png?token={folder}");
        // (granted, sent) for a request of the prefix link with this `Cookie` header.
        let granted = |header: &str| {
            let request = download(A, &uri, CookieHeader::One(header.as_bytes()));
            let mut buf = TokenBuf::new();
            match decide(&config, &request, &mut buf, NOW, &Revoked::default()) {
                Outcome::Allow { set_cookie, .. } => (
                    set_cookie.is_some(),
                    set_cookie.as_ref().and_then(GrantCookie::to_send).is_some(),
                ),
                outcome => panic!("{header}: {outcome:?}"),
            }
        };
        // The same token under the grant's name, wherever it stands: granted, not sent again.
        assert_eq!(granted(&format!("mg={folder}")), (true, false));
        assert_eq!(
            granted(&format!("sid=1; mg={folder}; theme=dark")),
            (true, false)
        );
        assert_eq!(granted(&format!("mg=old; mg={folder}")), (true, false));
        // An older link's cookie, another name, a longer value, no cookie: sent.
        let older = token(&config, "/media/photos/", A, NOW - 200, None);
        assert_ne!(older, folder);
        for header in [
            format!("mg={older}"),
            format!("MG={folder}"),
            format!("xmg={folder}"),
            format!("mg={folder}x"),
            String::new(),
        ] {
            assert_eq!(granted(&header), (true, true), "{header}");
        }
    }

    #[test]
    fn the_cookie_is_read_only_without_another_token_and_only_where_granted() {
        let config = config();
        let folder = token(&config, "/media/photos/", A, NOW, None);
        let header = format!("sid=1; mg={folder}; theme=dark");
        let cookie = CookieHeader::One(header.as_bytes());
        assert_eq!(
            ask(&config, A, "/media/photos/b.png", cookie),
            (None, Some(TokenSource::Cookie), None)
        );
        // Another folder: the cookie opens nothing there, and counts as no token.
        assert_eq!(
            ask(&config, A, "/media/videos/b.mp4", cookie).0,
            Some(Reason::MissingToken)
        );
        // A link in the query wins, even beside a forged cookie or an unreadable header.
        let exact = token(&config, "/media/photos/b.png", A, NOW, None);
        let uri = format!("/media/photos/b.png?token={exact}");
        for cookie in [
            CookieHeader::One(b"mg=forged"),
            CookieHeader::Unreadable,
            cookie,
        ] {
            assert_eq!(
                ask(&config, A, &uri, cookie),
                (None, Some(TokenSource::Query), None)
            );
        }
        // Without a token, several Cookie headers are not guessed at.
        assert_eq!(
            ask(&config, A, "/media/photos/b.png", CookieHeader::Unreadable).0,
            Some(Reason::Malformed)
        );
        // A site without a grant never reads it: no token, a refresh (or here a denial).
        let b = "media-b.example.org";
        let other = token(&config, "/media/photos/", b, NOW, None);
        let header = format!("mg={other}");
        assert_eq!(
            ask(
                &config,
                b,
                "/media/photos/b.png",
                CookieHeader::One(header.as_bytes())
            )
            .0,
            Some(Reason::MissingToken)
        );
    }

    /// `token` with one character of its tag changed (not the last, whose unused bits may
    /// make the change no change).
    fn forge(token: &str) -> String {
        let mut forged = token.to_owned().into_bytes();
        let at = forged.len() - 5;
        forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
        String::from_utf8(forged).unwrap()
    }

    #[test]
    fn a_cookie_that_opens_nothing_is_ignored_and_the_first_that_does_wins() {
        let config = config();
        let good = token(&config, "/media/photos/", A, NOW, None);
        let expired = token(&config, "/media/photos/", A, NOW - 1000, None);
        let videos = token(&config, "/media/videos/", A, NOW, None);
        let forged = forge(&good);
        let other_site = token(&config, "/media/photos/", "media-b.example.org", NOW, None);
        // Valid for the file, but never what a grant cookie is set from.
        let counted = token(&config, "/media/photos/", A, NOW, Some(3));
        let exact = token(&config, "/media/photos/b.png", A, NOW, None);
        let path = "/media/photos/b.png";
        let four_forged = format!("mg={forged}; ").repeat(4);
        let three_forged = format!("mg={forged}; ").repeat(3);
        // Junk that fails before any MAC: never counted against the four MACs.
        let junk = "mg=; mg=x; mg=\"q\"; mg=AQEB; ".repeat(10);
        let cases = [
            (format!("mg={forged}; mg={good}"), None),
            (format!("mg={expired}; x=1; mg=; mg={good}"), None),
            (format!("mg={videos}; mg={good}"), None),
            (format!("mg={other_site}; mg={good}"), None),
            (format!("mg={counted}; mg={exact}; mg={good}"), None),
            (format!("{three_forged}mg={good}"), None),
            (format!("{junk}{three_forged}mg={good}"), None),
            // None opens this file: as if the request had no token (the refresh flow, whose
            // fresh link in the URL then wins), never the reason of a planted cookie.
            (
                format!("mg={expired}; mg={forged}"),
                Some(Reason::MissingToken),
            ),
            (
                format!("mg={forged}; mg={expired}"),
                Some(Reason::MissingToken),
            ),
            (format!("mg={forged}"), Some(Reason::MissingToken)),
            (format!("mg={videos}"), Some(Reason::MissingToken)),
            (format!("mg={other_site}"), Some(Reason::MissingToken)),
            (format!("mg={counted}"), Some(Reason::MissingToken)),
            (format!("mg={exact}"), Some(Reason::MissingToken)),
            ("mg=AQEB".to_owned(), Some(Reason::MissingToken)),
            // At most four MACs: a fifth cookie is not tried.
            (
                format!("{four_forged}mg={good}"),
                Some(Reason::MissingToken),
            ),
            (
                format!("{junk}{four_forged}mg={good}"),
                Some(Reason::MissingToken),
            ),
        ];
        for (header, expected) in cases {
            let (reason, source, set_cookie) =
                ask(&config, A, path, CookieHeader::One(header.as_bytes()));
            assert_eq!(reason, expected, "{header}");
            assert_eq!(set_cookie, None, "{header}");
            assert_eq!(
                source,
                expected.is_none().then_some(TokenSource::Cookie),
                "{header}"
            );
        }
        // A value that is no text is skipped like any value that is no token.
        let mut header = b"mg=\xff; mg=".to_vec();
        header.extend_from_slice(good.as_bytes());
        assert_eq!(
            ask(&config, A, path, CookieHeader::One(&header)),
            (None, Some(TokenSource::Cookie), None)
        );
        assert_eq!(
            ask(&config, A, path, CookieHeader::One(b"mg=\xff")).0,
            Some(Reason::MissingToken)
        );
    }

    #[test]
    fn a_revoked_grant_cookie_is_ignored_and_does_not_hide_another() {
        let config = config();
        let request = MintRequest {
            path: "/media/photos/".into(),
            prefix: true,
            ttl: Some(600),
            host: Some(A.into()),
            subject: Some("mallory".into()),
            ..MintRequest::default()
        };
        let revoked_grant = mint(&config, &request, NOW).unwrap().token;
        let good = token(&config, "/media/photos/", A, NOW, None);
        let entry = crate::store::RevocationEntry {
            revocation: crate::store::Revocation::Subject {
                subject: "mallory".into(),
            },
            created: NOW,
            expires: NOW + 3600,
        };
        let revoked = Revoked::new([&entry], NOW);
        let path = "/media/photos/b.png";
        let header = format!("mg={revoked_grant}");
        assert_eq!(
            ask_revoked(
                &config,
                A,
                path,
                CookieHeader::One(header.as_bytes()),
                &revoked
            )
            .0,
            Some(Reason::MissingToken)
        );
        // In the URL the same link stays revoked: only an ambient cookie is ignored.
        let uri = format!("{path}?token={revoked_grant}");
        assert_eq!(
            ask_revoked(&config, A, &uri, CookieHeader::Absent, &revoked).0,
            Some(Reason::Revoked)
        );
        let header = format!("mg={revoked_grant}; mg={good}");
        assert_eq!(
            ask_revoked(
                &config,
                A,
                path,
                CookieHeader::One(header.as_bytes()),
                &revoked
            ),
            (None, Some(TokenSource::Cookie), None)
        );
    }

    #[test]
    fn an_expired_grant_cookie_takes_the_refresh_flow_as_no_token_and_api_never_reads_it() {
        let config = config();
        let expired = token(&config, "/media/photos/", A, NOW - 1000, None);
        let path = "/media/photos/b.png";
        // An expired grant heals through the refresh flow, like an expired link.
        let header = format!("mg={expired}");
        let request = download(A, path, CookieHeader::One(header.as_bytes()));
        let mut buf = TokenBuf::new();
        match decide(&config, &request, &mut buf, NOW, &Revoked::default()) {
            Outcome::Refresh {
                location, reason, ..
            } => {
                assert_eq!(reason, Reason::MissingToken);
                assert!(location.starts_with(
                    "https://www.example.org/_mediagate/refresh/media/photos/b.png?state="
                ));
            }
            outcome => panic!("{outcome:?}"),
        }
        // An API location never reads it.
        let request = MediaRequest {
            cookie: CookieHeader::One(b"mg=x"),
            purpose: Purpose::Api,
            ..request
        };
        let mut buf = TokenBuf::new();
        let outcome = decide(&config, &request, &mut buf, NOW, &Revoked::default());
        assert_eq!(outcome.reason(), Some(Reason::MissingToken));
    }
}
