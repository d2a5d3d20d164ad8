//! The one place where an outcome becomes an HTTP response.
//!
//! Three dialects of the same decision:
//! - **auth** (`auth_request`): 204 allow, 401 + `Location` for a refresh or a playback
//!   exchange (`denied.conf`'s `@mediagate_unauthorized` turns it into a 302), 403 deny. Never
//!   any other status: nginx turns anything else into a 500.
//! - **accel** (proxied): 200 + `X-Accel-Redirect` into the internal location, 302 refresh
//!   or exchange, 403 deny.
//! - **forward** (Caddy `forward_auth`, Traefik ForwardAuth, which hand any non-2xx answer
//!   to the browser as it is): 200 allow with the grant headers (all five, empty when
//!   the allow has no such field), 302 + `Location` for a
//!   refresh or an exchange (mediagate answers the browser itself), 403 deny. No `X-Accel-*`: neither proxy
//!   reads them.
//!
//! Denials carry `X-Mediagate-Reason` and `Cache-Control: no-store`; they are never cacheable.
//! A malformed `Authorization` header is a 401 with `WWW-Authenticate` naming the accepted
//! schemes, in every mode; with `"authorization"` among `token.sources`, auth mode's refresh
//! 401 names them too, so that `protect-api.conf` (no redirect) hands the client a proper
//! challenge: nginx copies `WWW-Authenticate` from the auth subrequest's 401.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hyper::body::Bytes;
use hyper::header::{
    HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_TYPE, LOCATION, SET_COOKIE, WWW_AUTHENTICATE,
};
use hyper::{Response, StatusCode};

use crate::config::{AccelConfig, Config, Disposition, Site, TokenSource};
use crate::decimal;
use crate::gate::{GrantCookie, Outcome};
use crate::pages::{self, Format, Pages};
use crate::path;
use crate::reason::Reason;
use crate::token::{Token, Verified};

/// Response body type used throughout the server.
pub type Body = http_body_util::Full<Bytes>;

/// `X-Mediagate-Reason`: the machine-readable denial reason.
pub const REASON: HeaderName = HeaderName::from_static("x-mediagate-reason");
/// `X-Mediagate-Subject`: the token's subject, for `auth_request_set` and upstream headers.
pub const SUBJECT: HeaderName = HeaderName::from_static("x-mediagate-subject");
/// `X-Mediagate-Recipient`: the token's recipient (v2), like the subject.
pub const RECIPIENT: HeaderName = HeaderName::from_static("x-mediagate-recipient");
/// `X-Mediagate-Token-Id`.
pub const TOKEN_ID: HeaderName = HeaderName::from_static("x-mediagate-token-id");
/// `X-Mediagate-Expires-In`: seconds of validity left.
pub const EXPIRES_IN: HeaderName = HeaderName::from_static("x-mediagate-expires-in");
/// `X-Mediagate-Data`: the token's opaque data, base64url.
pub const DATA: HeaderName = HeaderName::from_static("x-mediagate-data");
/// `X-Mediagate-Content-Disposition`: auth mode's per-link `Content-Disposition` (token
/// fields `filename`/`disposition`), which `protect.conf` sends with the file.
pub const OVERRIDE_DISPOSITION: HeaderName =
    HeaderName::from_static("x-mediagate-content-disposition");
/// `X-Mediagate-Cache-Control`: auth mode's per-link `Cache-Control` (token field `max_age`),
/// which `http.conf`'s `$mediagate_cache_control` sends with a successful response.
pub const OVERRIDE_CACHE_CONTROL: HeaderName = HeaderName::from_static("x-mediagate-cache-control");
/// `X-Mediagate-Set-Cookie`: auth mode's grant cookie (a site's `cookie_grant`), which
/// `protect.conf` sends to the browser as `Set-Cookie` with the file. Not `Set-Cookie`
/// itself: nginx does not pass an auth subrequest's headers to the client.
pub const SET_GRANT_COOKIE: HeaderName = HeaderName::from_static("x-mediagate-set-cookie");
/// `X-Mediagate-Reservation`: the settle handle of an upload slot's reservation
/// ([`crate::upload::Reservation::handle`]), which nginx hands back to `/settle`.
pub const RESERVATION: HeaderName = HeaderName::from_static("x-mediagate-reservation");
/// `X-Accel-Redirect`.
pub const ACCEL_REDIRECT: HeaderName = HeaderName::from_static("x-accel-redirect");
/// `X-Accel-Expires`.
pub const ACCEL_EXPIRES: HeaderName = HeaderName::from_static("x-accel-expires");
/// `X-Accel-Limit-Rate`.
pub const ACCEL_LIMIT_RATE: HeaderName = HeaderName::from_static("x-accel-limit-rate");
/// `X-Accel-Buffering`.
pub const ACCEL_BUFFERING: HeaderName = HeaderName::from_static("x-accel-buffering");

