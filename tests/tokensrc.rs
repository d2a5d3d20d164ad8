//! Where the token comes from (issue 11): the query parameter, or an `Authorization` header
//! with one of `token.auth_schemes`, never both. In-process for the header table, through
//! real nginx for what the client and the application see on an API location.

use std::net::SocketAddr;

use mediagate::config::Config;
use mediagate::http::App;
use mediagate::mint::{mint, MintRequest};

use crate::support::{
    deny_body, nginx_page, random_secret, request, request_tcp_with, seen, served,
    without_nginx_version, InProcessServer, Options, Response, Stack, TempDir, MEDIA_HOST,
};

/// Both sources, two schemes: what the API recipe in the README configures.
const BOTH_SOURCES: &str =
    "[token]\nsources = [\"query\", \"authorization\"]\nauth_schemes = [\"Bearer\", \"TmpToken\"]\n";
/// The `WWW-Authenticate` value for [`BOTH_SOURCES`].
const CHALLENGE: &str = "Bearer, TmpToken";
const REFRESH: &str = "https://www.example.org/_mediagate/refresh";

/// mediagate in-process with `token` settings appended to a one-site configuration.
struct Server {
    verify: SocketAddr,
    config: Config,
    _server: InProcessServer,
    _dir: TempDir,
}

impl Server {
    fn start(token: &str) -> Server {
        let dir = TempDir::new("tokensrc");
        let path = dir.write(
            "mediagate.toml",
            format!(
                "[log]\naudit = false\n[keys]\ndev_key = false\n[keys.secrets]\nk1 = \"{}\"\n\
                 {token}\n[[sites]]\nid = \"demo\"\nmedia_origin = \"https://media.example.org\"\n\
                 session_origin = \"https://www.example.org\"\n",
                random_secret()
            ),
        );
        let config = mediagate::config::load(Some(&path)).unwrap();
        let server = InProcessServer::start(App::new(config.clone()));
        Server {
            verify: server.verify,
            config,
            _server: server,
            _dir: dir,
        }
    }

    fn token(&self, request: MintRequest) -> String {
        mint(&self.config, &request, mediagate::clock::now())
            .unwrap()
            .token
    }

    fn a_pdf(&self) -> String {
        self.token(MintRequest {
            path: "/media/a.pdf".into(),
            ..MintRequest::default()
        })
    }

    /// `endpoint` (`/auth`, `/accel`, `/forward`) for `uri`, with the proxy's headers and
    /// `extra` ones (the client's `Authorization`, as the snippets forward it).
    fn ask(&self, endpoint: &str, uri: &str, extra: &[(&str, &str)]) -> Response {
        let mut headers = match endpoint {
            "/forward" => vec![
                ("X-Forwarded-Uri", uri),
                ("X-Forwarded-Method", "GET"),
                ("X-Forwarded-For", "127.0.0.1"),
            ],
            _ => vec![
                ("X-Original-URI", uri),
                ("X-Original-Method", "GET"),
                ("X-Real-IP", "127.0.0.1"),
            ],
        };
        headers.push(("X-Mediagate-Server-Name", "media.example.org"));
        headers.extend_from_slice(extra);
        request_tcp_with(self.verify.port(), "GET", "mediagate", endpoint, &headers)
    }
}

/// Status, `X-Mediagate-Reason`, `WWW-Authenticate`, `Location` (its start), body.
type Answer = (u16, Option<String>, Option<String>, Option<String>, String);

fn answer(response: &Response) -> Answer {
    let header = |name| response.header(name).map(str::to_owned);
    (
        response.status,
        header("x-mediagate-reason"),
        header("www-authenticate"),
        // The state in a refresh URL differs per request: its start says where it goes.
        header("location").map(|location| location.split('?').next().unwrap().to_owned()),
        response.text(),
    )
}

fn allowed_auth() -> Answer {
    (204, None, None, None, String::new())
}

/// A malformed `Authorization` header: 401, `malformed`, the accepted schemes, mediagate's body.
fn challenged() -> Answer {
    (
        401,
        Some("malformed".into()),
        Some(CHALLENGE.into()),
        None,
        deny_body(401, "malformed"),
    )
}

fn forbidden(reason: &str) -> Answer {
    (403, Some(reason.into()), None, None, deny_body(403, reason))
}

