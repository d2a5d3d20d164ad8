//! Reading the original request a front proxy describes: nginx in `X-Original-*` headers
//! (`/auth`, `/accel`), Caddy and Traefik in `X-Forwarded-*` headers (`/forward`).
//!
//! These headers are only believed from trusted peers (the caller checks). Each must occur
//! exactly once: a missing or duplicated header is a denial, never a guess. The client's
//! `Authorization` header (forwarded by the snippets, copied by Caddy, listed in Traefik's
//! `authRequestHeaders`) is passed on as found, and so is its `Cookie` header (forwarded by the
//! snippets; read only for a site's grant cookie); the gate judges both. Whatever the
//! proxy, the site is chosen by `X-Mediagate-Server-Name`, which the proxy's configuration
//! sets; `X-Forwarded-Host` (what the client typed) is never read.

use std::net::IpAddr;

use hyper::header::{HeaderMap, HeaderName, AUTHORIZATION, COOKIE};

use crate::gate::{Authorization, CookieHeader, MediaRequest};
use crate::reason::Reason;
use crate::token::Purpose;

/// `X-Original-URI`: nginx `$request_uri` (raw path and query).
pub const ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
/// `X-Original-Method`: nginx `$request_method` (the auth subrequest itself is always GET).
pub const ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
/// `X-Mediagate-Server-Name`: nginx `$server_name`, the `server { }` block that took the
/// request. It selects the site; it is configuration, unlike `$host`, which the client types.
pub const SERVER_NAME: HeaderName = HeaderName::from_static("x-mediagate-server-name");
/// `X-Mediagate-Approved-Path`: on the session domain, the media path nginx asked the
/// application about (`X-Media-Path`); the refresh mints for exactly this path.
pub const APPROVED_PATH: HeaderName = HeaderName::from_static("x-mediagate-approved-path");
/// `X-Mediagate-Purpose`: the purpose the protected location expects, `download` (also when
/// absent) or `api`. Set by the auth location in nginx's configuration (`media-auth.conf`'s
/// `/_mediagate/auth-api`, which `protect-api.conf` asks), never from the client: the auth
/// snippets forward none of the client's headers but those they name. Read in auth mode
/// only: `/accel` serves files, and forward-auth proxies copy the client's headers.
pub const PURPOSE: HeaderName = HeaderName::from_static("x-mediagate-purpose");
/// `X-Real-IP`: nginx `$remote_addr`.
/// `X-Original-Range`: the client's `Range` header, forwarded by the auth and accel snippets
/// (both send mediagate the request without the client's own headers). Only its presence is read: a
/// ranged request from a client that already made a use continues that use.
pub const ORIGINAL_RANGE: HeaderName = HeaderName::from_static("x-original-range");
/// `X-Original-Content-Length`: an upload's `Content-Length` as the client sent it (nginx's
/// `$http_content_length`; empty or absent when it sent none).
pub const ORIGINAL_CONTENT_LENGTH: HeaderName =
    HeaderName::from_static("x-original-content-length");
/// `X-Original-Content-Type`: an upload's `Content-Type` (nginx's `$http_content_type`).
pub const ORIGINAL_CONTENT_TYPE: HeaderName = HeaderName::from_static("x-original-content-type");
/// `X-Mediagate-Upload-Status`: nginx's `$status` for an upload whose reservation it settles.
pub const UPLOAD_STATUS: HeaderName = HeaderName::from_static("x-mediagate-upload-status");
/// See [`ORIGINAL_URI`].
pub const REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// `X-Forwarded-Uri`: the original request target (Caddy's `{http.request.uri}`, Traefik's
/// `req.URL.RequestURI()`).
pub const FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
/// `X-Forwarded-Method`: the original method (the auth request itself is always GET).
pub const FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
/// `X-Forwarded-For`: the client address, as the proxy set it from the TCP peer.
pub const FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The value of a header that must occur exactly once, as UTF-8.
pub fn single<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Result<&'h str, Reason> {
    let mut values = headers.get_all(name).iter();
    let value = values.next().ok_or(Reason::BadRequest)?;
    if values.next().is_some() {
        return Err(Reason::BadRequest);
    }
    // Not HeaderValue::to_str: nginx passes raw UTF-8 bytes of the request line through.
    std::str::from_utf8(value.as_bytes()).map_err(|_| Reason::BadRequest)
}

/// The value of a header that may be absent but not repeated.
pub fn optional<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Result<Option<&'h str>, Reason> {
    if headers.contains_key(name) {
        single(headers, name).map(Some)
    } else {
        Ok(None)
    }
}

/// The `Authorization` header: absent, one readable value, or unreadable (repeated, not
/// UTF-8). Not an error here: whether it matters depends on `token.sources`.
pub fn authorization(headers: &HeaderMap) -> Authorization<'_> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    match (values.next(), values.next()) {
        (None, _) => Authorization::Absent,
        (Some(value), None) => std::str::from_utf8(value.as_bytes())
            .map_or(Authorization::Unreadable, Authorization::One),
        (Some(_), Some(_)) => Authorization::Unreadable,
    }
}

/// The `Cookie` header: absent, one, or unreadable (repeated). Bytes, as received: only the
/// site's grant cookie is read from it, and only on a site with one.
pub fn cookie(headers: &HeaderMap) -> CookieHeader<'_> {
    let mut values = headers.get_all(COOKIE).iter();
    match (values.next(), values.next()) {
        (None, _) => CookieHeader::Absent,
        (Some(value), None) => CookieHeader::One(value.as_bytes()),
        (Some(_), Some(_)) => CookieHeader::Unreadable,
    }
}

