//! Routing and request handlers. Each handler extracts what it needs, calls the pure core
//! (`gate`, `refresh`, `mint`) and hands the outcome to `decision` for the response.

use std::sync::atomic::Ordering;
use std::time::Instant;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{
    HeaderName, HeaderValue, ACCEPT, ALLOW, AUTHORIZATION, CONTENT_TYPE, RANGE, USER_AGENT,
};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use subtle::ConstantTimeEq;

use super::original::{self, APPROVED_PATH, ORIGINAL_URI, SERVER_NAME};
use super::{admin, state, App, Role};
use crate::audit;
use crate::clock;
use crate::config::{Config, Site};
use crate::decision::{self, Body, Mode};
use crate::files::{self, FileError};
use crate::gate::{self, MediaRequest, Outcome};
use crate::keys::Secret;
use crate::metrics::Verdict;
use crate::mint::{mint, MintInput};
use crate::pages::Format;
use crate::reason::Reason;
use crate::refresh::{self, Grant};
use crate::store::Settled;
use crate::token::TokenBuf;
use crate::upload::{self, UploadOutcome, UploadRequest};

/// `X-Mediagate-Secret`: set by the session-domain nginx on /refresh.
pub const SECRET: HeaderName = HeaderName::from_static("x-mediagate-secret");
/// Application grant headers forwarded by the session-domain nginx.
pub const GRANT_TTL: HeaderName = HeaderName::from_static("x-mediagate-grant-ttl");
/// See [`GRANT_TTL`].
pub const GRANT_PREFIX: HeaderName = HeaderName::from_static("x-mediagate-grant-prefix");
/// See [`GRANT_TTL`].
pub const GRANT_SUBJECT: HeaderName = HeaderName::from_static("x-mediagate-grant-subject");

/// Largest accepted /mint body.
const MAX_MINT_BODY: usize = 16 * 1024;

/// Dispatches one request, decided with `config`: the one snapshot of the configuration
/// this request sees (see [`App::config`]).
pub async fn handle(
    app: &App,
    config: &Config,
    role: Role,
    trusted: bool,
    request: Request<Incoming>,
) -> Response<Body> {
    let path = request.uri().path();
    match (role, path) {
        (_, "/healthz") => decision::text_response(StatusCode::OK, "ok\n".into()),
        (_, "/readyz") => readyz(app),
        (Role::Verify, "/auth") => media(app, config, Mode::Auth, trusted, &request).await,
        (Role::Verify, "/accel") => media(app, config, Mode::Accel, trusted, &request).await,
        (Role::Verify, "/forward") => media(app, config, Mode::Forward, trusted, &request).await,
        (Role::Verify, "/denied") => denied_endpoint(config, trusted, &request),
        (Role::Verify, "/upload") => upload_endpoint(app, config, trusted, &request).await,
        (Role::Verify, "/settle") => settle_endpoint(app, config, trusted, &request).await,
        (Role::Internal, "/refresh") => refresh_endpoint(app, config, trusted, &request),
        (Role::Internal, "/login") => login_endpoint(config, trusted, &request),
        (Role::Internal, "/refused") => refused_endpoint(config, trusted, &request),
        (Role::Internal, "/mint") => mint_endpoint(app, config, request).await,
        (Role::Internal, "/revoke") => admin::revoke(app, config, request).await,
        (Role::Internal, "/revocations") => admin::revocations(app, config, &request).await,
        (Role::Internal, "/uses") => admin::uses(app, config, &request).await,
        (Role::Internal, "/metrics") => {
            let mut response = decision::text_response(StatusCode::OK, app.metrics.render());
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
            );
            response
        }
        _ => decision::text_response(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}

fn readyz(app: &App) -> Response<Body> {
    if !app.ready.load(Ordering::Relaxed) {
        decision::text_response(StatusCode::SERVICE_UNAVAILABLE, "draining\n".into())
    } else if app.state.revocations_pending() {
        decision::text_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "revocations not loaded yet (store unavailable)\n".into(),
        )
    } else {
        decision::text_response(StatusCode::OK, "ready\n".into())
    }
}