/// auth mode's refresh for `/media/a.pdf`: 401 + Location; with the header source, the
/// challenge too (nginx copies it on API locations, where there is no redirect).
fn refresh_auth(reason: &str, challenge: Option<&str>) -> Answer {
    (
        401,
        Some(reason.into()),
        challenge.map(str::to_owned),
        Some(format!("{REFRESH}/media/a.pdf")),
        String::new(),
    )
}

#[test]
fn authorization_header_inputs_get_exact_answers_from_auth() {
    let server = Server::start(BOTH_SOURCES);
    let token = server.a_pdf();
    // Minted an hour ago for a minute.
    let expired = mint(
        &server.config,
        &MintRequest {
            path: "/media/a.pdf".into(),
            ttl: Some(60),
            ..MintRequest::default()
        },
        mediagate::clock::now() - 3600,
    )
    .unwrap()
    .token;
    let other_path = server.token(MintRequest {
        path: "/media/b.pdf".into(),
        ..MintRequest::default()
    });
    let bearer = format!("Bearer {token}");
    let rows: Vec<(String, Vec<String>, Answer)> = vec![
        // Accepted: each scheme, any case (RFC 9110 §11.1), 1*SP before the credentials.
        ("".into(), vec![bearer.clone()], allowed_auth()),
        ("".into(), vec![format!("bearer {token}")], allowed_auth()),
        ("".into(), vec![format!("TMPTOKEN {token}")], allowed_auth()),
        ("".into(), vec![format!("Bearer   {token}")], allowed_auth()),
        // An empty query parameter counts as missing, so the header is the one source.
        ("?token=".into(), vec![bearer.clone()], allowed_auth()),
        // Malformed headers of an accepted scheme: 401 + WWW-Authenticate.
        ("".into(), vec!["Bearer".into()], challenged()),
        ("".into(), vec!["tmptoken".into()], challenged()),
        ("".into(), vec![format!("Bearer {token} x")], challenged()),
        ("".into(), vec![format!("Bearer {token},x")], challenged()),
        (
            "".into(),
            vec![format!("Bearer {token}, Bearer {token}")],
            challenged(),
        ),
        ("".into(), vec![format!("Bearer\t{token}")], challenged()),
        ("".into(), vec![format!("Bearer,{token}")], challenged()),
        ("".into(), vec!["Bearer a\"b".into()], challenged()),
        ("".into(), vec!["".into()], challenged()),
        (
            "".into(),
            vec![bearer.clone(), bearer.clone()],
            challenged(),
        ),
        (
            "".into(),
            vec![bearer.clone(), "Basic dXNlcjpwYXNz".into()],
            challenged(),
        ),
        // Exactly one source: both, even the same string, is refused.
        (
            format!("?token={token}"),
            vec![bearer.clone()],
            forbidden("malformed"),
        ),
        // Well-formed header, bad token: the token's own reasons, as from the query.
        (
            "".into(),
            vec!["Bearer AAAA".into()],
            forbidden("malformed"),
        ),
        (
            "".into(),
            vec![format!("Bearer {other_path}")],
            forbidden("bad_signature"),
        ),
        (
            "".into(),
            vec![format!("Bearer {expired}")],
            refresh_auth("expired", Some(CHALLENGE)),
        ),
        // Another scheme is not ours: as if there were no header.
        (
            "".into(),
            vec!["Basic dXNlcjpwYXNz".into()],
            refresh_auth("missing_token", Some(CHALLENGE)),
        ),
        (
            "".into(),
            vec![],
            refresh_auth("missing_token", Some(CHALLENGE)),
        ),
        // The query still works.
        (format!("?token={token}"), vec![], allowed_auth()),
    ];
    for (query, values, expected) in rows {
        let uri = format!("/media/a.pdf{query}");
        let headers: Vec<(&str, &str)> = values
            .iter()
            .map(|value| ("Authorization", value.as_str()))
            .collect();
        let response = server.ask("/auth", &uri, &headers);
        assert_eq!(answer(&response), expected, "{query:?} {values:?}");
    }
}

