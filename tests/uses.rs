//! Limited-use links and revocation (issue 9), through real nginx rendered from
//! `nginx/example.conf` and a real mediagate with its embedded store: a single-use token works
//! once, HEAD and a CORS preflight never cost a use, a player's ranged requests continue the
//! use of the client that made it, parallel requests never spend a use twice, a use survives
//! `kill -9`, and a revocation made on the internal listener takes effect at once.

use std::sync::Arc;
use std::thread;

use mediagate::clock;
use mediagate::token::{self, Claims, Scope};

use crate::support::{accel_denied, nginx_denied, seen, served, Options, Response, Stack};

const VIDEO: &str = "0123456789abcdefghij";
const AGENT: (&str, &str) = ("User-Agent", "player/1.0");

fn stack(name: &str) -> Stack {
    stack_with(name, Options::default())
}

fn stack_with(name: &str, options: Options) -> Stack {
    let stack = Stack::start_with(name, options);
    stack.dir.write("files/media/clip.mp4", VIDEO);
    stack.dir.write("files/files/once.txt", "accel once");
    stack
}

/// A path-and-query with a token for `path` that may be used `uses` times, with token id
/// `id` (and `subject`, when given), signed with the stack's signing key.
fn counted(stack: &Stack, path: &str, uses: u32, id: &str, subject: Option<&str>) -> String {
    let now = clock::now();
    let mut claims = Claims::download(Scope::Exact(path.into()), now + 600);
    claims.uses = Some(uses);
    claims.token_id = Some(id.into());
    claims.subject = subject.map(str::to_owned);
    claims.issued_at = Some(now);
    let token = token::sign(&claims, stack.config.keys.signing_key()).unwrap();
    format!("{path}?token={token}")
}

/// A request to the internal listener with the internal secret as bearer.
fn internal(stack: &Stack, method: &str, target: &str, body: Option<&str>) -> Response {
    let bearer = format!("Bearer {}", stack.internal_secret);
    let length = body.map(|body| body.len().to_string());
    let mut headers = vec![("Authorization", bearer.as_str())];
    if let Some(length) = &length {
        headers.push(("Content-Type", "application/json"));
        headers.push(("Content-Length", length));
    }
    let raw_body = body.unwrap_or("");
    let mut raw = format!("{method} {target} HTTP/1.1\r\nHost: mediagate\r\nConnection: close\r\n");
    for (name, value) in headers {
        raw.push_str(&format!("{name}: {value}\r\n"));
    }
    raw.push_str("\r\n");
    raw.push_str(raw_body);
    crate::support::request_raw(&stack.socket("internal.sock"), raw.as_bytes(), false)
}

#[test]
fn a_single_use_link_works_once_in_both_modes() {
    let stack = stack("uses-single");
    let link = counted(&stack, "/media/clip.mp4", 1, "single-1", None);
    assert_eq!(seen(&stack.media("GET", &link)), served(VIDEO));
    assert_eq!(seen(&stack.media("GET", &link)), nginx_denied("used_up"));
    assert_eq!(seen(&stack.media("GET", &link)), nginx_denied("used_up"));

    let accel = counted(&stack, "/files/once.txt", 1, "single-accel", None);
    assert_eq!(seen(&stack.media("GET", &accel)), served("accel once"));
    assert_eq!(seen(&stack.media("GET", &accel)), accel_denied("used_up"));
}

#[test]
fn ranged_gets_continue_a_use_in_accel_mode_too() {
    let stack = stack("uses-accel-range");
    let link = counted(&stack, "/files/once.txt", 1, "accel-range", None);
    let range = |from: &str, agent: &str| {
        stack.media_with("GET", &link, &[("Range", from), ("User-Agent", agent)])
    };
    let first = range("bytes=0-4", AGENT.1);
    assert_eq!((first.status, first.text().as_str()), (206, "accel"));
    let seek = range("bytes=6-", AGENT.1);
    assert_eq!((seek.status, seek.text().as_str()), (206, "once"));
    let other = range("bytes=6-", "curl/8");
    assert_eq!(seen(&other), accel_denied("used_up"));
}

