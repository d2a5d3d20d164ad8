//! Several mediagate hosts sharing one Redis (issue 9), through real nginx whose verify
//! upstream has two mediagate processes: a use is spent once whichever sidecar decides, a
//! revocation made on one reaches the other within a second, and with Redis down counted
//! tokens fail closed, stateless ones are unaffected, and both recover.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use mediagate::clock;
use mediagate::token::{self, Claims, Scope};

use crate::store_redis::Standalone;
use crate::support::{nginx_denied, request, seen, served, Options, Stack, MEDIA_HOST};
use crate::uses::race;

const CLIP: &str = "shared clip bytes";

/// A stack whose two media-side mediagates share `redis`.
fn shared(name: &str, redis: &Standalone) -> Stack {
    let stack = Stack::start_with(
        name,
        Options {
            store_config: format!(
                "[store]\nbackend = \"redis\"\nredis_urls = [\"redis+unix://{}\"]\n\
                 response_timeout = \"300ms\"\nconnect_timeout = \"300ms\"\n",
                redis.socket.display()
            ),
            second_verifier: true,
            ..Options::default()
        },
    );
    stack.dir.write("files/media/clip.mp4", CLIP);
    stack
}

fn counted(stack: &Stack, uses: u32, id: &str) -> String {
    let now = clock::now();
    let mut claims = Claims::download(Scope::Exact("/media/clip.mp4".into()), now + 600);
    claims.uses = Some(uses);
    claims.token_id = Some(id.into());
    claims.issued_at = Some(now);
    let token = token::sign(&claims, stack.config.keys.signing_key()).unwrap();
    format!("/media/clip.mp4?token={token}")
}

/// `/auth` asked directly on one sidecar's socket, as nginx's subrequest would.
fn auth_on(stack: &Stack, socket: &str, uri: &str) -> (u16, Option<String>) {
    let answer = request(
        &stack.socket(socket),
        "GET",
        "mediagate",
        "/auth",
        &[
            ("X-Original-URI", uri),
            ("X-Original-Method", "GET"),
            ("X-Mediagate-Server-Name", MEDIA_HOST),
            ("X-Real-IP", "198.51.100.7"),
        ],
    );
    let reason = answer.header("x-mediagate-reason").map(str::to_owned);
    (answer.status, reason)
}

#[test]
fn two_sidecars_sharing_redis_never_spend_a_use_twice() {
    let redis = Standalone::start();
    let stack = Arc::new(shared("shared-race", &redis));
    // nginx spreads the requests over both sidecars (round robin).
    race(&stack, &counted(&stack, 1, "shared-single"), CLIP, 1, 20);
    race(&stack, &counted(&stack, 5, "shared-five"), CLIP, 5, 50);
    // Both sidecars decided: each refuses the spent token by itself.
    let spent = counted(&stack, 1, "shared-single");
    for socket in ["verify.sock", "second-verify.sock"] {
        assert_eq!(
            auth_on(&stack, socket, &spent),
            (403, Some("used_up".into())),
            "{socket}"
        );
    }
}

