//! Readable denial pages (issue 10), through real nginx: what a person sees for a denial in
//! both nginx modes, HTML for browsers and plain text for everything else, in the site's own
//! wording when it has some, never showing the token.

use mediagate::mint::{mint, MintRequest};
use mediagate::token::RefreshMarker;

use crate::support::{Options, Response, Stack, TempDir};

const HTML: (&str, &str) = ("Accept", "text/html,application/xhtml+xml,*/*;q=0.8");

fn stack(name: &str, options: Options) -> Stack {
    let stack = Stack::start_with(name, options);
    for base in ["media", "files"] {
        stack
            .dir
            .write(&format!("files/{base}/report.pdf"), "pdf bytes");
        stack
            .dir
            .write(&format!("files/{base}/secret.txt"), "secret bytes");
        stack
            .dir
            .write(&format!("files/{base}/hls/seg1.ts"), "segment one");
    }
    stack
}

/// One denial as a person's client sees it: status, content type, every
/// `X-Mediagate-Reason`, `Cache-Control`, body.
fn page(response: &Response) -> (u16, String, Vec<String>, String, String) {
    let all = |name: &str| -> Vec<String> {
        response
            .headers
            .iter()
            .filter(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.clone())
            .collect()
    };
    (
        response.status,
        all("content-type").join(", "),
        all("x-mediagate-reason"),
        all("cache-control").join(", "),
        response.text(),
    )
}

/// The four denials of the issue, as (reason, path and query, token) for `base`
/// (`/media` auth_request mode, `/files` X-Accel-Redirect mode).
fn denials(stack: &Stack, base: &str) -> Vec<(&'static str, String, String)> {
    let token = |path_and_query: &str| path_and_query.split_once("token=").unwrap().1.to_owned();
    // refresh_loop: an authentic token minted by a refresh (attempt 2 = refresh.max_attempts)
    // that has expired within the loop window: the next refresh would be attempt 3.
    let now = mediagate::clock::now();
    let looping = mint(
        &stack.config,
        &MintRequest {
            path: format!("{base}/report.pdf"),
            ttl: Some(10),
            refresh: Some(RefreshMarker {
                attempt: 2,
                started: now - 5,
            }),
            ..MintRequest::default()
        },
        now - 30,
    )
    .unwrap()
    .path_and_query;
    // bad_signature: a real token for another file.
    let other = stack.sign(&format!("{base}/secret.txt"));
    let prefix = stack.sign_with(MintRequest {
        path: format!("{base}/hls/"),
        prefix: true,
        ..MintRequest::default()
    });
    vec![
        ("refresh_loop", looping.clone(), token(&looping)),
        (
            "bad_signature",
            format!("{base}/report.pdf?token={}", token(&other)),
            token(&other),
        ),
        (
            "bad_path",
            format!("{base}/hls/../secret.txt?token={}", token(&prefix)),
            token(&prefix),
        ),
        (
            "out_of_scope",
            format!("{base}/secret.txt?token={}", token(&prefix)),
            token(&prefix),
        ),
    ]
}

/// What happened, per reason, as the built-in page says it.
fn explanation(reason: &str) -> &'static str {
    match reason {
        "refresh_loop" => "This link could not be renewed: a fresh link was refused again",
        "bad_signature" => "This link is damaged or was not issued for this file.",
        "bad_path" => "The address of this file is not valid.",
        "out_of_scope" => "This link does not cover this file.",
        other => panic!("{other}"),
    }
}

