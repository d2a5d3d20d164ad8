//! Front proxies other than nginx (issue 12): Caddy for real, rendered from
//! `deploy/caddy/Caddyfile`, and Traefik's exact ForwardAuth request shape, built from
//! `deploy/traefik/dynamic.yml`, sent to `/forward` in-process.

use mediagate::http::App;
use mediagate::mint::{mint, MintRequest};

use crate::support::{
    deny_body, parse_response, random_secret, split_url, CaddyStack, InProcessServer, Response,
    TempDir, MEDIA_HOST, WWW_HOST,
};

/// What the browser sees of one answer: status, `X-Mediagate-Reason`, `Location`, body.
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

/// `seen`, with the random part of a Location cut off after `cut` (`?state=`, `?token=`).
fn seen_cut(response: &Response, cut: &str) -> Seen {
    let mut seen = seen(response);
    if let Some(location) = &mut seen.2 {
        if let Some(at) = location.find(cut) {
            location.truncate(at + cut.len());
        }
    }
    seen
}

fn caddy_with_files(name: &str) -> CaddyStack {
    let stack = CaddyStack::start(name);
    stack.dir.write("files/media/a.txt", "file a\n");
    stack.dir.write("files/media/other.txt", "other file\n");
    stack.dir.write("files/media/public/p.txt", "public\n");
    stack
}

fn media_url(path_and_query: &str) -> String {
    format!("http://{MEDIA_HOST}{path_and_query}")
}

#[test]
fn caddy_serves_a_valid_token_and_denies_a_forged_one_with_its_reason() {
    let stack = caddy_with_files("caddy-basic");
    let url = stack.sign_with(MintRequest {
        path: "/media/a.txt".into(),
        ..MintRequest::default()
    });
    let served = stack.get(MEDIA_HOST, &url, &[]);
    assert_eq!(
        seen(&served),
        (200, None, None, "file a\n".to_owned()),
        "{}",
        stack.caddy.log_text()
    );
    assert_eq!(served.header("referrer-policy"), Some("no-referrer"));

    // Caddy copies the browser's own headers to /forward: a browser with many of them (60
    // here: extensions, client hints, cookies) is still decided.
    let many: Vec<(String, String)> = (0..60)
        .map(|n| (format!("X-Browser-{n}"), "v".to_owned()))
        .collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let crowded = stack.get(MEDIA_HOST, &url, &many);
    assert_eq!(seen(&crowded), (200, None, None, "file a\n".to_owned()));

    // A character inside the tag changed (not the last one, whose low bits are padding):
    // bad_signature is no refreshable reason.
    let mut forged = url.clone().into_bytes();
    let inside_tag = forged.len() - 3;
    forged[inside_tag] = if forged[inside_tag] == b'A' {
        b'B'
    } else {
        b'A'
    };
    let forged = String::from_utf8(forged).unwrap();
    let denied = stack.get(MEDIA_HOST, &forged, &[]);
    assert_eq!(
        seen(&denied),
        (
            403,
            Some("bad_signature".to_owned()),
            None,
            deny_body(403, "bad_signature")
        )
    );
    assert_eq!(denied.header("cache-control"), Some("no-store"));
    // A browser gets the HTML page: Caddy's forward_auth passes the client's Accept, so the
    // Caddyfile needs nothing for readable denial pages.
    let browser = stack.get(MEDIA_HOST, &forged, &[("Accept", "text/html")]);
    assert_eq!(
        (browser.status, browser.header("content-type")),
        (403, Some("text/html; charset=utf-8"))
    );
    assert!(
        browser.text().contains("<h1>Invalid link</h1>"),
        "{}",
        browser.text()
    );

    let public = stack.get(MEDIA_HOST, "/media/public/p.txt", &[]);
    assert_eq!(seen(&public), (200, None, None, "public\n".to_owned()));
}

