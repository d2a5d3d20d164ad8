//! Several scopes in one token and the recipient (issue 11, token format v2 fields `0x11` and
//! `0x12`), through real nginx on the README's API location (`protect-api.conf`): which
//! (method, path) pairs reach the application, the exact reason for the others, and what the
//! application learns about the token's recipient.

use mediagate::mint::{mint, MintInput};

use crate::support::{request, seen, Options, Response, Stack, MEDIA_HOST};
use crate::tokensrc::api_stack;

/// Mints through the front end `/mint` and `sign` share, from its JSON form.
fn token(stack: &Stack, input: serde_json::Value) -> String {
    let input: MintInput = serde_json::from_value(input).expect("a MintInput");
    let (request, _) = input.resolve(&stack.config).expect("resolves");
    mint(&stack.config, &request, mediagate::clock::now())
        .expect("mints")
        .token
}

fn send(stack: &Stack, method: &str, target: &str, headers: &[(&str, &str)]) -> Response {
    request(
        &stack.socket("media.sock"),
        method,
        MEDIA_HOST,
        target,
        headers,
    )
}

/// The header lines of the application's echo that name a mediagate grant header.
fn grant_lines(response: &Response) -> Vec<String> {
    response
        .text()
        .lines()
        .filter(|line| line.starts_with("x-mediagate-"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn one_token_with_two_scopes_admits_exactly_its_pairs_and_names_the_reason() {
    let stack = api_stack("scopes-api", Options::default());
    let token = token(
        &stack,
        serde_json::json!({
            "purpose": "api",
            "scopes": [
                {"methods": ["PUT"], "path": "/api/v1/uploads/x"},
                {"methods": ["GET", "HEAD"], "path": "/api/v1/foo/", "prefix": true},
            ],
            "subject": "alice",
            "recipient": "partner-app",
            "ttl": 600,
        }),
    );
    let auth = format!("TmpToken {token}");
    let forged = [
        ("Authorization", auth.as_str()),
        ("X-Mediagate-Recipient", "forged-recipient"),
        ("X-Mediagate-Subject", "forged-subject"),
    ];
    for (method, target, status, reason) in [
        ("GET", "/api/v1/foo/bar", 200, None),
        ("HEAD", "/api/v1/foo/", 200, None),
        ("PUT", "/api/v1/foo/bar", 403, Some("method")),
        ("PUT", "/api/v1/uploads/x", 200, None),
        ("GET", "/api/v1/uploads/x", 403, Some("method")),
        ("DELETE", "/api/v1/uploads/x", 403, Some("method")),
        // Boundaries at `/` only: django's prefix `/foo` admits both of these.
        ("GET", "/api/v1/foobar/secret", 403, Some("out_of_scope")),
        ("GET", "/api/v1/foo", 403, Some("out_of_scope")),
        ("PUT", "/api/v1/uploads/x/y", 403, Some("out_of_scope")),
        // nginx resolves the dot segment (the location still matches); mediagate judges the
        // request as sent and refuses it before the token is looked at.
        ("GET", "/api/v1/foo/../admin", 403, Some("bad_path")),
    ] {
        let response = send(&stack, method, target, &forged);
        let (got_status, got_reason, _) = seen(&response);
        assert_eq!(
            (got_status, got_reason.as_deref()),
            (status, reason),
            "{method} {target}: {}",
            response.text()
        );
        if status == 200 && method != "HEAD" {
            let body = response.text();
            assert!(
                body.starts_with(&format!("target {target}\n")),
                "{method} {target}: {body}"
            );
            assert!(!body.contains(&token), "the token reached the application");
            assert!(
                !body.contains("forged"),
                "a forged header got through: {body}"
            );
            let grants = grant_lines(&response);
            assert!(
                grants.contains(&"x-mediagate-recipient: partner-app".to_owned())
                    && grants.contains(&"x-mediagate-subject: alice".to_owned()),
                "{method} {target}: {grants:?}"
            );
        }
    }
}

#[test]
fn a_token_without_recipient_clears_the_clients_copy() {
    let stack = api_stack("scopes-recipient", Options::default());
    let plain = token(
        &stack,
        serde_json::json!({"purpose": "api", "path": "/api/v1/", "prefix": true, "ttl": 600}),
    );
    let response = send(
        &stack,
        "GET",
        "/api/v1/items",
        &[
            ("Authorization", &format!("Bearer {plain}")),
            ("X-Mediagate-Recipient", "forged-recipient"),
        ],
    );
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(
        !response.text().contains("recipient"),
        "{}",
        response.text()
    );
    // The same link with a recipient: the application sees it, spaces and all.
    let named = token(
        &stack,
        serde_json::json!({"purpose": "api", "path": "/api/v1/", "prefix": true, "ttl": 600,
                           "recipient": "Newsletter #42 (weekly)"}),
    );
    let response = send(
        &stack,
        "GET",
        &format!("/api/v1/items?token={named}"),
        &[("X-Mediagate-Recipient", "forged-recipient")],
    );
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        grant_lines(&response)
            .iter()
            .filter(|line| line.contains("recipient"))
            .collect::<Vec<_>>(),
        ["x-mediagate-recipient: Newsletter #42 (weekly)"]
    );
}

/// Scopes decide paths and methods, the purpose decides the location: the same scopes in a
/// download token are refused at the API location as `wrong_purpose` (step 2, before the MAC
/// and long before the scope walk), also for a pair the scopes allow.
#[test]
fn scopes_in_a_media_token_do_not_open_the_api_location() {
    let stack = api_stack("scopes-media-purpose", Options::default());
    let media = token(
        &stack,
        serde_json::json!({
            "scopes": [
                {"methods": ["PUT"], "path": "/api/v1/uploads/x"},
                {"methods": ["GET", "HEAD"], "path": "/api/v1/foo/", "prefix": true},
            ],
            "ttl": 600,
        }),
    );
    let auth = format!("Bearer {media}");
    for (method, target) in [
        ("GET", "/api/v1/foo/bar"),
        ("PUT", "/api/v1/uploads/x"),
        ("GET", "/api/v1/foobar/secret"),
    ] {
        let response = send(&stack, method, target, &[("Authorization", &auth)]);
        let (status, reason, _) = seen(&response);
        assert_eq!(
            (status, reason.as_deref()),
            (403, Some("wrong_purpose")),
            "{method} {target}: {}",
            response.text()
        );
    }
}