#[test]
fn head_requests_never_spend_a_use() {
    let stack = stack("uses-head");
    let link = counted(&stack, "/media/clip.mp4", 1, "head-1", None);
    for _ in 0..3 {
        let head = stack.media("HEAD", &link);
        assert_eq!(
            (head.status, head.header("x-mediagate-reason")),
            (200, None)
        );
    }
    assert_eq!(seen(&stack.media("GET", &link)), served(VIDEO));
    let head = stack.media("HEAD", &link);
    assert_eq!(
        head.status, 200,
        "the client holding the use may still look"
    );
    let other = stack.media_with("HEAD", &link, &[("User-Agent", "someone else")]);
    assert_eq!(
        (other.status, other.header("x-mediagate-reason")),
        (403, Some("used_up"))
    );
}

#[test]
fn a_players_ranged_requests_continue_its_use_and_nobody_elses() {
    let stack = stack("uses-range");
    let link = counted(&stack, "/media/clip.mp4", 1, "range-1", None);
    let range = |from: &str, agent: &str| {
        stack.media_with("GET", &link, &[("Range", from), ("User-Agent", agent)])
    };
    let first = range("bytes=0-", AGENT.1);
    assert_eq!((first.status, first.text().as_str()), (206, VIDEO));
    for (from, expected) in [
        ("bytes=10-", "abcdefghij"),
        ("bytes=4-7", "4567"),
        ("bytes=0-", VIDEO),
    ] {
        let seek = range(from, AGENT.1);
        assert_eq!(
            (seek.status, seek.text().as_str()),
            (206, expected),
            "{from}"
        );
    }
    // Another client, ranged or not, and the same client asking for a whole new copy.
    let other = range("bytes=10-", "curl/8");
    assert_eq!(
        (other.status, other.header("x-mediagate-reason")),
        (403, Some("used_up"))
    );
    let whole = stack.media_with("GET", &link, &[AGENT]);
    assert_eq!(seen(&whole), nginx_denied("used_up"));
}

/// `parallel` simultaneous GETs through nginx of `link`, a token allowed `uses` times, each
/// from its own user agent: exactly `uses` get `body`, every other one `used_up`.
pub fn race(stack: &Arc<Stack>, link: &str, body: &str, uses: u32, parallel: usize) {
    let link = Arc::new(link.to_owned());
    let barrier = Arc::new(std::sync::Barrier::new(parallel));
    let handles: Vec<_> = (0..parallel)
        .map(|n| {
            let (stack, link, barrier) =
                (Arc::clone(stack), Arc::clone(&link), Arc::clone(&barrier));
            thread::spawn(move || {
                let agent = format!("racer {n}");
                barrier.wait();
                seen(&stack.media_with("GET", &link, &[("User-Agent", agent.as_str())]))
            })
        })
        .collect();
    let mut served_count = 0;
    for handle in handles {
        let answer = handle.join().unwrap();
        if answer == served(body) {
            served_count += 1;
        } else {
            assert_eq!(answer, nginx_denied("used_up"));
        }
    }
    assert_eq!(served_count, uses, "{parallel} parallel requests");
}

#[test]
fn parallel_requests_never_spend_a_use_twice() {
    let stack = Arc::new(stack("uses-race"));
    let single = counted(&stack, "/media/clip.mp4", 1, "race-single", None);
    race(&stack, &single, VIDEO, 1, 20);
    let five = counted(&stack, "/media/clip.mp4", 5, "race-five", None);
    race(&stack, &five, VIDEO, 5, 50);
}

#[test]
fn a_use_survives_kill_9_right_after_the_answer() {
    let mut stack = stack("uses-kill");
    let link = counted(&stack, "/media/clip.mp4", 1, "kill-1", None);
    assert_eq!(seen(&stack.media("GET", &link)), served(VIDEO));
    stack.restart_mediagate_after_kill();
    assert_eq!(seen(&stack.media("GET", &link)), nginx_denied("used_up"));
}

