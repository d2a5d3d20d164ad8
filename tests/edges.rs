//! Trust boundaries at the edges (issue 8), each through real nginx rendered from
//! `nginx/example.conf`: a refresh is bound to its site's session server, the site comes from
//! nginx's configuration and not the client's `Host`, the path minted is exactly the path the
//! application approved, only authentic tokens steer the loop guard, no working token reaches
//! a log, and logs name the site and the requested path.

use mediagate::clock;
use mediagate::keys::{Key, Secret};
use mediagate::mint::MintRequest;
use mediagate::token::{self, Claims, IpNet, Purpose, RefreshMarker, Scope, TokenBuf};

use crate::support::{
    request, request_tcp, split_url, Options, Response, Stack, MEDIA_B_HOST, MEDIA_HOST,
    WWW_B_HOST, WWW_HOST,
};

const PDF: &[u8] = b"%PDF-1.4 edge cases\n";
const SECRET_BYTES: &str = "secret bytes";

fn with_files(stack: Stack) -> Stack {
    stack.dir.write("files/media/report.pdf", PDF);
    stack.dir.write("files/media/secret.txt", SECRET_BYTES);
    stack.dir.write("files/media/hls/seg1.ts", "segment one");
    // Accel mode: /files/doc.txt is served from the internal location, aliased to files/.
    stack.dir.write("files/files/doc.txt", "accel document");
    stack
}

fn two_sites(name: &str) -> Stack {
    with_files(Stack::start_with(
        name,
        Options {
            second_site: true,
            ..Options::default()
        },
    ))
}

fn statuses(hops: &[Response]) -> Vec<u16> {
    hops.iter().map(|hop| hop.status).collect()
}

/// mediagate's own denial body.
fn denial_body(reason: &str) -> Vec<u8> {
    crate::support::deny_body(403, reason).into_bytes()
}

/// Signs `claims` with the stack's signing key, bypassing the minting front end (which would
/// refuse or complete some of these on purpose).
fn sign_claims(stack: &Stack, claims: &Claims) -> String {
    token::sign(claims, stack.config.keys.signing_key()).unwrap()
}

/// The refresh marker in the `state` of a refresh URL, read after checking its signature.
fn state_marker(stack: &Stack, location: &str) -> RefreshMarker {
    let (_, state) = location.split_once("?state=").expect("a refresh URL");
    let mut buf = TokenBuf::new();
    let decoded = token::decode(state, &mut buf).unwrap();
    assert_eq!(decoded.purpose, Purpose::RefreshState);
    assert!(stack.config.keys.get(decoded.kid).is_some());
    decoded.refresh.expect("a state carries a marker")
}

// ---- Item 1: a refresh is bound to the session server of its site --------------------------

#[test]
fn another_sites_session_domain_cannot_refresh_this_sites_media() {
    let stack = two_sites("crosssite");
    let first = stack.media("GET", "/media/secret.txt");
    assert_eq!(first.status, 302);
    let (host, refresh) = split_url(first.header("location").unwrap());
    assert_eq!(host, WWW_HOST);

    // Site B's session domain, asked with site A's refresh URL by a user B's application
    // approves: before the fix, mediagate minted a working token for A's media here.
    let at_b = request(
        &stack.socket_for_host(WWW_B_HOST),
        "GET",
        WWW_B_HOST,
        &refresh,
        &[("Cookie", "session=alice")],
    );
    assert_eq!(at_b.status, 403, "{at_b:#?}");
    assert_eq!(at_b.header("x-mediagate-reason"), Some("bad_state"));
    assert_eq!(at_b.body, denial_body("bad_state"));
    assert_eq!(at_b.header("location"), None);

    // The same URL on site A's own session domain heals the link.
    let hops = stack.browse(
        &format!("http://{WWW_HOST}{refresh}"),
        Some("session=alice"),
    );
    assert_eq!(statuses(&hops), [302, 200], "{hops:#?}");
    assert_eq!(hops[1].text(), SECRET_BYTES);
}

// ---- Item 2: the site comes from nginx's configuration, not from the client's Host ----------