#[test]
fn a_revocation_on_one_sidecar_reaches_the_other_within_a_second() {
    let redis = Standalone::start();
    let stack = shared("shared-revoke", &redis);
    let link = counted(&stack, 100, "shared-revoked");
    assert_eq!(auth_on(&stack, "second-verify.sock", &link), (204, None));
    let elapsed = revoke_and_wait(&stack, r#"{"token_id":"shared-revoked"}"#, &link);
    eprintln!("revocation reached the second sidecar after {elapsed:?}");

    // A key cut-off, which never expires, through Redis too (stateless tokens included).
    let plain = stack.sign("/media/clip.mp4");
    assert_eq!(auth_on(&stack, "second-verify.sock", &plain), (204, None));
    let kid = stack.config.keys.signing_key().id().to_owned();
    let cutoff = clock::now() + 1;
    revoke_and_wait(
        &stack,
        &format!(r#"{{"key":"{kid}","before":{cutoff}}}"#),
        &plain,
    );
}

/// POSTs `body` to the first sidecar's `/revoke`, checks that `link` is revoked there at
/// once, and waits (at most a second) until the second sidecar refuses it too.
fn revoke_and_wait(stack: &Stack, body: &str, link: &str) -> Duration {
    let bearer = format!("Bearer {}", stack.internal_secret);
    let length = body.len().to_string();
    let raw = format!(
        "POST /revoke HTTP/1.1\r\nHost: mediagate\r\nConnection: close\r\n\
         Authorization: {bearer}\r\nContent-Type: application/json\r\n\
         Content-Length: {length}\r\n\r\n{body}"
    );
    let started = Instant::now();
    let answer = crate::support::request_raw(&stack.socket("internal.sock"), raw.as_bytes(), false);
    assert_eq!(answer.status, 200, "{body}: {}", answer.text());
    // In force at once on the sidecar that took it...
    assert_eq!(
        auth_on(stack, "verify.sock", link),
        (403, Some("revoked".into()))
    );
    // ...and on the other after its next poll (store.revocation_poll, 250 ms by default).
    let deadline = started + Duration::from_secs(1);
    loop {
        match auth_on(stack, "second-verify.sock", link) {
            (403, Some(reason)) if reason == "revoked" => return started.elapsed(),
            other => {
                assert!(
                    Instant::now() < deadline,
                    "{body}: still {other:?} on the second sidecar a second after the revocation"
                );
                thread::yield_now();
            }
        }
    }
}

#[test]
fn with_redis_down_counted_tokens_fail_closed_and_recover_without_double_spend() {
    // Append-only with an fsync per write: a Redis that forgets uses on restart would let a
    // single-use link work again (docs/operations.md says so).
    let mut redis = Standalone::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let stack = shared("shared-outage", &redis);
    let spent = counted(&stack, 1, "outage-spent");
    let fresh = counted(&stack, 1, "outage-fresh");
    let plain = stack.sign("/media/clip.mp4");
    assert_eq!(seen(&stack.media("GET", &spent)), served(CLIP));

    // Load throughout: eight clients asking for a 3-use token until the end of the test.
    let stack = Arc::new(stack);
    let loaded = Arc::new(counted(&stack, 3, "outage-loaded"));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..8)
        .map(|n| {
            let (stack, loaded, stop) =
                (Arc::clone(&stack), Arc::clone(&loaded), Arc::clone(&stop));
            thread::spawn(move || {
                let agent = format!("load {n}");
                let mut statuses = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let answer =
                        stack.media_with("GET", &loaded, &[("User-Agent", agent.as_str())]);
                    statuses.push(answer.status);
                }
                statuses
            })
        })
        .collect();

    redis.kill();
    // Counted: refused, with the reason; nginx turns the sidecar's 503 into a 500 in
    // auth_request mode (it passes only 2xx, 401 and 403 on). Stateless: served.
    for socket in ["verify.sock", "second-verify.sock"] {
        assert_eq!(
            auth_on(&stack, socket, &fresh),
            (503, Some("store_unavailable".into())),
            "{socket}"
        );
    }
    let through_nginx = stack.media("GET", &fresh);
    assert_eq!(through_nginx.status, 500, "{}", through_nginx.text());
    assert_eq!(seen(&stack.media("GET", &plain)), served(CLIP));

    redis.run();
    // Recovered: the spent token is still spent (no double spend across the restart), the
    // fresh one works exactly once. The connection manager reconnects in the background, so
    // wait for the first answer that is not an outage.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = seen(&stack.media("GET", &spent));
        if answer.0 != 500 {
            assert_eq!(answer, nginx_denied("used_up"));
            break;
        }
        assert!(Instant::now() < deadline, "counted tokens did not recover");
        thread::sleep(Duration::from_millis(50));
    }
    for socket in ["verify.sock", "second-verify.sock"] {
        let deadline = Instant::now() + Duration::from_secs(10);
        while auth_on(&stack, socket, &spent).0 == 503 {
            assert!(Instant::now() < deadline, "{socket} did not recover");
            thread::sleep(Duration::from_millis(50));
        }
    }
    assert_eq!(seen(&stack.media("GET", &fresh)), served(CLIP));
    assert_eq!(seen(&stack.media("GET", &fresh)), nginx_denied("used_up"));

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let statuses: Vec<u16> = load.into_iter().flat_map(|t| t.join().unwrap()).collect();
    let count = |status: u16| statuses.iter().filter(|&&s| s == status).count();
    // Exactly three uses were ever served, across the outage and both sidecars; everything
    // else was refused (403 used_up) or failed closed (500 from nginx for the 503).
    assert_eq!(count(200), 3, "{} requests under load", statuses.len());
    assert_eq!(count(200) + count(403) + count(500), statuses.len());
}

/// Redis down when mediagate starts: no revocation can have been read, so no token is known
/// not to be revoked. Every token is refused (503 `store_unavailable`, `/readyz` 503) until
/// Redis answers; then everything works without a restart.
#[test]
fn with_redis_down_at_start_every_token_fails_closed_until_the_revocations_are_read() {
    let mut redis = Standalone::start();
    redis.kill();
    let stack = shared("shared-late", &redis);
    let plain = stack.sign("/media/clip.mp4");
    for socket in ["verify.sock", "second-verify.sock"] {
        assert_eq!(
            auth_on(&stack, socket, &plain),
            (503, Some("store_unavailable".into())),
            "{socket}"
        );
    }
    let ready = request(
        &stack.socket("internal.sock"),
        "GET",
        "mediagate",
        "/readyz",
        &[],
    );
    assert_eq!(
        (ready.status, ready.text().as_str()),
        (503, "revocations not loaded yet (store unavailable)\n")
    );
    // Public paths need no token and no revocation.
    stack.dir.write("files/media/public/free.txt", "free");
    assert_eq!(
        seen(&stack.media("GET", "/media/public/free.txt")),
        served("free")
    );

    redis.run();
    for socket in ["verify.sock", "second-verify.sock"] {
        let deadline = Instant::now() + Duration::from_secs(10);
        while auth_on(&stack, socket, &plain).0 != 204 {
            assert!(
                Instant::now() < deadline,
                "{socket} never loaded the revocations"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
    let ready = request(
        &stack.socket("internal.sock"),
        "GET",
        "mediagate",
        "/readyz",
        &[],
    );
    assert_eq!((ready.status, ready.text().as_str()), (200, "ready\n"));
    assert_eq!(seen(&stack.media("GET", &plain)), served(CLIP));
}
