//! Long playback (issue 10, spec §13.3.1) through real nginx in both modes: a player's first
//! ranged request of a query-form link is redirected (same origin) to the same link in path
//! form with a playback grant, and plays from there after the query link expired.

use std::time::Duration;

use mediagate::clock;
use mediagate::mint::MintRequest;
use mediagate::token::{self, Claims, TokenBuf};

use crate::support::{path_token, seen, served, split_url, Options, Response, Stack, MEDIA_HOST};

/// Sixteen bytes, so every range is easy to read.
const CLIP: &str = "0123456789abcdef";

fn stack_with_clip(name: &str, options: Options) -> Stack {
    let stack = Stack::start_with(name, options);
    for root in ["media", "files"] {
        stack.dir.write(&format!("files/{root}/clip/a.mp4"), CLIP);
    }
    stack
}

fn playback(grant: &str) -> Options {
    Options {
        extra_config: format!("playback_grant = \"{grant}\"\n"),
        ..Options::default()
    }
}

/// A query-form link for `path` living `ttl` seconds, with another parameter before the
/// token (it must come back on the grant URL): `(link, token, expires)`.
fn query_link(stack: &Stack, path: &str, ttl: u64) -> (String, String, u64) {
    let minted = mediagate::mint::mint(
        &stack.config,
        &MintRequest {
            path: path.into(),
            ttl: Some(ttl),
            subject: Some("alice".into()),
            token_id: Some("t-7".into()),
            ..MintRequest::default()
        },
        clock::now(),
    )
    .unwrap();
    let link = format!("{path}?v=1&token={}", minted.token);
    (link, minted.token, minted.expires)
}

/// The grant URL the exchange must answer with for `token` (verified for the file `path` in
/// folder `folder`): the same claims, the token's expiry as the grant's origin, expiring at
/// `expires`, signed with the same key.
fn grant_url(stack: &Stack, token: &str, path: &str, folder: &str, expires: u64) -> String {
    let mut buf = TokenBuf::new();
    let decoded = token::decode(token, &mut buf).unwrap();
    let key = stack.config.keys.get(decoded.kid).unwrap();
    let claims = Claims {
        expires,
        playback_of: Some(decoded.expires),
        ..decoded.claims(path)
    };
    let grant = token::sign(&claims, key).unwrap();
    let rest = &path[folder.len()..];
    format!("http://{MEDIA_HOST}{folder}~mg~{grant}/{rest}?v=1")
}

fn ranged(stack: &Stack, target: &str, range: &str) -> Response {
    stack.media_with("GET", target, &[("Range", range)])
}

/// 206 with exactly these bytes of [`CLIP`] and the matching `Content-Range`.
fn assert_partial(response: &Response, from: usize, to: usize, what: &str) {
    assert_eq!(
        (
            response.status,
            response.header("content-range"),
            response.text()
        ),
        (
            206,
            Some(format!("bytes {from}-{to}/{}", CLIP.len()).as_str()),
            CLIP[from..=to].to_owned()
        ),
        "{what}"
    );
}

/// The grant's expiry, read from the location's token (the exchange ran at a second between
/// `before` and `after`, which the caller measured).
fn grant_expiry(location: &str) -> u64 {
    let mut buf = TokenBuf::new();
    token::decode(path_token(location), &mut buf)
        .unwrap()
        .expires
}