const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");
/// `X-Accel-Expires: 0`: nginx must not cache this answer.
const NO_CACHE: HeaderValue = HeaderValue::from_static("0");

/// Which front-proxy integration asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `auth_request` subrequest.
    Auth,
    /// Proxied request answered with `X-Accel-Redirect`.
    Accel,
    /// A forward-auth request whose answer the proxy passes to the browser (`/forward`).
    Forward,
}

impl Mode {
    /// Every mode, in `as usize` order (metrics index by it).
    pub const ALL: [Mode; 3] = [Mode::Auth, Mode::Accel, Mode::Forward];

    /// Label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Auth => "auth",
            Mode::Accel => "accel",
            Mode::Forward => "forward",
        }
    }
}

/// Builds the response for a media decision.
pub fn media_response(
    mode: Mode,
    outcome: &Outcome<'_>,
    config: &Config,
    now: u64,
) -> Response<Body> {
    let accel = &config.accel;
    match (outcome, mode) {
        (
            Outcome::Allow {
                path,
                token,
                source,
                site,
                set_cookie,
            },
            Mode::Auth,
        ) => {
            let mut response = empty(StatusCode::NO_CONTENT);
            grant_headers(&mut response, token.as_ref(), now);
            let reusable = reusable(*source, site, set_cookie.as_ref());
            cache_headers(&mut response, token.as_ref(), reusable, accel, now);
            insert_cookie(&mut response, SET_GRANT_COOKIE, set_cookie.as_ref());
            // Only the token's own overrides: the site-wide accel.content_disposition stays an
            // accel-mode setting, as it always was.
            if let Some(token) = token.as_ref() {
                let headers = response.headers_mut();
                if token.filename.is_some() || token.disposition.is_some() {
                    if let Some(value) = disposition_header(accel, path, Some(token)) {
                        headers.insert(OVERRIDE_DISPOSITION, value);
                    }
                }
                if token.max_age.is_some() {
                    headers.insert(OVERRIDE_CACHE_CONTROL, cache_control(Some(token)));
                }
            }
            response
        }
        (
            Outcome::Allow {
                path,
                token,
                source,
                site,
                set_cookie,
            },
            Mode::Accel,
        ) => {
            let reusable = reusable(*source, site, set_cookie.as_ref());
            accel_response(
                accel,
                path,
                token.as_ref(),
                set_cookie.as_ref(),
                reusable,
                now,
            )
        }
        // No grant cookie here: Caddy's and Traefik's forward auth copy the answer's headers
        // onto the upstream request, not onto the client's response.
        (Outcome::Allow { token, .. }, Mode::Forward) => {
            // 200, not 204: some forward-auth clients test for exactly 200.
            let mut response = empty(StatusCode::OK);
            grant_headers(&mut response, token.as_ref(), now);
            // Every grant header, empty when this allow has no such field (public paths,
            // tokens without subject): the proxy copies them onto the upstream request, and
            // Caddy 2.6's copy_headers sends a header mediagate left out as the literal
            // text "{http.reverse_proxy.header.…}". Empty means "none" upstream.
            for name in [SUBJECT, RECIPIENT, TOKEN_ID, DATA, EXPIRES_IN] {
                response
                    .headers_mut()
                    .entry(name)
                    .or_insert(HeaderValue::from_static(""));
            }
            response
        }
        (
            Outcome::Refresh {
                location, reason, ..
            },
            mode,
        ) => {
            let mut response = redirect(redirect_status(mode), location, Some(*reason));
            if mode == Mode::Auth && config.token.from_authorization {
                insert_challenge(&mut response, &config.token.challenge);
            }
            response
        }
        // The player follows a same-origin redirect (auth mode: protect.conf's 401 handler
        // turns it into the 302). Never cached: the answer is for a ranged request, and the
        // auth cache's key holds no Range.
        (Outcome::Exchange { location, .. }, mode) => {
            let mut response = redirect(redirect_status(mode), location, None);
            if mode != Mode::Forward {
                response.headers_mut().insert(ACCEL_EXPIRES, NO_CACHE);
            }
            response
        }
        (Outcome::Challenge { reason, .. }, _) => challenge(*reason, &config.token.challenge),
        (Outcome::Deny { reason, .. }, _) => deny(StatusCode::FORBIDDEN, *reason),
    }
}