/// The purpose the location expects ([`PURPOSE`]): absent or `download` is a download, `api`
/// an API call; anything else (another purpose, another spelling, a repeated header) is
/// `bad_request`: a location whose expectation cannot be read is refused, not guessed.
pub fn location_purpose(headers: &HeaderMap) -> Result<Purpose, Reason> {
    match optional(headers, &PURPOSE)? {
        None | Some("download") => Ok(Purpose::Download),
        Some("api") => Ok(Purpose::Api),
        Some(_) => Err(Reason::BadRequest),
    }
}

/// Builds the media request from nginx's headers. `method` overrides `X-Original-Method`
/// in accel mode, where nginx proxies the original method itself. The purpose is
/// [`Purpose::Download`]; `/auth` sets it from [`location_purpose`].
pub fn media_request<'h>(
    headers: &'h HeaderMap,
    method: Option<&'h str>,
) -> Result<MediaRequest<'h>, Reason> {
    let uri = single(headers, &ORIGINAL_URI)?;
    let method = match method {
        Some(method) => method,
        None => single(headers, &ORIGINAL_METHOD)?,
    };
    let server_name = single(headers, &SERVER_NAME)?;
    let client_ip = match single(headers, &REAL_IP)?.trim() {
        // nginx's $remote_addr on a Unix-socket listener: no address, so IP-bound tokens
        // fail closed with `ip`, everything else works.
        "unix:" => None,
        text => Some(text.parse::<IpAddr>().map_err(|_| Reason::BadRequest)?),
    };
    Ok(MediaRequest {
        uri,
        method,
        server_name,
        client_ip,
        authorization: authorization(headers),
        cookie: cookie(headers),
        purpose: Purpose::Download,
    })
}

/// Builds the media request from a `forward_auth` / ForwardAuth proxy's headers (`/forward`).
///
/// The client address is `X-Forwarded-For`, and it must hold exactly one address: Caddy
/// (without `trusted_proxies`) and Traefik (without `trustForwardHeader`) set it to the TCP
/// peer themselves, replacing whatever the client sent. A chain (`a, b`) means the proxy
/// appended to a list the client or an earlier hop wrote, and no element of it can be
/// told apart from a forgery here: it is refused (`bad_request`), never picked from.
/// `X-Real-IP` is not read: neither proxy's auth request sets it itself (Traefik copies the
/// client's along).
pub fn forwarded_request(headers: &HeaderMap) -> Result<MediaRequest<'_>, Reason> {
    let uri = single(headers, &FORWARDED_URI)?;
    let method = single(headers, &FORWARDED_METHOD)?;
    let server_name = single(headers, &SERVER_NAME)?;
    let client = single(headers, &FORWARDED_FOR)?.trim();
    if client.contains(',') {
        return Err(Reason::BadRequest);
    }
    let client_ip = client.parse::<IpAddr>().map_err(|_| Reason::BadRequest)?;
    Ok(MediaRequest {
        uri,
        method,
        server_name,
        client_ip: Some(client_ip),
        authorization: authorization(headers),
        cookie: cookie(headers),
        purpose: Purpose::Download,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    const TRAEFIK: &[(&str, &str)] = &[
        ("x-forwarded-method", "GET"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "other.example.org"),
        ("x-forwarded-uri", "/media/a.pdf?token=x"),
        ("x-forwarded-for", "203.0.113.7"),
        ("x-mediagate-server-name", "media.example.org"),
    ];

    #[test]
    fn forwarded_headers_describe_the_request_and_the_host_is_never_read() {
        let map = headers(TRAEFIK);
        let request = forwarded_request(&map).unwrap();
        assert_eq!(request.uri, "/media/a.pdf?token=x");
        assert_eq!(request.method, "GET");
        assert_eq!(request.server_name, "media.example.org");
        assert_eq!(request.client_ip, Some("203.0.113.7".parse().unwrap()));
    }

    #[test]
    fn forwarded_for_chains_and_missing_or_repeated_headers_are_refused() {
        let without = |name: &str| {
            headers(
                &TRAEFIK
                    .iter()
                    .copied()
                    .filter(|(n, _)| *n != name)
                    .collect::<Vec<_>>(),
            )
        };
        for name in [
            "x-forwarded-method",
            "x-forwarded-uri",
            "x-forwarded-for",
            "x-mediagate-server-name",
        ] {
            assert_eq!(
                forwarded_request(&without(name)).err(),
                Some(Reason::BadRequest),
                "{name} missing"
            );
            let mut twice = headers(TRAEFIK);
            twice.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_static("x"),
            );
            assert_eq!(
                forwarded_request(&twice).err(),
                Some(Reason::BadRequest),
                "{name} twice"
            );
        }
        for chain in [
            "198.51.100.1, 203.0.113.7",
            "203.0.113.7,",
            "unix:",
            "",
            "me",
        ] {
            let mut map = without("x-forwarded-for");
            map.append("x-forwarded-for", HeaderValue::from_str(chain).unwrap());
            assert_eq!(
                forwarded_request(&map).err(),
                Some(Reason::BadRequest),
                "{chain:?}"
            );
        }
    }
}