/// `/auth`, `/accel` and `/forward`: one media decision, the same `gate::decide` for all.
async fn media(
    app: &App,
    config: &Config,
    mode: Mode,
    trusted: bool,
    request: &Request<Incoming>,
) -> Response<Body> {
    if mode == Mode::Accel && !matches!(*request.method(), Method::GET | Method::HEAD) {
        let mut response = decision::text_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "405 method not allowed\n".into(),
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    // What mediagate adds to each protected request, from having the request to having the
    // response: two clock reads and two atomic adds, nothing on the network side. The 405
    // above is no decision and is not timed, so per mode the histogram's `_count` equals
    // the sum of `mediagate_decisions_total`.
    let started = Instant::now();
    let response = decide_media(app, config, mode, trusted, request).await;
    app.metrics.media_latency(mode, started.elapsed());
    response
}

/// The decision behind [`media`], counted and audited.
async fn decide_media(
    app: &App,
    config: &Config,
    mode: Mode,
    trusted: bool,
    request: &Request<Incoming>,
) -> Response<Body> {
    let headers = request.headers();
    let extracted = if !trusted {
        Err(Reason::UntrustedPeer)
    } else if mode == Mode::Forward {
        original::forwarded_request(headers)
    } else if mode == Mode::Auth {
        original::media_request(headers, None).and_then(|media| {
            Ok(MediaRequest {
                purpose: original::location_purpose(headers)?,
                ..media
            })
        })
    } else {
        original::media_request(headers, Some(request.method().as_str()))
    };
    let media_request = match extracted {
        Ok(media_request) => media_request,
        Err(reason) => {
            app.metrics.media(mode, Verdict::Deny, Some(reason));
            audit_early(config, mode, headers, reason);
            return media_denial(mode, headers, reason, None);
        }
    };
    // The snippets send their subrequest or proxied request without the client's headers
    // and forward the range as X-Original-Range; Caddy and Traefik copy the client's own.
    // Only its presence counts (a repeated or unreadable one is none).
    let ranged = match mode {
        Mode::Auth | Mode::Accel => original::optional(headers, &original::ORIGINAL_RANGE),
        Mode::Forward => original::optional(headers, &RANGE),
    }
    .is_ok_and(|range| range.is_some_and(|range| !range.is_empty()));
    let now = clock::now();
    let mut buf = TokenBuf::new();
    let outcome = {
        let revoked = app.state.revoked();
        gate::decide(config, &media_request, &mut buf, now, &revoked)
    };
    // A link bound to a file version is checked against the file after it verified, and
    // before a use is counted: a refused request never spends one.
    let outcome = match file_unchanged(app, &outcome).await {
        Ok(()) => outcome,
        Err(reason) => Outcome::Deny {
            reason,
            site: outcome.site(),
        },
    };
    // Only a token with a use limit waits for the store; every other answer is decided.
    let outcome = match outcome {
        // Until the revocations have been read once (Redis down since start-up), no token
        // is known not to be revoked: fail closed.
        Outcome::Allow {
            token: Some(_),
            site,
            ..
        } if app.state.revocations_pending() => Outcome::Deny {
            reason: Reason::StoreUnavailable,
            site: Some(site),
        },
        Outcome::Allow {
            token: Some(ref token),
            site,
            ..
        } if token.uses.is_some() => {
            let user_agent = original::optional(headers, &USER_AGENT).ok().flatten();
            let counted = state::count_use(
                app,
                config,
                token,
                state::Use {
                    method: media_request.method,
                    ranged,
                    client: media_request.client_ip,
                    user_agent,
                },
                now,
            )
            .await;
            match counted {
                Ok(()) => outcome,
                Err(reason) => Outcome::Deny {
                    reason,
                    site: Some(site),
                },
            }
        }
        outcome => outcome,
    };
    // Last, on what is still an allow: a changed file, a store that is not ready or a used-up
    // link is refused, never exchanged for a grant. Not behind a forward-auth proxy: it
    // serves the path as the client sent it, so a link in path form names no file there.
    let outcome = if mode == Mode::Forward {
        outcome
    } else {
        gate::exchange(config, outcome, &media_request, ranged, now)
    };
    let response = match outcome {
        Outcome::Deny { reason, site } => media_denial(mode, headers, reason, site),
        _ => decision::media_response(mode, &outcome, config, now),
    };
    let verdict = match outcome {
        Outcome::Allow { .. } => Verdict::Allow,
        Outcome::Refresh { .. } => Verdict::Refresh,
        Outcome::Exchange { .. } => Verdict::Exchange,
        Outcome::Challenge { .. } | Outcome::Deny { .. } => Verdict::Deny,
    };
    app.metrics.media(mode, verdict, outcome.reason());
    if config.log.audit {
        audit_media(
            mode,
            &media_request,
            headers,
            &outcome,
            verdict,
            response.status(),
        );
    }
    response
}

/// For an allowed token bound to a file version: is the file under the site's `files_root`
/// still that version? The `stat` runs on the blocking pool, so a slow disk never stalls
/// the runtime's threads; tokens without the field never get here. Everything that is not
/// the same version (replaced, touched, gone, a link out of the root, no `files_root`, an
/// unreadable file) is `file_changed`: fail closed.
async fn file_unchanged(app: &App, outcome: &Outcome<'_>) -> Result<(), Reason> {
    let Outcome::Allow {
        token: Some(token),
        site,
        path,
        ..
    } = outcome
    else {
        return Ok(());
    };
    let Some(expected) = token.file_version else {
        return Ok(());
    };
    let Some(root) = site.files_root.clone() else {
        if let Some(unlogged) = app.file_errors.note(Instant::now()) {
            tracing::warn!(site = %site.id, not_logged = unlogged, "link bound to a file version refused: the site has no files_root");
        }
        return Err(Reason::FileChanged);
    };
    let canonical = path.clone().into_owned();
    let found = tokio::task::spawn_blocking(move || files::version_of(&root, &canonical)).await;
    match found {
        Ok(Ok(version)) if version == expected => Ok(()),
        Ok(Ok(_) | Err(FileError::NotFound | FileError::NotAFile | FileError::OutsideRoot)) => {
            Err(Reason::FileChanged)
        }
        Ok(Err(FileError::Io(error))) => {
            if let Some(unlogged) = app.file_errors.note(Instant::now()) {
                // The kind only: the path is in the audit line, the token nowhere.
                tracing::warn!(site = %site.id, error = %error.kind(), not_logged = unlogged, "link bound to a file version refused: cannot read the file's metadata");
            }
            Err(Reason::FileChanged)
        }
        Err(_) => Err(Reason::FileChanged),
    }
}

/// `/upload`: nginx's `auth_request` for an upload slot, before it reads the body. 204 with
/// the grant headers and the settle handle (`X-Mediagate-Reservation`) when allowed and a use
/// is reserved; otherwise 403 with `X-Mediagate-Reason`, whatever the reason: `auth_request`
/// turns any other status into a 500, so `upload.conf` maps the reason to the client's status
/// (413 `too_large`, 411 `length_required`, 415 `content_type`, 503 `store_unavailable`).
async fn upload_endpoint(
    app: &App,
    config: &Config,
    trusted: bool,
    request: &Request<Incoming>,
) -> Response<Body> {
    let headers = request.headers();
    let extracted = if trusted {
        original::media_request(headers, None).and_then(|media| {
            Ok(UploadRequest {
                media,
                content_length: original::optional(headers, &original::ORIGINAL_CONTENT_LENGTH)?,
                content_type: original::optional(headers, &original::ORIGINAL_CONTENT_TYPE)?,
            })
        })
    } else {
        Err(Reason::UntrustedPeer)
    };
    let upload_request = match extracted {
        Ok(upload_request) => upload_request,
        Err(reason) => {
            audit_upload(config, None, None, Some(reason));
            return decision::deny(StatusCode::FORBIDDEN, reason);
        }
    };
    let now = clock::now();
    let mut buf = TokenBuf::new();
    let outcome = {
        let revoked = app.state.revoked();
        upload::decide_upload(config, &upload_request, &mut buf, now, &revoked)
    };
    let token = match outcome {
        UploadOutcome::Allow { .. } if app.state.revocations_pending() => {
            let reason = Reason::StoreUnavailable;
            audit_upload(config, Some(&upload_request), None, Some(reason));
            return decision::deny(StatusCode::FORBIDDEN, reason);
        }
        UploadOutcome::Allow { token, .. } => token,
        UploadOutcome::Deny { reason, .. } => {
            audit_upload(config, Some(&upload_request), None, Some(reason));
            return decision::deny(StatusCode::FORBIDDEN, reason);
        }
    };
    let user_agent = original::optional(headers, &USER_AGENT).ok().flatten();
    let client = upload_request.media.client_ip;
    match state::reserve_upload(app, config, &token, client, user_agent, now).await {
        Ok(reservation) => {
            audit_upload(config, Some(&upload_request), Some(&token), None);
            let handle = reservation.as_ref().map(upload::Reservation::handle);
            decision::upload_allowed(&token, handle.as_deref(), now)
        }
        Err(reason) => {
            audit_upload(config, Some(&upload_request), Some(&token), Some(reason));
            decision::deny(StatusCode::FORBIDDEN, reason)
        }
    }
}

/// `/settle`: nginx reports how an upload ended (`post_action` in `upload.conf`, after the
/// response went to the client): `X-Mediagate-Reservation` (the handle `/upload` gave) and
/// `X-Mediagate-Upload-Status` (`$status`). 204 once settled, 400 `bad_request` for a missing
/// or unreadable handle or status, 503 when the store did not answer (the reservation then
/// lapses with its lease, see `docs/operations.md`).
async fn settle_endpoint(
    app: &App,
    config: &Config,
    trusted: bool,
    request: &Request<Incoming>,
) -> Response<Body> {
    if !trusted {
        return decision::deny(StatusCode::FORBIDDEN, Reason::UntrustedPeer);
    }
    let headers = request.headers();
    let reservation = original::single(headers, &decision::RESERVATION)
        .ok()
        .and_then(upload::Reservation::parse);
    let status = original::single(headers, &original::UPLOAD_STATUS)
        .ok()
        .and_then(upload::parse_status);
    let (Some(reservation), Some(status)) = (reservation, status) else {
        tracing::warn!("upload settle refused: missing or unreadable reservation or status");
        return decision::deny(StatusCode::BAD_REQUEST, Reason::BadRequest);
    };
    let client = original::optional(headers, &original::REAL_IP)
        .ok()
        .flatten()
        .and_then(|text| text.trim().parse().ok());
    let user_agent = original::optional(headers, &USER_AGENT).ok().flatten();
    let token_id = reservation.key.token_id.clone();
    let settled = state::settle_upload(
        app,
        config,
        reservation,
        status,
        client,
        user_agent,
        clock::now(),
    )
    .await;
    match settled {
        Ok(settled) => {
            let outcome = match settled {
                Settled::Committed => "committed",
                Settled::Released => "released",
                // A commit after the lease lapsed still counts; a release then changes nothing.
                Settled::Unknown if upload::commits(status) => "committed late",
                Settled::Unknown => "already free",
            };
            tracing::info!(%token_id, status, outcome, "upload settled");
            decision::empty(StatusCode::NO_CONTENT)
        }
        Err(error) => {
            tracing::warn!(%error, %token_id, status, "upload not settled: the store did not answer; the reservation lapses with its lease");
            decision::deny(StatusCode::SERVICE_UNAVAILABLE, Reason::StoreUnavailable)
        }
    }
}

/// Audit line for an upload decision (never the query: that is where the token is).
fn audit_upload(
    config: &Config,
    request: Option<&UploadRequest<'_>>,
    token: Option<&crate::token::Verified<'_>>,
    reason: Option<Reason>,
) {
    if !config.log.audit {
        return;
    }
    audit::emit(|line| {
        line.str("mode", Some("upload"))
            .str(
                "decision",
                Some(if reason.is_some() { "deny" } else { "allow" }),
            )
            .str("reason", reason.map(Reason::as_str))
            .num(
                "status",
                match reason {
                    None => 204,
                    Some(_) => 403,
                },
            )
            .str("method", request.map(|r| r.media.method))
            .str(
                "path",
                request
                    .map(|r| crate::path::logged_path(r.media.uri))
                    .as_deref(),
            )
            .str("content_length", request.and_then(|r| r.content_length))
            .str("token_id", token.and_then(|t| t.token_id))
            .str("subject", token.and_then(|t| t.subject))
            .ip("client_ip", request.and_then(|r| r.media.client_ip));
    });
}

/// A media denial: in auth mode nginx discards the body (its `error_page` asks
/// [`denied_endpoint`]), so the short built-in text; in accel and forward mode the client sees
/// this response, so the page for its `Accept` and the site's overrides.
fn media_denial(
    mode: Mode,
    headers: &hyper::HeaderMap,
    reason: Reason,
    site: Option<&Site>,
) -> Response<Body> {
    // A store outage is no verdict on the token: 503, so clients and monitors retry.
    let status = match reason {
        Reason::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::FORBIDDEN,
    };
    match mode {
        Mode::Auth => decision::deny(status, reason),
        Mode::Accel | Mode::Forward => decision::denial_page(
            status,
            Some(reason),
            accept_format(headers),
            site.and_then(|site| site.pages.as_ref()),
        ),
    }
}

/// The page format the client asked for with `Accept` (one header; several mean text).
fn accept_format(headers: &hyper::HeaderMap) -> Format {
    Format::from_accept(
        original::optional(headers, &ACCEPT)
            .ok()
            .flatten()
            .map(str::as_bytes),
    )
}

/// `/denied`: the page for a 403 nginx is about to show (the snippets' `error_page 403
/// @mediagate_denied`). The reason comes from `/auth`'s answer via `auth_request_set` and is
/// only looked up in the reason vocabulary; empty or unknown (a 403 nginx made itself) gives
/// the generic page. The site, for its overrides, is nginx's `$server_name`. Always 403.
fn denied_endpoint(config: &Config, trusted: bool, request: &Request<Incoming>) -> Response<Body> {
    if !trusted {
        return decision::deny(StatusCode::FORBIDDEN, Reason::UntrustedPeer);
    }
    let headers = request.headers();
    let reason = original::optional(headers, &decision::REASON)
        .ok()
        .flatten()
        .and_then(Reason::from_wire);
    let site = original::optional(headers, &SERVER_NAME)
        .ok()
        .flatten()
        .and_then(|name| config.site_for_host(name));
    decision::denial_page(
        StatusCode::FORBIDDEN,
        reason,
        accept_format(headers),
        site.and_then(|site| site.pages.as_ref()),
    )
}

/// A denial on the session side (`/refresh`, `/login`, `/refused`): the page for the
/// client's `Accept` (forwarded by `session-refresh.conf`), with the overrides of the first
/// site refreshing through this session server.
fn session_denial(
    config: &Config,
    request: &Request<Incoming>,
    status: StatusCode,
    reason: Option<Reason>,
) -> Response<Body> {
    let headers = request.headers();
    let server_name = original::single(headers, &SERVER_NAME).ok();
    let site = config.sites.iter().find(|site| {
        site.refresh.as_ref().is_some_and(|refresh| {
            server_name.is_some_and(|name| refresh.session_host.eq_ignore_ascii_case(name))
        })
    });
    decision::denial_page(
        status,
        reason,
        accept_format(headers),
        site.and_then(|site| site.pages.as_ref()),
    )
}

/// `/refresh`: mint for a path the application approved, redirect back to the media domain.
fn refresh_endpoint(
    app: &App,
    config: &Config,
    trusted: bool,
    request: &Request<Incoming>,
) -> Response<Body> {
    let mut logged = RefreshLog::default();
    let result = refresh_location(config, trusted, request, &mut logged);
    app.metrics
        .refresh(result.as_ref().map(|_| ()).map_err(|reason| *reason));
    let (status, reason) = match &result {
        Ok(_) => (StatusCode::FOUND, None),
        Err(reason) => (StatusCode::FORBIDDEN, Some(*reason)),
    };
    if config.log.audit {
        audit::emit(|line| {
            line.str("endpoint", Some("refresh"))
                .str(
                    "decision",
                    Some(if reason.is_some() { "deny" } else { "minted" }),
                )
                .str("reason", reason.map(Reason::as_str))
                .num("status", status.as_u16().into())
                .str("site", logged.site)
                .str("path", logged.path.as_deref());
        });
    }
    match result {
        Ok(location) => decision::redirect(status, &location, None),
        Err(reason) => session_denial(config, request, status, Some(reason)),
    }
}

/// What a refresh audit line names: the site and the media path once they are known (the
/// refresh URL's own path and its `state` are never logged).
#[derive(Default)]
struct RefreshLog<'c> {
    site: Option<&'c str>,
    path: Option<String>,
}