/// `/upload`'s allow (auth dialect): 204 with the slot's grant headers and, when a use was
/// reserved, its settle handle. Never cacheable: every upload reserves anew.
pub fn upload_allowed(token: &Verified<'_>, reservation: Option<&str>, now: u64) -> Response<Body> {
    let mut response = empty(StatusCode::NO_CONTENT);
    grant_headers(&mut response, Some(token), now);
    let headers = response.headers_mut();
    // base64url and dots only: always a valid header value.
    if let Some(value) = reservation.and_then(|handle| HeaderValue::from_str(handle).ok()) {
        headers.insert(RESERVATION, value);
    }
    headers.insert(CACHE_CONTROL, NO_STORE);
    headers.insert(ACCEL_EXPIRES, NO_CACHE);
    response
}

/// A 401 denial with `WWW-Authenticate: <the accepted schemes>` (RFC 9110 §11.6.1: a 401
/// must name a way to authenticate).
pub fn challenge(reason: Reason, schemes: &str) -> Response<Body> {
    let mut response = deny(StatusCode::UNAUTHORIZED, reason);
    insert_challenge(&mut response, schemes);
    response
}

fn insert_challenge(response: &mut Response<Body>, schemes: &str) {
    // Schemes were validated as HTTP tokens joined by ", ": always a valid header value.
    if let Ok(value) = HeaderValue::from_str(schemes) {
        response.headers_mut().insert(WWW_AUTHENTICATE, value);
    }
}

/// A denial: status, reason header, the built-in plain-text page, never cacheable.
pub fn deny(status: StatusCode, reason: Reason) -> Response<Body> {
    denial_page(status, Some(reason), Format::Text, None)
}

/// A denial as a page for people ([`pages::render`]): `format` from the client's `Accept`,
/// `pages` the site's overrides. `reason` is `None` for a 403 nginx made itself; then no
/// `X-Mediagate-Reason` is sent.
pub fn denial_page(
    status: StatusCode,
    reason: Option<Reason>,
    format: Format,
    pages: Option<&Pages>,
) -> Response<Body> {
    let mut response = Response::new(Body::new(pages::render(
        status.as_u16(),
        reason,
        format,
        pages,
    )));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    headers.insert(CACHE_CONTROL, NO_STORE);
    // The page is shown under a URL that may hold a working token: a link on it (an
    // operator's own page may have some) must not send it on in Referer.
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    if let Some(reason) = reason {
        headers.insert(REASON, HeaderValue::from_static(reason.as_str()));
    }
    response
}

/// A redirect (302, or 401 for auth_request) to a location built from configuration.
pub fn redirect(status: StatusCode, location: &str, reason: Option<Reason>) -> Response<Body> {
    let mut response = empty(status);
    let headers = response.headers_mut();
    // Locations are assembled from configuration and percent-encoded canonical paths, so they
    // are always valid header values; if one were not, failing closed is a plain 403.
    let Ok(value) = HeaderValue::from_str(location) else {
        return deny(StatusCode::FORBIDDEN, Reason::BadPath);
    };
    headers.insert(LOCATION, value);
    headers.insert(CACHE_CONTROL, NO_STORE);
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    if let Some(reason) = reason {
        headers.insert(REASON, HeaderValue::from_static(reason.as_str()));
    }
    response
}