#[test]
fn header_tokens_are_never_cached_but_query_tokens_are() {
    let server = Server::start(BOTH_SOURCES);
    let token = server.a_pdf();
    let from_header = server.ask(
        "/auth",
        "/media/a.pdf",
        &[("Authorization", &format!("Bearer {token}"))],
    );
    assert_eq!(from_header.status, 204);
    assert_eq!(from_header.header("x-accel-expires"), Some("0"));
    let from_query = server.ask("/auth", &format!("/media/a.pdf?token={token}"), &[]);
    assert_eq!(from_query.status, 204);
    assert!(
        from_query
            .header("x-accel-expires")
            .is_some_and(|value| value.starts_with('@')),
        "{from_query:?}"
    );
    let accel = server.ask(
        "/accel",
        "/media/a.pdf",
        &[("Authorization", &format!("Bearer {token}"))],
    );
    assert_eq!(accel.status, 200);
    assert_eq!(accel.header("x-accel-expires"), Some("0"));
}

#[test]
fn accel_and_forward_read_the_header_and_challenge_a_malformed_one() {
    let server = Server::start(BOTH_SOURCES);
    let bearer = format!("Bearer {}", server.a_pdf());
    for endpoint in ["/accel", "/forward"] {
        let allowed = server.ask(endpoint, "/media/a.pdf", &[("Authorization", &bearer)]);
        assert_eq!(allowed.status, 200, "{endpoint}: {allowed:?}");
        let malformed = server.ask(endpoint, "/media/a.pdf", &[("Authorization", "Bearer")]);
        assert_eq!(answer(&malformed), challenged(), "{endpoint}");
        // No token anywhere: the browser refresh, as before (a 302 there, no challenge).
        let missing = server.ask(endpoint, "/media/a.pdf", &[]);
        assert_eq!(
            answer(&missing),
            (
                302,
                Some("missing_token".into()),
                None,
                Some(format!("{REFRESH}/media/a.pdf")),
                String::new()
            ),
            "{endpoint}"
        );
    }
}

/// Before issue 11 the header was ignored; by default it still is (query only), and so is
/// its syntax: an unchanged configuration behaves as before.
#[test]
fn by_default_only_the_query_is_read() {
    let server = Server::start("");
    let token = server.a_pdf();
    for value in [format!("Bearer {token}"), "Bearer".to_owned()] {
        let response = server.ask("/auth", "/media/a.pdf", &[("Authorization", &value)]);
        assert_eq!(
            answer(&response),
            refresh_auth("missing_token", None),
            "{value:?}"
        );
    }
    // The header is not a second source either: query token plus header is fine.
    let response = server.ask(
        "/auth",
        &format!("/media/a.pdf?token={token}"),
        &[("Authorization", &format!("Bearer {token}"))],
    );
    assert_eq!(answer(&response), allowed_auth());
}

#[test]
fn header_only_configuration_ignores_the_query() {
    let server = Server::start("[token]\nsources = [\"authorization\"]\n");
    let token = server.a_pdf();
    let response = server.ask("/auth", &format!("/media/a.pdf?token={token}"), &[]);
    assert_eq!(
        answer(&response),
        refresh_auth("missing_token", Some("Bearer"))
    );
}

#[test]
fn token_source_settings_are_validated() {
    let dir = TempDir::new("tokensrc-config");
    for (token, expected) in [
        (
            "sources = [\"query\", \"cookie\"]",
            "token.sources: \"cookie\" is turned on per site, with the site's cookie_grant",
        ),
        (
            "sources = [\"query\", \"header\"]",
            "token.sources: \"header\" is not \"query\", \"path\" or \"authorization\"",
        ),
        (
            "sources = [\"query\", \"query\"]",
            "token.sources: \"query\" is listed twice",
        ),
        (
            "sources = []",
            "token.sources: name at least one of \"query\", \"path\" and \"authorization\"",
        ),
        (
            "auth_schemes = [\"Bearer token\"]",
            "token.auth_schemes: \"Bearer token\" is not an HTTP authentication scheme",
        ),
        (
            "auth_schemes = [\"\"]",
            "token.auth_schemes: \"\" is not an HTTP authentication scheme",
        ),
        (
            "auth_schemes = [\"Bearer\", \"bearer\"]",
            "token.auth_schemes: \"bearer\" is listed twice (schemes ignore case)",
        ),
        (
            "sources = [\"authorization\"]\nauth_schemes = []",
            "token.auth_schemes: name at least one scheme when token.sources has \"authorization\"",
        ),
    ] {
        let path = dir.write(
            "mediagate.toml",
            format!(
                "[keys]\ndev_key = false\n[keys.secrets]\nk1 = \"{}\"\n[token]\n{token}\n",
                random_secret()
            ),
        );
        let error = mediagate::config::load(Some(&path))
            .expect_err(token)
            .to_string();
        assert!(error.contains(expected), "{token}: {error}");
    }
}