fn refresh_location<'c>(
    config: &'c Config,
    trusted: bool,
    request: &Request<Incoming>,
    logged: &mut RefreshLog<'c>,
) -> Result<String, Reason> {
    let headers = request.headers();
    // Both the peer and the secret: a process that can reach the internal listener still
    // cannot mint without the secret only the session-domain nginx holds.
    if !trusted || !secret_matches(config, original::optional(headers, &SECRET)?) {
        return Err(Reason::UntrustedPeer);
    }
    let uri = original::single(headers, &ORIGINAL_URI)?;
    let server_name = original::single(headers, &SERVER_NAME)?;
    let approved = original::single(headers, &APPROVED_PATH)?;
    let now = clock::now();
    let target = refresh::check_target(config, server_name, uri, now)?;
    logged.site = Some(&target.site.id);
    logged.path = Some(target.path.clone());
    let grant = Grant {
        ttl: original::optional(headers, &GRANT_TTL)?,
        prefix: original::optional(headers, &GRANT_PREFIX)?,
        subject: original::optional(headers, &GRANT_SUBJECT)?,
    };
    refresh::approve(config, &target, approved, grant, now)
}

/// `/login`: the application said "not logged in"; send the user to its login page with the
/// refresh URL as the way back.
fn login_endpoint(config: &Config, trusted: bool, request: &Request<Incoming>) -> Response<Body> {
    match login_location(config, trusted, request) {
        Ok(Some(location)) => decision::redirect(StatusCode::FOUND, &location, None),
        // The site has no login_url: the application's "not logged in" stands as a 401.
        Ok(None) => session_denial(
            config,
            request,
            StatusCode::UNAUTHORIZED,
            Some(Reason::MissingToken),
        ),
        Err(reason) => session_denial(config, request, StatusCode::FORBIDDEN, Some(reason)),
    }
}

