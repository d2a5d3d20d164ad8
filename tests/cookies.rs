//! Cookie grants (issue 10) through real nginx, in both modes: the allow of a prefix link sets
//! the site's grant cookie, a later request of that folder passes with the cookie alone, and
//! nothing else sets or honours one.

use mediagate::mint::{mint, MintRequest};

use crate::support::{nginx_page, seen, served, Options, Response, Stack, MEDIA_HOST, WWW_HOST};

/// The grant as the README's recipe configures it, with a short name.
const GRANT: &str = "cookie_grant = { name = \"mg\", same_site = \"lax\" }\n";

/// The two ways nginx asks mediagate: the auth_request location (`/media/`, protect.conf) and
/// the X-Accel-Redirect one (`/files/`, accel.conf), each with its folder of photos.
struct Mode {
    name: &'static str,
    folder: &'static str,
}

const MODES: [Mode; 2] = [
    Mode {
        name: "auth",
        folder: "/media/photos/",
    },
    Mode {
        name: "accel",
        folder: "/files/photos/",
    },
];

fn stack(name: &str, options: Options) -> Stack {
    let stack = Stack::start_with(name, options);
    for folder in ["media", "files"] {
        stack
            .dir
            .write(&format!("files/{folder}/photos/a.png"), "photo a");
        stack
            .dir
            .write(&format!("files/{folder}/photos/b.png"), "photo b");
        stack
            .dir
            .write(&format!("files/{folder}/videos/c.mp4"), "video c");
    }
    stack
}

/// A site with the grant, on a media server that forwards cookies (example.conf's map).
fn granted(name: &str) -> Stack {
    stack(
        name,
        Options {
            extra_config: GRANT.into(),
            ..Options::default()
        }
        .forwarding_cookies(MEDIA_HOST),
    )
}

/// The answer to a request that carries no token, in both modes: the refresh flow for `file`
/// (`missing_token`), and no cookie set.
fn assert_no_token(response: &Response, file: &str, what: &str) {
    assert_eq!(
        (response.status, response.header("x-mediagate-reason")),
        (302, Some("missing_token")),
        "{what}: {response:#?}"
    );
    assert!(
        response
            .header("location")
            .is_some_and(|location| location.starts_with(&format!(
                "http://{WWW_HOST}/_mediagate/refresh{file}?state="
            ))),
        "{what}: {response:#?}"
    );
    assert_eq!(set_cookies(response), Vec::<&str>::new(), "{what}");
}

/// A token for `path` (a folder when it ends in `/`), minted at `at` for 600 seconds.
fn token_at(stack: &Stack, path: &str, at: u64, uses: Option<u32>) -> String {
    let request = MintRequest {
        path: path.into(),
        prefix: path.ends_with('/'),
        ttl: Some(600),
        uses,
        // One id per folder: each mode's link is its own.
        token_id: uses.map(|_| format!("once{}", path.replace('/', "-"))),
        issued_at: uses.is_some(),
        ..MintRequest::default()
    };
    mint(&stack.config, &request, at).unwrap().token
}

fn token(stack: &Stack, path: &str) -> String {
    token_at(stack, path, mediagate::clock::now(), None)
}

/// Every `Set-Cookie` of a response.
fn set_cookies(response: &Response) -> Vec<&str> {
    response
        .headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, value)| value.as_str())
        .collect()
}

/// `response` sets exactly one cookie: `grant`'s, for `folder` (its lifetime is the seconds
/// left, which the first test pins).
fn assert_sets_grant(response: &Response, grant: &str, folder: &str, what: &str) {
    let cookies = set_cookies(response);
    assert!(
        matches!(cookies.as_slice(), [cookie]
            if cookie.starts_with(&format!("mg={grant}; Path={folder}; Max-Age="))),
        "{what}: {response:#?}"
    );
}

fn get(stack: &Stack, uri: &str, cookie: Option<&str>) -> Response {
    match cookie {
        Some(cookie) => stack.media_with("GET", uri, &[("Cookie", cookie)]),
        None => stack.media("GET", uri),
    }
}