#[test]
fn caddy_without_a_token_goes_to_the_session_domain_and_comes_back_with_a_fresh_one() {
    let stack = caddy_with_files("caddy-refresh");
    let hops = stack.browse(&media_url("/media/a.txt"), Some("session=alice"), &[]);
    let seen_hops: Vec<Seen> = hops
        .iter()
        .map(|hop| {
            seen_cut(
                hop,
                if hop.status == 302 && hop.header("x-mediagate-reason").is_some() {
                    "?state="
                } else {
                    "?token="
                },
            )
        })
        .collect();
    assert_eq!(
        seen_hops,
        vec![
            (
                302,
                Some("missing_token".to_owned()),
                Some(format!(
                    "http://{WWW_HOST}/_mediagate/refresh/media/a.txt?state="
                )),
                String::new()
            ),
            (
                302,
                None,
                Some(format!("http://{MEDIA_HOST}/media/a.txt?token=")),
                String::new()
            ),
            (200, None, None, "file a\n".to_owned()),
        ],
        "caddy:\n{}\nmediagate:\n{}",
        stack.caddy.log_text(),
        stack.mediagate.log_text()
    );
    assert_eq!(
        *stack.app.asked.lock().unwrap(),
        vec!["/media/a.txt".to_owned()]
    );
}

#[test]
fn caddy_sends_a_user_who_is_not_logged_in_to_the_login_page() {
    let stack = caddy_with_files("caddy-login");
    let hops = stack.browse(&media_url("/media/a.txt"), None, &[]);
    let statuses: Vec<u16> = hops.iter().map(|hop| hop.status).collect();
    assert_eq!(statuses, vec![302, 302, 200], "{hops:#?}");
    let login = hops[1].header("location").unwrap();
    assert!(
        login.starts_with(&format!(
            "http://{WWW_HOST}/login?next=%2F_mediagate%2Frefresh%2Fmedia%2Fa.txt%3Fstate%3D"
        )),
        "{login}"
    );
    assert_eq!(hops[2].text(), "login page");

    // Logged in but not allowed: the application's own 403 reaches the browser.
    let hops = stack.browse(&media_url("/media/a.txt"), Some("session=mallory"), &[]);
    let statuses: Vec<u16> = hops.iter().map(|hop| hop.status).collect();
    assert_eq!(statuses, vec![302, 403], "{hops:#?}");
}

#[test]
fn caddy_a_client_naming_another_site_or_its_own_grant_changes_nothing() {
    let stack = caddy_with_files("caddy-site");
    // Site b (known to mediagate) has /media/ public: were the client's header believed,
    // this would be served without a token.
    let forged_site = [
        ("X-Mediagate-Server-Name", "media-b.localhost"),
        ("X-Forwarded-Host", "media-b.localhost"),
        ("X-Forwarded-For", "192.0.2.1"),
    ];
    let response = stack.get(MEDIA_HOST, "/media/a.txt", &forged_site);
    assert_eq!(
        seen_cut(&response, "?state="),
        (
            302,
            Some("missing_token".to_owned()),
            Some(format!(
                "http://{WWW_HOST}/_mediagate/refresh/media/a.txt?state="
            )),
            String::new()
        )
    );
    // The same on the session domain, plus a grant of the whole folder the application never
    // gave: the fresh token opens a.txt and nothing else.
    let hops = stack.browse(
        &media_url("/media/a.txt"),
        Some("session=alice"),
        &[
            ("X-Mediagate-Server-Name", "www-b.localhost"),
            ("X-Mediagate-Grant-Prefix", "/media/"),
            ("X-Mediagate-Grant-Ttl", "86400"),
        ],
    );
    let statuses: Vec<u16> = hops.iter().map(|hop| hop.status).collect();
    assert_eq!(statuses, vec![302, 302, 200], "{hops:#?}");
    let (_, fresh) = split_url(hops[1].header("location").unwrap());
    let token = fresh.split_once("?token=").unwrap().1;
    let other = stack.get(MEDIA_HOST, &format!("/media/other.txt?token={token}"), &[]);
    assert_eq!(
        seen(&other),
        (
            403,
            Some("bad_signature".to_owned()),
            None,
            deny_body(403, "bad_signature")
        )
    );
}