/// `/refused`: the page for the application's 403 on a refresh (a logged-in user who may not
/// see the file), which `session-refresh.conf` sends here instead of nginx's bare page. It
/// has no reason: the refusal is the application's, and says nothing about the link.
fn refused_endpoint(config: &Config, trusted: bool, request: &Request<Incoming>) -> Response<Body> {
    if !trusted {
        return decision::deny(StatusCode::FORBIDDEN, Reason::UntrustedPeer);
    }
    session_denial(config, request, StatusCode::FORBIDDEN, None)
}

fn login_location(
    config: &Config,
    trusted: bool,
    request: &Request<Incoming>,
) -> Result<Option<String>, Reason> {
    if !trusted {
        return Err(Reason::UntrustedPeer);
    }
    let uri = original::single(request.headers(), &ORIGINAL_URI)?;
    let server_name = original::single(request.headers(), &SERVER_NAME)?;
    let now = clock::now();
    let target = refresh::check_target(config, server_name, uri, now)?;
    refresh::login_location(config, &target, now)
}

fn secret_matches(config: &Config, presented: Option<&str>) -> bool {
    let (Some(expected), Some(presented)) = (&config.internal_secret, presented) else {
        return false;
    };
    let Ok(presented) = Secret::from_base64(presented) else {
        return false;
    };
    bool::from(expected.expose().ct_eq(presented.expose()))
}

