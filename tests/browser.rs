//! A real browser in front of the real stack: Debian's Chromium, driven by playwright-core
//! from `tests/browser/navigate.mjs`, against real nginx and mediagate on loopback TCP
//! ([`Options::browser`]). What is pinned is what a person ends on: the final status, URL and
//! text, and the chain of navigations that led there; and a `<video>` element on a single-use
//! link (`tests/browser/video.mjs`) plays and seeks while the link stays single-use; and the
//! demo application's login form (`tests/browser/login.mjs`) ends on the protected PDF, and
//! its `/video` page plays its HLS video (`tests/browser/hls.mjs`); and images on a page of
//! the session domain load through a cookie grant (`tests/browser/images.mjs`).
//! `bash scripts/test.sh` installs Chromium, ffmpeg and playwright-core; without them these
//! tests fail, never skip.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use mediagate::mint::MintRequest;
use serde_json::Value;

use crate::support::{request_tcp_with, Options, Stack, TempDir, MEDIA_HOST};

const TEXT: &str = "report text, readable in the browser\n";

/// What the browser ended on.
#[derive(Debug)]
struct Visit {
    status: u64,
    url: String,
    content_type: String,
    /// The final response's body as received.
    body: String,
    /// The page's rendered text (`innerText` of its body).
    text: String,
    /// Every navigation, oldest first: (status, URL).
    chain: Vec<(u64, String)>,
}