/// A plain-text response that is never cached.
pub fn text_response(status: StatusCode, text: String) -> Response<Body> {
    let mut response = Response::new(Body::new(Bytes::from(text)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, NO_STORE);
    response
}

/// An empty response.
pub fn empty(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Body::default());
    *response.status_mut() = status;
    response
}

/// `X-Accel-Expires` on an allow, in both modes: how long nginx may reuse this answer. Public
/// paths carry none (nginx's own cache settings apply); token answers say
/// [`auth_cache_until`], or `0` (never) when they must not be reused.
///
/// A token from an `Authorization` header is never reusable: nginx's cache key
/// (`media-auth-cached.conf`: method, server, `$request_uri`) does not hold the header, so
/// an allow cached under it would answer the same URL with no token at all. (Putting the
/// header into the key instead would write the token into every cache file's key line.)
///
/// Nor is one from the grant cookie (the key does not hold the `Cookie` header either), nor an
/// allow that sets the cookie: a cached answer would repeat its `Set-Cookie` with a `Max-Age`
/// counted from the first request, so a cookie set from the cache would outlive its token.
///
/// Nor is a query token's allow on a site with a `playback_grant`: the same URL asked with a
/// `Range` is exchanged ([`crate::gate::exchange`]), and the key holds no `Range` either, so
/// a cached allow would answer the player's first range and the exchange would never happen.
fn cache_headers(
    response: &mut Response<Body>,
    token: Option<&Verified<'_>>,
    reusable: bool,
    accel: &AccelConfig,
    now: u64,
) {
    if let Some(token) = token {
        let expires = reusable
            .then(|| auth_cache_until(token, accel, now))
            .flatten()
            .map_or(NO_CACHE, accel_expires_at);
        response.headers_mut().insert(ACCEL_EXPIRES, expires);
    }
}

/// Whether nginx may reuse an allow at all ([`cache_headers`] says for how long): not for a
/// token from a header or the grant cookie, not for an allow that grants the cookie, not for
/// a query token on a site with a `playback_grant`.
fn reusable(source: Option<TokenSource>, site: &Site, grant: Option<&GrantCookie>) -> bool {
    let playback = source == Some(TokenSource::Query) && site.playback_grant.is_some();
    !(matches!(
        source,
        Some(TokenSource::Authorization | TokenSource::Cookie)
    ) || grant.is_some()
        || playback)
}

/// The status of a redirect to `location`: auth mode answers 401 (protect.conf's handler turns
/// it into the browser's 302), the others 302 themselves.
fn redirect_status(mode: Mode) -> StatusCode {
    match mode {
        Mode::Auth => StatusCode::UNAUTHORIZED,
        Mode::Accel | Mode::Forward => StatusCode::FOUND,
    }
}

/// Until when (unix seconds) nginx's optional auth cache (`nginx/snippets/media-auth-cached.conf`)
/// may reuse an allow: never beyond the token's expiry, never longer than
/// `accel.max_expires`, and never for IP-bound tokens, whose answer depends on the client
/// address that the cache key does not contain, nor for tokens with a use limit or a file
/// version.
fn auth_cache_until(token: &Token<'_>, accel: &AccelConfig, now: u64) -> Option<u64> {
    // A counted token's answer is a use: every request must reach the store. A version-bound
    // token's answer depends on the file, which may be replaced at any moment.
    if token.ip.is_some()
        || token.uses.is_some()
        || token.file_version.is_some()
        || accel.max_expires == 0
    {
        return None;
    }
    // nginx serves an entry while `valid_sec >= now`, but a token is expired at
    // `now >= expires`: the last second the cache may answer is `expires - 1`.
    let until = (token.expires - 1).min(now.saturating_add(accel.max_expires));
    (until > now).then_some(until)
}

/// `X-Accel-Expires: @<unix seconds>`, formatted without `core::fmt` (every cached allow).
fn accel_expires_at(until: u64) -> HeaderValue {
    let mut text = Vec::with_capacity(21);
    text.push(b'@');
    decimal::push(&mut text, until);
    // Only '@' and digits: always a valid header value. `Bytes` is taken over, not copied.
    HeaderValue::from_maybe_shared(Bytes::from(text)).unwrap_or(NO_CACHE)
}