#[test]
fn denials_are_readable_pages_in_html_and_text_in_both_modes() {
    // Before: auth_request mode showed nginx's bare "<h1>403 Forbidden</h1>" page for all
    // four; accel mode "403 Forbidden: bad_signature" (and a refresh_loop text) as text/plain.
    let stack = stack("pages", Options::default());
    let mut wrong = Vec::new();
    for base in ["/media", "/files"] {
        for (reason, target, token) in denials(&stack, base) {
            for html in [true, false] {
                let headers: &[(&str, &str)] = if html { &[HTML] } else { &[] };
                let response = crate::support::request(
                    &stack.socket("media.sock"),
                    "GET",
                    crate::support::MEDIA_HOST,
                    &target,
                    headers,
                );
                let (status, content_type, reasons, cache, body) = page(&response);
                let expected_type = if html {
                    "text/html; charset=utf-8"
                } else {
                    "text/plain; charset=utf-8"
                };
                let mut problems = Vec::new();
                if (status, content_type.as_str()) != (403, expected_type) {
                    problems.push(format!("status/type {status} {content_type}"));
                }
                if reasons != [reason] || cache != "no-store" {
                    problems.push(format!("reason {reasons:?}, cache-control {cache:?}"));
                }
                if !body.contains(explanation(reason)) || !body.contains(reason) {
                    problems.push("no explanation".into());
                }
                if body.contains(&token) || body.contains('?') || body.contains("token") {
                    problems.push("shows the token or the query".into());
                }
                if body.starts_with("<!doctype html>") != html {
                    problems.push("wrong form".into());
                }
                if !problems.is_empty() {
                    wrong.push(format!("{base} {reason} html={html}: {problems:?}\n{body}"));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn denial_pages_are_exactly_these_bytes() {
    let stack = stack("page-bytes", Options::default());
    let denials = denials(&stack, "/media");
    let (_, looping, _) = &denials[0];
    let html = stack.media_with("GET", looping, &[HTML]);
    assert_eq!(
        html.text(),
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>Link could not be renewed</title>\n</head>\n<body>\n\
         <h1>Link could not be renewed</h1>\n\
         <p>This link could not be renewed: a fresh link was refused again (a clock or key \
         mismatch between the sites, or a browser that does not keep the site&#39;s login).</p>\n\
         <p>Reload the page that linked here; if it persists, contact the site&#39;s \
         operators.</p>\n\
         <p><small>403 Forbidden &middot; <code>refresh_loop</code></small></p>\n\
         </body>\n</html>\n"
    );
    assert_eq!(html.header("referrer-policy"), Some("no-referrer"));
    let (_, forged, _) = &denials[1];
    assert_eq!(
        stack.media("GET", forged).text(),
        "403 Forbidden: bad_signature\n\n\
         This link is damaged or was not issued for this file.\n\
         Open the file again from the page that linked here; if you copied the link, copy all \
         of it.\n"
    );
}

#[test]
fn a_site_replaces_the_wording_with_its_own_files() {
    let pages = TempDir::new("site-pages");
    pages.write(
        "out_of_scope.html",
        "<p>Diese Datei gehört nicht zu diesem Link.</p>\n",
    );
    pages.write("default.txt", "Kein Zugriff. Bitte die Seite neu laden.\n");
    let stack = stack(
        "page-override",
        Options {
            extra_config: format!("pages_dir = \"{}\"\n", pages.path().display()),
            ..Options::default()
        },
    );
    for base in ["/media", "/files"] {
        let denials = denials(&stack, base);
        let (_, out_of_scope, _) = &denials[3];
        let html = stack.media_with("GET", out_of_scope, &[HTML]);
        let seen = page(&html);
        assert_eq!(
            seen,
            (
                403,
                "text/html; charset=utf-8".into(),
                vec!["out_of_scope".into()],
                "no-store".into(),
                "<p>Diese Datei gehört nicht zu diesem Link.</p>\n".into()
            ),
            "{base}"
        );
        // No text file for out_of_scope, none at all for bad_signature: default.txt.
        for (_, target, _) in [&denials[3], &denials[1]] {
            assert_eq!(
                stack.media("GET", target).text(),
                "Kein Zugriff. Bitte die Seite neu laden.\n",
                "{base}"
            );
        }
        // No HTML file for bad_signature and no default.html: the built-in page.
        let builtin = stack.media_with("GET", &denials[1].1, &[HTML]).text();
        assert!(builtin.contains("This link is damaged"), "{builtin}");
    }
}

#[test]
fn a_misspelt_page_file_is_refused_at_load() {
    let pages = TempDir::new("bad-pages");
    pages.write("refresh-loop.html", "typo");
    let config = TempDir::new("bad-pages-config");
    let path = config.write(
        "mediagate.toml",
        format!(
            "[keys]\ndev_key = false\nsecrets = {{ k1 = \"{}\" }}\n\
             [[sites]]\nid = \"demo\"\nmedia_origin = \"http://media.localhost\"\n\
             pages_dir = \"{}\"\n",
            crate::support::random_secret(),
            pages.path().display()
        ),
    );
    let error = mediagate::config::load(Some(&path))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(&format!(
            "sites[0].pages_dir: {}: \"refresh-loop.html\" is not <reason>.html, <reason>.txt, \
             default.html or default.txt",
            pages.path().display()
        )),
        "{error}"
    );
}
