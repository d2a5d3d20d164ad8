//! Per-purpose keys and file-version binding (issue 11): an API-only key never opens media
//! and a media link never calls an API; a link bound to a file's version stops working once
//! the file changes. Configuration and the refresh flow in-process, the rest through real
//! nginx.

use mediagate::config::Config;
use mediagate::mint::{mint, resolve_file_version, MintError, MintInput, MintRequest, ScopeInput};
use mediagate::reason::Reason;
use mediagate::refresh;
use mediagate::token::{self, Claims, Purpose, RefreshMarker, Scope};

use crate::support::{
    nginx_denied, nginx_page, random_secret, request, seen, served, Options, Response, Stack,
    TempDir, MEDIA_HOST,
};

/// Both token sources, as the API recipe configures them.
const BOTH_SOURCES: &str =
    "[token]\nsources = [\"query\", \"authorization\"]\nauth_schemes = [\"Bearer\"]\n";
/// The stack's k1 is kept for API tokens; k2 (signing) keeps every purpose.
const K1_API_ONLY: &str = "[keys.purposes]\nk1 = [\"api\"]\n";

/// Loads a one-site configuration with keys `k1` (signing) and `k2`, `purposes` as the
/// `[keys.purposes]` lines and `site` appended to the site entry.
fn load(purposes: &str, site: &str) -> Result<Config, String> {
    let dir = TempDir::new("purposes-config");
    let path = dir.write(
        "mediagate.toml",
        format!(
            "[keys]\ndev_key = false\nsigning = \"k1\"\n[keys.secrets]\nk1 = \"{}\"\nk2 = \"{}\"\n\
             [keys.purposes]\n{purposes}\n\
             [[sites]]\nid = \"demo\"\nmedia_origin = \"https://media.example.org\"\n{site}\n",
            random_secret(),
            random_secret()
        ),
    );
    mediagate::config::load_with_env(Some(&path), Vec::new()).map_err(|error| error.to_string())
}

#[test]
fn key_purposes_are_validated_with_every_problem_named() {
    let error = load(
        "k1 = [\"download\", \"media\"]\nk2 = []\nk3 = [\"api\"]\n",
        "",
    )
    .unwrap_err();
    for expected in [
        "keys.purposes.k1: \"media\" is not \"download\", \"upload\", \"refresh_state\" or \"api\"",
        "keys.purposes.k2: empty list (a key for nothing; remove the key instead)",
        "keys.purposes.k3: no key \"k3\" in [keys.secrets]",
    ] {
        assert!(error.contains(expected), "{expected}\nin: {error}");
    }
    let error = load("k2 = [\"api\", \"api\"]\n", "").unwrap_err();
    assert!(
        error.contains("keys.purposes.k2: \"api\" is named twice"),
        "{error}"
    );
    let config = load("k2 = [\"api\"]\n", "").unwrap();
    let k2 = config.keys.get("k2").unwrap();
    assert!(k2.allows(Purpose::Api) && !k2.allows(Purpose::Download));
    assert!(config.keys.get("k1").unwrap().allows(Purpose::Upload));
}

#[test]
fn a_refreshing_site_needs_a_signing_key_for_states_and_links() {
    let refreshing = "session_origin = \"https://www.example.org\"";
    for (limit, has) in [
        ("[\"refresh_state\"]", "refresh_state"),
        ("[\"download\"]", "download"),
        ("[\"api\"]", "api"),
    ] {
        let error = load(&format!("k1 = {limit}\n"), refreshing).unwrap_err();
        assert!(
            error.contains(&format!(
                "keys.purposes.k1: the signing key signs refresh states and the links a refresh \
                 mints (a site has a session_origin): it needs \"download\" and \"refresh_state\" \
                 (it has {has})"
            )),
            "{limit}: {error}"
        );
    }
    // Without a refresh flow the same limits are fine, and both together always are.
    assert!(load("k1 = [\"refresh_state\"]\n", "").is_ok());
    let config = load("k1 = [\"download\", \"refresh_state\"]\n", refreshing).unwrap();
    // The flow works end to end with such a key: a state, approved, is a link.
    let now = mediagate::clock::now();
    let state = mediagate::mint::refresh_state(
        &config,
        "demo",
        "/media/a.pdf",
        RefreshMarker {
            attempt: 1,
            started: now,
        },
        None,
        now,
    )
    .unwrap();
    let target = refresh::check_target(
        &config,
        "www.example.org",
        &format!("/_mediagate/refresh/media/a.pdf?state={state}"),
        now,
    )
    .unwrap();
    let location =
        refresh::approve(&config, &target, "/media/a.pdf", Default::default(), now).unwrap();
    assert!(location.starts_with("https://media.example.org/media/a.pdf?token="));
}