/// True when the request carries `Authorization: Bearer <internal secret>` (compared in
/// constant time).
pub(super) fn authorized(config: &Config, headers: &hyper::HeaderMap) -> bool {
    let bearer = original::optional(headers, &AUTHORIZATION)
        .ok()
        .flatten()
        .and_then(|value| value.strip_prefix("Bearer "));
    secret_matches(config, bearer)
}

#[derive(Debug, Serialize)]
struct MintResponse {
    url: String,
    path_and_query: String,
    token: String,
    path: String,
    expires: u64,
    /// The token id (given or generated); absent for a token without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    token_id: Option<String>,
    /// Issued-at of a version 2 token.
    #[serde(skip_serializing_if = "Option::is_none")]
    issued_at: Option<u64>,
    /// The file version a bound link carries (16 hex digits).
    #[serde(skip_serializing_if = "Option::is_none")]
    file_version: Option<String>,
}

/// `POST /mint`: JSON in, signed URL out. Requires `Authorization: Bearer <internal secret>`.
async fn mint_endpoint(app: &App, config: &Config, request: Request<Incoming>) -> Response<Body> {
    if request.method() != Method::POST {
        let mut response = json_error(StatusCode::METHOD_NOT_ALLOWED, "use POST");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    if !authorized(config, request.headers()) {
        return json_error(StatusCode::UNAUTHORIZED, "missing or wrong bearer secret");
    }
    let bytes = match Limited::new(request.into_body(), MAX_MINT_BODY)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return json_error(StatusCode::PAYLOAD_TOO_LARGE, "body larger than 16 KiB"),
    };
    let body: MintInput = match serde_json::from_slice(&bytes) {
        Ok(body) => body,
        Err(error) => return json_error(StatusCode::BAD_REQUEST, &format!("bad JSON: {error}")),
    };
    match mint_from_body(config, body).await {
        Ok(response) => {
            app.metrics.minted_api();
            if config.log.audit {
                audit::emit(|line| {
                    line.str("endpoint", Some("mint"))
                        .str("path", Some(&response.path))
                        .num("expires", response.expires);
                });
            }
            let json = serde_json::to_string(&response).unwrap_or_default();
            json_response(StatusCode::OK, json)
        }
        Err(message) => json_error(StatusCode::BAD_REQUEST, &message),
    }
}