/// The grant cookie, under `name`, when the allow grants one the request did not already
/// hold ([`GrantCookie::to_send`]). A value [`crate::cookie::set_cookie`] built is always a
/// valid header value; one that were not would only leave the cookie out.
fn insert_cookie(response: &mut Response<Body>, name: HeaderName, grant: Option<&GrantCookie>) {
    if let Some(value) = grant
        .and_then(GrantCookie::to_send)
        .and_then(|value| HeaderValue::from_str(value).ok())
    {
        response.headers_mut().insert(name, value);
    }
}

/// Headers nginx hands upstream (`auth_request_set`): fields of a verified token only.
fn grant_headers(response: &mut Response<Body>, token: Option<&Verified<'_>>, now: u64) {
    let Some(token) = token else {
        return;
    };
    let headers = response.headers_mut();
    // Token fields were validated as printable ASCII, so these conversions cannot fail; a
    // failure would only drop an informational header.
    if let Some(subject) = token.subject.and_then(|s| HeaderValue::from_str(s).ok()) {
        headers.insert(SUBJECT, subject);
    }
    if let Some(recipient) = token.recipient.and_then(|s| HeaderValue::from_str(s).ok()) {
        headers.insert(RECIPIENT, recipient);
    }
    if let Some(id) = token.token_id.and_then(|s| HeaderValue::from_str(s).ok()) {
        headers.insert(TOKEN_ID, id);
    }
    if let Some(data) = token.data {
        if let Ok(value) = HeaderValue::from_str(&URL_SAFE_NO_PAD.encode(data)) {
            headers.insert(DATA, value);
        }
    }
    headers.insert(
        EXPIRES_IN,
        HeaderValue::from(token.expires.saturating_sub(now)),
    );
}

fn accel_response(
    accel: &AccelConfig,
    canonical: &str,
    token: Option<&Verified<'_>>,
    grant: Option<&GrantCookie>,
    reusable: bool,
    now: u64,
) -> Response<Body> {
    let mut response = empty(StatusCode::OK);
    grant_headers(&mut response, token, now);
    let target = format!(
        "{}{}",
        accel.internal_prefix.trim_end_matches('/'),
        path::encode_path(canonical)
    );
    let headers = response.headers_mut();
    let Ok(target) = HeaderValue::from_str(&target) else {
        return deny(StatusCode::FORBIDDEN, Reason::BadPath);
    };
    headers.insert(ACCEL_REDIRECT, target);
    // nginx keeps Content-Disposition and Cache-Control of an X-Accel-Redirect answer for the
    // file it then serves (ngx_http_upstream_headers_in marks both "redirect").
    headers.insert(CACHE_CONTROL, cache_control(token));
    if let Some(value) = disposition_header(accel, canonical, token) {
        headers.insert(hyper::header::CONTENT_DISPOSITION, value);
    }
    if let Some(rate) = accel.limit_rate {
        headers.insert(ACCEL_LIMIT_RATE, HeaderValue::from(rate));
    }
    if let Some(buffering) = accel.buffering {
        headers.insert(
            ACCEL_BUFFERING,
            HeaderValue::from_static(if buffering { "yes" } else { "no" }),
        );
    }
    // nginx hands Set-Cookie of an X-Accel-Redirect answer on with the file it then serves
    // (ngx_http_upstream_headers_in marks it "redirect", as Cache-Control).
    insert_cookie(&mut response, SET_COOKIE, grant);
    // A cache in front may reuse the redirect answer: never past the token's life, and never
    // for an IP-bound token, whose answer depends on the client (the same rule as auth mode).
    cache_headers(&mut response, token, reusable, accel, now);
    response
}

/// `Cache-Control` of an allowed file: `private` (a browser may keep it, a shared cache
/// never: the URL holds a token), with the token's `max-age` when it has one.
fn cache_control(token: Option<&Verified<'_>>) -> HeaderValue {
    match token.and_then(|token| token.max_age) {
        Some(seconds) => {
            let mut text = b"private, max-age=".to_vec();
            decimal::push(&mut text, u64::from(seconds));
            // ASCII letters, digits, ',', ' ' and '=': always a valid header value.
            HeaderValue::from_maybe_shared(Bytes::from(text))
                .unwrap_or(HeaderValue::from_static("private"))
        }
        None => HeaderValue::from_static("private"),
    }
}

