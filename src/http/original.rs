//! Reading the original request that nginx describes in `X-Original-*` headers.
//!
//! These headers are only believed from trusted peers (the caller checks). Each must occur
//! exactly once: a missing or duplicated header is a denial, never a guess.

use std::net::IpAddr;

use hyper::header::{HeaderMap, HeaderName};

use crate::gate::MediaRequest;
use crate::reason::Reason;

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
/// `X-Real-IP`: nginx `$remote_addr`.
pub const REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

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

/// Builds the media request from nginx's headers. `method` overrides `X-Original-Method`
/// in accel mode, where nginx proxies the original method itself.
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
    })
}