#[test]
fn a_host_header_naming_another_site_does_not_bring_its_public_prefixes() {
    let stack = two_sites("hostheader");
    // Site B serves everything below /media/ without a token; its own server shows that.
    let at_b = stack.browse(&format!("http://{MEDIA_B_HOST}/media/secret.txt"), None);
    assert_eq!(statuses(&at_b), [200]);
    // Site A's server, reached with B's name in Host: A's rules apply, so no token means a
    // refresh through A's session domain (before the fix: 200 and the file).
    let response = request(
        &stack.socket("media.sock"),
        "GET",
        MEDIA_B_HOST,
        "/media/secret.txt",
        &[],
    );
    assert_eq!(response.status, 302, "{response:#?}");
    assert_eq!(response.header("x-mediagate-reason"), Some("missing_token"));
    let location = response.header("location").unwrap();
    assert!(
        location.starts_with(&format!(
            "http://{WWW_HOST}/_mediagate/refresh/media/secret.txt?state="
        )),
        "{location}"
    );
    assert!(!response.text().contains(SECRET_BYTES));
}

#[test]
fn with_several_sites_only_tokens_bound_to_the_site_open_its_files() {
    let stack = two_sites("hostbound");
    let now = clock::now();
    let unbound = sign_claims(
        &stack,
        &Claims::download(Scope::Exact("/media/report.pdf".into()), now + 600),
    );
    let bound_to_a = sign_claims(
        &stack,
        &Claims {
            host: Some(MEDIA_HOST.into()),
            ..Claims::download(Scope::Exact("/media/report.pdf".into()), now + 600)
        },
    );
    let url = |token: &str| format!("/media/report.pdf?token={token}");
    // Unbound: refused on every site (it would open /media/report.pdf on all of them).
    let response = stack.media("GET", &url(&unbound));
    assert_eq!(response.status, 403, "{response:#?}");
    assert_eq!(response.header("x-mediagate-reason"), Some("wrong_host"));
    // Bound to A: opens A's file. Bound to B: refused on A's server.
    let response = stack.media("GET", &url(&bound_to_a));
    assert_eq!(response.status, 200);
    assert_eq!(response.body, PDF);
    let bound_to_b = sign_claims(
        &stack,
        &Claims {
            host: Some(MEDIA_B_HOST.into()),
            ..Claims::download(Scope::Exact("/media/report.pdf".into()), now + 600)
        },
    );
    let response = stack.media("GET", &url(&bound_to_b));
    assert_eq!(response.status, 403);
    assert_eq!(response.header("x-mediagate-reason"), Some("wrong_host"));
}

#[test]
fn the_auth_cache_never_answers_for_another_sites_server() {
    // Found by review: the optional cache keyed its entries on $host, which the client types,
    // and its zone is shared by every server. Site C's server, asked with A's name in Host and
    // a URL A had just allowed, answered from A's entry and served C's file.
    let stack = with_files(Stack::start_with(
        "cachesite",
        Options {
            extra_config: "\n[[sites]]\nid = \"c\"\nmedia_origin = \"http://media-c.localhost\"\n".into(),
            nginx_edits: vec![(
                "\n    # ---- session domain".into(),
                "\n    server {\n        listen unix:{d}/media-c.sock;\n        server_name media-c.localhost;\n        \
                 error_log stderr crit;\n        include mediagate/media-auth-cached.conf;\n        \
                 location /media/ {\n            include mediagate/protect.conf;\n            \
                 root {d}/files-c;\n        }\n    }\n\n    # ---- session domain"
                    .into(),
            )],
            ..Options::default()
        }
        .with_auth_cache(),
    ));
    stack
        .dir
        .write("files-c/media/report.pdf", "site c's private file");
    let now = clock::now();
    let for_a = sign_claims(
        &stack,
        &Claims {
            host: Some(MEDIA_HOST.into()),
            ..Claims::download(Scope::Exact("/media/report.pdf".into()), now + 600)
        },
    );
    let url = format!("/media/report.pdf?token={for_a}");
    let at_a = stack.media("GET", &url);
    assert_eq!(at_a.status, 200);
    assert_eq!(at_a.body, PDF);
    let at_c = request(&stack.socket("media-c.sock"), "GET", MEDIA_HOST, &url, &[]);
    assert_eq!(at_c.status, 403, "{at_c:#?}");
    assert_eq!(at_c.header("x-mediagate-reason"), Some("wrong_host"));
    assert!(!at_c.text().contains("private"));
}

// ---- Item 3: the path the application approves is exactly the path minted ------------------