/// The `Content-Disposition` of an allowed file, if any. A token with a file name or a
/// disposition decides it (type: the token's, else the site's `accel.content_disposition`,
/// else `attachment`, since a name is mostly given for saving; name: the token's, else the
/// path's last segment); otherwise the site's `accel.content_disposition` alone.
fn disposition_header(
    accel: &AccelConfig,
    canonical: &str,
    token: Option<&Verified<'_>>,
) -> Option<HeaderValue> {
    let path_name = || canonical.rsplit('/').next().unwrap_or_default();
    let value = match token.filter(|token| token.filename.is_some() || token.disposition.is_some())
    {
        Some(token) => content_disposition_named(
            token
                .disposition
                .or(accel.content_disposition)
                .unwrap_or(Disposition::Attachment),
            token.filename.unwrap_or_else(path_name),
        ),
        None => content_disposition_named(accel.content_disposition?, path_name()),
    };
    // Built from attr-chars, percent escapes and the sanitised fallback only.
    HeaderValue::from_str(&value).ok()
}

/// `inline; filename="report.pdf"; filename*=UTF-8''r%C3%A9port.pdf` (RFC 6266) for the last
/// segment of a canonical path.
pub fn content_disposition(kind: Disposition, canonical: &str) -> String {
    content_disposition_named(kind, canonical.rsplit('/').next().unwrap_or_default())
}

