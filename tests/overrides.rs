//! Per-link response overrides (token format v2 fields `0x14`-`0x16`: download name,
//! disposition, cache max-age) and the refresh flow keeping the media URL's other query
//! parameters (`0x17`), through real nginx in both modes (issue 11).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use mediagate::mint::{mint, MintError, MintRequest};
use mediagate::token::{self, mac, wire, Claims, Disposition, Scope, TokenBuf};

use crate::support::{
    accel_denied, nginx_denied, seen, served, split_url, Options, Response, Stack, MEDIA_HOST,
    WWW_HOST,
};

const PDF: &str = "%PDF-1.4 stand-in bytes\n";
/// Every override allowed.
const ALL_OVERRIDES: &str = "[accel]\noverrides = [\"filename\", \"disposition\", \"max_age\"]\n";
/// The name of the recipe, with quotes and non-ASCII letters.
const NAME: &str = "Résumé 2026 \"final\".pdf";
/// Its header: the exact name in `filename*`, a fallback without quotes or non-ASCII.
const NAME_DISPOSITION: &str = "attachment; filename=\"R_sum_ 2026 _final_.pdf\"; \
     filename*=UTF-8''R%C3%A9sum%C3%A9%202026%20%22final%22.pdf";
/// The same file in auth_request mode (`/media/`) and X-Accel-Redirect mode (`/files/`).
const BOTH_MODES: [&str; 2] = ["/media/report.pdf", "/files/report.pdf"];

fn stack_with_files(name: &str, extra_config: &str) -> Stack {
    let stack = Stack::start_with(
        name,
        Options {
            extra_config: extra_config.into(),
            ..Options::default()
        },
    );
    stack.dir.write("files/media/report.pdf", PDF);
    stack.dir.write("files/files/report.pdf", PDF);
    stack
}

/// Every value of the header `name`, in order.
fn values<'r>(response: &'r Response, name: &str) -> Vec<&'r str> {
    response
        .headers
        .iter()
        .filter(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
        .collect()
}

/// No `X-Mediagate-*` override header reaches the browser, and no `X-Accel-*` either.
fn assert_nothing_internal(response: &Response) {
    for (name, _) in &response.headers {
        let name = name.to_ascii_lowercase();
        assert!(
            !name.starts_with("x-mediagate-content") && !name.starts_with("x-mediagate-cache"),
            "{name} leaked: {response:?}"
        );
        assert!(!name.starts_with("x-accel-"), "{name} leaked: {response:?}");
    }
}

/// A download token for `path` with every field as `claims` says, signed with the stack's
/// own signing key: what a minter with another `accel.overrides` (or a forger holding the
/// key) could produce.
fn signed_claims(stack: &Stack, path: &str, claims: impl FnOnce(Claims) -> Claims) -> String {
    let now = mediagate::clock::now();
    let claims = claims(Claims::download(Scope::Exact(path.into()), now + 600));
    let text = token::sign(&claims, stack.config.keys.signing_key()).unwrap();
    format!("{path}?token={text}")
}

#[test]
fn per_user_download_link_with_a_file_name_arrives_with_the_exact_headers_in_both_modes() {
    let stack = stack_with_files("overrides", ALL_OVERRIDES);
    for path in BOTH_MODES {
        let url = stack.sign_with(MintRequest {
            path: path.into(),
            subject: Some("alice".into()),
            filename: Some(NAME.into()),
            disposition: Some(Disposition::Attachment),
            max_age: Some(3600),
            ..MintRequest::default()
        });
        let response = stack.media("GET", &url);
        assert_eq!(seen(&response), served(PDF), "{path}");
        assert_eq!(
            values(&response, "content-disposition"),
            [NAME_DISPOSITION],
            "{path}"
        );
        assert_eq!(
            values(&response, "cache-control"),
            ["private, max-age=3600"],
            "{path}"
        );
        assert_nothing_internal(&response);

        // Inline without a name: the path's last segment names the file.
        let url = stack.sign_with(MintRequest {
            path: path.into(),
            disposition: Some(Disposition::Inline),
            ..MintRequest::default()
        });
        let response = stack.media("GET", &url);
        assert_eq!(seen(&response), served(PDF), "{path}");
        assert_eq!(
            values(&response, "content-disposition"),
            ["inline; filename=\"report.pdf\"; filename*=UTF-8''report.pdf"],
            "{path}"
        );
        assert_eq!(values(&response, "cache-control"), ["private"], "{path}");

        // A token without overrides: as before, nothing added.
        let response = stack.media("GET", &stack.sign(path));
        assert_eq!(seen(&response), served(PDF), "{path}");
        assert_eq!(values(&response, "content-disposition"), Vec::<&str>::new());
        assert_eq!(values(&response, "cache-control"), ["private"], "{path}");
        assert_nothing_internal(&response);
    }
    // auth_request mode: a missing file's 404 page is neither a download nor cacheable.
    let url = stack.sign_with(MintRequest {
        path: "/media/missing.pdf".into(),
        filename: Some(NAME.into()),
        max_age: Some(3600),
        ..MintRequest::default()
    });
    let missing = stack.media("GET", &url);
    assert_eq!(missing.status, 404);
    assert_eq!(values(&missing, "content-disposition"), Vec::<&str>::new());
    assert_eq!(values(&missing, "cache-control"), ["no-store"]);
}