/// A token like `token` whose tag differs in one character inside it (not the last one,
/// whose unused bits may make the change no change).
fn forge(token: &str) -> String {
    let mut bytes = token.as_bytes().to_vec();
    let at = bytes.len() - 5;
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

#[test]
fn a_prefix_link_sets_the_grant_cookie_and_the_cookie_alone_opens_the_folder() {
    let stack = granted("cookie-grant");
    for mode in &MODES {
        let folder = mode.folder;
        let minted_at = mediagate::clock::now();
        let grant = token_at(&stack, folder, minted_at, None);
        let first = get(&stack, &format!("{folder}a.png?token={grant}"), None);
        let answered_at = mediagate::clock::now();
        assert_eq!(seen(&first), served("photo a"), "{}", mode.name);
        // The token lives 600 s from `minted_at`; mediagate's clock read between our two
        // reads, so Max-Age is 600 less the seconds that passed by then.
        let cookies = set_cookies(&first);
        let [cookie] = cookies.as_slice() else {
            panic!("{}: one Set-Cookie expected: {first:#?}", mode.name);
        };
        assert!(
            (600 - (answered_at - minted_at)..=600).any(|age| *cookie
                == format!(
                    "mg={grant}; Path={folder}; Max-Age={age}; Secure; HttpOnly; SameSite=Lax"
                )),
            "{}: {cookie}",
            mode.name
        );

        // The browser sends it back for every file of the folder: the file, no new cookie.
        let with_cookie = format!("other=1; mg={grant}");
        let second = get(&stack, &format!("{folder}b.png"), Some(&with_cookie));
        assert_eq!(seen(&second), served("photo b"), "{}", mode.name);
        assert_eq!(set_cookies(&second), Vec::<&str>::new(), "{}", mode.name);
        // Exactly what nginx sent: never the token in another header.
        assert_eq!(second.header("cache-control"), Some("private"));
    }
}

/// A grant cookie is ambient: the browser sends whatever the host's jar holds, including
/// cookies a sibling subdomain planted. One that opens nothing here is ignored, as if the
/// request had no token: the refresh flow, whose fresh link in the URL wins and sets a new
/// cookie, never a denial that lasts as long as the planted cookie.
#[test]
fn a_cookie_that_opens_nothing_is_ignored_and_takes_the_refresh_flow() {
    let stack = granted("cookie-refused");
    for mode in &MODES {
        let folder = mode.folder;
        let file = format!("{folder}b.png");
        let videos = folder.replace("photos", "videos");
        let forged = format!("mg={}", forge(&token(&stack, folder)));
        let old = token_at(&stack, folder, mediagate::clock::now() - 1000, None);
        for (what, cookie) in [
            // A grant for another folder (a browser would not even send it here).
            ("another folder", format!("mg={}", token(&stack, &videos))),
            ("forged", forged.clone()),
            // An expired one: the refresh flow, as for an expired link.
            ("expired", format!("mg={old}")),
            ("not a token", "mg=AQEB".to_owned()),
        ] {
            let response = get(&stack, &file, Some(&cookie));
            assert_no_token(&response, &file, &format!("{}: {what}", mode.name));
        }
        // The refresh's fresh link in the URL then wins over the cookie, and replaces it.
        let fresh = token(&stack, folder);
        let response = get(&stack, &format!("{file}?token={fresh}"), Some(&forged));
        assert_eq!(seen(&response), served("photo b"), "{}", mode.name);
        assert_sets_grant(&response, &fresh, folder, mode.name);
        // A forged one first and a good one second (nested grants, an old one beside its
        // replacement): the first that verifies wins, and sets nothing.
        let both = format!("{forged}; mg={}", token(&stack, folder));
        let response = get(&stack, &file, Some(&both));
        assert_eq!(seen(&response), served("photo b"), "{}", mode.name);
        assert_eq!(set_cookies(&response), Vec::<&str>::new(), "{}", mode.name);
    }
}

/// Cookie tossing: a sibling subdomain plants `mg` cookies with longer paths, which the
/// browser sends before the real grant. Junk that is no token costs nothing and is skipped
/// however much of it there is; up to three planted tokens are checked and skipped; from the
/// fourth, the real grant is not tried (at most four MACs a request), and the request takes
/// the refresh flow as one without a token, never a denial.
#[test]
fn planted_cookies_before_the_real_grant_never_deny() {
    let stack = granted("cookie-tossing");
    for mode in &MODES {
        let folder = mode.folder;
        let file = format!("{folder}b.png");
        let real = format!("mg={}", token(&stack, folder));
        // What a sibling can sign is no grant of ours: a token with a forged tag.
        let planted = format!("mg={}; ", forge(&token(&stack, folder)));
        let junk = "mg=x; mg=AQEB; mg=\"q\"; mg=; ".repeat(8);
        for (what, header) in [
            ("32 junk values", format!("{junk}{real}")),
            (
                "three planted tokens",
                format!("{}{real}", planted.repeat(3)),
            ),
            (
                "junk and three planted tokens",
                format!("{junk}{}{real}", planted.repeat(3)),
            ),
        ] {
            let response = get(&stack, &file, Some(&header));
            assert_eq!(seen(&response), served("photo b"), "{}: {what}", mode.name);
        }
        let four = format!("{}{real}", planted.repeat(4));
        let response = get(&stack, &file, Some(&four));
        assert_no_token(&response, &file, &format!("{}: four planted", mode.name));
    }
}

/// The `Cookie` header reaches mediagate only from the media servers example.conf's
/// `$mediagate_cookie_grant_site` map lists: here the site has a grant in mediagate, but
/// nginx's server is not listed, so the cookie the first link set never comes back to it.
#[test]
fn a_media_server_not_listed_in_the_map_forwards_no_cookie() {
    let stack = stack(
        "cookie-unlisted",
        Options {
            extra_config: GRANT.into(),
            ..Options::default()
        },
    );
    for mode in &MODES {
        let folder = mode.folder;
        let grant = token(&stack, folder);
        let response = get(&stack, &format!("{folder}a.png?token={grant}"), None);
        assert_eq!(seen(&response), served("photo a"), "{}", mode.name);
        assert_sets_grant(&response, &grant, folder, mode.name);
        let file = format!("{folder}b.png");
        let response = get(&stack, &file, Some(&format!("mg={grant}")));
        assert_no_token(&response, &file, mode.name);
    }
}

#[test]
fn a_link_in_the_url_wins_and_only_prefix_links_without_a_use_limit_set_the_cookie() {
    let stack = granted("cookie-links");
    for mode in &MODES {
        let folder = mode.folder;
        let forged = format!("mg={}", forge(&token(&stack, folder)));
        // A link in the query beside a forged cookie: the link decides.
        let exact = token(&stack, &format!("{folder}b.png"));
        let response = get(
            &stack,
            &format!("{folder}b.png?token={exact}"),
            Some(&forged),
        );
        assert_eq!(seen(&response), served("photo b"), "{}", mode.name);
        // An exact link is no grant.
        assert_eq!(set_cookies(&response), Vec::<&str>::new(), "{}", mode.name);
        // Nor is a link with a use limit: each use is asked for with the link.
        let once = token_at(&stack, folder, mediagate::clock::now(), Some(1));
        let response = get(&stack, &format!("{folder}a.png?token={once}"), None);
        assert_eq!(seen(&response), served("photo a"), "{}", mode.name);
        assert_eq!(set_cookies(&response), Vec::<&str>::new(), "{}", mode.name);
        // A prefix link beside a forged cookie: served, and its grant replaces the cookie.
        let grant = token(&stack, folder);
        let response = get(
            &stack,
            &format!("{folder}a.png?token={grant}"),
            Some(&forged),
        );
        assert_eq!(seen(&response), served("photo a"), "{}", mode.name);
        assert_sets_grant(&response, &grant, folder, mode.name);
        // A prefix link in the path form (`~mg~` segment) is a grant as well: the cookie's
        // path is the folder, not the URL with the segment.
        let grant = token(&stack, folder);
        let response = get(
            &stack,
            &mediagate::path::grant_path(&format!("{folder}a.png"), Some(folder), &grant),
            None,
        );
        assert_eq!(seen(&response), served("photo a"), "{}", mode.name);
        assert_sets_grant(&response, &grant, folder, mode.name);
    }
}

/// A playlist's segments each carry the link (path form), and so may a page's images (query
/// form): once the browser holds the link's cookie, their answers do not send it again. A
/// newer link still replaces an older link's cookie.
#[test]
fn a_link_whose_cookie_the_browser_holds_does_not_set_it_again() {
    let stack = granted("cookie-held");
    for mode in &MODES {
        let folder = mode.folder;
        let grant = token(&stack, folder);
        let query = format!("{folder}a.png?token={grant}");
        let path = mediagate::path::grant_path(&format!("{folder}b.png"), Some(folder), &grant);
        let held = format!("other=1; mg={grant}");
        for (uri, file) in [(&query, "photo a"), (&path, "photo b")] {
            let response = get(&stack, uri, Some(&held));
            assert_eq!(seen(&response), served(file), "{}: {uri}", mode.name);
            assert_eq!(
                set_cookies(&response),
                Vec::<&str>::new(),
                "{}: {uri}",
                mode.name
            );
        }
        let older = token_at(&stack, folder, mediagate::clock::now() - 60, None);
        assert_ne!(older, grant);
        for uri in [&query, &path] {
            let response = get(&stack, uri, Some(&format!("mg={older}")));
            assert_sets_grant(&response, &grant, folder, &format!("{}: {uri}", mode.name));
        }
    }
}

#[test]
fn a_site_without_a_cookie_grant_ignores_the_cookie() {
    // nginx forwards the cookie here: mediagate itself must not read it.
    let stack = stack(
        "cookie-none",
        Options::default().forwarding_cookies(MEDIA_HOST),
    );
    for mode in &MODES {
        let folder = mode.folder;
        let grant = token(&stack, folder);
        let response = get(&stack, &format!("{folder}a.png?token={grant}"), None);
        assert_eq!(seen(&response), served("photo a"), "{}", mode.name);
        assert_eq!(set_cookies(&response), Vec::<&str>::new(), "{}", mode.name);
        let response = get(
            &stack,
            &format!("{folder}b.png"),
            Some(&format!("mg={grant}")),
        );
        assert_eq!(
            (response.status, response.header("x-mediagate-reason")),
            (302, Some("missing_token")),
            "{}",
            mode.name
        );
    }
}

/// With the optional auth cache, neither an allow from the cookie (the key has no `Cookie`
/// header: the same URL without one would pass) nor an allow that sets it (its `Set-Cookie`
/// would be replayed with a stale `Max-Age`) is stored; an ordinary link's allow still is.
#[test]
fn the_auth_cache_never_stores_a_cookie_grant() {
    let mut stack = stack(
        "cookie-cache",
        Options {
            extra_config: GRANT.into(),
            ..Options::default()
        }
        .forwarding_cookies(MEDIA_HOST)
        .with_auth_cache(),
    );
    let grant = token(&stack, "/media/photos/");
    let link = format!("/media/photos/a.png?token={grant}");
    let cookie = format!("mg={grant}");
    let exact = format!(
        "/media/photos/b.png?token={}",
        token(&stack, "/media/photos/b.png")
    );
    for _ in 0..2 {
        let response = get(&stack, &link, None);
        assert_eq!(seen(&response), served("photo a"));
        assert_sets_grant(&response, &grant, "/media/photos/", "auth cache");
        let response = get(&stack, "/media/photos/b.png", Some(&cookie));
        assert_eq!(seen(&response), served("photo b"));
        assert_eq!(seen(&get(&stack, &exact, None)), served("photo b"));
    }
    let response = get(&stack, "/media/photos/b.png", None);
    assert_eq!(
        (response.status, response.header("x-mediagate-reason")),
        (302, Some("missing_token")),
        "a request without a cookie was answered from the cache"
    );
    // With mediagate gone, only the ordinary link is still answered (from the cache).
    stack.mediagate.child.kill().unwrap();
    stack.mediagate.child.wait().unwrap();
    let nginx_500 = (500, None, nginx_page("500 Internal Server Error"));
    assert_eq!(seen(&get(&stack, &exact, None)), served("photo b"));
    assert_eq!(seen(&get(&stack, &link, None)), nginx_500);
    assert_eq!(
        seen(&get(&stack, "/media/photos/b.png", Some(&cookie))),
        nginx_500
    );
}