#[test]
fn refresh_never_signs_with_a_key_not_allowed_its_purpose() {
    let refreshing = "session_origin = \"https://www.example.org\"";
    let config = load("", refreshing).unwrap();
    let now = mediagate::clock::now();
    let marker = RefreshMarker {
        attempt: 1,
        started: now,
    };
    // A session side whose k1 may sign states only (its configuration could not say so,
    // but one side's keys are not the other's): the state checks, the link is refused.
    let mut states_only = config.clone();
    let k1 = config.keys.get("k1").unwrap().clone();
    let k2 = config.keys.get("k2").unwrap().clone();
    let only =
        |purposes: &[Purpose]| mediagate::keys::Purposes::of(purposes.iter().copied()).unwrap();
    states_only.keys = mediagate::keys::KeyRing::new(
        vec![
            k1.clone().with_purposes(only(&[Purpose::RefreshState])),
            k2.clone(),
        ],
        "k1",
    )
    .unwrap();
    let state =
        mediagate::mint::refresh_state(&states_only, "demo", "/media/a.pdf", marker, None, now)
            .unwrap();
    let uri = format!("/_mediagate/refresh/media/a.pdf?state={state}");
    let target = refresh::check_target(&states_only, "www.example.org", &uri, now).unwrap();
    assert_eq!(
        refresh::approve(
            &states_only,
            &target,
            "/media/a.pdf",
            Default::default(),
            now
        ),
        Err(Reason::KeyPurpose)
    );
    // A media side whose signing key may sign links only cannot start a chain at all, and a
    // state such a key signed is refused by the session side.
    let mut links_only = config.clone();
    links_only.keys =
        mediagate::keys::KeyRing::new(vec![k1.with_purposes(only(&[Purpose::Download])), k2], "k1")
            .unwrap();
    assert!(matches!(
        mediagate::mint::refresh_state(&links_only, "demo", "/media/a.pdf", marker, None, now),
        Err(MintError::KeyPurpose { .. })
    ));
    assert_eq!(
        refresh::check_target(&links_only, "www.example.org", &uri, now).map(|_| ()),
        Err(Reason::BadState)
    );
}

#[test]
fn minting_refuses_a_key_not_allowed_the_purpose_and_names_it() {
    let config = load("k2 = [\"api\"]\n", "").unwrap();
    let input = |purpose: &str, key: &str| -> MintInput {
        serde_json::from_str(&format!(
            "{{\"path\": \"/api/v1/\", \"prefix\": true, \"purpose\": \"{purpose}\", \"key\": \"{key}\"}}"
        ))
        .unwrap()
    };
    let now = mediagate::clock::now();
    let (request, _) = input("download", "k2").resolve(&config).unwrap();
    assert_eq!(
        mint(&config, &request, now).unwrap_err().to_string(),
        "key \"k2\" may not sign download tokens (keys.purposes allows it: api)"
    );
    let (request, _) = input("api", "k2").resolve(&config).unwrap();
    let minted = mint(&config, &request, now).unwrap();
    let mut buf = token::TokenBuf::new();
    let decoded = token::decode(&minted.token, &mut buf).unwrap();
    // API tokens are v2 and stamped, like every v2 token mediagate mints.
    assert_eq!(
        (
            decoded.version,
            decoded.purpose,
            decoded.kid,
            decoded.issued_at
        ),
        (2, Purpose::Api, "k2", Some(now))
    );
    let (request, _) = input("api", "k9").resolve(&config).unwrap();
    assert_eq!(
        mint(&config, &request, now).unwrap_err(),
        MintError::UnknownKey("k9".into())
    );
}

/// The API location of the README recipe, next to the media locations.
fn api_stack(name: &str, extra: &str) -> Stack {
    let options = Options {
        extra_config: format!("{extra}{BOTH_SOURCES}{K1_API_ONLY}"),
        nginx_edits: vec![(
            "        # X-Accel-Redirect mode: mediagate answers".into(),
            "        location /api/ {\n            include mediagate/protect-api.conf;\n            \
             proxy_pass http://mediagate_app$mediagate_api_uri;\n        }\n\n        \
             # X-Accel-Redirect mode: mediagate answers"
                .into(),
        )],
        ..Options::default()
    };
    Stack::start_with(name, options)
}

fn get(stack: &Stack, target: &str, headers: &[(&str, &str)]) -> Response {
    request(
        &stack.socket("media.sock"),
        "GET",
        MEDIA_HOST,
        target,
        headers,
    )
}

fn minted(stack: &Stack, request: MintRequest) -> String {
    mint(&stack.config, &request, mediagate::clock::now())
        .unwrap()
        .token
}