#[test]
fn caddy_client_address_is_the_tcp_peer_never_the_clients_header() {
    let stack = caddy_with_files("caddy-ip");
    let bound = |ip: &str| {
        stack.sign_with(MintRequest {
            path: "/media/a.txt".into(),
            ip: Some(ip.parse().unwrap()),
            ..MintRequest::default()
        })
    };
    let loopback = stack.get(
        MEDIA_HOST,
        &bound("127.0.0.1"),
        &[("X-Forwarded-For", "192.0.2.1")],
    );
    assert_eq!(seen(&loopback), (200, None, None, "file a\n".to_owned()));
    let elsewhere = stack.get(
        MEDIA_HOST,
        &bound("192.0.2.1"),
        &[("X-Forwarded-For", "192.0.2.1")],
    );
    assert_eq!(
        seen(&elsewhere),
        (403, Some("ip".to_owned()), None, deny_body(403, "ip"))
    );
}

/// mediagate in-process on a pre-bound loopback listener (loopback is a trusted peer), as
/// `tests/server.rs` runs it; stopped on drop.
struct InProcess {
    verify: std::net::SocketAddr,
    config: mediagate::config::Config,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: TempDir,
}

impl InProcess {
    fn start(trusted_peers: &str) -> InProcess {
        let dir = TempDir::new("traefik");
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
[[sites]]
id = "b"
media_origin = "https://media-b.example.org"
session_origin = "https://www-b.example.org"
public_prefixes = ["/media/"]
"#,
                key = random_secret(),
                secret = random_secret(),
            ),
        );
        let config = mediagate::config::load(Some(&path)).unwrap();
        let server = InProcessServer::start(App::new(config.clone()));
        InProcess {
            verify: server.verify,
            config,
            stop: server.stop,
            thread: server.thread,
            _dir: dir,
        }
    }

    /// A token URL for site `demo` (bound to its host: two sites share the keys).
    fn sign(&self, request: MintRequest) -> String {
        let request = MintRequest {
            host: Some("media.example.org".into()),
            ..request
        };
        mint(&self.config, &request, mediagate::clock::now())
            .unwrap()
            .path_and_query
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What `deploy/traefik/dynamic.toml` configures for the media router.
struct TraefikConfig {
    /// The forwardAuth address's path (`/forward`).
    path: String,
    /// The `headers` middleware's customRequestHeaders, applied before forwardAuth.
    custom_request_headers: Vec<(String, String)>,
    /// forwardAuth's authRequestHeaders.
    auth_request_headers: Vec<String>,
    /// forwardAuth's authResponseHeaders.
    auth_response_headers: Vec<String>,
}

fn traefik_config() -> TraefikConfig {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/traefik/dynamic.toml"),
    )
    .unwrap();
    let value: toml::Value = toml::from_str(&text).unwrap();
    let http = &value["http"];
    let middlewares: Vec<&str> = http["routers"]["media"]["middlewares"]
        .as_array()
        .unwrap()
        .iter()
        .map(|name| name.as_str().unwrap())
        .collect();
    assert_eq!(
        middlewares,
        ["mediagate-site", "mediagate"],
        "the site header must be set before ForwardAuth copies it"
    );
    let site = &http["middlewares"]["mediagate-site"]["headers"]["customRequestHeaders"];
    let forward = &http["middlewares"]["mediagate"]["forwardAuth"];
    assert_eq!(
        forward["trustForwardHeader"].as_bool(),
        Some(false),
        "trustForwardHeader = true would pass the client's X-Forwarded-* on"
    );
    let strings = |value: &toml::Value| -> Vec<String> {
        value
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item.as_str().unwrap().to_owned())
            .collect()
    };
    let address = forward["address"].as_str().unwrap();
    let path = address
        .strip_prefix("http://127.0.0.1:8088")
        .unwrap()
        .to_owned();
    TraefikConfig {
        path,
        custom_request_headers: site
            .as_table()
            .unwrap()
            .iter()
            .map(|(name, value)| (name.clone(), value.as_str().unwrap().to_owned()))
            .collect(),
        auth_request_headers: strings(&forward["authRequestHeaders"]),
        auth_response_headers: strings(&forward["authResponseHeaders"]),
    }
}

/// A browser's request as Traefik's router sees it.
struct ClientRequest<'a> {
    method: &'a str,
    host: &'a str,
    target: &'a str,
    headers: &'a [(&'a str, &'a str)],
}