#[test]
fn hostile_file_names_cannot_be_minted_and_forged_tokens_carrying_one_are_refused() {
    let stack = stack_with_files("hostile-names", ALL_OVERRIDES);
    for name in [
        "a\r\nSet-Cookie: x=1.pdf",
        "a\n.pdf",
        "a\0.pdf",
        "../x.pdf",
        "a\\x.pdf",
        "x\u{202e}fdp.exe",
        " a.pdf",
    ] {
        let refused = mint(
            &stack.config,
            &MintRequest {
                path: "/media/report.pdf".into(),
                filename: Some(name.into()),
                ..MintRequest::default()
            },
            mediagate::clock::now(),
        );
        assert!(
            matches!(&refused, Err(MintError::BadFilename(got, _)) if got == name),
            "{name:?}: {refused:?}"
        );
    }
    // Correctly signed with the site's own key, the name carrying CR LF (or NUL): the body is
    // malformed, so nothing of it is believed, let alone sent.
    for (path, hostile) in [
        ("/media/report.pdf", &b"\r\n"[..]),
        ("/files/report.pdf", b"\r\n"),
        ("/media/report.pdf", b"\0\0"),
    ] {
        let key = stack.config.keys.signing_key();
        let claims = Claims {
            filename: Some("a__Set-Cookie: x=1.pdf".into()),
            ..Claims::download(Scope::Exact(path.into()), mediagate::clock::now() + 600)
        };
        let mut body = claims.encode_body(key.id()).unwrap();
        let at = body.windows(2).position(|w| w == b"__").unwrap();
        body[at..at + 2].copy_from_slice(hostile);
        let forged = wire::encode_token(&body, &mac::tag(key, &body, Some(path)));
        let mut buf = TokenBuf::new();
        assert!(token::decode(&forged, &mut buf).is_err());
        let response = stack.media("GET", &format!("{path}?token={forged}"));
        let expected = if path.starts_with("/media/") {
            nginx_denied("malformed")
        } else {
            accel_denied("malformed")
        };
        assert_eq!(seen(&response), expected, "{path} {hostile:?}");
        assert_eq!(values(&response, "content-disposition"), Vec::<&str>::new());
        assert!(!response
            .headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("set-cookie")));
    }
}

#[test]
fn an_override_the_site_does_not_allow_is_refused_at_mint_and_at_the_gate() {
    let stack = stack_with_files(
        "overrides-allow-list",
        "[accel]\noverrides = [\"filename\"]\n",
    );
    let refused = mint(
        &stack.config,
        &MintRequest {
            path: "/media/report.pdf".into(),
            max_age: Some(60),
            ..MintRequest::default()
        },
        mediagate::clock::now(),
    );
    assert_eq!(
        refused.unwrap_err(),
        MintError::OverrideNotAllowed("max_age")
    );
    for path in BOTH_MODES {
        // Allowed: the name.
        let url = stack.sign_with(MintRequest {
            path: path.into(),
            filename: Some("a.pdf".into()),
            ..MintRequest::default()
        });
        let response = stack.media("GET", &url);
        assert_eq!(seen(&response), served(PDF), "{path}");
        assert_eq!(
            values(&response, "content-disposition"),
            ["attachment; filename=\"a.pdf\"; filename*=UTF-8''a.pdf"]
        );
        // Not allowed: a max-age or a disposition, even next to an allowed name.
        for url in [
            signed_claims(&stack, path, |c| Claims {
                max_age: Some(60),
                ..c
            }),
            signed_claims(&stack, path, |c| Claims {
                filename: Some("a.pdf".into()),
                disposition: Some(Disposition::Inline),
                ..c
            }),
        ] {
            let response = stack.media("GET", &url);
            let expected = if path.starts_with("/media/") {
                nginx_denied("override_not_allowed")
            } else {
                accel_denied("override_not_allowed")
            };
            assert_eq!(seen(&response), expected, "{path}");
            assert_eq!(values(&response, "cache-control"), ["no-store"]);
        }
    }
    // With the default configuration no override is allowed at all.
    let plain = stack_with_files("overrides-default", "");
    let url = signed_claims(&plain, "/media/report.pdf", |c| Claims {
        filename: Some("a.pdf".into()),
        ..c
    });
    assert_eq!(
        seen(&plain.media("GET", &url)),
        nginx_denied("override_not_allowed")
    );
}