#[test]
fn an_api_only_key_opens_the_api_location_and_never_media() {
    let stack = api_stack("purposes-api", "");
    stack.dir.write("files/media/a.pdf", "pdf bytes");
    let api_token = minted(
        &stack,
        MintRequest {
            path: "/api/v1/".into(),
            prefix: true,
            purpose: Purpose::Api,
            key: Some("k1".into()),
            ..MintRequest::default()
        },
    );
    let bearer = format!("Bearer {api_token}");
    let response = get(&stack, "/api/v1/items", &[("Authorization", &bearer)]);
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(
        response.text().starts_with("target /api/v1/items\n"),
        "{}",
        response.text()
    );
    // The API token on a media location, by header or query: wrong_purpose, never a refresh.
    let media_prefix = minted(
        &stack,
        MintRequest {
            path: "/media/".into(),
            prefix: true,
            purpose: Purpose::Api,
            key: Some("k1".into()),
            ..MintRequest::default()
        },
    );
    // The client's own X-Mediagate-Purpose never reaches mediagate.
    let by_query = get(
        &stack,
        &format!("/media/a.pdf?token={media_prefix}"),
        &[("X-Mediagate-Purpose", "api")],
    );
    assert_eq!(seen(&by_query), nginx_denied("wrong_purpose"));
    let media_bearer = format!("Bearer {media_prefix}");
    let by_header = get(&stack, "/media/a.pdf", &[("Authorization", &media_bearer)]);
    assert_eq!(seen(&by_header), nginx_denied("wrong_purpose"));
    // A media link signed with the API key (its holder cannot mint one; signed by hand):
    // authentic, and still refused.
    let forged = token::sign(
        &Claims::download(
            Scope::Exact("/media/a.pdf".into()),
            mediagate::clock::now() + 600,
        ),
        stack.config.keys.get("k1").unwrap(),
    )
    .unwrap();
    assert_eq!(
        seen(&get(&stack, &format!("/media/a.pdf?token={forged}"), &[])),
        nginx_denied("key_purpose")
    );
    // And the other way round: a media link (signed by k2, every purpose) calls no API, even
    // when the client claims the location expects downloads.
    let media_link = minted(
        &stack,
        MintRequest {
            path: "/api/v1/".into(),
            prefix: true,
            ..MintRequest::default()
        },
    );
    assert_eq!(
        seen(&stack.media("GET", &stack.sign("/media/a.pdf"))),
        served("pdf bytes")
    );
    for headers in [vec![], vec![("X-Mediagate-Purpose", "download")]] {
        let response = get(
            &stack,
            &format!("/api/v1/items?token={media_link}"),
            &headers,
        );
        assert_eq!(
            seen(&response),
            (
                403,
                Some("wrong_purpose".into()),
                nginx_page("403 Forbidden")
            ),
            "{headers:?}"
        );
    }
    // No token at an API location: a 401 challenge, never the browser's refresh redirect.
    let response = get(&stack, "/api/v1/items", &[]);
    assert_eq!(
        (
            response.status,
            response.header("x-mediagate-reason"),
            response.header("www-authenticate"),
            response.header("location"),
        ),
        (401, Some("missing_token"), Some("Bearer"), None)
    );
}

/// Mints a link to `path` bound to its file's current version, as `sign --bind-version`.
fn bound_link(stack: &Stack, path: &str) -> String {
    let input = MintInput {
        path: path.into(),
        bind_version: true,
        ..MintInput::default()
    };
    let (mut request, site) = input.resolve(&stack.config).unwrap();
    let root = site.unwrap().files_root.as_deref().unwrap();
    request.file_version = Some(resolve_file_version(root, &request).unwrap());
    mint(&stack.config, &request, mediagate::clock::now())
        .unwrap()
        .path_and_query
}

