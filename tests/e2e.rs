//! End-to-end: a browser's view of real nginx (rendered from `nginx/example.conf` with the
//! shipped snippets) in front of the real `mediagate` binary and a stand-in application.

use mediagate::mint::MintRequest;
use mediagate::token::Methods;

use crate::support::{
    accel_denied, deny_body, nginx_denied, nginx_page, request, seen, served, split_url, Options,
    Response, Seen, Stack, MEDIA_HOST, WWW_HOST,
};

const PDF: &[u8] = b"%PDF-1.4 not really a pdf, but bytes we can recognise\n";

/// [`PDF`] as text, for comparing with `seen`.
fn pdf_text() -> &'static str {
    std::str::from_utf8(PDF).unwrap()
}

/// The status of each hop of a `Stack::browse`.
fn statuses(hops: &[Response]) -> Vec<u16> {
    hops.iter().map(|hop| hop.status).collect()
}

fn stack_with_files(name: &str) -> Stack {
    let stack = Stack::start(name);
    stack.dir.write("files/media/report.pdf", PDF);
    stack
        .dir
        .write("files/media/public/logo.txt", "public bytes");
    stack.dir.write("files/media/secret.txt", "secret bytes");
    stack.dir.write("files/media/hls/seg1.ts", "segment one");
    stack.dir.write("files/media/hls/seg2.ts", "segment two");
    stack.dir.write("files/media/short-clip.txt", "short clip");
    stack
}

#[test]
fn media_url_without_token_heals_through_the_session_domain() {
    let stack = stack_with_files("heal");
    let hops = stack.browse(
        &format!("http://{MEDIA_HOST}/media/report.pdf"),
        Some("session=alice"),
    );
    let statuses = statuses(&hops);
    assert_eq!(
        statuses,
        [302, 302, 200],
        "{hops:#?}\n{}",
        stack.mediagate.log_text()
    );
    let to_refresh = hops[0].header("location").unwrap();
    assert!(
        to_refresh.starts_with(&format!(
            "http://{WWW_HOST}/_mediagate/refresh/media/report.pdf?state="
        )),
        "{to_refresh}"
    );
    assert_eq!(
        seen(&hops[0]),
        (302, Some("missing_token".into()), nginx_page("302 Found"))
    );
    assert_eq!(hops[0].header("cache-control"), Some("no-store"));
    // The session side's redirect comes from mediagate itself: no reason, no body.
    assert_eq!(seen(&hops[1]), (302, None, String::new()));
    let back = hops[1].header("location").unwrap();
    assert!(
        back.starts_with(&format!("http://{MEDIA_HOST}/media/report.pdf?token=")),
        "{back}"
    );
    assert_eq!(hops[1].header("cache-control"), Some("no-store"));
    assert_eq!(hops[2].body, PDF);
    assert_eq!(hops[2].header("content-type"), Some("application/pdf"));
    assert_eq!(hops[2].header("cache-control"), Some("private"));
    assert_eq!(*stack.app.asked.lock().unwrap(), ["/media/report.pdf"]);
}

#[test]
fn valid_token_serves_the_file_with_ranges_and_head() {
    let stack = stack_with_files("valid");
    let url = stack.sign("/media/report.pdf");
    let full = stack.media("GET", &url);
    assert_eq!(full.status, 200);
    assert_eq!(full.body, PDF);
    // The URL holds a working token: the file's own links must not carry it in Referer.
    assert_eq!(full.header("referrer-policy"), Some("no-referrer"));

    let socket = stack.socket("media.sock");
    let range = request(&socket, "GET", MEDIA_HOST, &url, &[("Range", "bytes=5-7")]);
    assert_eq!(range.status, 206);
    assert_eq!(range.body, &PDF[5..=7]);

    let head = stack.media("HEAD", &url);
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(PDF.len().to_string().as_str())
    );
    assert!(head.body.is_empty());
}

#[test]
fn forged_tampered_wrong_path_and_wrong_method_tokens_are_refused() {
    let stack = stack_with_files("forged");
    let good = stack.sign("/media/report.pdf");
    let (_, token) = good.split_once("?token=").unwrap();

    // Another file, same token: the path is bound through the MAC.
    let wrong_path = stack.media("GET", &format!("/media/secret.txt?token={token}"));
    assert_eq!(seen(&wrong_path), nginx_denied("bad_signature"));
    assert_eq!(wrong_path.header("cache-control"), Some("no-store"));

    // Change one character of the tag. Not the last one: its low bits may be unused padding
    // bits, which strict decoding refuses as `malformed` (the reason would depend on luck).
    let mut tampered = token.as_bytes().to_vec();
    let inside_tag = tampered.len() - 3;
    tampered[inside_tag] = if tampered[inside_tag] == b'A' {
        b'B'
    } else {
        b'A'
    };
    let tampered = String::from_utf8(tampered).unwrap();
    let response = stack.media("GET", &format!("/media/report.pdf?token={tampered}"));
    assert_eq!(seen(&response), nginx_denied("bad_signature"));

    // Garbage.
    let response = stack.media("GET", "/media/report.pdf?token=not-a-token!");
    assert_eq!(seen(&response), nginx_denied("malformed"));

    // A GET/HEAD token used for DELETE.
    let response = stack.media("DELETE", &good);
    assert_eq!(seen(&response), nginx_denied("method"));

    // Two tokens in one URL are ambiguous.
    let response = stack.media("GET", &format!("{good}&token={token}"));
    assert_eq!(seen(&response), nginx_denied("malformed"));
}