/// A token for `path` minted an hour ago with a one-minute lifetime.
fn stale_token(stack: &Stack, path: &str) -> String {
    let minted = mint(
        &stack.config,
        &MintRequest {
            path: path.into(),
            ttl: Some(60),
            ..MintRequest::default()
        },
        mediagate::clock::now() - 3600,
    )
    .unwrap();
    minted.token
}

#[test]
fn refresh_keeps_the_other_query_parameters_exactly_in_both_modes() {
    let stack = stack_with_files("refresh-query", "");
    for path in BOTH_MODES {
        let stale = stale_token(&stack, path);
        let hops = stack.browse(
            &format!("http://{MEDIA_HOST}{path}?x=1&y=a%20b&token={stale}"),
            Some("session=alice"),
        );
        let statuses: Vec<u16> = hops.iter().map(|hop| hop.status).collect();
        assert_eq!(statuses, [302, 302, 200], "{path}: {hops:#?}");
        assert_eq!(hops[0].header("x-mediagate-reason"), Some("expired"));
        let back = hops[1].header("location").unwrap();
        let prefix = format!("http://{MEDIA_HOST}{path}?x=1&y=a%20b&token=");
        let fresh = back
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("{path}: back to {back:?}"));
        assert!(!fresh.contains(['&', '?']) && fresh != stale, "{back}");
        let mut buf = TokenBuf::new();
        assert_eq!(
            token::decode(fresh, &mut buf).unwrap().purpose,
            token::Purpose::Download
        );
        assert_eq!(seen(hops.last().unwrap()), served(PDF), "{path}");
    }
    // The token first, or no token at all: the rest is kept just the same.
    let stale = stale_token(&stack, "/media/report.pdf");
    for query in [format!("token={stale}&b=%2f&a=+"), "b=%2f&a=+".to_owned()] {
        let hops = stack.browse(
            &format!("http://{MEDIA_HOST}/media/report.pdf?{query}"),
            Some("session=alice"),
        );
        assert_eq!(hops.len(), 3, "{query}: {hops:#?}");
        let back = hops[1].header("location").unwrap();
        assert!(
            back.starts_with(&format!(
                "http://{MEDIA_HOST}/media/report.pdf?b=%2f&a=+&token="
            )),
            "{query}: {back}"
        );
    }
}

#[test]
fn a_query_that_cannot_be_kept_exactly_fails_closed_instead_of_being_dropped() {
    let stack = stack_with_files("refresh-query-closed", "");
    let stale = stale_token(&stack, "/media/report.pdf");
    let long = "a".repeat(300);
    for (query, reason) in [
        // An empty pair: which spelling would be meant?
        ("x=1&&y=2".to_owned(), "missing_token"),
        (format!("x=1&&token={stale}"), "expired"),
        // Longer than a state keeps (255 bytes).
        (format!("x={long}&token={stale}"), "expired"),
    ] {
        let response = stack.media("GET", &format!("/media/report.pdf?{query}"));
        assert_eq!(seen(&response), nginx_denied(reason), "{query}");
        assert_eq!(response.header("location"), None);
    }
}

#[test]
fn a_state_whose_kept_query_was_altered_is_bad_state_and_nobody_can_add_a_parameter() {
    let stack = stack_with_files("refresh-query-state", "");
    let first = stack.media("GET", "/media/report.pdf?x=1");
    assert_eq!(first.status, 302);
    let (_, refresh_path) = split_url(first.header("location").unwrap());
    let (base, state) = refresh_path.split_once("?state=").unwrap();
    let mut raw = URL_SAFE_NO_PAD.decode(state).unwrap();
    let mut buf = TokenBuf::new();
    assert_eq!(
        token::decode(state, &mut buf).unwrap().kept_query,
        Some("x=1")
    );
    // One byte of the kept query changed, the tag left as it was.
    let at = raw.windows(3).position(|w| w == b"x=1").unwrap();
    raw[at + 2] = b'2';
    let altered = URL_SAFE_NO_PAD.encode(&raw);
    let hops = stack.browse(
        &format!("http://{WWW_HOST}{base}?state={altered}"),
        Some("session=alice"),
    );
    assert_eq!(hops.len(), 1, "{hops:#?}");
    assert_eq!(seen(&hops[0]), accel_denied("bad_state"));
    // Parameters added to the refresh URL are not the state's: the way back carries x=1 only.
    let hops = stack.browse(
        &format!("http://{WWW_HOST}{refresh_path}&evil=1&token=attacker"),
        Some("session=alice"),
    );
    // This browse starts at the session domain: its first hop is the way back.
    assert_eq!(hops.len(), 2, "{hops:#?}");
    let back = hops[0].header("location").unwrap_or_default();
    assert!(
        back.starts_with(&format!("http://{MEDIA_HOST}/media/report.pdf?x=1&token="))
            && !back.contains("evil")
            && !back.contains("attacker"),
        "{hops:#?}"
    );
    assert_eq!(seen(hops.last().unwrap()), served(PDF));
}