#[test]
fn refresh_mints_exactly_the_path_the_application_approved() {
    let stack = with_files(Stack::start("exactpath"));
    let files: [(&str, &str, &str); 5] = [
        // (file name on disk, request path, bytes)
        ("media/a%20b.pdf", "/media/a%2520b.pdf", "percent twenty"),
        ("media/a b.pdf", "/media/a%20b.pdf", "a space"),
        (
            "media/100% #1?.pdf",
            "/media/100%25%20%231%3F.pdf",
            "spec example",
        ),
        (
            "media/café lecture.txt",
            "/media/caf%C3%A9%20lecture.txt",
            "unicode",
        ),
        (
            "media/50%/clip 1.txt",
            "/media/50%25/clip%201.txt",
            "clip one",
        ),
    ];
    for (file, _, bytes) in files {
        stack.dir.write(&format!("files/{file}"), bytes);
    }
    stack.dir.write("files/media/50%/clip 2.txt", "clip two");
    for (file, path, bytes) in files {
        let hops = stack.browse(&format!("http://{MEDIA_HOST}{path}"), Some("session=alice"));
        assert_eq!(statuses(&hops), [302, 302, 200], "{path}: {hops:#?}");
        assert_eq!(hops[2].text(), bytes, "{path}");
        let back = hops[1].header("location").unwrap();
        assert!(
            back.starts_with(&format!("http://{MEDIA_HOST}{path}?token=")),
            "{path}: {back}"
        );
        let asked = stack.app.asked.lock().unwrap().last().cloned();
        assert_eq!(asked.as_deref(), Some(format!("/{file}").as_str()));
    }
    // The application granted the folder `/media/50%/` (as it reads paths: decoded): the
    // token of clip 1 opens clip 2, and nothing beside the folder.
    let hops = stack.browse(
        &format!("http://{MEDIA_HOST}/media/50%25/clip%201.txt"),
        Some("session=alice"),
    );
    let (_, back) = split_url(hops[1].header("location").unwrap());
    let (_, token) = back.split_once("?token=").unwrap();
    let clip2 = stack.media("GET", &format!("/media/50%25/clip%202.txt?token={token}"));
    assert_eq!(clip2.status, 200);
    assert_eq!(clip2.text(), "clip two");
    let beside = stack.media("GET", &format!("/media/secret.txt?token={token}"));
    assert_eq!(beside.status, 403);
    assert_eq!(beside.header("x-mediagate-reason"), Some("out_of_scope"));
}

#[test]
fn refresh_refuses_when_the_approved_path_is_not_the_signed_one() {
    // nginx asks the application about the path it decoded; were a configuration to forward
    // another one, mediagate must not mint. Simulated by a session snippet that forwards a
    // fixed path as the approved one.
    let stack = with_files(Stack::start_with(
        "approvedpath",
        Options {
            snippet_edits: vec![(
                "session-refresh.conf".into(),
                "X-Mediagate-Approved-Path $mediagate_media_path;".into(),
                "X-Mediagate-Approved-Path /media/report.pdf;".into(),
            )],
            ..Options::default()
        },
    ));
    let hops = stack.browse(
        &format!("http://{MEDIA_HOST}/media/secret.txt"),
        Some("session=alice"),
    );
    assert_eq!(statuses(&hops), [302, 403], "{hops:#?}");
    assert_eq!(hops[1].header("x-mediagate-reason"), Some("bad_path"));
    assert_eq!(hops[1].body, denial_body("bad_path"));
}

// ---- Item 4: only an authenticated token's fields steer a decision --------------------------