/// The auth request Traefik's ForwardAuth (trustForwardHeader = false) sends for `client`
/// arriving from `peer`, in Go's wire order: `GET <address path>`, Host of the address, the
/// client's headers after the `headers` middleware, filtered by authRequestHeaders, then
/// X-Forwarded-For (the peer), -Method, -Proto, -Host, -Uri set by Traefik itself, and Go's
/// `Accept-Encoding: gzip`.
fn traefik_auth_request(
    config: &TraefikConfig,
    client: &ClientRequest,
    peer: &str,
    verify: std::net::SocketAddr,
) -> String {
    let mut headers: Vec<(String, String)> = client
        .headers
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    for (name, value) in &config.custom_request_headers {
        headers.retain(|(existing, _)| !existing.eq_ignore_ascii_case(name));
        headers.push((name.clone(), value.clone()));
    }
    headers.retain(|(name, _)| {
        config
            .auth_request_headers
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(name))
    });
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("user-agent"))
    {
        headers.push(("User-Agent".into(), "Go-http-client/1.1".into()));
    }
    headers.extend([
        ("X-Forwarded-For".to_owned(), peer.to_owned()),
        ("X-Forwarded-Method".to_owned(), client.method.to_owned()),
        ("X-Forwarded-Proto".to_owned(), "https".to_owned()),
        ("X-Forwarded-Host".to_owned(), client.host.to_owned()),
        ("X-Forwarded-Uri".to_owned(), client.target.to_owned()),
        ("Accept-Encoding".to_owned(), "gzip".to_owned()),
    ]);
    let mut raw = format!("GET {} HTTP/1.1\r\nHost: {verify}\r\n", config.path);
    for (name, value) in headers {
        raw.push_str(&format!("{name}: {value}\r\n"));
    }
    raw.push_str("Connection: close\r\n\r\n");
    raw
}

fn send(verify: std::net::SocketAddr, raw: &str) -> Response {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(verify).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    stream.write_all(raw.as_bytes()).unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).unwrap();
    parse_response(&bytes, false)
}

/// The grant headers Traefik copies onto the upstream request (authResponseHeaders), as
/// (name, value) of those present in the answer.
fn copied_upstream(config: &TraefikConfig, response: &Response) -> Vec<(String, String)> {
    config
        .auth_response_headers
        .iter()
        .filter_map(|name| {
            response
                .header(name)
                .map(|value| (name.clone(), value.to_owned()))
        })
        .collect()
}

