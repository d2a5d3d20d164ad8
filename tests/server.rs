//! The server in-process: pre-bound `127.0.0.1:0` listeners handed to `http::run`, raw HTTP
//! over TCP, a shutdown we trigger ourselves. Covers what needs no nginx: trusted peers,
//! header strictness, IP binding, /mint, metrics, graceful drain.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::Duration;

use mediagate::config::Config;
use mediagate::http::App;
use mediagate::mint::{mint, MintRequest};

use crate::support::{deny_body, random_secret, InProcessServer, Response, TempDir};

struct Server {
    verify: SocketAddr,
    internal: SocketAddr,
    config: Config,
    secret: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
    _dir: TempDir,
}

impl Server {
    fn start(trusted_peers: &str) -> Server {
        Server::start_with(trusted_peers, "")
    }

    /// `server` holds extra lines for the `[server]` section.
    fn start_with(trusted_peers: &str, server: &str) -> Server {
        let dir = TempDir::new("inprocess");
        let secret = random_secret();
        let path = dir.write(
            "mediagate.toml",
            format!(
                r#"[server]
trusted_peers = {trusted_peers}
{server}
[log]
audit = false
[keys]
dev_key = false
[keys.secrets]
k1 = "{key}"
[internal]
secret = "{secret}"
[[sites]]
id = "demo"
media_origin = "https://media.example.org"
session_origin = "https://www.example.org"
public_prefixes = ["/media/public/"]
"#,
                key = random_secret(),
            ),
        );
        let config = mediagate::config::load(Some(&path)).unwrap();
        let InProcessServer {
            verify,
            internal,
            stop,
            thread,
        } = InProcessServer::start(App::new(config.clone()));
        Server {
            verify,
            internal,
            config,
            secret,
            stop,
            thread,
            _dir: dir,
        }
    }

    fn url(&self, path: &str, request: MintRequest) -> String {
        mint(
            &self.config,
            &MintRequest {
                path: path.into(),
                ..request
            },
            mediagate::clock::now(),
        )
        .unwrap()
        .path_and_query
    }

    fn auth(&self, headers: &[(&str, &str)]) -> Response {
        exchange(self.verify, "GET", "/auth", headers, "")
    }