#[test]
fn a_forged_refresh_marker_neither_stops_the_refresh_nor_enters_the_next_state() {
    let stack = with_files(Stack::start("forgedmarker"));
    let unknown = Key::new("forged", &Secret::generate().unwrap()).unwrap();
    let now = clock::now();
    // A chain that began a second ago (the loop guard would stop it: before the fix this was
    // a 403 refresh_loop), long ago and in the future (the window's edges).
    for forged_start in [now - 1, 12_345, now + 86_400] {
        let claims = Claims {
            refresh: Some(RefreshMarker {
                attempt: 2,
                started: forged_start,
            }),
            ..Claims::download(Scope::Exact("/media/report.pdf".into()), now + 600)
        };
        let forged = token::sign(&claims, &unknown).unwrap();
        let before = clock::now();
        let response = stack.media("GET", &format!("/media/report.pdf?token={forged}"));
        // Before the fix: 403 refresh_loop, and the forged start went into the next state.
        assert_eq!(response.status, 302, "{response:#?}");
        assert_eq!(response.header("x-mediagate-reason"), Some("unknown_key"));
        let marker = state_marker(&stack, response.header("location").unwrap());
        assert_eq!(marker.attempt, 1);
        assert!(
            (before..=clock::now()).contains(&marker.started),
            "forged start {forged_start} leaked into the state: {marker:?}"
        );
    }
    // A known key with a bad tag (signed for another path) is not refreshable at all, and
    // its marker, at the last attempt, does not make it a loop either.
    let claims = Claims {
        refresh: Some(RefreshMarker {
            attempt: stack.config.refresh.max_attempts,
            started: now,
        }),
        ..Claims::download(Scope::Exact("/media/secret.txt".into()), now + 600)
    };
    let other_path = sign_claims(&stack, &claims);
    let response = stack.media("GET", &format!("/media/report.pdf?token={other_path}"));
    assert_eq!(response.status, 403);
    assert_eq!(response.header("x-mediagate-reason"), Some("bad_signature"));
    assert_eq!(response.header("location"), None);
}

#[test]
fn a_session_side_signing_with_a_key_the_media_side_lacks_still_heals() {
    // Refreshed tokens are signed with the key that signed the state, which the media side
    // knows by construction: a key mismatch between the sides cannot become a loop.
    let stack = with_files(Stack::start_with(
        "statekey",
        Options {
            session_side_signs_with_unknown_key: true,
            ..Options::default()
        },
    ));
    let hops = stack.browse(
        &format!("http://{MEDIA_HOST}/media/report.pdf"),
        Some("session=alice"),
    );
    assert_eq!(statuses(&hops), [302, 302, 200], "{hops:#?}");
    assert_eq!(hops[2].body, PDF);
}

// ---- Items 8 and 9: logs ---------------------------------------------------------------------