// ---- through real nginx ------------------------------------------------------------------

/// An API location on the media server, protected by `protect-api.conf` and proxied to the
/// stand-in application (which echoes what it receives), as the README's recipe writes it.
pub(crate) fn api_stack(name: &str, options: Options) -> Stack {
    let mut options = options;
    options.extra_config.push_str(BOTH_SOURCES);
    options.nginx_edits.push((
        "        # X-Accel-Redirect mode: mediagate answers".into(),
        "        location /api/ {\n            include mediagate/protect-api.conf;\n            \
         proxy_pass http://mediagate_app$mediagate_api_uri;\n        }\n\n        \
         # X-Accel-Redirect mode: mediagate answers"
            .into(),
    ));
    Stack::start_with(name, options)
}

/// The token alone of an exact-path link to `path`, minted with the stack's configuration.
fn token_for(stack: &Stack, path: &str) -> String {
    mint(
        &stack.config,
        &MintRequest {
            path: path.into(),
            ..MintRequest::default()
        },
        mediagate::clock::now(),
    )
    .unwrap()
    .token
}

fn api_token(stack: &Stack) -> String {
    mint(
        &stack.config,
        &MintRequest {
            path: "/api/v1/".into(),
            prefix: true,
            // protect-api.conf accepts API tokens only (issue 11, per-purpose keys).
            purpose: mediagate::token::Purpose::Api,
            ..MintRequest::default()
        },
        mediagate::clock::now(),
    )
    .unwrap()
    .token
}

fn api(stack: &Stack, target: &str, headers: &[(&str, &str)]) -> Response {
    request(
        &stack.socket("media.sock"),
        "GET",
        MEDIA_HOST,
        target,
        headers,
    )
}

/// The application's echo for `target`: no Authorization header, no token anywhere.
fn app_saw(response: &Response, target: &str, token: &str) {
    let body = response.text();
    assert_eq!(response.status, 200, "{body}");
    assert!(
        body.starts_with(&format!("target {target}\n")),
        "the application got another target: {body}"
    );
    assert!(!body.contains("authorization"), "{body}");
    assert!(
        !body.contains(token),
        "the token reached the application: {body}"
    );
}

#[test]
fn api_location_takes_a_bearer_token_and_the_application_never_sees_it() {
    let stack = api_stack("tokensrc-api", Options::default());
    let token = api_token(&stack);
    let bearer = format!("Bearer {token}");
    let response = api(&stack, "/api/v1/items?a=1", &[("Authorization", &bearer)]);
    app_saw(&response, "/api/v1/items?a=1", &token);
    // The scheme ignores case, through nginx too.
    let response = api(
        &stack,
        "/api/v1/items",
        &[("Authorization", &format!("tmptoken {token}"))],
    );
    app_saw(&response, "/api/v1/items", &token);
    // Headers the application may trust come from mediagate, never from the client.
    let response = api(
        &stack,
        "/api/v1/items",
        &[
            ("Authorization", &bearer),
            ("X-Mediagate-Subject", "admin"),
            ("X-Mediagate-Data", "Zm9yZ2Vk"),
            ("X-Mediagate-Expires-In", "999999"),
        ],
    );
    app_saw(&response, "/api/v1/items", &token);
    let body = response.text();
    assert!(!body.contains("admin"), "{body}");
    assert!(
        !body.contains("Zm9yZ2Vk") && !body.contains("999999"),
        "{body}"
    );
    // A query token works as well, and is taken out of the URI wherever it stands.
    for (query, upstream) in [
        (format!("?token={token}"), ""),
        (format!("?token={token}&a=1"), "?a=1"),
        (format!("?a=1&token={token}"), "?a=1"),
        (format!("?a=1&token={token}&b=2"), "?a=1&b=2"),
        (format!("?tokenizer=1&token={token}"), "?tokenizer=1"),
    ] {
        let response = api(&stack, &format!("/api/v1/items{query}"), &[]);
        app_saw(&response, &format!("/api/v1/items{upstream}"), &token);
    }
}