#[test]
fn a_players_first_range_is_exchanged_for_a_grant_that_plays_after_the_link_expired() {
    let stack = stack_with_clip("playback", playback("1h"));
    let mut grants = Vec::new();
    for root in ["media", "files"] {
        let path = format!("/{root}/clip/a.mp4");
        let folder = format!("/{root}/clip/");
        let (link, token, expires) = query_link(&stack, &path, 3);
        // Fetched whole (a download, a page's fetch): served as it is.
        assert_eq!(seen(&stack.media("GET", &link)), served(CLIP), "{root}");
        // A player's range: the same link in path form, valid for the playback grant.
        let before = clock::now();
        let exchanged = ranged(&stack, &link, "bytes=0-");
        let after = clock::now();
        assert_eq!(exchanged.status, 302, "{root}");
        let location = exchanged.header("location").unwrap().to_owned();
        let grant_expires = grant_expiry(&location);
        assert!(
            (before + 3600..=after + 3600).contains(&grant_expires),
            "{grant_expires} for an exchange between {before} and {after}"
        );
        assert_eq!(
            location,
            grant_url(&stack, &token, &path, &folder, grant_expires)
        );
        assert_eq!(exchanged.header("cache-control"), Some("no-store"));
        assert_eq!(exchanged.header("x-mediagate-reason"), None);
        // The player follows it and seeks there; the grant is never exchanged again.
        let (host, grant) = split_url(&location);
        assert_eq!(host, MEDIA_HOST);
        assert_partial(&ranged(&stack, &grant, "bytes=0-"), 0, 15, root);
        assert_partial(&ranged(&stack, &grant, "bytes=10-13"), 10, 13, root);
        // Taken out of its segment into a query link, a grant buys no further grant (no
        // renewal): its range is served as it is.
        let grant_as_query = format!("{path}?v=1&token={}", path_token(&grant));
        assert_partial(
            &ranged(&stack, &grant_as_query, "bytes=10-13"),
            10,
            13,
            root,
        );
        grants.push((link, grant, expires));
    }
    // One audit line per exchange, naming the link, never the token or the grant.
    let audit = stack
        .mediagate
        .log_containing("mode=\"accel\" decision=\"exchange\" reason=\"-\" status=302");
    for line in [
        "mode=\"auth\" decision=\"exchange\" reason=\"-\" status=401",
        "mode=\"accel\" decision=\"exchange\" reason=\"-\" status=302",
    ] {
        let found = audit.lines().find(|text| text.contains(line));
        let found = found.unwrap_or_else(|| panic!("no {line} in:\n{audit}"));
        assert!(
            found.contains("token_id=\"t-7\"") && found.contains("subject=\"alice\""),
            "{found}"
        );
    }
    for (link, grant, _) in &grants {
        let query_token = link.split_once("token=").unwrap().1;
        for token in [query_token, path_token(grant)] {
            assert!(
                !audit.contains(token),
                "a working token in the audit:\n{audit}"
            );
        }
    }
    // Wait for the links themselves to expire (the condition, not an order of events).
    let last = grants.iter().map(|(_, _, expires)| *expires).max().unwrap();
    while clock::now() < last {
        std::thread::sleep(Duration::from_millis(50));
    }
    for (link, grant, _) in &grants {
        // The page's link is expired: a range of it goes to the session domain as before...
        let refreshed = ranged(&stack, link, "bytes=4-");
        assert_eq!(
            (refreshed.status, refreshed.header("x-mediagate-reason")),
            (302, Some("expired")),
            "{link}"
        );
        // ...and the player's seeks on the grant still play.
        assert_partial(&ranged(&stack, grant, "bytes=4-7"), 4, 7, grant);
    }
    let metrics = stack.metrics();
    for mode in ["auth", "accel"] {
        let line = format!(
            "mediagate_decisions_total{{mode=\"{mode}\",verdict=\"exchange\",reason=\"none\"}} 1\n"
        );
        assert!(metrics.contains(&line), "{line}\n{metrics}");
    }
}

#[test]
fn a_link_outliving_the_grant_keeps_its_expiry_and_no_answer_of_it_is_auth_cached() {
    let stack = stack_with_clip("playbackcache", playback("1m").with_auth_cache());
    let path = "/media/clip/a.mp4";
    let (link, token, expires) = query_link(&stack, path, 7200);
    // The original outlives the grant: the grant keeps its expiry (and names it as origin).
    let expected = grant_url(&stack, &token, path, "/media/clip/", expires);
    assert_eq!(grant_expiry(&expected), expires, "{expected}");
    // A whole fetch first: its allow must not be cached, or the next range would skip the
    // exchange (the cache key holds no Range).
    assert_eq!(seen(&stack.media("GET", &link)), served(CLIP));
    for _ in 0..2 {
        let exchanged = ranged(&stack, &link, "bytes=2-5");
        assert_eq!(
            (exchanged.status, exchanged.header("location")),
            (302, Some(expected.as_str()))
        );
    }
    assert_eq!(seen(&stack.media("GET", &link)), served(CLIP));
    let (_, grant) = split_url(&expected);
    for _ in 0..2 {
        assert_partial(&ranged(&stack, &grant, "bytes=2-5"), 2, 5, &grant);
    }
}

#[test]
fn without_a_playback_grant_a_range_is_served_directly() {
    let stack = stack_with_clip("playbackoff", Options::default());
    for root in ["media", "files"] {
        let (link, _, _) = query_link(&stack, &format!("/{root}/clip/a.mp4"), 60);
        assert_partial(&ranged(&stack, &link, "bytes=1-3"), 1, 3, root);
    }
}