#[test]
fn a_bound_link_stops_working_once_its_file_is_touched_replaced_or_removed() {
    let stack = Stack::start_with(
        "purposes-bound",
        Options {
            extra_config: "files_root = \"{d}/files\"\n".into(),
            ..Options::default()
        },
    );
    let file = stack.dir.write("files/media/report.txt", "first");
    let link = bound_link(&stack, "/media/report.txt");
    let unbound = stack.sign("/media/report.txt");
    assert_eq!(seen(&stack.media("GET", &link)), served("first"));
    assert_eq!(seen(&stack.media("GET", &link)), served("first"));

    // A touch (same bytes, later modification time) ends the binding: decided and pinned.
    let later =
        std::fs::metadata(&file).unwrap().modified().unwrap() + std::time::Duration::from_secs(3);
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(later)
        .unwrap();
    assert_eq!(
        seen(&stack.media("GET", &link)),
        nginx_denied("file_changed")
    );

    // Bound again, then replaced the safe way: a new file renamed over the old one.
    let link = bound_link(&stack, "/media/report.txt");
    assert_eq!(seen(&stack.media("GET", &link)), served("first"));
    let next = stack.dir.write("files/media/.report.txt.new", "second");
    std::fs::rename(&next, &file).unwrap();
    assert_eq!(
        seen(&stack.media("GET", &link)),
        nginx_denied("file_changed")
    );
    // A link without the binding is unaffected; a new bound link serves the new file.
    assert_eq!(seen(&stack.media("GET", &unbound)), served("second"));
    let link = bound_link(&stack, "/media/report.txt");
    assert_eq!(seen(&stack.media("GET", &link)), served("second"));

    // Gone: refused by mediagate with the same reason (not nginx's 404).
    std::fs::remove_file(&file).unwrap();
    assert_eq!(
        seen(&stack.media("GET", &link)),
        nginx_denied("file_changed")
    );
}

#[test]
fn bound_links_need_a_files_root_and_a_file_inside_it() {
    let stack = Stack::start_with(
        "purposes-root",
        Options {
            extra_config: "files_root = \"{d}/files\"\n".into(),
            ..Options::default()
        },
    );
    stack.dir.write("files/media/inside.txt", "inside");
    let outside = stack.dir.write("outside.txt", "outside");
    std::os::unix::fs::symlink(&outside, stack.dir.path().join("files/media/out.txt")).unwrap();
    std::os::unix::fs::symlink("inside.txt", stack.dir.path().join("files/media/in.txt")).unwrap();
    // A link within the root is followed (nginx follows it too).
    assert_eq!(
        seen(&stack.media("GET", &bound_link(&stack, "/media/in.txt"))),
        served("inside")
    );
    // Nothing is learnt about a file outside the root: minting refuses.
    let input = MintInput {
        path: "/media/out.txt".into(),
        bind_version: true,
        ..MintInput::default()
    };
    let (request, site) = input.resolve(&stack.config).unwrap();
    let root = site.unwrap().files_root.as_deref().unwrap();
    assert_eq!(
        resolve_file_version(root, &request).unwrap_err().to_string(),
        "cannot bind \"/media/out.txt\" to its file version: the path leads outside files_root through a symbolic link"
    );
    for (path, prefix, error) in [
        (
            "/media/missing.txt",
            false,
            "cannot bind \"/media/missing.txt\" to its file version: no such file",
        ),
        (
            "/media/",
            true,
            "a file version binds one file: exact-path download links only (no --prefix, --scope, --upload or --api)",
        ),
    ] {
        let input = MintInput {
            path: path.into(),
            prefix,
            bind_version: true,
            ..MintInput::default()
        };
        let (request, _) = input.resolve(&stack.config).unwrap();
        assert_eq!(
            resolve_file_version(root, &request).unwrap_err().to_string(),
            error
        );
    }

    // Nor a scopes list: it covers several paths and binds none.
    let input = MintInput {
        scopes: Some(vec![
            ScopeInput::parse_flag("GET:/media/in.txt").unwrap(),
            ScopeInput::parse_flag("GET:/media/missing.txt").unwrap(),
        ]),
        bind_version: true,
        ..MintInput::default()
    };
    let (request, _) = input.resolve(&stack.config).unwrap();
    assert_eq!(
        resolve_file_version(root, &request).unwrap_err().to_string(),
        "a file version binds one file: exact-path download links only (no --prefix, --scope, --upload or --api)"
    );

    // A site without files_root neither mints nor accepts bound links.
    let config = load("", "").unwrap();
    let input = MintInput {
        path: "/media/a.txt".into(),
        bind_version: true,
        ..MintInput::default()
    };
    assert_eq!(
        input.resolve(&config).unwrap_err().to_string(),
        "site \"demo\" has no files_root: links bound to a file version need one"
    );
    let rootless = Stack::start("purposes-rootless");
    rootless.dir.write("files/media/a.txt", "a");
    let version = mediagate::files::version_of(
        &std::fs::canonicalize(rootless.dir.path().join("files")).unwrap(),
        "/media/a.txt",
    )
    .unwrap();
    let link = mint(
        &rootless.config,
        &MintRequest {
            path: "/media/a.txt".into(),
            file_version: Some(version),
            ..MintRequest::default()
        },
        mediagate::clock::now(),
    )
    .unwrap();
    assert_eq!(
        seen(&rootless.media("GET", &link.path_and_query)),
        nginx_denied("file_changed")
    );
}
