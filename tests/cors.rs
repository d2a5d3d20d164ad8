//! CORS for players on the session origin (issue 10): `nginx/snippets/cors.conf` and
//! `cors-credentials.conf` in example.conf's media locations, through real nginx. Preflights
//! are answered by nginx alone; only the origins of the `$mediagate_cors_origin` map get
//! `Access-Control-Allow-Origin`, on files, ranges, redirects and denials alike.

use crate::support::{nginx_denied, seen, Options, Response, Stack};

/// The origin example.conf's `$mediagate_cors_origin` map allows (the session domain).
const ORIGIN: &str = "http://www.localhost:8081";
/// An origin the map does not name.
const STRANGER: &str = "http://evil.localhost";
const PLAYLIST: &str = "#EXTM3U\n#EXT-X-ENDLIST\n";
const EXPOSED: &str = "Content-Range, Content-Length, Accept-Ranges, X-Mediagate-Reason";

fn stack_with(name: &str, options: Options) -> Stack {
    let stack = Stack::start_with(name, options);
    stack.dir.write("files/media/clip/index.m3u8", PLAYLIST);
    stack.dir.write("files/files/clip.txt", "accel bytes");
    stack
}

/// example.conf's `/media/` location with cors-credentials.conf instead of cors.conf.
fn with_credentials() -> Options {
    Options {
        nginx_edits: vec![(
            "include mediagate/cors.conf;\n            include mediagate/protect.conf;".into(),
            "include mediagate/cors-credentials.conf;\n            include mediagate/protect.conf;"
                .into(),
        )],
        ..Options::default()
    }
}

/// The CORS headers of an answer and `Vary`, names in lower case, in the order sent: every
/// occurrence, so a header sent twice shows.
fn cors_headers(response: &Response) -> Vec<(String, String)> {
    response
        .headers
        .iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value.clone()))
        .filter(|(name, _)| name.starts_with("access-control-") || name == "vary")
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

/// A link in path form to the playlist (`/media/clip/~mg~<token>/index.m3u8`), granting the
/// folder.
fn path_form(stack: &Stack) -> String {
    format!("{}index.m3u8", stack.sign_path("/media/clip/", true))
}

fn preflight(stack: &Stack, target: &str, origin: &str) -> Response {
    stack.media_with(
        "OPTIONS",
        target,
        &[
            ("Origin", origin),
            ("Access-Control-Request-Method", "GET"),
            ("Access-Control-Request-Headers", "range"),
        ],
    )
}

/// How many decisions mediagate made (one audit line each).
fn decisions(stack: &Stack) -> usize {
    stack.mediagate.log_count("mode=\"auth\"")
}

#[test]
fn preflights_are_answered_by_nginx_and_only_allowed_origins_get_cors_headers() {
    let mut stack = stack_with("cors-preflight", Options::default());
    let link = stack.sign("/media/clip/index.m3u8");
    let path_form = path_form(&stack);
    for target in ["/media/clip/index.m3u8", link.as_str(), path_form.as_str()] {
        let allowed = preflight(&stack, target, ORIGIN);
        assert_eq!(
            (allowed.status, allowed.body.len()),
            (204, 0),
            "{allowed:#?}"
        );
        assert_eq!(
            cors_headers(&allowed),
            pairs(&[
                ("access-control-allow-origin", ORIGIN),
                ("access-control-allow-methods", "GET, HEAD"),
                ("access-control-allow-headers", "Range, Authorization"),
                ("access-control-max-age", "600"),
                ("vary", "Origin"),
            ]),
            "{allowed:#?}"
        );
        assert_eq!(allowed.header("cache-control"), Some("no-store"));
        let other = preflight(&stack, target, STRANGER);
        assert_eq!(other.status, 204);
        assert_eq!(
            cors_headers(&other),
            pairs(&[
                ("access-control-allow-methods", "GET, HEAD"),
                ("access-control-allow-headers", "Range, Authorization"),
                ("access-control-max-age", "600"),
                ("vary", "Origin"),
            ]),
            "{other:#?}"
        );
    }
    // Not one preflight reached mediagate or the application: the GET after them is the
    // first decision (audit lines are written in order; wait for that one, then count).
    let get = stack.media_with("GET", &link, &[("Origin", ORIGIN)]);
    assert_eq!(seen(&get).0, 200);
    stack.mediagate.wait_for_log_count("mode=\"auth\"", 1);
    assert_eq!(decisions(&stack), 1, "{}", stack.mediagate.log_text());
    assert!(stack.app.asked.lock().unwrap().is_empty());
}