/// The JSON body goes through the same front end as `mediagate sign`'s flags. A link bound
/// to its file's version reads the file's metadata on the blocking pool.
async fn mint_from_body(config: &Config, body: MintInput) -> Result<MintResponse, String> {
    let (mut request, site) = body.resolve(config).map_err(|error| error.to_string())?;
    if body.bind_version {
        // resolve() refused a site without a root already; this only keeps it typed.
        let root = site
            .and_then(|site| site.files_root.clone())
            .ok_or("no files_root")?;
        let asked = request.clone();
        let version =
            tokio::task::spawn_blocking(move || crate::mint::resolve_file_version(&root, &asked))
                .await
                .map_err(|_| "the file's metadata could not be read".to_owned())?
                .map_err(|error| error.to_string())?;
        request.file_version = Some(version);
    }
    let minted = mint(config, &request, clock::now()).map_err(|error| error.to_string())?;
    let origin = site.map_or("", |site| site.media_origin.as_str());
    Ok(MintResponse {
        url: format!("{origin}{}", minted.path_and_query),
        path_and_query: minted.path_and_query,
        token: minted.token,
        path: minted.path,
        expires: minted.expires,
        token_id: minted.token_id,
        issued_at: minted.issued_at,
        file_version: request.file_version.map(|version| version.to_string()),
    })
}