#[test]
fn put_token_allows_put_but_not_get() {
    let stack = stack_with_files("methods");
    let url = stack.sign_with(MintRequest {
        path: "/media/report.pdf".into(),
        methods: Some("PUT".parse::<Methods>().unwrap()),
        ..MintRequest::default()
    });
    let get = stack.media("GET", &url);
    assert_eq!(seen(&get), nginx_denied("method"));
}

#[test]
fn public_prefix_is_served_without_token_but_not_through_traversal() {
    let stack = stack_with_files("public");
    let public = stack.media("GET", "/media/public/logo.txt");
    assert_eq!(seen(&public), served("public bytes"));

    let bad_path = nginx_denied("bad_path");
    let cases = [
        ("/media/public/../secret.txt", bad_path.clone()),
        ("/media/public/%2e%2e/secret.txt", bad_path.clone()),
        ("/media/public/%2E%2E/secret.txt", bad_path.clone()),
        ("/media/public/..%2fsecret.txt", bad_path.clone()),
        ("/media/public/%2e%2e%2fsecret.txt", bad_path.clone()),
        ("/media/public/..%5csecret.txt", bad_path.clone()),
    ];
    // No token at all: the query is only a harmless parameter.
    assert_table(&stack, &cases, "x=1");
}

#[test]
fn traversal_and_encoding_tricks_are_rejected_even_with_a_valid_token() {
    let stack = stack_with_files("tricks");
    let url = stack.sign("/media/secret.txt");
    let (_, query) = url.split_once('?').unwrap();
    let bad_path = nginx_denied("bad_path");
    // nginx refuses a NUL byte itself, before any location (and mediagate) is involved.
    let nginx_400 = (400, None, nginx_page("400 Bad Request"));
    let cases = [
        ("/media/hls/../secret.txt", bad_path.clone()),
        ("/media/hls/%2e%2e/secret.txt", bad_path.clone()),
        ("/media//secret.txt", bad_path.clone()),
        ("/media/./secret.txt", bad_path.clone()),
        ("/media/%2fsecret.txt", bad_path.clone()),
        ("/media/secret.txt%00.pdf", nginx_400.clone()),
    ];
    assert_table(&stack, &cases, query);
}

/// The case where canonicalisation is the only defence: a valid prefix token for the `hls/`
/// folder, whose MAC and scope check a repaired path would pass (`/media/hls/../secret.txt`
/// starts with `/media/hls/`), while nginx would serve `/media/secret.txt`. Both modes.
///
/// Checked by making `path::canonicalize` accept everything: in auth_request mode every
/// `bad_path` row below then serves "secret bytes" (mediagate is the only defence), except
/// `..%5c`, where nginx (on Unix `\` is no separator) finds no file and answers 404. In accel
/// mode every `bad_path` row becomes nginx's 404: nginx also refuses an `X-Accel-Redirect`
/// target containing `..`, a second line of defence. The last row is nginx's alone: a path
/// climbing above the root is a 400 before any location runs.
#[test]
fn prefix_token_cannot_climb_out_of_its_folder_in_either_mode() {
    let stack = stack_with_files("climb");
    stack.dir.write("files/files/secret.txt", "secret bytes");
    stack.dir.write("files/files/hls/seg1.ts", "segment one");
    let mut wrong = Vec::new();
    for base in ["/media", "/files"] {
        let url = stack.sign_with(MintRequest {
            path: format!("{base}/hls/"),
            prefix: true,
            ..MintRequest::default()
        });
        let (_, query) = url.split_once('?').unwrap();
        let bad_path = if base == "/media" {
            nginx_denied("bad_path")
        } else {
            accel_denied("bad_path")
        };
        let nginx_400 = (400, None, nginx_page("400 Bad Request"));
        let cases = [
            // The token works inside its folder, and the secret exists beside it.
            (format!("{base}/hls/seg1.ts"), served("segment one")),
            (format!("{base}/hls/../secret.txt"), bad_path.clone()),
            (format!("{base}/hls/%2e%2e/secret.txt"), bad_path.clone()),
            (format!("{base}/hls/%2E%2E/secret.txt"), bad_path.clone()),
            (format!("{base}/hls/.%2e/secret.txt"), bad_path.clone()),
            (format!("{base}/hls/..%2fsecret.txt"), bad_path.clone()),
            (format!("{base}/hls/%2e%2e%2fsecret.txt"), bad_path.clone()),
            (format!("{base}/hls/..%5csecret.txt"), bad_path.clone()),
            (format!("{base}/hls//../secret.txt"), bad_path.clone()),
            (format!("{base}/hls/..//secret.txt"), bad_path.clone()),
            (format!("{base}/hls/./../secret.txt"), bad_path.clone()),
            (
                format!("{base}/hls/seg1.ts/../../secret.txt"),
                bad_path.clone(),
            ),
            (
                format!("{base}/hls/%2e%2e/%2e%2e{base}/secret.txt"),
                bad_path.clone(),
            ),
            (format!("{base}/hls/../../../secret.txt"), nginx_400.clone()),
        ];
        let cases: Vec<(&str, _)> = cases
            .iter()
            .map(|(path, seen)| (path.as_str(), seen.clone()))
            .collect();
        wrong.extend(table_mismatches(&stack, &cases, query));
    }
    assert_rows(&wrong);
}

/// Requests `path?query` for each row; one line per row whose answer differs.
fn table_mismatches(stack: &Stack, cases: &[(&str, Seen)], query: &str) -> Vec<String> {
    cases
        .iter()
        .filter_map(|(path, expected)| {
            let got = seen(&stack.media("GET", &format!("{path}?{query}")));
            (&got != expected)
                .then(|| format!("{path}\n  expected {expected:?}\n  got      {got:?}"))
        })
        .collect()
}

/// Asserts that every row of the table gets exactly its expected answer.
fn assert_table(stack: &Stack, cases: &[(&str, Seen)], query: &str) {
    assert_rows(&table_mismatches(stack, cases, query));
}