#[test]
fn traefik_forward_auth_gets_allow_refresh_and_denial_in_the_answers_it_passes_through() {
    let server = InProcess::start(r#"["127.0.0.0/8"]"#);
    let config = traefik_config();
    // A client that names site b (where /media/ is public) in every header it can.
    let hostile = [
        ("User-Agent", "Mozilla/5.0"),
        ("Cookie", "session=alice"),
        ("X-Mediagate-Server-Name", "media-b.example.org"),
        ("X-Forwarded-Host", "media-b.example.org"),
        ("X-Forwarded-For", "192.0.2.1"),
        ("X-Mediagate-Subject", "admin"),
        ("X-Mediagate-Recipient", "forged"),
    ];
    let ask = |target: &str| {
        let client = ClientRequest {
            method: "GET",
            host: "media-b.example.org",
            target,
            headers: &hostile,
        };
        send(
            server.verify,
            &traefik_auth_request(&config, &client, "203.0.113.7", server.verify),
        )
    };

    let url = server.sign(MintRequest {
        path: "/media/a.pdf".into(),
        subject: Some("alice".into()),
        recipient: Some("partner app".into()),
        token_id: Some("t-1".into()),
        ip: Some("203.0.113.7".parse().unwrap()),
        ttl: Some(600),
        ..MintRequest::default()
    });
    let allowed = ask(&url);
    assert_eq!(seen(&allowed), (200, None, None, String::new()));
    let expires_in: u64 = allowed
        .header("x-mediagate-expires-in")
        .unwrap()
        .parse()
        .unwrap();
    assert!((599..=600).contains(&expires_in), "{expires_in}");
    assert_eq!(
        copied_upstream(&config, &allowed),
        [
            ("X-Mediagate-Subject".to_owned(), "alice".to_owned()),
            ("X-Mediagate-Recipient".to_owned(), "partner app".to_owned()),
            ("X-Mediagate-Token-Id".to_owned(), "t-1".to_owned()),
            ("X-Mediagate-Data".to_owned(), String::new()),
            ("X-Mediagate-Expires-In".to_owned(), expires_in.to_string()),
        ]
    );

    // No token: the browser gets mediagate's 302 to the first site's session domain.
    let refresh = ask("/media/a.pdf");
    assert_eq!(
        seen_cut(&refresh, "?state="),
        (
            302,
            Some("missing_token".to_owned()),
            Some("https://www.example.org/_mediagate/refresh/media/a.pdf?state=".to_owned()),
            String::new()
        )
    );
    assert_eq!(refresh.header("cache-control"), Some("no-store"));
    assert_eq!(refresh.header("referrer-policy"), Some("no-referrer"));

    // Public on site demo: allowed, every grant header empty (a client's "admin" is gone).
    let public = ask("/media/public/p.pdf");
    assert_eq!(seen(&public), (200, None, None, String::new()));
    assert!(copied_upstream(&config, &public)
        .iter()
        .all(|(_, value)| value.is_empty()));

    // Wrong path for the token: a hard denial, never cacheable.
    let other = ask(&url.replace("/media/a.pdf", "/media/b.pdf"));
    assert_eq!(
        seen(&other),
        (
            403,
            Some("bad_signature".to_owned()),
            None,
            deny_body(403, "bad_signature")
        )
    );
    assert_eq!(other.header("cache-control"), Some("no-store"));
}

#[test]
fn traefik_client_address_is_the_peer_and_a_forwarded_chain_is_refused() {
    let server = InProcess::start(r#"["127.0.0.0/8"]"#);
    let config = traefik_config();
    let url = server.sign(MintRequest {
        path: "/media/a.pdf".into(),
        ip: Some("203.0.113.7".parse().unwrap()),
        ..MintRequest::default()
    });
    let client = ClientRequest {
        method: "GET",
        host: "media.example.org",
        target: &url,
        headers: &[("X-Forwarded-For", "203.0.113.7")],
    };
    // The client claims the bound address; Traefik sets the peer's.
    let from_elsewhere = send(
        server.verify,
        &traefik_auth_request(&config, &client, "198.51.100.9", server.verify),
    );
    assert_eq!(
        seen(&from_elsewhere),
        (403, Some("ip".to_owned()), None, deny_body(403, "ip"))
    );
    // What trustForwardHeader = true would send: the client's chain plus the peer.
    let chain = send(
        server.verify,
        &traefik_auth_request(&config, &client, "203.0.113.7", server.verify).replace(
            "X-Forwarded-For: 203.0.113.7",
            "X-Forwarded-For: 203.0.113.7, 198.51.100.9",
        ),
    );
    assert_eq!(
        seen(&chain),
        (
            403,
            Some("bad_request".to_owned()),
            None,
            deny_body(403, "bad_request")
        )
    );
    // Another method than the token's: the original method counts, not the auth GET.
    let post = ClientRequest {
        method: "POST",
        ..client
    };
    let posted = send(
        server.verify,
        &traefik_auth_request(&config, &post, "203.0.113.7", server.verify),
    );
    assert_eq!(
        seen(&posted),
        (
            403,
            Some("method".to_owned()),
            None,
            deny_body(403, "method")
        )
    );
}

#[test]
fn forward_is_refused_to_untrusted_peers() {
    let server = InProcess::start("[]");
    let config = traefik_config();
    let client = ClientRequest {
        method: "GET",
        host: "media.example.org",
        target: "/media/public/p.pdf",
        headers: &[],
    };
    let response = send(
        server.verify,
        &traefik_auth_request(&config, &client, "203.0.113.7", server.verify),
    );
    assert_eq!(
        seen(&response),
        (
            403,
            Some("untrusted_peer".to_owned()),
            None,
            deny_body(403, "untrusted_peer")
        )
    );
}
