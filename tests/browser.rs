//! A real browser in front of the real stack: Debian's Chromium, driven by playwright-core
//! from `tests/browser/navigate.mjs`, against real nginx and mediagate on loopback TCP
//! ([`Options::browser`]). What is pinned is what a person ends on: the final status, URL and
//! text, and the chain of navigations that led there. `bash scripts/test.sh` installs
//! Chromium and playwright-core; without them these tests fail, never skip.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::{Options, Stack, TempDir};

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

/// Opens `url` in a fresh headless Chromium whose only cookie is `session=<session>` for the
/// stack's session origin (none without `session`).
fn open(stack: &Stack, url: &str, session: Option<&str>) -> Visit {
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
    let (_, session_origin) = stack.browser_origins();
    let mut command = Command::new("node");
    command
        .arg(root.join("tests/browser/navigate.mjs"))
        .env("BROWSER_URL", url)
        .env("BROWSER_PROFILE", profile.path());
    if let Some(session) = session {
        command
            .env("BROWSER_COOKIE_URL", format!("{session_origin}/"))
            .env("BROWSER_COOKIE", format!("session={session}"));
    }
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("cannot run node ({error}): {install}"));
    assert!(
        output.status.success(),
        "navigate.mjs failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let result: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "navigate.mjs printed no JSON ({error}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    });
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
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let profile = TempDir::new("chromium-profile");
    let output = Command::new("node")
        .arg(root.join("tests/browser/upload.mjs"))
        .env("PAGE_URL", format!("{session}/"))
        .env("SLOT_URL", format!("{media}{slot}"))
        .env("BROWSER_PROFILE", profile.path())
        .output()
        .unwrap_or_else(|error| panic!("cannot run node ({error}): run `bash scripts/test.sh`"));
    assert!(
        output.status.success(),
        "upload.mjs failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let attempts: Value = serde_json::from_slice(&output.stdout).unwrap();
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