fn assert_rows(wrong: &[String]) {
    assert!(
        wrong.is_empty(),
        "{} rows differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[test]
fn prefix_token_opens_a_folder_and_nothing_beside_it() {
    let stack = stack_with_files("prefix");
    let url = stack.sign_with(MintRequest {
        path: "/media/hls/".into(),
        prefix: true,
        ..MintRequest::default()
    });
    let (_, query) = url.split_once('?').unwrap();
    assert_eq!(
        stack
            .media("GET", &format!("/media/hls/seg1.ts?{query}"))
            .text(),
        "segment one"
    );
    assert_eq!(
        stack
            .media("GET", &format!("/media/hls/seg2.ts?{query}"))
            .text(),
        "segment two"
    );
    let beside = stack.media("GET", &format!("/media/secret.txt?{query}"));
    assert_eq!(seen(&beside), nginx_denied("out_of_scope"));
}

#[test]
fn expired_token_refreshes_to_a_working_link() {
    let stack = stack_with_files("expired");
    // Minted an hour ago with a one-minute lifetime.
    let now = mediagate::clock::now();
    let minted = mediagate::mint::mint(
        &stack.config,
        &MintRequest {
            path: "/media/report.pdf".into(),
            ttl: Some(60),
            ..MintRequest::default()
        },
        now - 3600,
    )
    .unwrap();
    let hops = stack.browse(
        &format!("http://{MEDIA_HOST}{}", minted.path_and_query),
        Some("session=alice"),
    );
    assert_eq!(
        redirect_seen(&hops[0]),
        (
            302,
            Some("expired".into()),
            Some(format!(
                "http://{WWW_HOST}/_mediagate/refresh/media/report.pdf?state="
            )),
            nginx_page("302 Found")
        )
    );
    assert_eq!(hops.last().unwrap().status, 200);
    assert_eq!(hops.last().unwrap().body, PDF);
}

#[test]
fn not_logged_in_goes_to_login_and_comes_back() {
    let stack = stack_with_files("login");
    let hops = stack.browse(&format!("http://{MEDIA_HOST}/media/report.pdf"), None);
    let statuses = statuses(&hops);
    assert_eq!(statuses, [302, 302, 200], "{hops:#?}");
    let login = hops[1].header("location").unwrap();
    let (host, path) = split_url(login);
    assert_eq!(host, WWW_HOST);
    assert!(
        path.starts_with("/login?next=%2F_mediagate%2Frefresh%2Fmedia%2Freport.pdf%3Fstate%3D"),
        "{path}"
    );
    assert_eq!(hops[2].text(), "login page");

    // After logging in, the return path from `next` completes the flow.
    let next = path.split_once("next=").unwrap().1;
    let next = next
        .replace("%2F", "/")
        .replace("%3F", "?")
        .replace("%3D", "=");
    let hops = stack.browse(&format!("http://{WWW_HOST}{next}"), Some("session=alice"));
    assert_eq!(hops.last().unwrap().body, PDF);
}

/// The state in a login URL's `next` (percent-encoded there).
fn state_in_login_url(location: &str) -> &str {
    location
        .split_once("%3Fstate%3D")
        .unwrap_or_else(|| panic!("no state in {location:?}"))
        .1
}

#[test]
fn login_detour_advances_the_loop_guard() {
    // Issue 10: the demo's instant login sets a cookie and redirects back at once; a browser
    // that withholds the cookie (an <img> on another site) came back without a session, was
    // sent to the login page again with the same state, and so on: ERR_TOO_MANY_REDIRECTS.
    // Before the fix `browse` gave up with "more than 10 redirects" (302, 302, 302, 302, ...).
    let stack = stack_with_files("login-loop");
    let hops = stack.browse(
        &format!("http://{MEDIA_HOST}/media/report.pdf"),
        Some("mode=instant-login"),
    );
    // media 302 (attempt 1) -> refresh: app 401 -> login URL (attempt 2) -> instant login
    // 302 back -> refresh: app 401 -> /login: attempt 3 > refresh.max_attempts (2) -> 403.
    assert_eq!(statuses(&hops), [302, 302, 302, 403], "{hops:#?}");
    let login = hops[1].header("location").unwrap();
    assert!(
        login.starts_with(&format!(
            "http://{WWW_HOST}/login?next=%2F_mediagate%2Frefresh%2Fmedia%2Freport.pdf%3Fstate%3D"
        )),
        "{login}"
    );
    // A new state, not the one the media side issued.
    let first_state = hops[0]
        .header("location")
        .unwrap()
        .split_once("?state=")
        .unwrap()
        .1;
    assert_ne!(state_in_login_url(login), first_state);
    assert_eq!(
        hops[2].header("location").unwrap(),
        format!(
            "http://{WWW_HOST}/_mediagate/refresh/media/report.pdf?state={}",
            state_in_login_url(login)
        )
    );
    let last = hops.last().unwrap();
    // The session side's /login answers mediagate's own page, through nginx as it is.
    assert_eq!(seen(last), accel_denied("refresh_loop"));
    assert_eq!(last.header("cache-control"), Some("no-store"));
    // A browser gets it as HTML: session-refresh.conf forwards Accept to /login.
    let hops = stack.browse_with(
        &format!("http://{MEDIA_HOST}/media/report.pdf"),
        Some("mode=instant-login"),
        &[("Accept", "text/html")],
    );
    let last = hops.last().unwrap();
    assert_eq!(
        (statuses(&hops), last.header("content-type")),
        (vec![302, 302, 302, 403], Some("text/html; charset=utf-8"))
    );
    assert!(last.text().contains("<h1>Link could not be renewed</h1>"));
}

#[test]
fn logged_in_but_not_allowed_gets_403_and_no_token() {
    let stack = stack_with_files("notallowed");
    let hops = stack.browse(
        &format!("http://{MEDIA_HOST}/media/report.pdf"),
        Some("session=mallory"),
    );
    let statuses = statuses(&hops);
    assert_eq!(statuses, [302, 403], "{hops:#?}");
    // The application's refusal, as mediagate's page without a reason (the link is not at
    // fault): no token, no X-Mediagate-Reason, plain text for a client that asks for no HTML.
    assert_eq!(
        seen(&hops[1]),
        (
            403,
            None,
            "403 Forbidden\n\nYou may not open this file.\n\
             Go back to the page that linked here and open the file from there again.\n"
                .to_owned()
        )
    );
    assert_eq!(
        (
            hops[1].header("content-type"),
            hops[1].header("cache-control"),
            hops[1].header("location")
        ),
        (Some("text/plain; charset=utf-8"), Some("no-store"), None)
    );
}

#[test]
fn sidecar_down_fails_closed() {
    let mut stack = stack_with_files("down");
    let url = stack.sign("/media/report.pdf");
    assert_eq!(seen(&stack.media("GET", &url)), served(pdf_text()));
    stack.mediagate.child.kill().unwrap();
    stack.mediagate.child.wait().unwrap();
    let response = stack.media("GET", &url);
    let nginx_500 = (500, None, nginx_page("500 Internal Server Error"));
    assert_eq!(
        seen(&response),
        nginx_500,
        "auth_request with a dead sidecar must not serve"
    );
    let public = stack.media("GET", "/media/public/logo.txt");
    assert_eq!(seen(&public), nginx_500);
}

#[test]
fn nginx_access_log_never_contains_the_token() {
    let stack = stack_with_files("accesslog");
    let url = stack.sign("/media/report.pdf");
    let (_, token) = url.split_once("?token=").unwrap();
    assert_eq!(seen(&stack.media("GET", &url)), served(pdf_text()));
    let _ = stack.media("GET", "/media/report.pdf?token=forged");
    drop(stack.media("GET", "/media/public/logo.txt"));
    let log = std::fs::read_to_string(stack.dir.path().join("access.log")).unwrap();
    assert!(log.contains("/media/report.pdf"), "{log}");
    assert!(
        !log.contains(token),
        "token leaked into the access log:\n{log}"
    );
    assert!(!log.contains("forged"), "{log}");
    let audit = stack.mediagate.log_containing("/media/public/logo.txt");
    assert!(audit.contains("/media/report.pdf"), "{audit}");
    assert!(
        !audit.contains(token),
        "token leaked into mediagate's log:\n{audit}"
    );
}

#[test]
fn json_audit_lines_record_each_decision_and_survive_hostile_values() {
    let stack = Stack::start_with(
        "jsonaudit",
        Options {
            extra_config: "[log]\nformat = \"json\"\n".into(),
            ..Options::default()
        },
    );
    stack.dir.write("files/media/report.pdf", PDF);
    let url = stack.sign("/media/report.pdf");
    let (_, token) = url.split_once("?token=").unwrap();
    let hostile_agent = r#"evil" decision="allow \"#;
    let socket = stack.socket("media.sock");
    let allowed = request(
        &socket,
        "GET",
        MEDIA_HOST,
        &url,
        &[("User-Agent", hostile_agent)],
    );
    assert_eq!(seen(&allowed), served(pdf_text()));
    // A real token for another path: the signature does not cover this one.
    let other = stack.sign("/media/other.pdf");
    let (_, other_token) = other.split_once("?token=").unwrap();
    let moved = format!("/media/report.pdf?token={other_token}");
    assert_eq!(
        seen(&stack.media("GET", &moved)),
        nginx_denied("bad_signature")
    );

    let log = stack.mediagate.log_containing("bad_signature");
    assert!(
        !log.contains(token),
        "token leaked into mediagate's log:\n{log}"
    );
    let audit: Vec<serde_json::Value> = log
        .lines()
        .filter(|line| line.contains("mediagate::audit"))
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    assert_eq!(audit.len(), 2, "{log}");
    let (allow, deny) = (&audit[0], &audit[1]);
    assert_eq!(allow["decision"], "allow");
    assert_eq!(allow["status"], 204);
    assert_eq!(allow["site"], "demo");
    assert_eq!(allow["path"], "/media/report.pdf");
    assert_eq!(allow["user_agent"], hostile_agent);
    // nginx's $remote_addr on a Unix socket is "unix:", which is no client address.
    assert_eq!(allow["client_ip"], "-");
    assert_eq!(deny["decision"], "deny");
    assert_eq!(deny["reason"], "bad_signature");
    assert_eq!(deny["status"], 403);
}

#[test]
fn the_browsers_own_headers_do_not_reach_mediagate() {
    // mediagate needs only the X-Original-* headers and the user agent; the snippets do not
    // forward the rest (less to parse per request, nothing private to mishandle). A browser
    // sending more headers than hyper accepts (100) must still get its file in both modes.
    let stack = stack_with_files("fewheaders");
    let junk: Vec<(String, String)> = (0..120)
        .map(|n| (format!("X-Junk-{n}"), "x".repeat(20)))
        .collect();
    let headers: Vec<(&str, &str)> = junk
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let socket = stack.socket("media.sock");
    let url = stack.sign("/media/report.pdf");
    let auth = request(&socket, "GET", MEDIA_HOST, &url, &headers);
    assert_eq!(auth.status, 200, "{}", auth.text());
    assert_eq!(auth.body, PDF);
    stack.dir.write("files/files/clip.txt", "clip bytes");
    let accel = request(
        &socket,
        "GET",
        MEDIA_HOST,
        &stack.sign("/files/clip.txt"),
        &headers,
    );
    assert_eq!(accel.status, 200, "{}", accel.text());
    assert_eq!(accel.text(), "clip bytes");
}

#[test]
fn accel_mode_serves_names_with_spaces_unicode_and_percent() {
    let stack = stack_with_files("accel");
    for name in ["a b.txt", "ünï çødé.txt", "100%.txt", "q?x#y.txt"] {
        stack
            .dir
            .write(&format!("files/files/{name}"), format!("bytes of {name}"));
        let url = stack.sign(&format!("/files/{}", mediagate::path::encode_path(name)));
        let response = stack.media("GET", &url);
        assert_eq!(
            response.status,
            200,
            "{name}: {response:?}\n{}",
            stack.nginx.log_text()
        );
        assert_eq!(response.text(), format!("bytes of {name}"));
        assert_eq!(response.header("cache-control"), Some("private"));
        assert_eq!(response.header("referrer-policy"), Some("no-referrer"));
        assert!(
            response.header("x-accel-redirect").is_none(),
            "internal header leaked"
        );
    }
    // Ranges and HEAD are nginx's job after the internal redirect.
    let url = stack.sign("/files/a%20b.txt");
    let range = request(
        &stack.socket("media.sock"),
        "GET",
        MEDIA_HOST,
        &url,
        &[("Range", "bytes=0-4")],
    );
    assert_eq!(range.status, 206);
    assert_eq!(range.text(), "bytes");
    assert_eq!(seen(&stack.media("HEAD", &url)), (200, None, String::new()));
}

#[test]
fn accel_mode_redirects_denies_and_refuses_other_methods() {
    let stack = stack_with_files("accelflow");
    stack.dir.write("files/files/doc.txt", "doc bytes");
    let hops = stack.browse(
        &format!("http://{MEDIA_HOST}/files/doc.txt"),
        Some("session=alice"),
    );
    let statuses = statuses(&hops);
    assert_eq!(statuses, [302, 302, 200], "{hops:#?}");
    assert_eq!(hops[2].text(), "doc bytes");

    let forged = stack.media("GET", "/files/doc.txt?token=AAAA");
    assert_eq!(seen(&forged), accel_denied("malformed"));

    let url = stack.sign("/files/doc.txt");
    let post = stack.media("POST", &url);
    assert_eq!(
        seen(&post),
        (405, None, "405 method not allowed\n".to_owned())
    );
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
}

#[test]
fn open_redirect_attempts_never_leave_the_configured_hosts() {
    let stack = stack_with_files("openredirect");
    // Paths outside /media/ and /files/ never reach mediagate: the example's `location /`
    // answers 404. Inside, a path mediagate accepts is sent to the configured session domain
    // with the path percent-encoded; anything else is a bad_path.
    let not_found = (404, None, None, nginx_page("404 Not Found"));
    let bad_path = (
        403,
        Some("bad_path".to_owned()),
        None,
        deny_body(403, "bad_path"),
    );
    let refresh = |encoded: &str| {
        (
            302,
            Some("missing_token".to_owned()),
            Some(format!(
                "http://{WWW_HOST}/_mediagate/refresh{encoded}?state="
            )),
            nginx_page("302 Found"),
        )
    };
    let cases = [
        ("//evil.example/x", not_found.clone()),
        ("/\\evil.example/x", not_found.clone()),
        ("/%09/evil.example", not_found.clone()),
        ("/media/@evil.example", refresh("/media/%40evil.example")),
        ("/media/x#@evil.example", bad_path.clone()),
        ("/media/x?@evil.example", refresh("/media/x")),
        ("/media/.evil.example", refresh("/media/.evil.example")),
        (
            "/media/%0d%0aLocation:%20http://evil.example",
            bad_path.clone(),
        ),
        (
            "/media/javascript:alert(1)",
            refresh("/media/javascript%3Aalert%281%29"),
        ),
        ("/media/%2F%2Fevil.example", bad_path.clone()),
    ];
    let wrong: Vec<String> = cases
        .iter()
        .filter_map(|(path, expected)| {
            let got = redirect_seen(&stack.media("GET", path));
            (&got != expected)
                .then(|| format!("{path}\n  expected {expected:?}\n  got      {got:?}"))
        })
        .collect();
    assert_rows(&wrong);
    // The refresh endpoint rebuilds the target from configuration: a state for one path
    // cannot be replayed for another, and no input host is ever used.
    let first = stack.media("GET", "/media/report.pdf");
    let refresh = first.header("location").unwrap();
    let (_, refresh_path) = split_url(refresh);
    let swapped = refresh_path.replace("/media/report.pdf", "/media/secret.txt");
    let hops = stack.browse(
        &format!("http://{WWW_HOST}{swapped}"),
        Some("session=alice"),
    );
    assert_eq!(hops.len(), 1, "{hops:#?}");
    assert_eq!(seen(&hops[0]), accel_denied("bad_state"));
}

/// What a browser sees of a possible redirect: status, reason, `Location` (cut after the
/// state marker: the rest is a fresh token), body without nginx's version.
fn redirect_seen(response: &Response) -> (u16, Option<String>, Option<String>, String) {
    let (status, reason, body) = seen(response);
    let location = response.header("location").map(|location| {
        assert!(!location.contains(['\r', '\n']), "{location:?}");
        // Plain in a refresh URL, percent-encoded in a login URL's `next`.
        ["?state=", "%3Fstate%3D"]
            .iter()
            .find_map(|marker| location.find(marker).map(|at| at + marker.len()))
            .map_or_else(|| location.to_owned(), |end| location[..end].to_owned())
    });
    (status, reason, location, body)
}

#[test]
fn refresh_endpoint_cannot_be_used_without_nginx_and_the_app() {
    let stack = stack_with_files("direct");
    let first = stack.media("GET", "/media/report.pdf");
    let (_, refresh_path) = split_url(first.header("location").unwrap());
    let internal = stack.socket("internal.sock");
    // Straight to mediagate, without the secret only nginx holds.
    let direct = request(
        &internal,
        "GET",
        "x",
        "/refresh",
        &[("X-Original-URI", &refresh_path)],
    );
    assert_eq!(seen(&direct), accel_denied("untrusted_peer"));
    // With a wrong secret.
    let wrong = request(
        &internal,
        "GET",
        "x",
        "/refresh",
        &[
            ("X-Original-URI", &refresh_path),
            ("X-Mediagate-Secret", "d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldA"),
        ],
    );
    assert_eq!(seen(&wrong), accel_denied("untrusted_peer"));
    // Through nginx but with client-supplied grant headers and no session: the app says no.
    let sneaky = request(
        &stack.socket("www.sock"),
        "GET",
        WWW_HOST,
        &refresh_path,
        &[
            ("X-Mediagate-Secret", &stack.internal_secret),
            ("X-Mediagate-Grant-Prefix", "/"),
        ],
    );
    assert_eq!(
        redirect_seen(&sneaky),
        (
            302,
            None,
            Some(format!(
                "http://{WWW_HOST}/login?next=%2F_mediagate%2Frefresh%2Fmedia%2Freport.pdf%3Fstate%3D"
            )),
            String::new()
        )
    );
}

#[test]
fn refresh_loop_is_cut_with_a_clear_403() {
    // The session side's clock runs two hours behind (faketime): every token it mints has
    // expired by the media side's clock, which without loop detection would bounce the
    // browser forever.
    let stack = Stack::start_with(
        "loop",
        Options {
            session_clock_offset: Some("-2h"),
            ..Options::default()
        },
    );
    stack.dir.write("files/media/report.pdf", PDF);
    let hops = stack.browse(
        &format!("http://{MEDIA_HOST}/media/report.pdf"),
        Some("session=alice"),
    );
    let statuses = statuses(&hops);
    // media 302 -> refresh 302 -> media 302 (attempt 2) -> refresh 302 -> media 403.
    assert_eq!(statuses, [302, 302, 302, 302, 403], "{hops:#?}");
    assert_eq!(hops[2].header("x-mediagate-reason"), Some("expired"));
    let last = hops.last().unwrap();
    assert_eq!(seen(last), nginx_denied("refresh_loop"));
    assert_eq!(last.header("cache-control"), Some("no-store"));
}

#[test]
fn app_grants_narrow_the_token() {
    let stack = stack_with_files("grants");
    let hops = stack.browse(
        &format!("http://{MEDIA_HOST}/media/hls/seg1.ts"),
        Some("session=alice"),
    );
    assert_eq!(hops.last().unwrap().text(), "segment one");
    let back = hops[1].header("location").unwrap();
    let (_, path) = split_url(back);
    let (_, query) = path.split_once('?').unwrap();
    // The granted prefix token opens the sibling segment too.
    assert_eq!(
        stack
            .media("GET", &format!("/media/hls/seg2.ts?{query}"))
            .text(),
        "segment two"
    );
    let inspected = std::process::Command::new(env!("CARGO_BIN_EXE_mediagate"))
        .args(["inspect", back])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&inspected.stdout);
    assert!(text.contains("every path below /media/hls/"), "{text}");
    assert!(text.contains("subject     alice"), "{text}");

    let hops = stack.browse(
        &format!("http://{MEDIA_HOST}/media/short-clip.txt"),
        Some("session=alice"),
    );
    let back = hops[1].header("location").unwrap();
    let (_, path) = split_url(back);
    let token = path.split_once("token=").unwrap().1;
    let mut buf = mediagate::token::TokenBuf::new();
    let decoded = mediagate::token::decode(token, &mut buf).unwrap();
    let lifetime = decoded.expires - mediagate::clock::now();
    assert!(
        (55..=60).contains(&lifetime),
        "granted ttl 60 s, got {lifetime}"
    );
    assert_eq!(decoded.host, Some(MEDIA_HOST));
}

#[test]
fn media_server_that_names_no_site_is_denied() {
    // The site comes from the media server block's configured name ($server_name): a server
    // whose name is not a configured media host decides nothing, whatever the client's Host.
    let stack = Stack::start_with(
        "unknownhost",
        Options {
            nginx_edits: vec![(
                "server_name media.localhost;".into(),
                "server_name media.unconfigured.localhost;".into(),
            )],
            ..Options::default()
        },
    );
    stack.dir.write("files/media/report.pdf", PDF);
    let url = stack.sign("/media/report.pdf");
    for host in [MEDIA_HOST, "evil.localhost"] {
        let response = request(&stack.socket("media.sock"), "GET", host, &url, &[]);
        assert_eq!(seen(&response), nginx_denied("unknown_host"), "{host}");
    }
}

#[test]
fn optional_auth_cache_answers_repeats_without_mediagate_but_never_past_expiry() {
    let mut stack = Stack::start_with("authcache", Options::default().with_auth_cache());
    stack.dir.write("files/media/report.pdf", PDF);
    let pdf = (200, None, String::from_utf8_lossy(PDF).into_owned());
    let nginx_500 = (500, None, nginx_page("500 Internal Server Error"));
    let long = stack.sign("/media/report.pdf");
    assert_eq!(seen(&stack.media("GET", &long)), pdf);
    // A denial is never cached: the same forged URL asks mediagate every time.
    let forged = "/media/report.pdf?token=forged";
    assert_eq!(seen(&stack.media("GET", forged)), nginx_denied("malformed"));

    // A short-lived token. mediagate lets nginx reuse an allow until `exp - 1`, and only when
    // that second is still ahead, so the entry provably exists once an answer came back before
    // `exp - 1` by our clock (mediagate's second cannot be later). Otherwise the machine
    // stalled through the window: mint again.
    let (short, short_expires) = loop {
        let minted = mediagate::mint::mint(
            &stack.config,
            &MintRequest {
                path: "/media/report.pdf".into(),
                ttl: Some(3),
                ..MintRequest::default()
            },
            mediagate::clock::now(),
        )
        .unwrap();
        assert_eq!(seen(&stack.media("GET", &minted.path_and_query)), pdf);
        if mediagate::clock::now() < minted.expires - 1 {
            break (minted.path_and_query, minted.expires);
        }
    };

    stack.mediagate.child.kill().unwrap();
    stack.mediagate.child.wait().unwrap();
    // Cached allows still work with the sidecar gone...
    assert_eq!(seen(&stack.media("GET", &short)), pdf, "short, cached");
    assert_eq!(seen(&stack.media("GET", &long)), pdf, "long, cached");
    // ...the method is part of the key (HEAD: the same 500, without a body)...
    assert_eq!(
        seen(&stack.media("HEAD", &long)),
        (500, None, String::new())
    );
    // ...nothing that was not allowed before is allowed now...
    assert_eq!(seen(&stack.media("GET", forged)), nginx_500);
    // (Another lifetime makes another token: `long` lives 3600 s, this one 1800 s.)
    let unseen = stack.sign_with(MintRequest {
        path: "/media/report.pdf".into(),
        ttl: Some(1800),
        ..MintRequest::default()
    });
    assert_eq!(seen(&stack.media("GET", &unseen)), nginx_500);
    // ...and no entry outlives its token. Expiry cannot be hurried, so poll the short URL
    // until a request starts at or after `exp` by our clock (nginx's second is no earlier),
    // checking every answer that provably came before `exp` on the way.
    loop {
        let before = mediagate::clock::now();
        let response = seen(&stack.media("GET", &short));
        let after = mediagate::clock::now();
        if before >= short_expires {
            assert_eq!(response, nginx_500, "short, after its expiry");
            break;
        }
        if after < short_expires {
            assert_eq!(response, pdf, "short, before its expiry");
        }
        // Polling interval while waiting for the clock, not an ordering of events.
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn clients_cannot_widen_their_own_grant() {
    let stack = stack_with_files("widen");
    let first = stack.media("GET", "/media/report.pdf");
    let (_, refresh_path) = split_url(first.header("location").unwrap());
    // Allowed user, but with self-made grant headers: nginx replaces them with the
    // application's (empty) answer, so the token stays exact-path with the default lifetime.
    let response = request(
        &stack.socket("www.sock"),
        "GET",
        WWW_HOST,
        &refresh_path,
        &[
            ("Cookie", "session=alice"),
            ("X-Mediagate-Grant-Prefix", "/"),
            ("X-Mediagate-Grant-Ttl", "7d"),
            ("X-Mediagate-Grant-Subject", "admin"),
        ],
    );
    assert_eq!(seen(&response), (302, None, String::new()), "{response:?}");
    let (_, back) = split_url(response.header("location").unwrap());
    assert!(back.starts_with("/media/report.pdf?token="), "{back}");
    let token = back.split_once("token=").unwrap().1;
    let mut buf = mediagate::token::TokenBuf::new();
    let decoded = mediagate::token::decode(token, &mut buf).unwrap();
    assert_eq!(decoded.prefix, None);
    assert_eq!(decoded.subject, Some("alice"));
    assert!(decoded.expires - mediagate::clock::now() <= 3600);
    let (_, query) = back.split_once('?').unwrap();
    assert_eq!(
        seen(&stack.media("GET", &format!("/media/secret.txt?{query}"))),
        nginx_denied("bad_signature")
    );
}

/// `count` browser-like junk headers.
fn junk_headers(count: usize) -> Vec<(String, String)> {
    (0..count)
        .map(|n| (format!("X-Junk-{n}"), "x".repeat(20)))
        .collect()
}

#[test]
fn refresh_flow_works_for_a_browser_sending_120_headers() {
    // Regression (issue 8, item 6): the session-domain snippet forwarded every browser
    // header to /refresh, more than mediagate's (and before it hyper's) header-count limit.
    let stack = stack_with_files("refreshheaders");
    let junk = junk_headers(120);
    let headers: Vec<(&str, &str)> = junk
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let hops = stack.browse_with(
        &format!("http://{MEDIA_HOST}/media/report.pdf"),
        Some("session=alice"),
        &headers,
    );
    assert_eq!(
        statuses(&hops),
        [302, 302, 200],
        "{hops:#?}\n{}",
        stack.mediagate.log_text()
    );
    assert_eq!(hops[2].body, PDF);
}

#[test]
fn oversized_request_head_gets_431_and_one_log_line_without_its_content() {
    let stack = Stack::start("bighead");
    let marker = "c2VjcmV0LXRva2VuLWxpa2UtdmFsdWU";
    let raw = format!(
        "GET /auth HTTP/1.1\r\nHost: m\r\nX-Original-URI: /media/a.pdf?token={marker}{}\r\n\r\n",
        "A".repeat(40 * 1024)
    );
    let mut stream = std::os::unix::net::UnixStream::connect(stack.socket("verify.sock")).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    use std::io::{Read, Write};
    // The server may stop reading (and close) before all of it is written.
    let _ = stream.write_all(raw.as_bytes());
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with(
            "HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\n"
        ),
        "{answer}"
    );
    let log = stack.mediagate.log_containing("request head too large");
    let line = log
        .lines()
        .find(|line| line.contains("request head too large"))
        .unwrap_or_else(|| panic!("no refusal line in:\n{log}"));
    for field in [
        "listener=\"verify\"",
        "max_head_bytes=32768",
        "max_headers=100",
    ] {
        assert!(line.contains(field), "{field} missing: {line}");
    }
    assert!(
        !log.contains(marker),
        "the refused head leaked into the log:\n{log}"
    );
}

#[test]
fn nginx_closes_idle_upstream_connections_before_mediagate_does() {
    // The shipped pairing, scaled down: nginx's upstream keepalive_timeout (60s -> 1s) below
    // mediagate's idle_timeout (75s -> 2s). Before, mediagate's idle timeout was hyper's 10 s
    // header-read timeout, below nginx's 60 s: nginx reused connections mediagate was
    // closing ("upstream prematurely closed connection", "broken pipe").
    let stack = {
        let stack = Stack::start_with(
            "keepalive",
            Options {
                server_config: "header_timeout = \"1s\"\nidle_timeout = \"2s\"".into(),
                nginx_edits: vec![(
                    "keepalive_timeout 60s;".into(),
                    "keepalive_timeout 1s;".into(),
                )],
                ..Options::default()
            },
        );
        stack.dir.write("files/media/report.pdf", PDF);
        stack
    };
    let url = stack.sign("/media/report.pdf");
    for _ in 0..3 {
        assert_eq!(stack.media("GET", &url).body, PDF);
    }
    // Waiting out nginx's configured keepalive_timeout (1 s), staying below mediagate's (2 s).
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let after = stack.media("GET", &url);
    assert_eq!((after.status, after.body.as_slice()), (200, PDF));
    let errors = stack.nginx.log_text();
    for symptom in [
        "prematurely closed",
        "broken pipe",
        "reset by peer",
        "upstream timed out",
    ] {
        assert!(!errors.contains(symptom), "{symptom}:\n{errors}");
    }
}

/// `keepalive_timeout` of each `upstream mediagate_*` block in an nginx configuration
/// (nginx's default, 60 s, when the block does not set one).
fn mediagate_upstream_keepalive_timeouts(conf: &str) -> Vec<(String, u64)> {
    let mut found = Vec::new();
    let mut rest = conf;
    while let Some(start) = rest.find("upstream mediagate_") {
        let block = &rest[start..];
        let end = block.find('}').expect("unterminated upstream block");
        let (block, name) = (&block[..end], block.split_whitespace().nth(1).unwrap());
        let timeout = block
            .lines()
            .map(str::trim)
            .find_map(|line| line.strip_prefix("keepalive_timeout "))
            .map_or(60, |value| {
                mediagate::config::Duration::parse(value.trim_end_matches(';'))
                    .unwrap()
                    .0
            });
        found.push((name.to_owned(), timeout));
        rest = &rest[start + end..];
    }
    found
}

#[test]
fn shipped_nginx_upstreams_time_out_idle_connections_before_mediagate() {
    let root = env!("CARGO_MANIFEST_DIR");
    let read = |path: &str| std::fs::read_to_string(format!("{root}/{path}")).unwrap();
    let idle_timeout = |toml_text: &str| {
        let value: toml::Value = toml::from_str(toml_text).unwrap();
        value["server"].get("idle_timeout").map(|value| {
            mediagate::config::Duration::parse(value.as_str().unwrap())
                .unwrap()
                .0
        })
    };
    let default_idle = idle_timeout(&read("src/config/default.toml")).unwrap();
    let kubernetes = read("deploy/kubernetes/mediagate.yaml");
    let (kube_toml, kube_nginx) = {
        let toml_start = kubernetes.find("mediagate.toml: |").unwrap();
        let nginx_start = kubernetes.find("nginx.conf: |").unwrap();
        let dedent = |text: &str| {
            text.lines()
                .skip(1)
                .map(|line| line.strip_prefix("    ").unwrap_or(line))
                .collect::<Vec<_>>()
                .join("\n")
        };
        (
            dedent(&kubernetes[toml_start..nginx_start]),
            kubernetes[nginx_start..].to_owned(),
        )
    };
    let deploy_idle = idle_timeout(&read("deploy/mediagate.toml")).unwrap_or(default_idle);
    let kube_idle = idle_timeout(&kube_toml).unwrap_or(default_idle);
    let pairs = [
        (
            "nginx/example.conf",
            read("nginx/example.conf"),
            default_idle,
        ),
        (
            "deploy/docker/nginx.conf",
            read("deploy/docker/nginx.conf"),
            deploy_idle,
        ),
        ("deploy/kubernetes/mediagate.yaml", kube_nginx, kube_idle),
    ];
    for (file, conf, idle) in pairs {
        let upstreams = mediagate_upstream_keepalive_timeouts(&conf);
        assert!(
            !upstreams.is_empty(),
            "{file}: no upstream mediagate_* block"
        );
        for (upstream, keepalive) in upstreams {
            assert!(
                keepalive < idle,
                "{file}: upstream {upstream} keepalive_timeout {keepalive}s is not below mediagate's idle_timeout {idle}s"
            );
        }
    }
}

#[test]
fn nginx_starts_the_example_configuration_without_a_warning() {
    // A warning on every start teaches operators to ignore nginx's warnings: the example
    // (with every shipped snippet it includes) must start clean. http.conf's maps once
    // outgrew the default variables hash.
    let stack = Stack::start("e2e-nginx-warnings");
    let log = std::fs::read_to_string(&stack.nginx.log).unwrap();
    assert!(!log.contains("[warn]"), "{log}");
}