#[test]
fn api_location_refuses_two_sources_and_challenges_bad_or_missing_credentials() {
    let stack = api_stack("tokensrc-api-deny", Options::default());
    let token = api_token(&stack);
    let bearer = format!("Bearer {token}");
    // Both sources: 403 malformed, nginx's page.
    let both = api(
        &stack,
        &format!("/api/v1/items?token={token}"),
        &[("Authorization", &bearer)],
    );
    assert_eq!(
        seen(&both),
        (403, Some("malformed".into()), nginx_page("403 Forbidden"))
    );
    // A malformed header and no token at all: 401 with the challenge, never a redirect.
    for (headers, reason) in [
        (vec![("Authorization", "Bearer")], "malformed"),
        (vec![("Authorization", "Bearer a b")], "malformed"),
        (vec![], "missing_token"),
        (
            vec![("Authorization", "Basic dXNlcjpwYXNz")],
            "missing_token",
        ),
    ] {
        let response = api(&stack, "/api/v1/items", &headers);
        assert_eq!(
            seen(&response),
            (
                401,
                Some(reason.into()),
                nginx_page("401 Authorization Required")
            ),
            "{headers:?}"
        );
        let challenges: Vec<&str> = response
            .headers
            .iter()
            .filter(|(name, _)| name.eq_ignore_ascii_case("www-authenticate"))
            .map(|(_, value)| value.as_str())
            .collect();
        assert_eq!(challenges, [CHALLENGE], "{headers:?}");
        assert_eq!(response.header("location"), None, "{headers:?}");
    }
    // A repeated Authorization header never reaches mediagate: nginx refuses it itself.
    let twice = api(
        &stack,
        "/api/v1/items",
        &[("Authorization", &bearer), ("Authorization", &bearer)],
    );
    assert_eq!(
        (twice.status, without_nginx_version(&twice.text())),
        (400, nginx_page("400 Bad Request"))
    );
}

#[test]
fn media_and_accel_locations_take_a_bearer_token_and_still_refresh_without_one() {
    let stack = api_stack("tokensrc-media", Options::default());
    stack.dir.write("files/media/a.pdf", "pdf bytes");
    stack.dir.write("files/files/a.pdf", "pdf bytes");
    let token = token_for(&stack, "/media/a.pdf");
    let bearer = format!("Bearer {token}");
    let response = api(&stack, "/media/a.pdf", &[("Authorization", &bearer)]);
    assert_eq!(seen(&response), served("pdf bytes"));
    let files = token_for(&stack, "/files/a.pdf");
    let response = api(
        &stack,
        "/files/a.pdf",
        &[("Authorization", &format!("Bearer {files}"))],
    );
    assert_eq!(seen(&response), served("pdf bytes"));
    // No token: the browser's refresh redirect, as before.
    let response = api(&stack, "/media/a.pdf", &[]);
    assert_eq!(response.status, 302);
    assert!(response.header("location").is_some_and(|location| location
        .starts_with("http://www.localhost/_mediagate/refresh/media/a.pdf?state=")));
    assert_eq!(response.header("x-mediagate-reason"), Some("missing_token"));
    assert_eq!(response.header("cache-control"), Some("no-store"));
    // A malformed header on a media location: a 401 that names the schemes, never a redirect
    // (it was a 302 with an empty Location, which a client follows to the same URL forever).
    for broken in ["Bearer", "Bearer a b"] {
        let response = api(&stack, "/media/a.pdf", &[("Authorization", broken)]);
        assert_eq!(response.status, 401, "{broken}: {response:#?}");
        assert_eq!(response.header("location"), None, "{broken}");
        assert_eq!(
            response.header("www-authenticate"),
            Some("Bearer, TmpToken"),
            "{broken}"
        );
        assert_eq!(response.header("x-mediagate-reason"), Some("malformed"));
        assert_eq!(response.header("cache-control"), Some("no-store"));
    }
}

/// With the optional auth cache, an allow for a header token must not be stored under the
/// URL's key: the same URL without any token would be served from it.
#[test]
fn auth_cache_never_answers_for_a_header_token() {
    let stack = api_stack("tokensrc-cache", Options::default().with_auth_cache());
    stack.dir.write("files/media/a.pdf", "pdf bytes");
    let token = token_for(&stack, "/media/a.pdf");
    let bearer = format!("Bearer {token}");
    for _ in 0..2 {
        let response = api(&stack, "/media/a.pdf", &[("Authorization", &bearer)]);
        assert_eq!(seen(&response), served("pdf bytes"));
    }
    let response = api(&stack, "/media/a.pdf", &[]);
    assert_eq!(
        (response.status, response.header("x-mediagate-reason")),
        (302, Some("missing_token")),
        "a tokenless request was answered from the cache"
    );
}
