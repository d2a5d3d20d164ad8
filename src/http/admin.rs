//! The internal listener's state endpoints, for operators and the CLI (which cannot open the
//! embedded database a running server holds): `POST /revoke`, `GET /revocations` and
//! `GET /uses?token_id=…[&kid=…]`. Each requires `Authorization: Bearer <internal secret>`
//! and answers JSON.

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW};
use hyper::{Method, Request, Response, StatusCode};

use super::routes::{authorized, json_error, json_response};
use super::App;
use crate::audit;
use crate::clock;
use crate::config::Config;
use crate::decision::Body;
use crate::store::revoke::RevokeInput;
use crate::store::{StoreError, UseKey};

/// Largest accepted /revoke body.
const MAX_REVOKE_BODY: usize = 4 * 1024;

/// `POST /revoke`: stores a revocation and puts it in force on this server at once (other
/// servers sharing the store within `store.revocation_poll`).
pub async fn revoke(app: &App, config: &Config, request: Request<Incoming>) -> Response<Body> {
    if let Some(refusal) = gate(config, &request, &Method::POST) {
        return refusal;
    }
    let bytes = match Limited::new(request.into_body(), MAX_REVOKE_BODY)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return json_error(StatusCode::PAYLOAD_TOO_LARGE, "body larger than 4 KiB"),
    };
    let input: RevokeInput = match serde_json::from_slice(&bytes) {
        Ok(input) => input,
        Err(error) => return json_error(StatusCode::BAD_REQUEST, &format!("bad JSON: {error}")),
    };
    let entry = match input.resolve(config, clock::now()) {
        Ok(entry) => entry,
        Err(message) => return json_error(StatusCode::BAD_REQUEST, &message),
    };
    let stored = async {
        let store = app.state.require()?;
        store.revoke(entry.clone()).await?;
        app.state.refresh_revocations().await
    };
    if let Err(error) = stored.await {
        return unavailable(&error);
    }
    if config.log.audit {
        audit::emit(|line| {
            line.str("endpoint", Some("revoke"))
                .str("revocation", Some(&describe(&entry.revocation)))
                .num("expires", entry.expires);
        });
    }
    json_response(
        StatusCode::OK,
        serde_json::to_string(&entry).unwrap_or_default(),
    )
}

/// `GET /revocations`: every revocation in force, as the store has them.
pub async fn revocations(
    app: &App,
    config: &Config,
    request: &Request<Incoming>,
) -> Response<Body> {
    if let Some(refusal) = gate(config, request, &Method::GET) {
        return refusal;
    }
    let listed = async { app.state.require()?.revocations(clock::now()).await };
    match listed.await {
        Ok(entries) => json_response(
            StatusCode::OK,
            serde_json::to_string(&entries).unwrap_or_default(),
        ),
        Err(error) => unavailable(&error),
    }
}

/// `GET /uses?token_id=T[&kid=K]`: the use history of one counted token, oldest first. `kid`
/// defaults to the signing key's id.
pub async fn uses(app: &App, config: &Config, request: &Request<Incoming>) -> Response<Body> {
    if let Some(refusal) = gate(config, request, &Method::GET) {
        return refusal;
    }
    let mut token_id = None;
    let mut kid = None;
    for (name, value) in url::form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
    {
        let slot = match name.as_ref() {
            "token_id" => &mut token_id,
            "kid" => &mut kid,
            _ => return json_error(StatusCode::BAD_REQUEST, "parameters: token_id and kid"),
        };
        if slot.replace(value.into_owned()).is_some() {
            return json_error(StatusCode::BAD_REQUEST, "a parameter is given twice");
        }
    }
    let Some(token_id) = token_id else {
        return json_error(StatusCode::BAD_REQUEST, "name the token_id");
    };
    let key = UseKey {
        kid: kid.unwrap_or_else(|| config.keys.signing_key().id().to_owned()),
        token_id,
    };
    let history = async {
        let store = app.state.require()?;
        store
            .history(&key, config.store.retention, clock::now())
            .await
    };
    match history.await {
        Ok(entries) => json_response(
            StatusCode::OK,
            serde_json::json!({ "kid": key.kid, "token_id": key.token_id, "uses": entries })
                .to_string(),
        ),
        Err(error) => unavailable(&error),
    }
}

/// The method and bearer checks every endpoint here shares.
fn gate(config: &Config, request: &Request<Incoming>, method: &Method) -> Option<Response<Body>> {
    if request.method() != method {
        let mut response = json_error(StatusCode::METHOD_NOT_ALLOWED, &format!("use {method}"));
        if let Ok(allow) = HeaderValue::from_str(method.as_str()) {
            response.headers_mut().insert(ALLOW, allow);
        }
        return Some(response);
    }
    (!authorized(config, request.headers()))
        .then(|| json_error(StatusCode::UNAUTHORIZED, "missing or wrong bearer secret"))
}

fn unavailable(error: &StoreError) -> Response<Body> {
    tracing::warn!(%error, "store request failed");
    json_error(StatusCode::SERVICE_UNAVAILABLE, &error.to_string())
}

/// A revocation in one line for the audit log: key ids, token ids and subjects are not
/// secrets (spec §1: anyone holding a token can read them).
fn describe(revocation: &crate::store::Revocation) -> String {
    serde_json::to_string(revocation).unwrap_or_default()
}