    /// /auth with the usual nginx headers for `uri`.
    fn auth_for(&self, uri: &str, ip: &str) -> Response {
        self.auth(&[
            ("X-Original-URI", uri),
            ("X-Original-Method", "GET"),
            ("X-Mediagate-Server-Name", "media.example.org"),
            ("X-Real-IP", ip),
        ])
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Response {
    let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: mediagate\r\nConnection: close\r\n");
    for (name, value) in headers {
        raw.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() {
        raw.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    raw.push_str("\r\n");
    raw.push_str(body);
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(raw.as_bytes()).unwrap();
    read_response(&mut stream)
}

fn read_response(stream: &mut TcpStream) -> Response {
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).unwrap();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete response");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();
    Response {
        status,
        headers,
        body: body.as_bytes().to_vec(),
    }
}

const LOOPBACK: &str = r#"["127.0.0.0/8"]"#;

/// Where this server's refreshes go (`session_origin` + the default refresh path).
const REFRESH: &str = "https://www.example.org/_mediagate/refresh";

/// What the client sees of one answer: status, `X-Mediagate-Reason`, `Location`, body text.
type Seen = (u16, Option<String>, Option<String>, String);

fn seen(response: &Response) -> Seen {
    let header = |name| response.header(name).map(str::to_owned);
    (
        response.status,
        header("x-mediagate-reason"),
        header("location"),
        response.text(),
    )
}

/// mediagate's denial, exactly: status, reason header, no Location, `"{status} {phrase}: {reason}\n"`.
fn denied(status: u16, reason: &str) -> Seen {
    (
        status,
        Some(reason.to_owned()),
        None,
        deny_body(status, reason),
    )
}

/// An allow from `/auth`: 204, no reason, no Location, empty body.
fn allowed() -> Seen {
    (204, None, None, String::new())
}

/// A refresh from `/auth`: 401, the reason, `Location` to the session domain, empty body.
/// The state in the Location is random-looking; `seen_refresh` cuts it off.
fn refresh(reason: &str, path: &str) -> Seen {
    (
        401,
        Some(reason.to_owned()),
        Some(format!("{REFRESH}{path}?state=")),
        String::new(),
    )
}

/// `seen`, with a refresh Location cut after `?state=` (the state itself is a fresh token).
fn seen_refresh(response: &Response) -> Seen {
    let mut seen = seen(response);
    if let Some(location) = &mut seen.2 {
        if let Some(at) = location.find("?state=") {
            location.truncate(at + "?state=".len());
        }
    }
    seen
}

#[test]
fn valid_token_is_allowed_with_subject_id_and_remaining_lifetime() {
    let server = Server::start(LOOPBACK);
    let uri = server.url(
        "/media/a.pdf",
        MintRequest {
            ttl: Some(600),
            subject: Some("alice@example.org".into()),
            token_id: Some("t-42".into()),
            ..MintRequest::default()
        },
    );
    let response = server.auth_for(&uri, "198.51.100.7");
    assert_eq!(seen(&response), allowed(), "{response:?}");
    assert_eq!(
        response.header("x-mediagate-subject"),
        Some("alice@example.org")
    );
    assert_eq!(response.header("x-mediagate-token-id"), Some("t-42"));
    let left: u64 = response
        .header("x-mediagate-expires-in")
        .unwrap()
        .parse()
        .unwrap();
    assert!((595..=600).contains(&left), "{left}");
}

#[test]
fn untrusted_peer_is_denied_even_with_a_valid_token() {
    let server = Server::start("[]");
    let uri = server.url("/media/a.pdf", MintRequest::default());
    let response = server.auth_for(&uri, "127.0.0.1");
    assert_eq!(seen(&response), denied(403, "untrusted_peer"));
}

#[test]
fn missing_or_duplicated_original_headers_are_denied() {
    let server = Server::start(LOOPBACK);
    let uri = server.url("/media/a.pdf", MintRequest::default());
    let full = [
        ("X-Original-URI", uri.as_str()),
        ("X-Original-Method", "GET"),
        ("X-Mediagate-Server-Name", "media.example.org"),
        ("X-Real-IP", "127.0.0.1"),
    ];
    assert_eq!(seen(&server.auth(&full)), allowed());
    for skip in 0..full.len() {
        let partial: Vec<_> = full
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != skip)
            .map(|(_, h)| *h)
            .collect();
        let response = server.auth(&partial);
        assert_eq!(
            seen(&response),
            denied(403, "bad_request"),
            "without {}",
            full[skip].0
        );
        let mut doubled = full.to_vec();
        doubled.push(full[skip]);
        let response = server.auth(&doubled);
        assert_eq!(
            seen(&response),
            denied(403, "bad_request"),
            "with {} twice",
            full[skip].0
        );
    }
    let bad_ip = server.auth_for(&uri, "not-an-ip");
    assert_eq!(seen(&bad_ip), denied(403, "bad_request"));
}

#[test]
fn auth_answers_hostile_uris_with_the_exact_decision() {
    let server = Server::start(LOOPBACK);
    let long = format!("/media/{}", "a".repeat(6000));
    let many_params = format!("/media/a.pdf?{}", "x=1&".repeat(500));
    let cases = [
        ("", denied(403, "bad_path")),
        ("relative", denied(403, "bad_path")),
        (
            "/media/a.pdf?token=",
            refresh("missing_token", "/media/a.pdf"),
        ),
        ("/media/a.pdf?token=%%%", denied(403, "malformed")),
        (
            "/media/a.pdf?token=AAAA&token=BBBB",
            denied(403, "malformed"),
        ),
        ("/media/%ff%fe", denied(403, "bad_path")),
        // 500 parameters are too many for a refresh to keep (issue 11: the refreshed URL keeps
        // the query exactly or is not handed out), so no redirect: the plain denial.
        (many_params.as_str(), denied(403, "missing_token")),
        (
            "/media/a.pdf?x=1&y=a%20b",
            refresh("missing_token", "/media/a.pdf"),
        ),
        (long.as_str(), denied(403, "bad_path")),
        ("/media/public/x", allowed()),
        ("/media/public/../x", denied(403, "bad_path")),
    ];
    let wrong: Vec<_> = cases
        .iter()
        .map(|(uri, expected)| {
            (
                uri,
                expected,
                seen_refresh(&server.auth_for(uri, "127.0.0.1")),
            )
        })
        .filter(|(_, expected, seen)| expected != &seen)
        .map(|(uri, expected, seen)| {
            format!("{uri:.60?}\n  expected {expected:?}\n  got      {seen:?}")
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn ip_bound_token_checks_the_client_address() {
    let server = Server::start(LOOPBACK);
    let uri = server.url(
        "/media/a.pdf",
        MintRequest {
            ip: Some("203.0.113.0/24".parse().unwrap()),
            ..MintRequest::default()
        },
    );
    assert_eq!(seen(&server.auth_for(&uri, "203.0.113.9")), allowed());
    let elsewhere = server.auth_for(&uri, "198.51.100.1");
    assert_eq!(seen(&elsewhere), denied(403, "ip"));
    let unknown = server.auth_for(&uri, "unix:");
    assert_eq!(seen(&unknown), denied(403, "ip"));
}

#[test]
fn refresh_state_cannot_pass_for_a_download_token() {
    let server = Server::start(LOOPBACK);
    let first = server.auth_for("/media/a.pdf", "127.0.0.1");
    assert_eq!(
        seen_refresh(&first),
        refresh("missing_token", "/media/a.pdf")
    );
    let location = first.header("location").unwrap();
    let state = location.split_once("state=").unwrap().1;
    let reused = server.auth_for(&format!("/media/a.pdf?token={state}"), "127.0.0.1");
    assert_eq!(seen(&reused), denied(403, "wrong_purpose"));
}

#[test]
fn mint_api_requires_the_secret_and_returns_a_working_url() {
    let server = Server::start(LOOPBACK);
    let body = r#"{"path": "/media/a b.pdf", "ttl": "10m", "subject": "bob"}"#;
    let refused = (
        401,
        r#"{"error":"missing or wrong bearer secret"}"#.to_owned(),
    );
    let anonymous = exchange(server.internal, "POST", "/mint", &[], body);
    assert_eq!((anonymous.status, anonymous.text()), refused);
    let wrong = exchange(
        server.internal,
        "POST",
        "/mint",
        &[("Authorization", "Bearer d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldA")],
        body,
    );
    assert_eq!((wrong.status, wrong.text()), refused);

    let bearer = format!("Bearer {}", server.secret);
    let minted = exchange(
        server.internal,
        "POST",
        "/mint",
        &[("Authorization", &bearer)],
        body,
    );
    assert_eq!(minted.status, 200, "{}", minted.text());
    let json: serde_json::Value = serde_json::from_slice(&minted.body).unwrap();
    let url = json["url"].as_str().unwrap();
    assert!(
        url.starts_with("https://media.example.org/media/a%20b.pdf?token="),
        "{url}"
    );
    let uri = json["path_and_query"].as_str().unwrap();
    assert_eq!(seen(&server.auth_for(uri, "127.0.0.1")), allowed());

    for (bad, error) in [
        (
            r#"{"path": "/a/../b"}"#,
            r#"path "/a/../b" is not canonical: dot segment in path"#,
        ),
        (
            r#"{"path": "/a", "ttl": "30d"}"#,
            "ttl must be between 1 and 604800 seconds",
        ),
        (
            r#"{"path": "/a", "evil": 1}"#,
            "bad JSON: unknown field `evil`, expected one of `path`, `prefix`, `ttl`, \
             `methods`, `ip`, `host`, `subject`, `token_id`, `data`, `not_before`, `site`, \
             `purpose`, `key`, `bind_version`, `uses`, `max_size`, `content_types`, \
             `issued_at`, `filename`, `disposition`, `max_age`, `scopes`, `recipient`, `form` at line 1 \
             column 21",
        ),
        ("not json", "bad JSON: expected ident at line 1 column 2"),
    ] {
        let response = exchange(
            server.internal,
            "POST",
            "/mint",
            &[("Authorization", &bearer)],
            bad,
        );
        let expected = serde_json::json!({ "error": error }).to_string();
        assert_eq!((response.status, response.text()), (400, expected), "{bad}");
    }
    let get = exchange(
        server.internal,
        "GET",
        "/mint",
        &[("Authorization", &bearer)],
        "",
    );
    assert_eq!(
        (get.status, get.header("allow"), get.text().as_str()),
        (405, Some("POST"), r#"{"error":"use POST"}"#)
    );
}

#[test]
fn media_endpoints_are_not_on_the_internal_listener_and_vice_versa() {
    let server = Server::start(LOOPBACK);
    let cases = [
        (server.internal, "GET", "/auth", "", 404, "not found\n"),
        (server.verify, "POST", "/mint", "{}", 404, "not found\n"),
        (server.verify, "GET", "/refresh", "", 404, "not found\n"),
        (server.verify, "GET", "/healthz", "", 200, "ok\n"),
        (server.internal, "GET", "/readyz", "", 200, "ready\n"),
    ];
    for (listener, method, path, body, status, text) in cases {
        let response = exchange(listener, method, path, &[], body);
        assert_eq!(
            (response.status, response.text().as_str()),
            (status, text),
            "{method} {path} on {listener}"
        );
    }
}

#[test]
fn metrics_count_decisions_by_reason() {
    let server = Server::start(LOOPBACK);
    let uri = server.url("/media/a.pdf", MintRequest::default());
    server.auth_for(&uri, "127.0.0.1");
    server.auth_for("/media/a.pdf?token=garbage", "127.0.0.1");
    server.auth_for("/media/a.pdf?token=garbage", "127.0.0.1");
    let text = exchange(server.internal, "GET", "/metrics", &[], "").text();
    assert!(
        text.contains(r#"mediagate_decisions_total{mode="auth",verdict="allow",reason="none"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"mediagate_decisions_total{mode="auth",verdict="deny",reason="malformed"} 2"#
        ),
        "{text}"
    );
}

#[test]
fn graceful_shutdown_finishes_the_request_in_flight() {
    let mut server = Server::start(LOOPBACK);
    // An idle keep-alive connection: graceful shutdown closes it, which is how we observe that
    // shutdown is in effect.
    let mut idle = TcpStream::connect(server.verify).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: m\r\n\r\n")
        .unwrap();
    let head = read_head(&mut idle);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("content-length: 3\r\n"), "{head}");
    let mut ok = [0u8; 3];
    idle.read_exact(&mut ok).unwrap();
    assert_eq!(&ok, b"ok\n");

    // The request in flight: "100 Continue" proves mediagate accepted the connection, parsed
    // the head and its handler is reading the body.
    let body = r#"{"path": "/media/a.pdf"}"#;
    let mut stream = TcpStream::connect(server.internal).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let head = format!(
        "POST /mint HTTP/1.1\r\nHost: m\r\nAuthorization: Bearer {}\r\n\
         Content-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        server.secret,
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    assert_eq!(read_head(&mut stream), "HTTP/1.1 100 Continue\r\n\r\n");

    server.stop.take().unwrap().send(()).unwrap();
    // Shutdown is in effect once the idle connection is closed (EOF, no bytes).
    let mut rest = Vec::new();
    idle.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));

    // A server that did not drain would now drop the connection and its thread would end.
    // That cannot be waited for as a condition (a correct server never does it), so this is
    // a bounded observation window, not an ordering sleep.
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut probe = [0u8; 1];
    let waiting = stream.peek(&mut probe);
    assert!(
        matches!(&waiting, Err(error) if matches!(error.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "the request in flight was dropped by shutdown: {waiting:?}"
    );
    assert!(
        !server.thread.as_ref().unwrap().is_finished(),
        "the server stopped with a request in flight"
    );
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();

    // The request in flight is still answered...
    stream.write_all(body.as_bytes()).unwrap();
    let response = read_response(&mut stream);
    assert_eq!(response.status, 200, "{}", response.text());
    let json: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(json["path"], "/media/a.pdf");
    assert!(
        json["url"]
            .as_str()
            .unwrap()
            .starts_with("https://media.example.org/media/a.pdf?token="),
        "{json}"
    );
    // ...and then the server stops: `run` returned, dropping both listeners. (Connecting to
    // the released ports would prove nothing: a parallel test may have bound them since.)
    server.thread.take().unwrap().join().unwrap();
}

/// Reads a response head byte by byte up to and including the blank line, so nothing that
/// follows on the connection is consumed.
fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

/// Issue 8, item 12: `/mint` repaired or accepted what the spec refuses, and the README's own
/// example body (`"not_before": 0`) was refused. Each body below now gets 400 with the front
/// end's message; before, the first four were minted (200).
#[test]
fn mint_api_refuses_what_sign_refuses() {
    let server = Server::start(LOOPBACK);
    let bearer = format!("Bearer {}", server.secret);
    let post = |body: &str| {
        exchange(
            server.internal,
            "POST",
            "/mint",
            &[("Authorization", &bearer)],
            body,
        )
    };
    let cases = [
        (
            r#"{"path": "/media/a", "prefix": true}"#,
            "must end with '/'",
        ),
        (r#"{"path": "/media/a.pdf?x=1"}"#, "contains '?'"),
        (
            r#"{"path": "/media/a.pdf", "host": "Media.Example.org"}"#,
            "lower case",
        ),
        (
            r#"{"path": "/media/a.pdf", "methods": ["get"]}"#,
            "unknown HTTP method",
        ),
        (
            r#"{"path": "/media/a.pdf", "host": "media.example.org:443"}"#,
            "port",
        ),
        (
            r#"{"path": "/media/a.pdf", "ip": "::ffff:0.0.0.0/108"}"#,
            "IPv4-mapped",
        ),
        (r#"{"path": "/media/a.pdf", "not_before": 0}"#, "bad nbf"),
        (
            r#"{"path": "/media/a.pdf", "site": "other"}"#,
            "unknown site",
        ),
    ];
    for (body, message) in cases {
        let response = post(body);
        assert_eq!(response.status, 400, "{body}: {}", response.text());
        let json: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
        let error = json["error"].as_str().unwrap();
        assert!(error.contains(message), "{body}: {error}");
    }
    // The README's example body, as documented.
    let readme = r#"{"path": "/media/a.pdf", "ttl": "10m", "prefix": false, "methods": ["GET"],
        "ip": "127.0.0.0/8", "host": "media.example.org", "subject": "bob", "token_id": "t-1",
        "data": "AAH-_w", "not_before": 1767225600, "site": "demo"}"#;
    let minted = post(readme);
    assert_eq!(minted.status, 200, "{}", minted.text());
    let json: serde_json::Value = serde_json::from_slice(&minted.body).unwrap();
    let uri = json["path_and_query"].as_str().unwrap();
    let allowed = server.auth_for(uri, "127.0.0.1");
    assert_eq!(allowed.status, 204, "{allowed:?}");
}

/// Issue 9: `/mint` mints upload slots and counted links (token format v2) and returns the
/// token id it generated; what v2 forbids is refused with the front end's message.
#[test]
fn mint_api_mints_upload_slots_with_a_generated_token_id() {
    let server = Server::start(LOOPBACK);
    let bearer = format!("Bearer {}", server.secret);
    let post = |body: &str| {
        exchange(
            server.internal,
            "POST",
            "/mint",
            &[("Authorization", &bearer)],
            body,
        )
    };
    let minted = post(
        r#"{"path": "/uploads/a.bin", "purpose": "upload", "max_size": 1048576,
            "content_types": ["image/png", "image/jpeg"]}"#,
    );
    assert_eq!(minted.status, 200, "{}", minted.text());
    let json: serde_json::Value = serde_json::from_slice(&minted.body).unwrap();
    let token_id = json["token_id"].as_str().unwrap();
    assert_eq!(token_id.len(), 22, "{json}");
    let issued_at = json["issued_at"].as_u64().unwrap();
    let mut buf = mediagate::token::TokenBuf::new();
    let token = mediagate::token::decode(json["token"].as_str().unwrap(), &mut buf).unwrap();
    assert_eq!(
        (token.version, token.uses, token.token_id, token.issued_at),
        (2, Some(1), Some(token_id), Some(issued_at))
    );
    assert_eq!(token.max_size, Some(1 << 20));
    assert_eq!(token.content_types, Some("image/jpeg,image/png"));
    // /auth takes download tokens only: the slot cannot download.
    let uri = json["path_and_query"].as_str().unwrap();
    assert_eq!(
        seen(&server.auth_for(uri, "127.0.0.1")),
        denied(403, "wrong_purpose")
    );

    // A download without v2 fields answers as before: no token_id, no issued_at.
    let plain = post(r#"{"path": "/media/a.pdf", "token_id": "t-1"}"#);
    let json: serde_json::Value = serde_json::from_slice(&plain.body).unwrap();
    assert_eq!(json["token_id"], "t-1");
    assert!(json.get("issued_at").is_none(), "{json}");
    let plain = post(r#"{"path": "/media/a.pdf"}"#);
    let json: serde_json::Value = serde_json::from_slice(&plain.body).unwrap();
    assert!(json.get("token_id").is_none(), "{json}");

    for (body, message) in [
        (r#"{"path": "/a", "uses": 0}"#, "uses must be at least 1"),
        (r#"{"path": "/a", "max_size": 10}"#, "need an upload token"),
        (
            r#"{"path": "/a", "purpose": "upload", "content_types": ["Image/PNG"]}"#,
            "must be lower case",
        ),
        (
            r#"{"path": "/a", "purpose": "upload", "methods": ["GET"]}"#,
            "POST and/or PUT only",
        ),
        (
            r#"{"path": "/a", "purpose": "refresh_state"}"#,
            "unknown variant",
        ),
        (
            r#"{"path": "/a", "form": "paths"}"#,
            "\"paths\" is not \"query\" or \"path\"",
        ),
    ] {
        let response = post(body);
        assert_eq!(response.status, 400, "{body}: {}", response.text());
        let json: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
        let error = json["error"].as_str().unwrap();
        assert!(error.contains(message), "{body}: {error}");
    }
}

/// Opens `count` connections that send nothing; each holds one of the listener's slots.
fn silent_connections(addr: SocketAddr, count: usize) -> Vec<TcpStream> {
    (0..count)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect()
}

/// Sends `GET path` and returns the stream without reading: the caller decides how long to
/// wait for the answer.
fn send_get(addr: SocketAddr, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .unwrap();
    stream
}

/// Reads one response with a read timeout far below `server.header_timeout` (10 s), so an
/// answer means the connection was served, not that a silent one timed out meanwhile.
fn answered_within(stream: &mut TcpStream, timeout: Duration) -> Option<Response> {
    stream.set_read_timeout(Some(timeout)).unwrap();
    let mut first = [0u8; 1];
    match stream.read(&mut first) {
        Ok(1) => {}
        Ok(_) => panic!("connection closed without an answer"),
        Err(error)
            if matches!(
                error.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            return None
        }
        Err(error) => panic!("read failed: {error}"),
    }
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    let mut bytes = first.to_vec();
    bytes.extend(rest);
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let status = text.split(' ').nth(1).unwrap().parse().unwrap();
    let body = text.split_once("\r\n\r\n").unwrap().1.as_bytes().to_vec();
    Some(Response {
        status,
        headers: Vec::new(),
        body,
    })
}

/// Fills `full`'s cap of two with silent connections, then checks that `full` serves no
/// third connection while `other` answers at once, and that the third is served as soon as
/// a slot frees.
fn cap_of_two_holds_on_one_listener_only(full: SocketAddr, other: SocketAddr) {
    let mut silent = silent_connections(full, 2);
    let mut waiting = send_get(full, "/healthz");
    assert!(
        answered_within(&mut waiting, Duration::from_millis(300)).is_none(),
        "a third connection was served although the cap is 2"
    );
    let mut unaffected = send_get(other, "/healthz");
    let response = answered_within(&mut unaffected, Duration::from_secs(2))
        .expect("the other listener must not wait for this one's slots");
    assert_eq!((response.status, response.text().as_str()), (200, "ok\n"));
    drop(silent.pop());
    let response =
        answered_within(&mut waiting, Duration::from_secs(2)).expect("served once a slot is free");
    assert_eq!((response.status, response.text().as_str()), (200, "ok\n"));
}

#[test]
fn idle_internal_connections_do_not_delay_the_verify_listener() {
    // Regression (issue 8, item 5): one cap over both listeners let idle internal
    // connections hold /healthz on the verify listener for 9.8 s.
    let server = Server::start_with(
        LOOPBACK,
        "max_connections = 2\ninternal_max_connections = 2",
    );
    cap_of_two_holds_on_one_listener_only(server.internal, server.verify);
}

#[test]
fn idle_verify_connections_do_not_delay_the_internal_listener() {
    let server = Server::start_with(
        LOOPBACK,
        "max_connections = 2\ninternal_max_connections = 2",
    );
    cap_of_two_holds_on_one_listener_only(server.verify, server.internal);
}

/// Writes raw bytes and reads whatever comes back until the server closes (or resets).
fn raw_exchange(addr: SocketAddr, raw: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(raw).unwrap();
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => return bytes,
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => return bytes,
            Err(error) => panic!("read failed after {} bytes: {error}", bytes.len()),
        }
    }
}

/// The refusal hyper writes for an oversized head, minus its `date` header.
fn without_date(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .split("\r\n")
        .filter(|line| !line.starts_with("date: "))
        .collect::<Vec<_>>()
        .join("\r\n")
}

const REFUSED_431: &str =
    "HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";

#[test]
fn request_head_over_32_kib_is_refused_with_431_and_the_connection_closed() {
    // Regression (issue 8, item 6): heads were bounded only by hyper's ~400 KB buffer.
    let server = Server::start(LOOPBACK);
    for addr in [server.verify, server.internal] {
        // Complete, but one header makes it larger than the limit.
        let complete = format!(
            "GET /healthz HTTP/1.1\r\nHost: m\r\nX-Big: {}\r\n\r\n",
            "b".repeat(33 * 1024)
        );
        assert_eq!(
            without_date(&raw_exchange(addr, complete.as_bytes())),
            REFUSED_431
        );
        // Never finished: the refusal comes as soon as the limit is reached.
        let unfinished = format!("GET /healthz HTTP/1.1\r\nX-Big: {}", "u".repeat(40 * 1024));
        assert_eq!(
            without_date(&raw_exchange(addr, unfinished.as_bytes())),
            REFUSED_431
        );
    }
}

#[test]
fn more_than_100_headers_are_refused_with_431() {
    let server = Server::start(LOOPBACK);
    let head = |count: usize| {
        let mut head = String::from("GET /healthz HTTP/1.1\r\nConnection: close\r\n");
        for n in 1..count {
            head.push_str(&format!("X-H{n}: v\r\n"));
        }
        head + "\r\n"
    };
    let hundred = String::from_utf8(raw_exchange(server.verify, head(100).as_bytes())).unwrap();
    assert!(hundred.starts_with("HTTP/1.1 200 OK\r\n"), "{hundred}");
    assert_eq!(
        without_date(&raw_exchange(server.verify, head(101).as_bytes())),
        REFUSED_431
    );
}

#[test]
fn the_largest_head_nginx_forwards_with_default_buffers_is_decided() {
    // nginx (large_client_header_buffers 4 8k) forwards a URI and a User-Agent of up to
    // 8 KiB each: both at once must still get a decision, not a 431.
    let server = Server::start(LOOPBACK);
    let uri = server.url("/media/a.pdf", MintRequest::default());
    let padded = format!("{uri}&pad={}", "p".repeat(8000 - uri.len() - 5));
    let user_agent = "u".repeat(8000);
    let response = server.auth(&[
        ("X-Original-URI", &padded),
        ("X-Original-Method", "GET"),
        ("X-Mediagate-Server-Name", "media.example.org"),
        ("X-Real-IP", "127.0.0.1"),
        ("User-Agent", &user_agent),
    ]);
    assert_eq!(response.status, 204, "{response:?}");
}

/// One request on a kept-alive connection; reads exactly one response.
fn keep_alive_get(stream: &mut TcpStream, path: &str) -> u16 {
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: m\r\n\r\n").as_bytes())
        .unwrap();
    let mut bytes = Vec::new();
    let mut byte = [0u8; 1];
    while !bytes.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "closed mid-response");
        bytes.push(byte[0]);
    }
    let head = String::from_utf8(bytes).unwrap();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length: "))
        .unwrap()
        .parse()
        .unwrap();
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).unwrap();
    head.split(' ').nth(1).unwrap().parse().unwrap()
}

#[test]
fn keep_alive_connections_idle_longer_than_the_header_timeout() {
    // Regression (issue 8, item 6): hyper's header-read timeout was also the idle timeout,
    // so mediagate closed keep-alive connections nginx still meant to reuse.
    let server = Server::start_with(LOOPBACK, "header_timeout = \"1s\"\nidle_timeout = \"2s\"");
    let mut stream = TcpStream::connect(server.verify).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(keep_alive_get(&mut stream, "/healthz"), 200);
    // Waiting out the configured header timeout (not ordering events): idle past it...
    thread::sleep(Duration::from_millis(1500));
    // ...and the connection still serves the next request.
    assert_eq!(keep_alive_get(&mut stream, "/healthz"), 200);
    // The idle timeout does close it eventually (read_to_end ends at the server's close).
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{rest:?}");
}

#[test]
fn a_connection_that_never_sends_a_request_is_closed_after_the_header_timeout() {
    let server = Server::start_with(LOOPBACK, "header_timeout = \"1s\"\nidle_timeout = \"60s\"");
    let mut silent = TcpStream::connect(server.internal).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut rest = Vec::new();
    // Ends (EOF) once the server closes; a 5 s read timeout would fail the test instead.
    silent.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{rest:?}");
}

#[test]
fn a_later_request_head_must_also_arrive_within_the_header_timeout() {
    // Slowloris on a kept-alive connection: after one request, half a head and silence. The
    // short header timeout applies (1 s), not the idle timeout (60 s).
    let server = Server::start_with(LOOPBACK, "header_timeout = \"1s\"\nidle_timeout = \"60s\"");
    let mut stream = TcpStream::connect(server.verify).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(keep_alive_get(&mut stream, "/healthz"), 200);
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHo").unwrap();
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{rest:?}");
}

/// The sample value of the line that starts with `series` (name and labels, exactly).
fn metric(text: &str, series: &str) -> String {
    let prefix = format!("{series} ");
    let values: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .collect();
    assert_eq!(values.len(), 1, "{series} in\n{text}");
    values[0].to_owned()
}

#[test]
fn metrics_scrape_counts_and_times_every_decision() {
    let server = Server::start(LOOPBACK);
    let uri = server.url("/media/a.pdf", MintRequest::default());
    assert_eq!(server.auth_for(&uri, "127.0.0.1").status, 204);
    assert_eq!(
        server
            .auth_for("/media/a.pdf?token=garbage", "127.0.0.1")
            .status,
        403
    );
    assert_eq!(server.auth_for("/media/a.pdf", "127.0.0.1").status, 401);
    let accel = |method| {
        exchange(
            server.verify,
            method,
            "/accel",
            &[
                ("X-Original-URI", uri.as_str()),
                ("X-Mediagate-Server-Name", "media.example.org"),
                ("X-Real-IP", "127.0.0.1"),
            ],
            "",
        )
    };
    assert_eq!(accel("GET").status, 200);
    assert_eq!(accel("HEAD").status, 200);
    // Not a decision: neither counted nor timed.
    assert_eq!(accel("POST").status, 405);
    // No secret: the refresh endpoint refuses.
    let refresh = exchange(server.internal, "GET", "/refresh", &[], "");
    assert_eq!(refresh.status, 403);

    let scrape = exchange(server.internal, "GET", "/metrics", &[], "");
    assert_eq!(
        (scrape.status, scrape.header("content-type")),
        (200, Some("text/plain; version=0.0.4; charset=utf-8"))
    );
    let text = scrape.text();
    let decisions = |labels: &str| metric(&text, &format!("mediagate_decisions_total{{{labels}}}"));
    assert_eq!(
        decisions(r#"mode="auth",verdict="allow",reason="none""#),
        "1"
    );
    assert_eq!(
        decisions(r#"mode="auth",verdict="deny",reason="malformed""#),
        "1"
    );
    assert_eq!(
        decisions(r#"mode="auth",verdict="refresh",reason="missing_token""#),
        "1"
    );
    assert_eq!(
        decisions(r#"mode="accel",verdict="allow",reason="none""#),
        "2"
    );
    // Present before the first such event.
    assert_eq!(
        decisions(r#"mode="accel",verdict="deny",reason="bad_signature""#),
        "0"
    );
    assert_eq!(
        metric(
            &text,
            r#"mediagate_refresh_total{result="denied",reason="untrusted_peer"}"#
        ),
        "1"
    );
    assert_eq!(
        metric(
            &text,
            r#"mediagate_refresh_total{result="minted",reason="none"}"#
        ),
        "0"
    );
    assert_eq!(metric(&text, "mediagate_minted_total"), "0");
    for (mode, count) in [("auth", "3"), ("accel", "2")] {
        let series = |suffix: &str, labels: &str| {
            metric(
                &text,
                &format!("mediagate_decision_duration_seconds_{suffix}{{{labels}}}"),
            )
        };
        let mode_label = format!("mode=\"{mode}\"");
        assert_eq!(series("count", &mode_label), count, "{mode}");
        assert_eq!(
            series("bucket", &format!("{mode_label},le=\"+Inf\"")),
            count
        );
        let sum: f64 = series("sum", &mode_label).parse().unwrap();
        assert!(sum > 0.0 && sum < 10.0, "{mode}: {sum}");
    }
    let open_fds: u64 = metric(&text, "process_open_fds").parse().unwrap();
    assert!(open_fds > 3, "{text}");
    let started: f64 = metric(&text, "process_start_time_seconds").parse().unwrap();
    let now = mediagate::clock::now() as f64;
    assert!(
        started > now - 3600.0 * 24.0 && started <= now + 1.0,
        "{started} vs {now}"
    );
}

/// `promtool check metrics` (Debian's `prometheus` package; `scripts/test.sh` installs it)
/// on a real scrape: no format errors and no lint warnings. Fails without promtool.
#[test]
fn metrics_pass_promtool_check() {
    let server = Server::start(LOOPBACK);
    let uri = server.url("/media/a.pdf", MintRequest::default());
    server.auth_for(&uri, "127.0.0.1");
    server.auth_for("/media/a.pdf?token=garbage", "127.0.0.1");
    let text = exchange(server.internal, "GET", "/metrics", &[], "").text();
    let mut promtool = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool must be installed (apt-get install prometheus; see scripts/test.sh)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = promtool.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && report.trim().is_empty(),
        "promtool check metrics: {}\n{report}\n{text}",
        output.status
    );
}