/// `Content-Disposition` for the download name `name` (RFC 6266, RFC 8187): the exact UTF-8
/// name in `filename*`, every byte but letters, digits and `-._~` percent-encoded, and an
/// ASCII fallback in `filename="…"` for old clients, in which every character that is not
/// printable ASCII, and `"`, `\\`, `;` and `%`, becomes `_`. So no CR, LF, NUL, quote or `;`
/// of a name ever reaches the header as itself, whatever the name: quotes and backslashes
/// would end or escape the quoted string, `;` starts a parameter for parsers that ignore
/// quoting, and some clients percent-decode `filename` (RFC 6266 appendix D).
pub fn content_disposition_named(kind: Disposition, name: &str) -> String {
    let fallback: String = name
        .chars()
        .map(|c| match c {
            '"' | '\\' | ';' | '%' => '_',
            ' ' => ' ',
            c if c.is_ascii_graphic() => c,
            _ => '_',
        })
        .collect();
    format!(
        "{}; filename=\"{fallback}\"; filename*=UTF-8''{}",
        kind.as_str(),
        path::encode_component(name)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_disposition_has_ascii_fallback_and_utf8_name() {
        assert_eq!(
            content_disposition(Disposition::Attachment, "/media/ré\"port 1.pdf"),
            "attachment; filename=\"r__port 1.pdf\"; filename*=UTF-8''r%C3%A9%22port%201.pdf"
        );
    }

    #[test]
    fn hostile_names_never_reach_the_header_as_themselves() {
        assert_eq!(
            content_disposition_named(Disposition::Attachment, "Résumé 2026 \"final\".pdf"),
            "attachment; filename=\"R_sum_ 2026 _final_.pdf\"; \
             filename*=UTF-8''R%C3%A9sum%C3%A9%202026%20%22final%22.pdf"
        );
        assert_eq!(
            content_disposition_named(Disposition::Inline, "a\"; filename=\"evil.exe"),
            "inline; filename=\"a__ filename=_evil.exe\"; \
             filename*=UTF-8''a%22%3B%20filename%3D%22evil.exe"
        );
        assert_eq!(
            content_disposition_named(Disposition::Inline, "100%41\\x.pdf"),
            "inline; filename=\"100_41_x.pdf\"; filename*=UTF-8''100%2541%5Cx.pdf"
        );
        // Even a name the token format refuses (control characters) cannot break the line.
        let value = content_disposition_named(Disposition::Attachment, "a\r\nSet-Cookie: x\0");
        assert!(!value.bytes().any(|b| b.is_ascii_control()), "{value:?}");
        assert!(HeaderValue::from_str(&value).is_ok());
        for name in ["a\"b", "a;b", "a%b", "a\\b", "é\u{202e}"] {
            let value = content_disposition_named(Disposition::Inline, name);
            let fallback = value.split('"').nth(1).unwrap();
            assert!(
                !fallback.contains(['"', ';', '%', '\\']) && fallback.is_ascii(),
                "{value}"
            );
            assert_eq!(value.matches('"').count(), 2, "{value}");
            assert_eq!(value.matches(';').count(), 2, "{value}");
        }
    }

    #[test]
    fn accel_expires_is_an_absolute_time() {
        assert_eq!(accel_expires_at(0), "@0");
        assert_eq!(accel_expires_at(1_795_412_460), "@1795412460");
        assert_eq!(accel_expires_at(u64::MAX), format!("@{}", u64::MAX));
    }

    /// The exchange is a same-origin redirect in every mode (auth: the 401 protect.conf's
    /// handler turns into a 302), never cached; on a playback site a query token's allow is
    /// never cached either (the auth cache's key holds no Range), a path token's still is.
    #[test]
    fn an_exchange_redirects_uncached_and_a_query_allow_on_a_playback_site_is_not_cached() {
        use crate::gate::tests::{claims, config_with, signed};
        use crate::gate::{self, Authorization, MediaRequest};
        use crate::store::revoked::Revoked;
        use crate::token::{Purpose, TokenBuf};

        const NOW: u64 = 1_800_000_000;
        let config = config_with("", r#"playback_grant = "4h""#);
        let uri = format!("/media/clip/a.mp4?token={}", signed(&config, &claims()));
        let request = MediaRequest {
            uri: &uri,
            method: "GET",
            server_name: "media.example.org",
            client_ip: None,
            authorization: Authorization::Absent,
            cookie: gate::CookieHeader::Absent,
            purpose: Purpose::Download,
        };
        let decided = |ranged: bool, mode: Mode| {
            let mut buf = TokenBuf::new();
            let outcome = gate::decide(&config, &request, &mut buf, NOW, &Revoked::default());
            let outcome = gate::exchange(&config, outcome, &request, ranged, NOW);
            media_response(mode, &outcome, &config, NOW)
        };
        for (mode, status, accel_expires) in [
            (Mode::Auth, StatusCode::UNAUTHORIZED, Some("0")),
            (Mode::Accel, StatusCode::FOUND, Some("0")),
            (Mode::Forward, StatusCode::FOUND, None),
        ] {
            let response = decided(true, mode);
            assert_eq!(response.status(), status, "{mode:?}");
            let headers = response.headers();
            let location = headers[LOCATION].to_str().unwrap();
            assert!(
                location.starts_with("https://media.example.org/media/clip/~mg~"),
                "{location}"
            );
            assert_eq!(headers[CACHE_CONTROL], "no-store");
            assert_eq!(
                headers.get(ACCEL_EXPIRES).map(|v| v.to_str().unwrap()),
                accel_expires
            );
            assert!(headers.get(REASON).is_none());
        }
        for mode in [Mode::Auth, Mode::Accel] {
            let response = decided(false, mode);
            assert_eq!(response.headers()[ACCEL_EXPIRES], "0", "{mode:?}");
        }
        // The grant URL itself may be cached (until its expiry, capped by accel.max_expires).
        let grant = decided(true, Mode::Auth).headers()[LOCATION]
            .to_str()
            .unwrap()
            .strip_prefix("https://media.example.org")
            .unwrap()
            .to_owned();
        let request = MediaRequest {
            uri: &grant,
            ..request
        };
        let mut buf = TokenBuf::new();
        let outcome = gate::decide(&config, &request, &mut buf, NOW, &Revoked::default());
        let outcome = gate::exchange(&config, outcome, &request, true, NOW);
        let response = media_response(Mode::Auth, &outcome, &config, NOW);
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        let until = NOW + config.accel.max_expires;
        assert_eq!(response.headers()[ACCEL_EXPIRES], format!("@{until}"));
    }

    #[test]
    fn denials_are_never_cacheable_and_say_why() {
        let response = deny(StatusCode::FORBIDDEN, Reason::Expired);
        assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
        assert_eq!(response.headers()[REASON], "expired");
    }
}