#[test]
fn counted_answers_are_never_taken_from_the_auth_cache() {
    let stack = stack_with("uses-cache", Options::default().with_auth_cache());
    let link = counted(&stack, "/media/clip.mp4", 1, "cache-1", None);
    assert_eq!(seen(&stack.media("GET", &link)), served(VIDEO));
    assert_eq!(seen(&stack.media("GET", &link)), nginx_denied("used_up"));
}

#[test]
fn uses_and_refusals_are_kept_in_the_tokens_history() {
    let stack = stack("uses-history");
    let link = counted(&stack, "/media/clip.mp4", 1, "history-1", None);
    assert_eq!(stack.media_with("GET", &link, &[AGENT]).status, 200);
    assert_eq!(
        stack
            .media_with("GET", &link, &[("Range", "bytes=1-"), AGENT])
            .status,
        206
    );
    assert_eq!(
        stack
            .media_with("GET", &link, &[("User-Agent", "thief")])
            .status,
        403
    );
    // History is written off the answer's path: wait for both entries, without sleeping a
    // fixed time.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let uses = loop {
        let answer = internal(&stack, "GET", "/uses?token_id=history-1", None);
        assert_eq!(answer.status, 200, "{}", answer.text());
        let json: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
        let uses = json["uses"].as_array().unwrap().clone();
        if uses.len() >= 2 || std::time::Instant::now() > deadline {
            break uses;
        }
        thread::yield_now();
    };
    let summary: Vec<(u64, Option<&str>, Option<&str>)> = uses
        .iter()
        .map(|entry| {
            (
                entry["status"].as_u64().unwrap(),
                entry["user_agent"].as_str(),
                entry["reason"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (200, Some("player/1.0"), None),
            (403, Some("thief"), Some("used_up"))
        ],
        "the ranged request continued the use and is not a new entry"
    );
}

#[test]
fn a_revocation_takes_effect_on_the_next_request() {
    let stack = stack("uses-revoke");
    let by_id = counted(&stack, "/media/clip.mp4", 5, "revoke-1", None);
    let by_subject = counted(&stack, "/media/clip.mp4", 5, "revoke-2", Some("user 42"));
    let untouched = counted(&stack, "/media/clip.mp4", 5, "revoke-3", Some("user 43"));
    for link in [&by_id, &by_subject, &untouched] {
        assert_eq!(seen(&stack.media("GET", link)), served(VIDEO));
    }
    for body in [r#"{"token_id":"revoke-1"}"#, r#"{"subject":"user 42"}"#] {
        let answer = internal(&stack, "POST", "/revoke", Some(body));
        assert_eq!(answer.status, 200, "{}", answer.text());
    }
    assert_eq!(seen(&stack.media("GET", &by_id)), nginx_denied("revoked"));
    assert_eq!(
        seen(&stack.media("GET", &by_subject)),
        nginx_denied("revoked")
    );
    assert_eq!(seen(&stack.media("GET", &untouched)), served(VIDEO));

    // Everything the signing key signed before now, uncounted tokens included.
    let plain = stack.sign("/media/clip.mp4");
    assert_eq!(seen(&stack.media("GET", &plain)), served(VIDEO));
    let kid = stack.config.keys.signing_key().id().to_owned();
    let cutoff = clock::now() + 1;
    let body = format!(r#"{{"key":"{kid}","before":{cutoff}}}"#);
    let answer = internal(&stack, "POST", "/revoke", Some(&body));
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(seen(&stack.media("GET", &plain)), nginx_denied("revoked"));
    assert_eq!(
        seen(&stack.media("GET", &untouched)),
        nginx_denied("revoked")
    );

    let listed = internal(&stack, "GET", "/revocations", None);
    let json: serde_json::Value = serde_json::from_slice(&listed.body).unwrap();
    let kinds: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.len(), 3, "{kinds:?}");
    for kind in ["token", "subject", "key_before"] {
        assert!(kinds.contains(&kind), "{kinds:?}");
    }
}

#[test]
fn revocations_are_kept_across_a_restart() {
    let mut stack = stack("uses-revoke-restart");
    let link = counted(&stack, "/media/clip.mp4", 5, "restart-1", None);
    let answer = internal(
        &stack,
        "POST",
        "/revoke",
        Some(r#"{"token_id":"restart-1"}"#),
    );
    assert_eq!(answer.status, 200, "{}", answer.text());
    stack.restart_mediagate_after_kill();
    assert_eq!(seen(&stack.media("GET", &link)), nginx_denied("revoked"));
}

/// The README's single-action recipe: an application endpoint behind `protect-api.conf`, a
/// POST-only single-use link naming the user (RFC 8058 one-click unsubscribe: the mail client
/// POSTs to the link). The application learns who from `X-Mediagate-Subject`, which the
/// client cannot set, and the second POST never reaches it.
#[test]
fn a_single_action_link_reaches_the_application_once_with_its_subject() {
    let stack = Stack::start_with(
        "uses-unsubscribe",
        Options {
            nginx_edits: vec![(
                "        # X-Accel-Redirect mode: mediagate answers".into(),
                "        location = /api/unsubscribe {\n            \
                 include mediagate/protect-api.conf;\n            \
                 proxy_pass http://mediagate_app$mediagate_api_uri;\n        }\n\n        \
                 # X-Accel-Redirect mode: mediagate answers"
                    .into(),
            )],
            ..Options::default()
        },
    );
    let minted = mediagate::mint::mint(
        &stack.config,
        &mediagate::mint::MintRequest {
            path: "/api/unsubscribe".into(),
            // protect-api.conf accepts API tokens only (issue 11, per-purpose keys).
            purpose: mediagate::token::Purpose::Api,
            methods: Some("POST".parse().unwrap()),
            uses: Some(1),
            subject: Some("user-42".into()),
            data: Some(b"list=weekly".to_vec()),
            ..mediagate::mint::MintRequest::default()
        },
        clock::now(),
    )
    .unwrap();
    let token_id = minted
        .token_id
        .clone()
        .expect("a counted token gets a token id");
    let post = |headers: &[(&str, &str)]| {
        let body = "List-Unsubscribe=One-Click";
        let length = body.len().to_string();
        let mut raw = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {length}\r\n",
            minted.path_and_query,
            crate::support::MEDIA_HOST,
        );
        for (name, value) in headers {
            raw.push_str(&format!("{name}: {value}\r\n"));
        }
        raw.push_str("\r\n");
        raw.push_str(body);
        crate::support::request_raw(&stack.socket("media.sock"), raw.as_bytes(), false)
    };
    let first = post(&[
        ("X-Mediagate-Subject", "admin"),
        ("X-Mediagate-Data", "admin"),
        ("X-Mediagate-Reservation", "admin"),
        ("X-Mediagate-Reason", "admin"),
        ("X-Mediagate-Content-Disposition", "admin"),
    ]);
    let echo = first.text();
    assert_eq!(first.status, 200, "{echo}");
    assert!(echo.starts_with("target /api/unsubscribe\n"), "{echo}");
    assert!(echo.contains("\nx-mediagate-subject: user-42\n"), "{echo}");
    // The token's data, base64url ("list=weekly"), from the token only.
    assert!(
        echo.contains("\nx-mediagate-data: bGlzdD13ZWVrbHk\n"),
        "{echo}"
    );
    assert!(
        echo.contains(&format!("\nx-mediagate-token-id: {token_id}\n")),
        "{echo}"
    );
    assert!(
        !echo.contains("admin"),
        "the client's own header got through: {echo}"
    );
    let second = post(&[]);
    assert_eq!(
        (second.status, second.header("x-mediagate-reason")),
        (403, Some("used_up"))
    );
    // A Range header does not make a second action a continuation of the first: only a
    // file's ranged GET continues a use.
    let ranged = post(&[("Range", "bytes=0-")]);
    assert_eq!(
        (ranged.status, ranged.header("x-mediagate-reason")),
        (403, Some("used_up"))
    );
    // A link scanner's GET neither works nor spends anything.
    let get = stack.media("GET", &minted.path_and_query);
    assert_eq!(
        (get.status, get.header("x-mediagate-reason")),
        (403, Some("method"))
    );
}

#[test]
fn a_head_and_a_cors_preflight_never_spend_a_single_use() {
    // Issue 9: a player's HEAD and a cross-origin page's preflight (OPTIONS with
    // Access-Control-Request-Method) only look; the GET after them still gets the file.
    // Here mediagate decides the preflights: a location without cors.conf (with it, nginx
    // answers every OPTIONS itself, tests/cors.rs).
    let stack = stack_with(
        "uses-preflight",
        Options {
            nginx_edits: vec![(
                "include mediagate/cors.conf;\n            include mediagate/protect.conf;".into(),
                "include mediagate/protect.conf;".into(),
            )],
            ..Options::default()
        },
    );
    let preflight = [
        ("User-Agent", AGENT.1),
        ("Origin", "http://www.localhost"),
        ("Access-Control-Request-Method", "GET"),
        ("Access-Control-Request-Headers", "range"),
    ];
    let status = |answer: Response| {
        (
            answer.status,
            answer.header("x-mediagate-reason").map(str::to_owned),
        )
    };

    // A download token allows GET and HEAD only: the preflight is refused for its method,
    // before anything is counted.
    let link = counted(&stack, "/media/clip.mp4", 1, "preflight-1", None);
    assert_eq!(
        status(stack.media_with("HEAD", &link, &[AGENT])),
        (200, None)
    );
    assert_eq!(
        status(stack.media_with("OPTIONS", &link, &preflight)),
        (403, Some("method".into()))
    );
    assert_eq!(
        seen(&stack.media_with("GET", &link, &[AGENT])),
        served(VIDEO)
    );
    assert_eq!(
        seen(&stack.media_with("GET", &link, &[AGENT])),
        nginx_denied("used_up")
    );

    // A token that allows OPTIONS: mediagate lets the preflight through as a look (nginx's
    // static handler then answers 405, as it does for any OPTIONS), a few times, and the use
    // is still there for the GET; afterwards only its holder may still look.
    let now = clock::now();
    let mut claims = Claims::download(Scope::Exact("/media/clip.mp4".into()), now + 600);
    claims.uses = Some(1);
    claims.token_id = Some("preflight-2".into());
    claims.issued_at = Some(now);
    claims.methods = Some(token::Methods::from_names(["GET", "HEAD", "OPTIONS"]).unwrap());
    let token = token::sign(&claims, stack.config.keys.signing_key()).unwrap();
    let link = format!("/media/clip.mp4?token={token}");
    for _ in 0..3 {
        assert_eq!(
            status(stack.media_with("OPTIONS", &link, &preflight)),
            (405, None)
        );
        assert_eq!(
            status(stack.media_with("HEAD", &link, &[AGENT])),
            (200, None)
        );
    }
    assert_eq!(
        seen(&stack.media_with("GET", &link, &[AGENT])),
        served(VIDEO)
    );
    assert_eq!(
        status(stack.media_with("OPTIONS", &link, &preflight)),
        (405, None)
    );
    let mut stranger = preflight;
    stranger[0] = ("User-Agent", "someone else");
    assert_eq!(
        status(stack.media_with("OPTIONS", &link, &stranger)),
        (403, Some("used_up".into()))
    );
    assert_eq!(
        seen(&stack.media_with("GET", &link, &[AGENT])),
        nginx_denied("used_up")
    );
}

/// A revoked link that has also expired is still revoked: a refresh would hand its holder a
/// fresh link for the same file.
#[test]
fn an_expired_revoked_link_is_not_refreshed() {
    let stack = stack("uses-revoked-expired");
    let now = clock::now();
    let mut claims = Claims::download(Scope::Exact("/media/clip.mp4".into()), now - 10);
    claims.token_id = Some("gone-1".into());
    claims.issued_at = Some(now - 100);
    let token = token::sign(&claims, stack.config.keys.signing_key()).unwrap();
    let link = format!("/media/clip.mp4?token={token}");
    let before = stack.media("GET", &link);
    assert_eq!(
        (before.status, before.header("x-mediagate-reason")),
        (302, Some("expired")),
        "an expired link is refreshed"
    );
    let answer = internal(&stack, "POST", "/revoke", Some(r#"{"token_id":"gone-1"}"#));
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(seen(&stack.media("GET", &link)), nginx_denied("revoked"));
}