/// Runs `tests/browser/<script>` with node in a fresh headless Chromium profile and `env`, and
/// returns the JSON it printed. Chromium, node and playwright-core must be installed: a
/// missing one fails the test with what to run.
fn run_script(script: &str, env: &[(&str, String)]) -> Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let install = "run `bash scripts/test.sh`, which installs Chromium (apt) and playwright-core (npm ci in tests/browser)";
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "/usr/bin/chromium is missing: {install}"
    );
    assert!(
        root.join("tests/browser/node_modules/playwright-core")
            .is_dir(),
        "tests/browser/node_modules/playwright-core is missing: {install}"
    );
    let profile = TempDir::new("chromium-profile");
    let output = Command::new("node")
        .arg(root.join("tests/browser").join(script))
        .envs(env.iter().map(|(name, value)| (*name, value.as_str())))
        .env("BROWSER_PROFILE", profile.path())
        .output()
        .unwrap_or_else(|error| panic!("cannot run node ({error}): {install}"));
    assert!(
        output.status.success(),
        "{script} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "{script} printed no JSON ({error}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// The environment that starts Chromium with the cookie `session=<session>` for the stack's
/// session origin (chromium.mjs's `launch` reads it); nothing without `session`.
fn session_env(stack: &Stack, session: Option<&str>) -> Vec<(&'static str, String)> {
    let (_, session_origin) = stack.browser_origins();
    session
        .map(|session| {
            vec![
                ("BROWSER_COOKIE_URL", format!("{session_origin}/")),
                ("BROWSER_COOKIE", format!("session={session}")),
            ]
        })
        .unwrap_or_default()
}

/// Opens `url` in a fresh headless Chromium whose only cookie is `session=<session>` for the
/// stack's session origin (none without `session`).
fn open(stack: &Stack, url: &str, session: Option<&str>) -> Visit {
    let mut env = vec![("BROWSER_URL", url.to_owned())];
    env.extend(session_env(stack, session));
    let result = run_script("navigate.mjs", &env);
    let string = |key: &str| result[key].as_str().unwrap_or_default().to_owned();
    Visit {
        status: result["status"].as_u64().unwrap(),
        url: string("url"),
        content_type: string("contentType"),
        body: string("body"),
        text: string("text"),
        chain: result["chain"]
            .as_array()
            .unwrap()
            .iter()
            .map(|hop| {
                (
                    hop["status"].as_u64().unwrap_or(0),
                    hop["url"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect(),
    }
}

fn browser_stack(name: &str) -> Stack {
    let stack = Stack::start_with(
        name,
        Options {
            browser: true,
            ..Options::default()
        },
    );
    stack.dir.write("files/media/report.txt", TEXT);
    stack
}

/// The token of a final URL that must be exactly `expected` plus `?token=<token>`.
fn token_after<'a>(url: &'a str, expected: &str) -> &'a str {
    let token = url
        .strip_prefix(expected)
        .and_then(|rest| rest.strip_prefix("?token="))
        .unwrap_or_else(|| panic!("ended on {url}, not {expected}?token=…"));
    assert!(
        !token.is_empty()
            && token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b)),
        "not a token: {token:?}"
    );
    token
}

#[test]
fn refresh_flow_heals_a_link_without_token_in_a_real_browser() {
    let stack = browser_stack("browser-heal");
    let (media, session) = stack.browser_origins();
    let start = format!("{media}/media/report.txt");
    let visit = open(&stack, &start, Some("alice"));
    assert_eq!(visit.status, 200, "{visit:#?}");
    token_after(&visit.url, &start);
    assert_eq!(visit.body, TEXT);
    assert_eq!(visit.text, TEXT);
    assert!(visit.content_type.starts_with("text/plain"), "{visit:#?}");
    // media (no token) -> session domain's refresh -> media with a fresh token.
    let hops: Vec<(u64, bool)> = visit
        .chain
        .iter()
        .map(|(status, url)| (*status, url.starts_with(&format!("{session}/"))))
        .collect();
    assert_eq!(
        hops,
        [(302, false), (302, true), (200, false)],
        "{visit:#?}"
    );
    assert_eq!(visit.chain[0].1, start);
    assert_eq!(visit.chain[2].1, visit.url);
}

#[test]
fn awkward_file_names_heal_and_open_in_a_real_browser() {
    // Issue 8 item 3: `%`, `#`, `?`, a space and non-ASCII in names on disk, each opened by
    // its correctly percent-encoded URL.
    let stack = browser_stack("browser-names");
    let (media, _) = stack.browser_origins();
    let mut wrong = Vec::new();
    for (name, encoded) in [
        ("a%20b.txt", "a%2520b.txt"),
        ("100% #1?.txt", "100%25%20%231%3F.txt"),
        ("café.txt", "caf%C3%A9.txt"),
    ] {
        // ASCII contents: nginx serves .txt without a charset, so Chromium would read UTF-8
        // contents as windows-1252; the names are what is under test here.
        let text = format!("the file at {encoded}\n");
        stack.dir.write(&format!("files/media/{name}"), &text);
        let start = format!("{media}/media/{encoded}");
        let visit = open(&stack, &start, Some("alice"));
        let ended = (
            visit.status,
            visit.url.split("?token=").next(),
            &visit.text[..],
        );
        if ended != (200, Some(start.as_str()), text.as_str()) {
            wrong.push(format!("{name}: {visit:#?}"));
        } else {
            token_after(&visit.url, &start);
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn forged_link_ends_on_the_readable_denial_page_in_a_real_browser() {
    let stack = browser_stack("browser-forged");
    stack.dir.write("files/media/secret.txt", "secret bytes");
    let (media, _) = stack.browser_origins();
    // A real token for another file: bad_signature.
    let other = stack.sign("/media/secret.txt");
    let token = other.split_once("token=").unwrap().1;
    let forged = format!("{media}/media/report.txt?token={token}");
    let visit = open(&stack, &forged, Some("alice"));
    assert_eq!(visit.status, 403, "{visit:#?}");
    assert_eq!(visit.url, forged);
    assert_eq!(visit.chain, [(403, forged.clone())]);
    assert!(visit.content_type.starts_with("text/html"), "{visit:#?}");
    assert_eq!(
        visit.text,
        "Invalid link\n\n\
         This link is damaged or was not issued for this file.\n\n\
         Open the file again from the page that linked here; if you copied the link, copy all \
         of it.\n\n\
         403 Forbidden \u{b7} bad_signature"
    );
    assert!(!visit.body.contains(token), "the page shows the token");
    assert!(!visit.text.contains(token), "the page shows the token");
}

#[test]
fn a_forbidden_path_ends_on_the_readable_page_in_a_real_browser() {
    // Issue 10: a logged-in user the application refuses (its access check answers 403)
    // opens a media URL without a token. The refresh flow asks the application, which says
    // no: the person ends on mediagate's page on the session domain, not nginx's bare 403.
    let stack = browser_stack("browser-refused");
    let (media, session) = stack.browser_origins();
    let start = format!("{media}/media/report.txt");
    let visit = open(&stack, &start, Some("mallory"));
    assert_eq!(visit.status, 403, "{visit:#?}");
    // media (no token) -> the session domain's refresh, refused there.
    let refresh = format!("{session}/_mediagate/refresh/media/report.txt?state=");
    assert_eq!(visit.chain.len(), 2, "{visit:#?}");
    assert_eq!(visit.chain[0], (302, start.clone()), "{visit:#?}");
    assert_eq!(visit.chain[1].0, 403, "{visit:#?}");
    let state = visit.chain[1]
        .1
        .strip_prefix(&refresh)
        .unwrap_or_else(|| panic!("not the refresh: {visit:#?}"));
    assert!(state.len() > 20, "{visit:#?}");
    assert_eq!(visit.url, visit.chain[1].1);
    assert_eq!(visit.content_type, "text/html; charset=utf-8", "{visit:#?}");
    // The page without a reason: the link is not at fault, the application said no.
    assert_eq!(
        visit.body,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>Access denied</title>\n</head>\n<body>\n<h1>Access denied</h1>\n\
         <p>You may not open this file.</p>\n\
         <p>Go back to the page that linked here and open the file from there again.</p>\n\
         <p><small>403 Forbidden</small></p>\n</body>\n</html>\n"
    );
    assert_eq!(
        visit.text,
        "Access denied\n\n\
         You may not open this file.\n\n\
         Go back to the page that linked here and open the file from there again.\n\n\
         403 Forbidden"
    );
    assert!(!visit.body.contains(state), "the page shows the state");
    assert_eq!(
        *stack.app.asked.lock().unwrap(),
        ["/media/report.txt"],
        "{visit:#?}"
    );
}

#[test]
fn a_redirect_loop_ends_on_the_readable_page_in_a_real_browser() {
    // Issue 10: the session side's clock runs two hours behind, so every link it mints has
    // expired by the media side's clock and every refresh fails again. After
    // refresh.max_attempts the browser ends on the readable refresh_loop page.
    let stack = Stack::start_with(
        "browser-loop",
        Options {
            browser: true,
            session_clock_offset: Some("-2h"),
            ..Options::default()
        },
    );
    stack.dir.write("files/media/report.txt", TEXT);
    assert_eq!(stack.config.refresh.max_attempts, 2);
    let (media, session) = stack.browser_origins();
    let start = format!("{media}/media/report.txt");
    let visit = open(&stack, &start, Some("alice"));
    assert_eq!(visit.status, 403, "{visit:#?}");
    // media (no token) -> refresh -> media with an expired link (attempt 2) -> refresh ->
    // media with another expired link: refresh_loop, no third round.
    let statuses: Vec<u64> = visit.chain.iter().map(|(status, _)| *status).collect();
    assert_eq!(statuses, [302, 302, 302, 302, 403], "{visit:#?}");
    assert_eq!(visit.chain[0].1, start);
    let refresh = format!("{session}/_mediagate/refresh/media/report.txt?state=");
    let mut secrets = Vec::new();
    for hop in [1, 3] {
        let state = visit.chain[hop]
            .1
            .strip_prefix(&refresh)
            .unwrap_or_else(|| panic!("hop {hop} is not the refresh: {visit:#?}"));
        assert!(state.len() > 20, "{visit:#?}");
        secrets.push(state.to_owned());
    }
    for hop in [2, 4] {
        secrets.push(token_after(&visit.chain[hop].1, &start).to_owned());
    }
    assert_eq!(visit.url, visit.chain[4].1);
    assert_eq!(visit.content_type, "text/html; charset=utf-8", "{visit:#?}");
    assert_eq!(
        visit.text,
        "Link could not be renewed\n\n\
         This link could not be renewed: a fresh link was refused again (a clock or key \
         mismatch between the sites, or a browser that does not keep the site's login).\n\n\
         Reload the page that linked here; if it persists, contact the site's operators.\n\n\
         403 Forbidden \u{b7} refresh_loop"
    );
    // Byte for byte the page mediagate renders for refresh_loop (its words are pinned above,
    // as Chromium shows them).
    let page = mediagate::pages::render(
        403,
        Some(mediagate::reason::Reason::RefreshLoop),
        mediagate::pages::Format::Html,
        None,
    );
    assert_eq!(visit.body.as_bytes(), &page[..], "{visit:#?}");
    assert!(
        visit
            .body
            .contains("<small>403 Forbidden &middot; <code>refresh_loop</code></small>"),
        "{visit:#?}"
    );
    for secret in &secrets {
        assert!(
            !visit.body.contains(secret.as_str()),
            "the page shows {secret}"
        );
    }
    // The application was asked once a round, and said yes each time.
    assert_eq!(
        *stack.app.asked.lock().unwrap(),
        ["/media/report.txt", "/media/report.txt"],
        "{visit:#?}"
    );
}

#[test]
fn a_page_uploads_a_file_cross_origin_to_a_slot_once_in_a_real_browser() {
    let uploads = crate::uploads::Uploads::start_with(
        "browser-upload",
        Options {
            browser: true,
            ..Options::default()
        },
    );
    let (media, session) = uploads.stack.browser_origins();
    let slot = uploads.slot("/uploads/photo.png", |request| {
        request.subject = Some("alice".into());
        request.content_types = Some("image/png".into());
        request.max_size = Some(1024);
    });
    let attempts = run_script(
        "upload.mjs",
        &[
            ("PAGE_URL", format!("{session}/")),
            ("SLOT_URL", format!("{media}{slot}")),
        ],
    );
    assert_eq!(attempts[0]["status"], 201, "{attempts:#}");
    assert_eq!(attempts[1]["status"], 403, "{attempts:#}");
    assert_eq!(attempts[1]["reason"], "used_up", "{attempts:#}");
    assert_eq!(attempts[1]["body"], "upload refused: used_up\n");
    let received = uploads.received();
    assert_eq!(received.len(), 1, "{received:#?}");
    assert_eq!(received[0]["subject"], "alice");
    assert_eq!(received[0]["content_type"], "image/png");
    assert_eq!(received[0]["size"], 26);
}

/// What the video element reached, and the requests Chromium made for the video.
#[derive(Debug)]
struct Played {
    /// `canPlayType` of H.264/AAC in MP4 and of VP9/Opus in WebM.
    can_play: (String, String),
    ready_state_at_canplay: u64,
    duration: f64,
    played_before_seek: f64,
    played_after_seek: f64,
    /// The browser's `User-Agent`.
    user_agent: String,
    /// Every request for the video, in order: (`Range` header, status; `None` if it never
    /// answered before the browser closed).
    requests: Vec<(Option<String>, Option<u64>)>,
}

/// Puts `<video src=video_url>` on the page at `page_url` in a fresh headless Chromium and
/// plays it, seeks to `seek_to` seconds and plays on (`tests/browser/video.mjs`).
fn play(page_url: &str, video_url: &str, seek_to: f64) -> Played {
    let result = run_script(
        "video.mjs",
        &[
            ("BROWSER_PAGE_URL", page_url.to_owned()),
            ("BROWSER_VIDEO_URL", video_url.to_owned()),
            ("BROWSER_SEEK_TO", seek_to.to_string()),
        ],
    );
    let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
    Played {
        can_play: (
            text(&result["canPlay"]["mp4"]),
            text(&result["canPlay"]["webm"]),
        ),
        ready_state_at_canplay: result["readyStateAtCanplay"].as_u64().unwrap(),
        duration: result["duration"].as_f64().unwrap(),
        played_before_seek: result["playedBeforeSeek"].as_f64().unwrap(),
        played_after_seek: result["playedAfterSeek"].as_f64().unwrap(),
        user_agent: text(&result["userAgent"]),
        requests: result["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|request| {
                (
                    request["range"].as_str().map(str::to_owned),
                    request["status"].as_u64(),
                )
            })
            .collect(),
    }
}

/// Writes a real `seconds`-long H.264/AAC MP4 (a moving test picture and a tone) to `path`,
/// world-readable. The index (`moov`) stays at the end, as many encoders leave it, so a
/// player must ask for the end of the file before it can play: one more `Range` request.
fn make_video(path: &Path, seconds: u32) {
    let output = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", &seconds.to_string()])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ])
        // A high bit rate, so the file (about 0.6 MB a second) is larger than what Chromium
        // reads ahead at start and the seek needs bytes it has not fetched.
        .args(["-b:v", "5M", "-c:a", "aac", "-b:a", "96k"])
        .arg(path)
        .output()
        .unwrap_or_else(|error| {
            panic!("cannot run ffmpeg ({error}): run `bash scripts/test.sh`, which installs it")
        });
    assert!(
        output.status.success(),
        "ffmpeg failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
}

/// `GET target` on the internal listener, with the internal secret as bearer.
fn internal_get(stack: &Stack, target: &str) -> Value {
    let bearer = format!("Bearer {}", stack.internal_secret);
    let answer = crate::support::request(
        &stack.socket("internal.sock"),
        "GET",
        "mediagate",
        target,
        &[("Authorization", bearer.as_str())],
    );
    assert_eq!(answer.status, 200, "{target}: {}", answer.text());
    serde_json::from_slice(&answer.body).unwrap()
}

#[test]
fn a_single_use_link_plays_and_seeks_in_a_real_video_element_and_stays_single_use() {
    // Issue 9: what counts as a use lets a single-use link to a video play and seek in a
    // browser, whose player sends many Range requests, and still admits nobody else.
    let stack = browser_stack("browser-video");
    let file = stack.dir.path().join("files/media/clip.mp4");
    make_video(&file, 8);
    let (media, session) = stack.browser_origins();
    let link = stack.sign_with(MintRequest {
        path: "/media/clip.mp4".into(),
        uses: Some(1),
        token_id: Some("video-1".into()),
        ..MintRequest::default()
    });
    let url = format!("{media}{link}");
    let played = play(&format!("{session}/watch"), &url, 6.0);
    assert_eq!(
        played.can_play,
        ("probably".to_owned(), "probably".to_owned()),
        "{played:#?}"
    );
    assert_eq!(played.ready_state_at_canplay, 4, "{played:#?}");
    assert_eq!(played.duration, 8.0, "{played:#?}");
    assert!(played.played_before_seek > 0.2, "{played:#?}");
    assert!(played.played_after_seek > 6.5, "{played:#?}");
    // Several ranged requests, every one answered 206: the first from the start, one for the
    // index at the end, at least one more for the bytes around the seek point.
    let answered: Vec<&(Option<String>, Option<u64>)> = played
        .requests
        .iter()
        .filter(|(_, status)| status.is_some())
        .collect();
    assert!(answered.len() >= 3, "{played:#?}");
    assert_eq!(answered[0].0.as_deref(), Some("bytes=0-"), "{played:#?}");
    for (range, status) in &answered {
        assert!(
            range
                .as_deref()
                .is_some_and(|range| range.starts_with("bytes="))
                && *status == Some(206),
            "{played:#?}"
        );
    }

    // nginx saw the same and more: Chromium's HTTP cache revalidates byte ranges it already
    // holds (a conditional ranged request nginx answers 304), which the page never sees.
    // Every one of them was let through, none refused, none a whole copy.
    // nginx writes a request's line when it ends, and a range the browser cut off by seeking
    // may end after the browser closed: wait for the lines (a condition, with a deadline).
    let ours = |line: &&str| {
        line.contains("\"GET /media/clip.mp4\"")
            && line.contains(&format!("\"{}\"", played.user_agent))
    };
    let log = access_log_with(&stack, ours, answered.len());
    let statuses: Vec<&str> = log
        .lines()
        .filter(ours)
        .map(|line| {
            line.split("\" ")
                .nth(1)
                .unwrap_or("")
                .split(' ')
                .next()
                .unwrap_or("")
        })
        .collect();
    assert!(statuses.len() >= answered.len(), "{log}");
    assert!(
        statuses
            .iter()
            .all(|status| ["206", "304"].contains(status)),
        "{log}"
    );
    assert!(
        log.contains("reason=-") && !log.contains("reason=used_up"),
        "{log}"
    );

    // The limit holds: another client on the same address (another user agent) gets
    // `used_up`, with a Range header or without.
    let (_, media_port) = stack.tcp_ports.unwrap();
    let other = "curl/8.5.0";
    for headers in [
        vec![("User-Agent", other)],
        vec![("User-Agent", other), ("Range", "bytes=0-")],
    ] {
        let answer = request_tcp_with(media_port, "GET", MEDIA_HOST, &link, &headers);
        assert_eq!(
            (answer.status, answer.header("x-mediagate-reason")),
            (403, Some("used_up")),
            "{headers:?}"
        );
    }

    // Exactly one use was counted: the history holds the browser's use and the two
    // refusals, nothing for its ranged requests. History is written off the answer's path:
    // wait for the three entries without sleeping a fixed time.
    let deadline = Instant::now() + Duration::from_secs(10);
    let uses = loop {
        let json = internal_get(&stack, "/uses?token_id=video-1");
        let uses = json["uses"].as_array().unwrap().clone();
        if uses.len() >= 3 || Instant::now() > deadline {
            break uses;
        }
        std::thread::yield_now();
    };
    let summary: Vec<(u64, &str, &str, Option<&str>)> = uses
        .iter()
        .map(|entry| {
            (
                entry["status"].as_u64().unwrap(),
                entry["client"].as_str().unwrap_or_default(),
                entry["user_agent"].as_str().unwrap_or_default(),
                entry["reason"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (200, "127.0.0.1", played.user_agent.as_str(), None),
            (403, "127.0.0.1", other, Some("used_up")),
            (403, "127.0.0.1", other, Some("used_up")),
        ],
        "{uses:#?}"
    );
}

/// What `tests/browser/login.mjs` saw: the browser's navigations and where it ended.
#[derive(Debug)]
struct LoggedIn {
    status: u64,
    url: String,
    content_type: String,
    /// `fetch` of [`LoggedIn::url`] by the page: Chromium reports its PDF viewer's wrapper as
    /// a PDF navigation's body, so the file's bytes are read again from the page.
    fetched_status: u64,
    body: Vec<u8>,
    /// Every top-level navigation response, oldest first: (method, status, URL, Location).
    chain: Vec<(String, u64, String, Option<String>)>,
}

/// Opens `url` in a fresh headless Chromium with no cookie, fills the login form it lands on
/// with `user` and submits it.
fn log_in_and_open(url: &str, user: &str) -> LoggedIn {
    let result = run_script(
        "login.mjs",
        &[
            ("BROWSER_URL", url.to_owned()),
            ("BROWSER_USER", user.to_owned()),
        ],
    );
    let string = |value: &Value| value.as_str().unwrap_or_default().to_owned();
    LoggedIn {
        status: result["status"].as_u64().unwrap(),
        url: string(&result["url"]),
        content_type: string(&result["contentType"]),
        fetched_status: result["fetchedStatus"].as_u64().unwrap(),
        body: base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            string(&result["body"]),
        )
        .unwrap(),
        chain: result["chain"]
            .as_array()
            .unwrap()
            .iter()
            .map(|hop| {
                (
                    string(&hop["method"]),
                    hop["status"].as_u64().unwrap_or(0),
                    string(&hop["url"]),
                    hop["location"].as_str().map(str::to_owned),
                )
            })
            .collect(),
    }
}

/// The demo's report, as `scripts/demo.sh` writes it.
fn demo_pdf() -> Vec<u8> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new("python3")
        .arg(root.join("examples/demo_pdf.py"))
        .output()
        .unwrap_or_else(|error| panic!("cannot run python3 examples/demo_pdf.py: {error}"));
    assert!(output.status.success(), "demo_pdf.py failed");
    output.stdout
}

/// Checks what a PDF reader relies on first: the header, `startxref` naming the `xref`
/// table, and every in-use entry of that table naming the offset where its object starts.
fn assert_pdf_structure(pdf: &[u8]) {
    let text = String::from_utf8_lossy(pdf);
    assert!(pdf.starts_with(b"%PDF-1.4\n"), "{text}");
    assert!(pdf.ends_with(b"%%EOF\n"), "{text}");
    let tail = text.rsplit_once("startxref\n").unwrap().1;
    let xref: usize = tail.lines().next().unwrap().parse().unwrap();
    assert!(pdf[xref..].starts_with(b"xref\n0 6\n"), "{text}");
    // From `xref` on, the file is ASCII (the binary comment line is near the start).
    let table = std::str::from_utf8(&pdf[xref..]).unwrap();
    let entries: Vec<&str> = table.lines().skip(2).take(6).collect();
    assert_eq!(entries[0], "0000000000 65535 f ");
    for (number, entry) in entries.iter().enumerate().skip(1) {
        let (offset, rest) = entry.split_once(' ').unwrap();
        assert_eq!(rest, "00000 n ", "{text}");
        let offset: usize = offset.parse().unwrap();
        assert!(
            pdf[offset..].starts_with(format!("{number} 0 obj\n").as_bytes()),
            "object {number} is not at {offset}: {text}"
        );
    }
}

#[test]
fn demo_login_form_ends_on_the_valid_pdf_in_a_real_browser() {
    // Issue 10: the demo ships a valid PDF and a real login form, and a person who opens the
    // protected PDF while logged out logs in and ends on the file.
    let stack = Stack::start_with(
        "browser-demo-login",
        Options {
            browser: true,
            demo_app: true,
            ..Options::default()
        },
    );
    let pdf = demo_pdf();
    assert_pdf_structure(&pdf);
    stack.dir.write("files/media/report.pdf", &pdf);
    let (media, session) = stack.browser_origins();
    let start = format!("{media}/media/report.pdf");
    let visit = log_in_and_open(&start, "alice");

    assert_eq!(visit.status, 200, "{visit:#?}");
    token_after(&visit.url, &start);
    assert_eq!(visit.content_type, "application/pdf", "{visit:#?}");
    assert_eq!(visit.fetched_status, 200, "{visit:#?}");
    assert!(
        visit.body == pdf,
        "the browser received other bytes: {visit:#?}"
    );

    // media (no token) -> refresh: not logged in -> login form -> POST -> refresh -> media
    // with a fresh token.
    let hops: Vec<(&str, u64, &str)> = visit
        .chain
        .iter()
        .map(|(method, status, url, _)| {
            let side = if url.starts_with(&format!("{session}/")) {
                "session"
            } else if url.starts_with(&format!("{media}/")) {
                "media"
            } else {
                "elsewhere"
            };
            (method.as_str(), *status, side)
        })
        .collect();
    assert_eq!(
        hops,
        [
            ("GET", 302, "media"),
            ("GET", 302, "session"),
            ("GET", 200, "session"),
            ("POST", 303, "session"),
            ("GET", 302, "session"),
            ("GET", 200, "media"),
        ],
        "{visit:#?}"
    );
    let url = |hop: usize| visit.chain[hop].2.as_str();
    let location = |hop: usize| visit.chain[hop].3.as_deref().unwrap_or_default();
    assert_eq!(url(0), start);
    let refresh = format!("{session}/_mediagate/refresh/media/report.pdf?state=");
    assert!(url(1).starts_with(&refresh), "{visit:#?}");
    assert!(
        url(2).starts_with(&format!(
            "{session}/login?next=%2F_mediagate%2Frefresh%2Fmedia%2Freport.pdf%3Fstate%3D"
        )),
        "{visit:#?}"
    );
    assert_eq!(url(3), format!("{session}/login"));
    // The form carried `next` back: the POST returns to the refresh URL the login URL named,
    // as a local path.
    let next_state = url(2).rsplit_once("%3Fstate%3D").unwrap().1;
    assert_eq!(
        location(3),
        format!("/_mediagate/refresh/media/report.pdf?state={next_state}")
    );
    assert_eq!(url(4), format!("{refresh}{next_state}"));
    assert_eq!(url(5), visit.url);
    assert_eq!(location(4), visit.url);
}

/// The segments of [`make_hls`]'s rendition: one a second.
const HLS_SEGMENTS: [&str; 6] = [
    "seg0.ts", "seg1.ts", "seg2.ts", "seg3.ts", "seg4.ts", "seg5.ts",
];

/// Writes a real 6-second HLS rendition (H.264/AAC in MPEG-TS, a moving test picture and a
/// tone) into `folder`: `index.m3u8`, a VOD playlist naming [`HLS_SEGMENTS`] by relative URL,
/// one segment a second (a key frame every 25 frames at 25 fps, so every segment starts on
/// one). Everything world-readable (nginx's workers). A missing ffmpeg fails the test.
fn make_hls(folder: &Path) {
    std::fs::create_dir_all(folder).unwrap();
    let output = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", "6"])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ])
        .args(["-g", "25", "-keyint_min", "25", "-sc_threshold", "0"])
        .args(["-c:a", "aac", "-b:a", "64k"])
        .args(["-f", "hls", "-hls_time", "1", "-hls_playlist_type", "vod"])
        .arg("-hls_segment_filename")
        .arg(folder.join("seg%d.ts"))
        .arg(folder.join("index.m3u8"))
        .output()
        .unwrap_or_else(|error| {
            panic!("cannot run ffmpeg ({error}): run `bash scripts/test.sh`, which installs it")
        });
    assert!(
        output.status.success(),
        "ffmpeg failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mode = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap()
    };
    let mut dir = folder.to_path_buf();
    while dir.file_name().is_some_and(|name| name != "files") {
        mode(&dir, 0o755);
        dir.pop();
    }
    for entry in std::fs::read_dir(folder).unwrap() {
        mode(&entry.unwrap().path(), 0o644);
    }
    // What the players are given: relative segment URLs, which inherit a path grant.
    let playlist = std::fs::read_to_string(folder.join("index.m3u8")).unwrap();
    let uris: Vec<&str> = playlist
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .collect();
    assert_eq!(uris, HLS_SEGMENTS, "{playlist}");
    assert!(playlist.contains("#EXT-X-ENDLIST"), "{playlist}");
}

/// What `tests/browser/hls.mjs` saw.
#[derive(Debug)]
struct Streamed {
    ended: bool,
    /// The element's `currentSrc`.
    src: String,
    current_time: f64,
    duration: f64,
    /// What stopped playback for good: `media:<code>`, or hls.js's `<type>:<details>`.
    error: Option<String>,
    /// Every request of the page but the page itself, in order: (URL, status; `None` if it
    /// never answered).
    requests: Vec<(String, Option<u64>)>,
}

impl Streamed {
    /// The requests whose URL starts with `start`.
    fn requests_to(&self, start: &str) -> Vec<(String, Option<u64>)> {
        self.requests
            .iter()
            .filter(|(url, _)| url.starts_with(start))
            .cloned()
            .collect()
    }
}

/// Plays the HLS stream at `hls_url` to its end with `player` ("native" or "hlsjs") on the
/// page at `page_url`, or waits for the page's own `<video>` to play to its end ("page"), in a fresh headless Chromium whose only cookie is
/// `session=<session>` for the stack's session origin (none without `session`).
fn stream(
    stack: &Stack,
    page_url: &str,
    hls_url: &str,
    player: &str,
    session: Option<&str>,
) -> Streamed {
    let mut env = vec![
        ("BROWSER_PAGE_URL", page_url.to_owned()),
        ("BROWSER_HLS_URL", hls_url.to_owned()),
        ("BROWSER_HLS_PLAYER", player.to_owned()),
    ];
    env.extend(session_env(stack, session));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(
        root.join("tests/browser/node_modules/hls.js").is_dir(),
        "tests/browser/node_modules/hls.js is missing: run `bash scripts/test.sh` (npm ci in tests/browser)"
    );
    let result = run_script("hls.mjs", &env);
    Streamed {
        ended: result["ended"].as_bool().unwrap(),
        src: result["src"].as_str().unwrap_or_default().to_owned(),
        current_time: result["currentTime"].as_f64().unwrap(),
        duration: result["duration"].as_f64().unwrap_or(f64::NAN),
        error: result["error"].as_str().map(str::to_owned),
        requests: result["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|request| {
                (
                    request["url"].as_str().unwrap_or_default().to_owned(),
                    request["status"].as_u64(),
                )
            })
            .collect(),
    }
}

/// What a `<video>` that opened `folder`'s `index.m3u8` with no token requested: the
/// playlist (302), the refresh (302), the playlist in the path form of the folder's grant
/// (206: Chromium's media loader reads everything with `Range: bytes=0-`), then every segment
/// once, in order, by its relative URL under the grant (206), and nothing else: no request
/// went back to the session domain.
fn assert_one_grant_played(played: &Streamed, media: &str, session: &str, folder: &str) {
    let playlist = format!("{media}{folder}index.m3u8");
    let requests = &played.requests;
    assert_eq!(requests.len(), 3 + HLS_SEGMENTS.len(), "{played:#?}");
    assert_eq!(requests[0], (playlist, Some(302)), "{played:#?}");
    assert!(
        requests[1].0.starts_with(&format!(
            "{session}/_mediagate/refresh{folder}index.m3u8?state="
        )) && requests[1].1 == Some(302),
        "{played:#?}"
    );
    let token = requests[2]
        .0
        .strip_prefix(&format!("{media}{folder}~mg~"))
        .and_then(|rest| rest.strip_suffix("/index.m3u8"))
        .unwrap_or_else(|| panic!("not the path form of the folder: {played:#?}"));
    assert!(
        !token.is_empty()
            && token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b)),
        "{token:?}"
    );
    assert_eq!(requests[2].1, Some(206), "{played:#?}");
    let base = format!("{media}{folder}~mg~{token}/");
    let segments: Vec<(String, Option<u64>)> = HLS_SEGMENTS
        .iter()
        .map(|segment| (format!("{base}{segment}"), Some(206)))
        .collect();
    assert_eq!(requests[3..], segments[..], "{played:#?}");
}

/// A browser stack whose site hands out links in path form (as scripts/demo.sh configures
/// it), with the demo application or the stand-in one, and an HLS rendition of
/// `/media/videos/clip/`.
fn hls_stack(name: &str, demo_app: bool) -> Stack {
    let stack = Stack::start_with(
        name,
        Options {
            browser: true,
            demo_app,
            extra_config: "link_form = \"path\"\n".into(),
            ..Options::default()
        },
    );
    make_hls(&stack.dir.path().join("files/media/videos/clip"));
    stack
}

#[test]
fn native_hls_plays_every_segment_after_one_application_check_in_a_real_browser() {
    // Issue 10: a `<video>` on a page of the session origin names the playlist with no
    // token. The refresh flow asks the application once; it grants the clip's folder, and
    // the site hands out links in path form, so the playlist's relative segment URLs carry
    // the grant: no segment goes back to the session domain.
    let stack = hls_stack("browser-hls-native", false);
    let (media, session) = stack.browser_origins();
    let playlist = format!("{media}/media/videos/clip/index.m3u8");
    let played = stream(
        &stack,
        &format!("{session}/"),
        &playlist,
        "native",
        Some("alice"),
    );

    assert_eq!(
        (played.error.as_deref(), played.ended),
        (None, true),
        "{played:#?}"
    );
    assert!((played.duration - 6.0).abs() < 0.2, "{played:#?}");
    assert_eq!(
        *stack.app.asked.lock().unwrap(),
        ["/media/videos/clip/index.m3u8"],
        "{played:#?}"
    );
    assert_one_grant_played(&played, &media, &session, "/media/videos/clip/");
}

#[test]
fn the_demo_video_page_plays_its_hls_video_natively_in_a_real_browser() {
    // Issue 10: the demo's `/video` page (examples/demo_app.py), on the site as
    // scripts/demo.sh configures it (links in path form) with a rendition like the one it
    // makes: a logged-in person opens the page and its own `<video>` (no token in the page)
    // plays to the end after one application check, every segment under the folder's grant.
    let stack = hls_stack("browser-demo-video", true);
    let (media, session) = stack.browser_origins();
    let playlist = format!("{media}/media/videos/clip/index.m3u8");
    let played = stream(
        &stack,
        &format!("{session}/video"),
        &playlist,
        "page",
        Some("alice"),
    );

    assert_eq!(
        (played.error.as_deref(), played.ended, played.src.as_str()),
        (None, true, playlist.as_str()),
        "{played:#?}"
    );
    assert!((played.duration - 6.0).abs() < 0.2, "{played:#?}");
    assert_one_grant_played(&played, &media, &session, "/media/videos/clip/");
    // One access check at the demo application (its request log), for the playlist.
    let log = std::fs::read_to_string(stack.dir.path().join("demo_app.log")).unwrap();
    let checks: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("/media-access"))
        .collect();
    assert_eq!(checks.len(), 1, "{log}");
    assert!(
        checks[0].contains("\"GET /media-access HTTP/1.1\" 200"),
        "{log}"
    );
}

#[test]
fn hls_js_plays_a_path_form_link_from_the_session_origin_with_the_cors_snippet() {
    // Issue 10: hls.js fetches the playlist and the segments itself, cross-origin from the
    // page: the shipped cors.conf lets the session origin read them, and the path form lets
    // the relative segment URLs carry the grant.
    let play = |stack: &Stack| {
        make_hls(&stack.dir.path().join("files/media/videos/clip"));
        let (media, session) = stack.browser_origins();
        let folder = stack.sign_path("/media/videos/clip/", true);
        assert!(folder.ends_with('/'), "{folder}");
        let playlist = format!("{media}{folder}index.m3u8");
        let played = stream(stack, &format!("{session}/"), &playlist, "hlsjs", None);
        (played, format!("{media}{folder}"))
    };

    let stack = Stack::start_with(
        "browser-hlsjs",
        Options {
            browser: true,
            ..Options::default()
        },
    );
    let (played, base) = play(&stack);
    assert_eq!(
        (played.error.as_deref(), played.ended),
        (None, true),
        "{played:#?}"
    );
    assert!(played.current_time > 5.5, "{played:#?}");
    let expected: Vec<(String, Option<u64>)> = ["index.m3u8"]
        .iter()
        .chain(HLS_SEGMENTS.iter())
        .map(|name| (format!("{base}{name}"), Some(200)))
        .collect();
    let (media, _) = stack.browser_origins();
    assert_eq!(played.requests_to(&media), expected, "{played:#?}");
    assert!(stack.app.asked.lock().unwrap().is_empty());

    // The same without cors.conf in the location: the page may not read the playlist.
    let stack = Stack::start_with(
        "browser-hlsjs-no-cors",
        Options {
            browser: true,
            nginx_edits: vec![(
                "include mediagate/cors.conf;\n            include mediagate/protect.conf;".into(),
                "include mediagate/protect.conf;".into(),
            )],
            ..Options::default()
        },
    );
    let (played, base) = play(&stack);
    assert_eq!(
        (played.error.as_deref(), played.ended),
        (Some("networkError:manifestLoadError"), false),
        "{played:#?}"
    );
    let (media, _) = stack.browser_origins();
    let urls: Vec<String> = played
        .requests_to(&media)
        .into_iter()
        .map(|(url, _)| url)
        .collect();
    assert!(
        !urls.is_empty() && urls.iter().all(|url| *url == format!("{base}index.m3u8")),
        "{played:#?}"
    );
    // nginx served the playlist every time: only the missing CORS headers kept it from the
    // page.
    let served = |line: &&str| line.contains("\"GET /media/videos/clip/~mg~-/index.m3u8\" ");
    let log = access_log_with(&stack, served, urls.len());
    let lines: Vec<&str> = log.lines().filter(served).collect();
    assert!(
        lines.len() == urls.len() && lines.iter().all(|line| line.contains("\" 200 ")),
        "{log}"
    );
}

/// The stack's nginx access log once at least `count` of its lines pass `line`: nginx writes a
/// request's line when the request ends, which may be after the browser moved on (a
/// condition, with a deadline of ten seconds; the log as it then is).
fn access_log_with(stack: &Stack, line: impl Fn(&&str) -> bool, count: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(stack.dir.path().join("access.log")).unwrap();
        if log.lines().filter(&line).count() >= count || Instant::now() > deadline {
            return log;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A 1×1 PNG, for images a browser must decode.
const PNG: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=";

#[test]
fn an_image_on_a_page_of_the_session_domain_loads_without_a_token_in_its_url() {
    // Issue 10, cookie grants: the media host and the page's host are two hosts of one site
    // (Chromium sends Lax cookies between them; `media.localhost` and `www.localhost` are
    // two sites, and there the second image takes the refresh flow as well), the site grants
    // a cookie, and the application grants the folder.
    use base64::Engine;
    let stack = Stack::start_with(
        "browser-cookie",
        Options {
            browser: true,
            browser_hosts: Some(("media.example.localhost", "www.example.localhost")),
            extra_config: "cookie_grant = { name = \"mg\", same_site = \"lax\" }\n".into(),
            ..Options::default()
        }
        .forwarding_cookies("media.example.localhost"),
    );
    let png = base64::engine::general_purpose::STANDARD
        .decode(PNG)
        .unwrap();
    for name in ["a", "b"] {
        stack
            .dir
            .write(&format!("files/media/photos/{name}.png"), &png);
    }
    let (media, session) = stack.browser_origins();
    let (a, b) = (
        format!("{media}/media/photos/a.png"),
        format!("{media}/media/photos/b.png"),
    );
    let mut env = vec![
        ("BROWSER_PAGE_URL", format!("{session}/gallery")),
        ("BROWSER_IMAGE_URLS", format!("{a} {b}")),
    ];
    env.extend(session_env(&stack, Some("alice")));
    let result = run_script("images.mjs", &env);
    // Both images are there.
    for (index, src) in [&a, &b].into_iter().enumerate() {
        let image = &result["images"][index];
        assert_eq!(
            (
                image["src"].as_str(),
                image["loaded"].as_bool(),
                image["width"].as_u64()
            ),
            (Some(src.as_str()), Some(true), Some(1)),
            "{result:#}"
        );
    }
    // The first took the refresh flow once and got the grant with the link; the second went
    // straight to the file with the cookie.
    let responses = result["responses"].as_array().unwrap();
    let seen: Vec<(&str, u64)> = responses
        .iter()
        .map(|r| (r["url"].as_str().unwrap(), r["status"].as_u64().unwrap()))
        .collect();
    assert_eq!(seen.len(), 4, "{result:#}");
    assert_eq!(seen[0], (a.as_str(), 302), "{result:#}");
    assert!(
        seen[1].0.starts_with(&format!(
            "{session}/_mediagate/refresh/media/photos/a.png?state="
        )) && seen[1].1 == 302,
        "{result:#}"
    );
    let token = seen[2]
        .0
        .strip_prefix(&format!("{a}?token="))
        .unwrap_or_else(|| panic!("{result:#}"));
    assert_eq!(seen[2].1, 200, "{result:#}");
    assert_eq!(seen[3], (b.as_str(), 200), "{result:#}");
    assert_eq!(
        responses[3]["cookie"].as_str(),
        Some(format!("mg={token}").as_str()),
        "{result:#}"
    );
    // One application check for both images.
    assert_eq!(
        *stack.app.asked.lock().unwrap(),
        ["/media/photos/a.png"],
        "{result:#}"
    );
    // The cookie the browser keeps: the media host's only, for the folder, out of scripts'
    // reach, Lax, and holding the granted link's token.
    let grant: Vec<&Value> = result["cookies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|cookie| cookie["name"] == "mg")
        .collect();
    assert_eq!(grant.len(), 1, "{result:#}");
    let text = |key: &str| grant[0][key].as_str().unwrap_or_default();
    assert_eq!(
        (
            text("value"),
            text("domain"),
            text("path"),
            text("sameSite")
        ),
        (token, "media.example.localhost", "/media/photos/", "Lax"),
        "{result:#}"
    );
    assert_eq!(
        (grant[0]["httpOnly"].as_bool(), grant[0]["secure"].as_bool()),
        (Some(true), Some(true)),
        "{result:#}"
    );
}

/// How a `<video>` fared when sought after its link expired (`tests/browser/playback.mjs`).
#[derive(Debug)]
struct Sought {
    /// "played", or "failed: <why>".
    after_expiry: String,
    played_after_seek: f64,
    /// When the seek was made (ms since the epoch).
    seek_at: u64,
    /// Every request for the video: ("link" or "grant", `Range`, status, sent at ms).
    requests: Vec<(String, Option<String>, Option<u64>, u64)>,
}

/// Plays `link` (expiring at `expires`) on a page of the session origin, waits for the
/// expiry, seeks to `seek_to` and plays on.
fn play_past_expiry(stack: &Stack, link: &str, expires: u64, seek_to: f64) -> Sought {
    let (media, session) = stack.browser_origins();
    let result = run_script(
        "playback.mjs",
        &[
            ("BROWSER_PAGE_URL", format!("{session}/watch")),
            ("BROWSER_VIDEO_URL", format!("{media}{link}")),
            ("BROWSER_EXPIRES", expires.to_string()),
            ("BROWSER_SEEK_TO", seek_to.to_string()),
        ],
    );
    Sought {
        after_expiry: result["afterExpiry"].as_str().unwrap().to_owned(),
        played_after_seek: result["playedAfterSeek"].as_f64().unwrap(),
        seek_at: result["seekAt"].as_u64().unwrap(),
        requests: result["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|request| {
                (
                    request["url"].as_str().unwrap().to_owned(),
                    request["range"].as_str().map(str::to_owned),
                    request["status"].as_u64(),
                    request["at"].as_u64().unwrap(),
                )
            })
            .collect(),
    }
}

/// A `seconds`-long video at `/media/clip.mp4` and a query link to it living `ttl` seconds:
/// (link, expiry).
fn short_video_link(stack: &Stack, seconds: u32, ttl: u64) -> (String, u64) {
    std::fs::create_dir_all(stack.dir.path().join("files/media")).unwrap();
    make_video(&stack.dir.path().join("files/media/clip.mp4"), seconds);
    let now = mediagate::clock::now();
    let minted = mediagate::mint::mint(
        &stack.config,
        &MintRequest {
            path: "/media/clip.mp4".into(),
            ttl: Some(ttl),
            ..MintRequest::default()
        },
        now,
    )
    .unwrap();
    (minted.path_and_query, minted.expires)
}

/// A browser stack whose media locations send at most 512 KiB a second per connection
/// (`limit_rate`): a player cannot have read the whole video before its link expires, so the
/// seek after the expiry needs a new range (the tests check it did).
fn playback_stack(name: &str, site_config: &str) -> Stack {
    Stack::start_with(
        name,
        Options {
            browser: true,
            extra_config: site_config.into(),
            nginx_edits: vec![(
                "include mediagate/protect.conf;".into(),
                "include mediagate/protect.conf;\n            limit_rate 512k;".into(),
            )],
            ..Options::default()
        },
    )
}

#[test]
fn a_video_seeks_and_plays_on_after_its_link_expired_with_a_playback_grant() {
    // Issue 10: the first range is exchanged for a path-form grant (same origin), Chromium
    // sends every later range there, and the seek after the page's link expired plays.
    let stack = playback_stack("browser-playback", "playback_grant = \"1h\"\n");
    let (link, expires) = short_video_link(&stack, 20, 8);
    let sought = play_past_expiry(&stack, &link, expires, 18.0);
    assert_eq!(sought.after_expiry, "played", "{sought:#?}");
    assert!(sought.played_after_seek > 18.5, "{sought:#?}");
    // The first request is the page's link, redirected; every other one a range of the
    // grant answered 206, some of them sent after the link expired.
    let (first, rest) = sought.requests.split_first().unwrap();
    assert_eq!(
        (first.0.as_str(), first.1.as_deref(), first.2),
        ("link", Some("bytes=0-"), Some(302)),
        "{sought:#?}"
    );
    let answered: Vec<_> = rest.iter().filter(|request| request.2.is_some()).collect();
    assert!(answered.len() >= 2, "{sought:#?}");
    for (url, range, status, _) in &answered {
        assert!(
            url == "grant"
                && range
                    .as_deref()
                    .is_some_and(|range| range.starts_with("bytes="))
                && *status == Some(206),
            "{sought:#?}"
        );
    }
    assert!(
        answered.iter().any(|request| request.3 >= sought.seek_at),
        "the seek needed no new range, so it proves nothing: {sought:#?}"
    );
}

#[test]
fn without_a_playback_grant_the_seek_after_expiry_fails() {
    // The same video and link on a site without the option: the seek's range goes to the
    // session domain (another origin), which Chromium's media loader refuses.
    let stack = playback_stack("browser-noplayback", "");
    let (link, expires) = short_video_link(&stack, 20, 8);
    let sought = play_past_expiry(&stack, &link, expires, 18.0);
    assert!(
        sought.after_expiry.starts_with("failed: media error"),
        "{sought:#?}"
    );
    assert!(
        sought.requests.iter().all(|request| request.0 == "link"),
        "{sought:#?}"
    );
    let after: Vec<_> = sought
        .requests
        .iter()
        .filter(|request| request.3 >= sought.seek_at && request.2.is_some())
        .collect();
    assert!(
        !after.is_empty() && after.iter().all(|request| request.2 == Some(302)),
        "{sought:#?}"
    );
}