#[test]
fn no_working_token_reaches_any_log() {
    let mut stack = with_files(Stack::start("nologtoken"));
    let mut tokens = Vec::new();
    let mut sign = |request: MintRequest| {
        let url = stack.sign_with(request);
        tokens.push(url.split_once("?token=").unwrap().1.to_owned());
        url
    };
    let exact = sign(MintRequest {
        path: "/media/report.pdf".into(),
        ..MintRequest::default()
    });
    let folder = sign(MintRequest {
        path: "/media/hls/".into(),
        prefix: true,
        ..MintRequest::default()
    });
    let accel = sign(MintRequest {
        path: "/files/doc.txt".into(),
        ..MintRequest::default()
    });
    let accel_folder = sign(MintRequest {
        path: "/files/".into(),
        prefix: true,
        ..MintRequest::default()
    });
    let (_, folder_token) = folder.split_once('?').unwrap();
    let (_, accel_folder_token) = accel_folder.split_once('?').unwrap();
    assert_eq!(stack.media("GET", &exact).status, 200);
    assert_eq!(stack.media("GET", &accel).status, 200);
    // A missing file inside a prefix token's scope: nginx's "open() failed" line quoted the
    // request line, token included.
    let missing = stack.media("GET", &format!("/media/hls/nope.ts?{folder_token}"));
    assert_eq!(missing.status, 404);
    let missing = stack.media("GET", &format!("/files/nope.txt?{accel_folder_token}"));
    assert_eq!(missing.status, 404);
    // The refresh flow hands out a token in a Location header.
    let hops = stack.browse(
        &format!("http://{MEDIA_HOST}/media/secret.txt"),
        Some("session=alice"),
    );
    assert_eq!(statuses(&hops), [302, 302, 200]);
    let (_, back) = split_url(hops[1].header("location").unwrap());
    tokens.push(back.split_once("?token=").unwrap().1.to_owned());
    // The sidecar down: nginx's upstream error lines quoted the request line too. (Its audit
    // lines are written in batches: wait for the last one before the kill.)
    let audit = stack
        .mediagate
        .log_containing(r#"path="/media/secret.txt""#);
    stack.mediagate.child.kill().unwrap();
    stack.mediagate.child.wait().unwrap();
    let down = stack.media("GET", &exact);
    assert_eq!(down.status, 500);
    let down = stack.media("GET", &accel);
    assert_eq!(down.status, 502);
    // nginx's logs once it has stopped (its lines are then all written).
    let _ = stack.nginx.terminate(std::time::Duration::from_secs(10));
    let access = read(&stack, "access.log");
    assert!(
        access.contains(r#""GET /media/hls/nope.ts" 404"#),
        "{access}"
    );
    assert!(audit.contains(r#"path="/media/secret.txt""#), "{audit}");
    for (name, text) in [
        ("nginx access log", access),
        ("nginx error log", stack.nginx.log_text()),
        ("mediagate log", audit),
    ] {
        for token in &tokens {
            assert!(
                !text.contains(token.as_str()),
                "a working token in the {name}:\n{text}"
            );
        }
        assert!(!text.contains("token="), "{name}:\n{text}");
    }
}

fn read(stack: &Stack, name: &str) -> String {
    std::fs::read_to_string(stack.dir.path().join(name)).unwrap_or_default()
}

#[test]
fn logs_name_the_site_and_the_path_the_client_asked_for() {
    let stack = with_files(Stack::start("lognames"));
    let accel = stack.sign("/files/doc.txt");
    assert_eq!(stack.media("GET", &accel).text(), "accel document");
    let denied = stack.media("GET", "/media/report.pdf?token=AAAA");
    assert_eq!(denied.status, 403);
    let hops = stack.browse(
        &format!("http://{MEDIA_HOST}/media/report.pdf"),
        Some("session=alice"),
    );
    assert_eq!(statuses(&hops), [302, 302, 200]);
    // Audit: the refresh and the denial name the site and the media path.
    let audit = stack
        .mediagate
        .log_containing(r#"endpoint="refresh" decision="minted""#);
    let refresh_line = audit
        .lines()
        .find(|line| line.contains(r#"endpoint="refresh""#))
        .unwrap_or_else(|| panic!("no refresh line:\n{audit}"));
    assert!(
        refresh_line.contains(r#"site="demo""#)
            && refresh_line.contains(r#"path="/media/report.pdf""#),
        "{refresh_line}"
    );
    let deny_line = audit
        .lines()
        .find(|line| line.contains(r#"reason="malformed""#))
        .unwrap_or_else(|| panic!("no deny line:\n{audit}"));
    assert!(deny_line.contains(r#"site="demo""#), "{deny_line}");
    // nginx's access log shows what the client asked for in accel mode, not /accel or the
    // internal location.
    let log = wait_for_file(&stack, "access.log", "/files/doc.txt");
    assert!(log.contains(r#""GET /files/doc.txt" 200"#), "{log}");
    assert!(
        !log.contains("/accel") && !log.contains("/_mediagate_files"),
        "{log}"
    );
}

/// The file's text once it contains `needle` (nginx writes access lines after the response).
fn wait_for_file(stack: &Stack, name: &str, needle: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let text = read(stack, name);
        if text.contains(needle) || std::time::Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

// ---- Item 13: accel mode ---------------------------------------------------------------------

#[test]
fn accel_mode_says_the_reason_once_and_never_lets_a_cache_keep_an_ip_bound_answer() {
    let stack = with_files(Stack::start("accelonce"));
    let forged = stack.media("GET", "/files/doc.txt?token=AAAA");
    assert_eq!(forged.status, 403);
    let reasons: Vec<_> = forged
        .headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("x-mediagate-reason"))
        .collect();
    assert_eq!(reasons.len(), 1, "{forged:#?}");
    let refresh = stack.media("GET", "/files/doc.txt");
    assert_eq!(refresh.status, 302);
    let count = refresh
        .headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("x-mediagate-reason"))
        .count();
    assert_eq!(count, 1, "{refresh:#?}");

    // X-Accel-Expires is read by nginx, not passed on: ask mediagate's verify socket as
    // nginx does.
    let now = clock::now();
    let minted = |ip: Option<IpNet>| {
        mediagate::mint::mint(
            &stack.config,
            &MintRequest {
                path: "/files/doc.txt".into(),
                ip,
                ..MintRequest::default()
            },
            now,
        )
        .unwrap()
    };
    let ask = |path_and_query: &str| {
        request(
            &stack.socket("verify.sock"),
            "GET",
            "mediagate",
            "/accel",
            &[
                ("X-Original-URI", path_and_query),
                ("X-Mediagate-Server-Name", MEDIA_HOST),
                ("X-Real-IP", "127.0.0.1"),
            ],
        )
    };
    let bound = minted(Some("127.0.0.1".parse().unwrap()));
    let response = ask(&bound.path_and_query);
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("x-accel-expires"),
        Some("0"),
        "{response:#?}"
    );
    let unbound = minted(None);
    let response = ask(&unbound.path_and_query);
    assert_eq!(response.status, 200);
    let expected = format!("@{}", unbound.expires - 1);
    assert_eq!(response.header("x-accel-expires"), Some(expected.as_str()));
}

// ---- Never exercised before: TCP, trusted peers and IP-bound tokens through nginx ------------

#[test]
fn ip_bound_tokens_through_nginx_over_tcp() {
    let stack = with_files(Stack::start_with(
        "tcpip",
        Options {
            tcp: true,
            ..Options::default()
        },
    ));
    let (_, media_port) = stack.tcp_ports.unwrap();
    let bound = |ip: &str| {
        stack.sign_with(MintRequest {
            path: "/media/report.pdf".into(),
            ip: Some(ip.parse().unwrap()),
            ..MintRequest::default()
        })
    };
    let ours = request_tcp(media_port, "GET", MEDIA_HOST, &bound("127.0.0.1"));
    assert_eq!(ours.status, 200, "{ours:#?}");
    assert_eq!(ours.body, PDF);
    let network = request_tcp(media_port, "GET", MEDIA_HOST, &bound("127.0.0.0/8"));
    assert_eq!(network.status, 200);
    let theirs = request_tcp(media_port, "GET", MEDIA_HOST, &bound("10.0.0.0/8"));
    assert_eq!(theirs.status, 403);
    assert_eq!(theirs.header("x-mediagate-reason"), Some("ip"));
    // Over nginx's Unix socket there is no client address: IP-bound tokens fail closed.
    let unix = stack.media("GET", &bound("127.0.0.1"));
    assert_eq!(unix.status, 403);
    assert_eq!(unix.header("x-mediagate-reason"), Some("ip"));
}

#[test]
fn nginx_outside_trusted_peers_gets_nothing_over_tcp() {
    let stack = with_files(Stack::start_with(
        "untrusted",
        Options {
            tcp: true,
            server_config: r#"trusted_peers = ["10.0.0.0/8"]"#.into(),
            ..Options::default()
        },
    ));
    let (_, media_port) = stack.tcp_ports.unwrap();
    let url = stack.sign("/media/report.pdf");
    for response in [
        request_tcp(media_port, "GET", MEDIA_HOST, &url),
        stack.media("GET", &url),
        stack.media("GET", "/files/doc.txt"),
    ] {
        assert_eq!(response.status, 403, "{response:#?}");
        assert_eq!(
            response.header("x-mediagate-reason"),
            Some("untrusted_peer")
        );
        assert!(!response.text().contains("bytes"));
    }
}

#[test]
fn a_control_byte_in_a_refresh_url_never_reaches_a_header() {
    // nginx decodes %0d into $uri; copied into X-Media-Path it would split the header for a
    // lenient application parser (and forge a grant header). Such URLs are not refreshes.
    let stack = with_files(Stack::start("crlf"));
    for (path, status, body) in [
        // The session server's catch-all location (the application's own pages).
        (
            "/_mediagate/refresh/media/x%0dX-Mediagate-Grant-Prefix:%20/?state=abc",
            200,
            "application",
        ),
        (
            "/_mediagate/refresh/media/x%0d%0aX-Mediagate-Grant-Prefix:%20/?state=abc",
            200,
            "application",
        ),
        // nginx refuses a NUL itself.
        (
            "/_mediagate/refresh/media/x%00y?state=abc",
            400,
            "400 Bad Request",
        ),
    ] {
        let response = request(
            &stack.socket("www.sock"),
            "GET",
            WWW_HOST,
            path,
            &[("Cookie", "session=alice")],
        );
        assert_eq!(response.status, status, "{path}: {response:#?}");
        assert!(
            response.text().contains(body),
            "{path}: {}",
            response.text()
        );
    }
    assert!(stack.app.asked.lock().unwrap().is_empty());
}