#[test]
fn an_allowed_origin_reads_the_file_its_ranges_and_the_headers_a_player_needs() {
    let stack = stack_with("cors-get", Options::default());
    let link = stack.sign("/media/clip/index.m3u8");
    let whole = stack.media_with("GET", &link, &[("Origin", ORIGIN)]);
    assert_eq!((whole.status, whole.text()), (200, PLAYLIST.to_owned()));
    let readable = pairs(&[
        ("access-control-allow-origin", ORIGIN),
        ("access-control-expose-headers", EXPOSED),
        ("vary", "Origin"),
    ]);
    assert_eq!(cors_headers(&whole), readable, "{whole:#?}");

    let range = stack.media_with("GET", &link, &[("Origin", ORIGIN), ("Range", "bytes=0-6")]);
    assert_eq!((range.status, range.text()), (206, "#EXTM3U".to_owned()));
    assert_eq!(range.header("content-range"), Some("bytes 0-6/23"));
    assert_eq!(cors_headers(&range), readable, "{range:#?}");

    // Another origin gets the bytes (CORS is the browser's rule, not access control: the
    // token is) but nothing that lets its page read them.
    let other = stack.media_with("GET", &link, &[("Origin", STRANGER)]);
    assert_eq!(other.status, 200);
    assert_eq!(cors_headers(&other), pairs(&[("vary", "Origin")]));

    // A path-form link (the token in a `~mg~` segment): the same.
    let segment = stack.media_with("GET", &path_form(&stack), &[("Origin", ORIGIN)]);
    assert_eq!((segment.status, segment.text()), (200, PLAYLIST.to_owned()));
    assert_eq!(cors_headers(&segment), readable, "{segment:#?}");

    // X-Accel-Redirect mode: the file comes from the internal location, which has its own.
    let accel = stack.sign("/files/clip.txt");
    let served = stack.media_with("GET", &accel, &[("Origin", ORIGIN)]);
    assert_eq!(
        (served.status, served.text()),
        (200, "accel bytes".to_owned())
    );
    assert_eq!(cors_headers(&served), readable, "{served:#?}");
}

#[test]
fn redirects_and_denials_carry_cors_headers_so_a_player_can_read_the_reason() {
    let stack = stack_with("cors-denied", Options::default());
    let readable = pairs(&[
        ("access-control-allow-origin", ORIGIN),
        ("access-control-expose-headers", EXPOSED),
    ]);
    // No token: the refresh redirect to the session domain.
    let redirect = stack.media_with("GET", "/media/clip/index.m3u8", &[("Origin", ORIGIN)]);
    assert_eq!(
        (redirect.status, redirect.header("x-mediagate-reason")),
        (302, Some("missing_token"))
    );
    assert_eq!(cors_headers(&redirect), readable, "{redirect:#?}");

    // A token for another file: the readable denial page, with its reason readable too.
    let other_file = stack.sign("/media/other.m3u8");
    let token = other_file.split_once("?token=").unwrap().1;
    let forged = format!("/media/clip/index.m3u8?token={token}");
    let denied = stack.media_with("GET", &forged, &[("Origin", ORIGIN)]);
    assert_eq!(seen(&denied), nginx_denied("bad_signature"));
    assert_eq!(cors_headers(&denied), readable, "{denied:#?}");
    // ...and none of it for another origin.
    let stranger = stack.media_with("GET", &forged, &[("Origin", STRANGER)]);
    assert_eq!(seen(&stranger), nginx_denied("bad_signature"));
    assert_eq!(cors_headers(&stranger), []);

    // X-Accel-Redirect mode: mediagate's own 403 passes through the location's headers.
    let accel = stack.media_with(
        "GET",
        &format!("/files/clip.txt?token={token}"),
        &[("Origin", ORIGIN)],
    );
    assert_eq!(
        (accel.status, accel.header("x-mediagate-reason")),
        (403, Some("bad_signature"))
    );
    assert_eq!(
        cors_headers(&accel),
        pairs(&[
            ("access-control-allow-origin", ORIGIN),
            ("access-control-expose-headers", EXPOSED),
            ("vary", "Origin"),
        ]),
        "{accel:#?}"
    );
}

#[test]
fn the_credentials_variant_allows_credentials_for_allowed_origins_only() {
    let stack = stack_with("cors-credentials", with_credentials());
    let allowed = preflight(&stack, "/media/clip/index.m3u8", ORIGIN);
    assert_eq!(allowed.status, 204);
    assert_eq!(
        cors_headers(&allowed),
        pairs(&[
            ("access-control-allow-origin", ORIGIN),
            ("access-control-allow-credentials", "true"),
            ("access-control-allow-methods", "GET, HEAD"),
            ("access-control-allow-headers", "Range, Authorization"),
            ("access-control-max-age", "600"),
            ("vary", "Origin"),
        ]),
        "{allowed:#?}"
    );
    let other = preflight(&stack, "/media/clip/index.m3u8", STRANGER);
    assert_eq!(other.status, 204);
    assert_eq!(other.header("access-control-allow-origin"), None);
    assert_eq!(other.header("access-control-allow-credentials"), None);

    let link = stack.sign("/media/clip/index.m3u8");
    let file = stack.media_with("GET", &link, &[("Origin", ORIGIN)]);
    assert_eq!(file.status, 200);
    assert_eq!(
        cors_headers(&file),
        pairs(&[
            ("access-control-allow-origin", ORIGIN),
            ("access-control-allow-credentials", "true"),
            ("access-control-expose-headers", EXPOSED),
            ("vary", "Origin"),
        ]),
        "{file:#?}"
    );
    let stranger = stack.media_with("GET", &link, &[("Origin", STRANGER)]);
    assert_eq!(cors_headers(&stranger), pairs(&[("vary", "Origin")]));

    let redirect = stack.media_with("GET", "/media/clip/index.m3u8", &[("Origin", ORIGIN)]);
    assert_eq!(redirect.status, 302);
    assert_eq!(
        cors_headers(&redirect),
        pairs(&[
            ("access-control-allow-origin", ORIGIN),
            ("access-control-allow-credentials", "true"),
            ("access-control-expose-headers", EXPOSED),
        ]),
        "{redirect:#?}"
    );
}