pub(super) fn json_response(status: StatusCode, json: String) -> Response<Body> {
    let mut response = decision::text_response(status, json);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

pub(super) fn json_error(status: StatusCode, message: &str) -> Response<Body> {
    json_response(status, serde_json::json!({ "error": message }).to_string())
}

fn audit_media(
    mode: Mode,
    request: &MediaRequest<'_>,
    headers: &hyper::HeaderMap,
    outcome: &Outcome<'_>,
    verdict: Verdict,
    status: StatusCode,
) {
    let (token_id, subject) = match outcome {
        Outcome::Allow {
            token: Some(token), ..
        }
        | Outcome::Exchange { token, .. } => (token.token_id, token.subject),
        _ => (None, None),
    };
    audit::emit(|line| {
        line.str("mode", Some(mode.as_str()))
            .str("decision", Some(verdict.as_str()))
            .str("reason", outcome.reason().map(Reason::as_str))
            .num("status", status.as_u16().into())
            .str("site", outcome.site().map(|site| site.id.as_str()))
            .str("method", Some(request.method))
            .str("server_name", Some(request.server_name))
            // Never the query, nor a path segment carrying a token.
            .str("path", Some(&crate::path::logged_path(request.uri)))
            .str("token_id", token_id)
            .str("subject", subject)
            .ip("client_ip", request.client_ip)
            .bytes(
                "user_agent",
                headers.get(USER_AGENT).map(HeaderValue::as_bytes),
            );
    });
}

/// Audit line for requests refused before a media request could be read.
fn audit_early(config: &Config, mode: Mode, headers: &hyper::HeaderMap, reason: Reason) {
    if config.log.audit {
        let uri_header = match mode {
            Mode::Forward => &original::FORWARDED_URI,
            Mode::Auth | Mode::Accel => &ORIGINAL_URI,
        };
        let path = original::single(headers, uri_header)
            .map(crate::path::logged_path)
            .ok();
        audit::emit(|line| {
            line.str("mode", Some(mode.as_str()))
                .str("decision", Some("deny"))
                .str("reason", Some(reason.as_str()))
                .num("status", 403)
                .str("path", path.as_deref());
        });
    }
}
