//! The server in-process: pre-bound `127.0.0.1:0` listeners handed to `http::run`, raw HTTP
//! over TCP, a shutdown we trigger ourselves. Covers what needs no nginx: trusted peers,
//! header strictness, IP binding, /mint, metrics, graceful drain.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::Duration;

use mediagate::config::Config;
use mediagate::http::{self, App, Listener};
use mediagate::mint::{mint, MintRequest};

use crate::support::{random_secret, Response, TempDir};

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
        let dir = TempDir::new("inprocess");
        let secret = random_secret();
        let path = dir.write(
            "mediagate.toml",
            format!(
                r#"[server]
trusted_peers = {trusted_peers}
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
        let verify = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let internal = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (verify_addr, internal_addr) =
            (verify.local_addr().unwrap(), internal.local_addr().unwrap());
        verify.set_nonblocking(true).unwrap();
        internal.set_nonblocking(true).unwrap();
        let server_app = App::new(config.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let verify = Listener::Tcp(tokio::net::TcpListener::from_std(verify).unwrap());
                let internal = Listener::Tcp(tokio::net::TcpListener::from_std(internal).unwrap());
                http::run(server_app, verify, internal, async {
                    let _ = stopped.await;
                })
                .await;
            });
        });
        Server {
            verify: verify_addr,
            internal: internal_addr,
            config,
            secret,
            stop: Some(stop),
            thread: Some(thread),
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
    assert_eq!(response.status, 204, "{response:?}");
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
    assert_eq!(response.status, 403);
    assert_eq!(
        response.header("x-mediagate-reason"),
        Some("untrusted_peer")
    );
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
    assert_eq!(server.auth(&full).status, 204);
    for skip in 0..full.len() {
        let partial: Vec<_> = full
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != skip)
            .map(|(_, h)| *h)
            .collect();
        let response = server.auth(&partial);
        assert_eq!(response.status, 403, "without {}", full[skip].0);
        assert_eq!(response.header("x-mediagate-reason"), Some("bad_request"));
        let mut doubled = full.to_vec();
        doubled.push(full[skip]);
        let response = server.auth(&doubled);
        assert_eq!(response.status, 403, "with {} twice", full[skip].0);
    }
    let bad_ip = server.auth_for(&uri, "not-an-ip");
    assert_eq!(bad_ip.header("x-mediagate-reason"), Some("bad_request"));
}

#[test]
fn auth_answers_only_204_401_or_403_whatever_the_input() {
    let server = Server::start(LOOPBACK);
    let long = format!("/media/{}", "a".repeat(6000));
    let many_params = format!("/media/a.pdf?{}", "x=1&".repeat(500));
    let inputs = [
        "",
        "relative",
        "/media/a.pdf?token=",
        "/media/a.pdf?token=%%%",
        "/media/a.pdf?token=AAAA&token=BBBB",
        "/media/%ff%fe",
        many_params.as_str(),
        long.as_str(),
        "/media/public/x",
        "/media/public/../x",
    ];
    for uri in inputs {
        let status = server.auth_for(uri, "127.0.0.1").status;
        assert!([204, 401, 403].contains(&status), "{uri:?} -> {status}");
    }
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
    assert_eq!(server.auth_for(&uri, "203.0.113.9").status, 204);
    let elsewhere = server.auth_for(&uri, "198.51.100.1");
    assert_eq!(elsewhere.status, 403);
    assert_eq!(elsewhere.header("x-mediagate-reason"), Some("ip"));
    let unknown = server.auth_for(&uri, "unix:");
    assert_eq!(unknown.header("x-mediagate-reason"), Some("ip"));
}

#[test]
fn refresh_state_cannot_pass_for_a_download_token() {
    let server = Server::start(LOOPBACK);
    let refresh = server.auth_for("/media/a.pdf", "127.0.0.1");
    assert_eq!(refresh.status, 401);
    let location = refresh.header("location").unwrap();
    let state = location.split_once("state=").unwrap().1;
    let reused = server.auth_for(&format!("/media/a.pdf?token={state}"), "127.0.0.1");
    assert_eq!(reused.status, 403);
    assert_eq!(reused.header("x-mediagate-reason"), Some("wrong_purpose"));
}

#[test]
fn mint_api_requires_the_secret_and_returns_a_working_url() {
    let server = Server::start(LOOPBACK);
    let body = r#"{"path": "/media/a b.pdf", "ttl": "10m", "subject": "bob"}"#;
    let anonymous = exchange(server.internal, "POST", "/mint", &[], body);
    assert_eq!(anonymous.status, 401);
    let wrong = exchange(
        server.internal,
        "POST",
        "/mint",
        &[("Authorization", "Bearer d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldA")],
        body,
    );
    assert_eq!(wrong.status, 401);

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
    assert_eq!(server.auth_for(uri, "127.0.0.1").status, 204);

    for bad in [
        r#"{"path": "/a/../b"}"#,
        r#"{"path": "/a", "ttl": "30d"}"#,
        r#"{"path": "/a", "evil": 1}"#,
        "not json",
    ] {
        let response = exchange(
            server.internal,
            "POST",
            "/mint",
            &[("Authorization", &bearer)],
            bad,
        );
        assert_eq!(response.status, 400, "{bad}: {}", response.text());
    }
    let get = exchange(
        server.internal,
        "GET",
        "/mint",
        &[("Authorization", &bearer)],
        "",
    );
    assert_eq!(get.status, 405);
}

#[test]
fn media_endpoints_are_not_on_the_internal_listener_and_vice_versa() {
    let server = Server::start(LOOPBACK);
    let cases = [
        (server.internal, "GET", "/auth", "", 404),
        (server.verify, "POST", "/mint", "{}", 404),
        (server.verify, "GET", "/refresh", "", 404),
        (server.verify, "GET", "/healthz", "", 200),
        (server.internal, "GET", "/readyz", "", 200),
    ];
    for (listener, method, path, body, status) in cases {
        assert_eq!(
            exchange(listener, method, path, &[], body).status,
            status,
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
    let uri = server.url("/media/a.pdf", MintRequest::default());
    // Half a request on the wire when shutdown begins...
    let mut stream = TcpStream::connect(server.verify).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(format!("GET /auth HTTP/1.1\r\nHost: m\r\nX-Original-URI: {uri}\r\n").as_bytes())
        .unwrap();
    thread::sleep(Duration::from_millis(100));
    let stop = server.stop.take().unwrap();
    stop.send(()).unwrap();
    thread::sleep(Duration::from_millis(200));
    // ...is still answered, and the connection is then closed.
    stream
        .write_all(b"X-Original-Method: GET\r\nX-Mediagate-Server-Name: media.example.org\r\nX-Real-IP: 127.0.0.1\r\n\r\n")
        .unwrap();
    let response = read_response(&mut stream);
    assert_eq!(response.status, 204);
    server.thread.take().unwrap().join().unwrap();
    assert!(
        TcpStream::connect(server.verify).is_err(),
        "listener still open after shutdown"
    );
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
