//! Tokens carried in a path segment (`/media/hls/clip/~mg~<token>/seg0.ts`, spec §13.3),
//! through real nginx in both modes (issue 10): the file served is the path without the
//! segment, relative URLs below it keep the token, and the refresh flow hands such links out
//! on a site with `link_form = "path"`.

use mediagate::config::LinkForm;
use mediagate::mint::MintRequest;
use mediagate::path;
use mediagate::token::{self, Claims, Scope};

use crate::support::{
    accel_denied, nginx_denied, path_token, seen, served, split_url, Options, Stack, MEDIA_HOST,
    WWW_HOST,
};

/// The playlist and segments of one rendition, in auth_request mode (`/media/`) and
/// X-Accel-Redirect mode (`/files/`).
const FILES: [(&str, &str); 4] = [
    ("hls/clip/index.m3u8", "#EXTM3U playlist\n"),
    ("hls/clip/seg0.ts", "segment zero\n"),
    ("hls/clip/360p/seg0.ts", "low segment zero\n"),
    ("hls/other/seg0.ts", "another clip\n"),
];

fn stack_with_files(name: &str, options: Options) -> Stack {
    let stack = Stack::start_with(name, options);
    for root in ["media", "files"] {
        for (path, body) in FILES {
            stack.dir.write(&format!("files/{root}/{path}"), body);
        }
        stack
            .dir
            .write(&format!("files/{root}/a b/100%.txt"), "odd name\n");
    }
    stack
}

#[test]
fn a_path_token_opens_its_files_and_what_is_named_relative_to_it_in_both_modes() {
    let stack = stack_with_files("grantpaths", Options::default());
    for (root, denied) in [
        ("media", nginx_denied as fn(&str) -> _),
        ("files", accel_denied),
    ] {
        let link = stack.sign_path(&format!("/{root}/hls/clip/"), true);
        assert_eq!(
            link,
            format!("/{root}/hls/clip/~mg~{}/", path_token(&link)),
            "the token goes right after the prefix"
        );
        let base = &link;
        assert_eq!(
            seen(&stack.media("GET", &format!("{base}index.m3u8"))),
            served("#EXTM3U playlist\n")
        );
        // What a playlist there names relatively: `seg0.ts`, `360p/seg0.ts`.
        assert_eq!(
            seen(&stack.media("GET", &format!("{base}seg0.ts"))),
            served("segment zero\n")
        );
        assert_eq!(
            seen(&stack.media("GET", &format!("{base}360p/seg0.ts"))),
            served("low segment zero\n")
        );
        // The same segment moved elsewhere: the link was edited, not followed.
        let token = path_token(&link);
        assert_eq!(
            seen(&stack.media("GET", &format!("/{root}/hls/~mg~{token}/clip/seg0.ts"))),
            denied("out_of_scope")
        );
        assert_eq!(
            seen(&stack.media("GET", &format!("/{root}/hls/clip/360p/~mg~{token}/seg0.ts"))),
            denied("out_of_scope")
        );
        // Another folder, even with the segment in its place for that folder.
        assert_eq!(
            seen(&stack.media("GET", &format!("/{root}/hls/other/~mg~{token}/seg0.ts"))),
            denied("out_of_scope")
        );
        // An exact-path token sits in its file's folder and opens that file only.
        let exact = stack.sign_path(&format!("/{root}/hls/clip/seg0.ts"), false);
        let token = path_token(&exact);
        assert_eq!(exact, format!("/{root}/hls/clip/~mg~{token}/seg0.ts"));
        assert_eq!(seen(&stack.media("GET", &exact)), served("segment zero\n"));
        assert_eq!(
            seen(&stack.media("GET", &format!("/{root}/hls/clip/~mg~{token}/index.m3u8"))),
            denied("bad_signature")
        );
        // Names that need percent-encoding survive nginx's rewrite unchanged.
        let odd = stack.sign_path(&format!("/{root}/a%20b/100%25.txt"), false);
        assert!(odd.ends_with("/100%25.txt"), "{odd}");
        assert_eq!(seen(&stack.media("GET", &odd)), served("odd name\n"));
    }
}

#[test]
fn a_path_token_is_refused_when_anything_about_its_segment_is_off() {
    let stack = stack_with_files("grantattacks", Options::default());
    for (root, denied) in [
        ("media", nginx_denied as fn(&str) -> _),
        ("files", accel_denied),
    ] {
        let link = stack.sign_path(&format!("/{root}/hls/clip/"), true);
        let token = path_token(&link).to_owned();
        let query = stack.sign(&format!("/{root}/hls/clip/seg0.ts"));
        let (_, query_token) = query.split_once("?token=").unwrap();
        // A forgery: one character inside the tag changed.
        let mut forged = token.clone().into_bytes();
        let inside = forged.len() - 5;
        forged[inside] = if forged[inside] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        for (target, reason) in [
            // Two token segments: which one, which file?
            (
                format!("/{root}/hls/~mg~{token}/clip/~mg~{token}/seg0.ts"),
                "bad_path",
            ),
            // A token segment that names no file after it.
            (format!("/{root}/hls/clip/~mg~{token}"), "bad_path"),
            (format!("/{root}/hls/clip/~mg~/seg0.ts"), "bad_path"),
            // Two sources at once, even for the same file.
            (
                format!("/{root}/hls/clip/~mg~{token}/seg0.ts?token={query_token}"),
                "malformed",
            ),
            (
                format!("/{root}/hls/clip/~mg~{forged}/seg0.ts"),
                "bad_signature",
            ),
            // Bytes nginx's rewrite does not take out: mediagate refuses them as a token.
            (
                format!("/{root}/hls/clip/~mg~{token}.x/seg0.ts"),
                "malformed",
            ),
        ] {
            assert_eq!(
                seen(&stack.media("GET", &target)),
                denied(reason),
                "{target}"
            );
        }
        // The marker however it is spelled: nginx decodes it too, so it is the same file.
        assert_eq!(
            seen(&stack.media("GET", &format!("/{root}/hls/clip/%7Emg%7E{token}/seg0.ts"))),
            served("segment zero\n")
        );
        // Another case is another name, not a token: the request has none.
        let other_case = stack.media("GET", &format!("/{root}/hls/clip/~MG~{token}/seg0.ts"));
        assert_eq!(
            (other_case.status, other_case.header("x-mediagate-reason")),
            (302, Some("missing_token"))
        );
    }
}

/// nginx takes out the segment mediagate takes out, whatever it holds. A segment that holds
/// no token (`~mg~x.y`: nothing mints it) in front of a public folder: mediagate decides for
/// the public file without reading a token, so nginx must serve that file, not a folder on
/// disk whose name is the segment.
#[test]
fn nginx_takes_out_the_same_segment_as_mediagate_whatever_it_holds() {
    let stack = stack_with_files("grantodd", Options::default());
    stack.dir.write("files/media/public/f.txt", "public\n");
    for folder in ["~mg~x.y", "~mg~a b", "~mg~%"] {
        stack.dir.write(
            &format!("files/media/{folder}/public/f.txt"),
            "not public\n",
        );
    }
    for uri in [
        "/media/~mg~x.y/public/f.txt",
        "/media/~mg~a%20b/public/f.txt",
        "/media/~mg~%25/public/f.txt",
        "/media/public/~mg~x.y/f.txt",
    ] {
        assert_eq!(seen(&stack.media("GET", uri)), served("public\n"), "{uri}");
    }
}

#[test]
fn with_the_path_source_off_a_token_segment_is_a_bad_path_not_a_file_name() {
    let stack = stack_with_files(
        "grantoff",
        Options {
            extra_config: "[token]\nsources = [\"query\"]\n".into(),
            ..Options::default()
        },
    );
    // This stack's minters refuse such a link; one signed elsewhere with its key is refused
    // at the gate.
    let refused = mediagate::mint::mint(
        &stack.config,
        &MintRequest {
            path: "/media/hls/clip/".into(),
            prefix: true,
            form: LinkForm::Path,
            ..MintRequest::default()
        },
        mediagate::clock::now(),
    );
    assert!(
        matches!(refused, Err(mediagate::mint::MintError::NotForPurpose(why)) if why.contains("token.sources")),
        "{refused:?}"
    );
    for (root, denied) in [
        ("media", nginx_denied as fn(&str) -> _),
        ("files", accel_denied),
    ] {
        let prefix = format!("/{root}/hls/clip/");
        let claims = Claims::download(Scope::Prefix(prefix.clone()), mediagate::clock::now() + 600);
        let token = token::sign(&claims, stack.config.keys.signing_key()).unwrap();
        let link = path::grant_path(&format!("{prefix}seg0.ts"), Some(&prefix), &token);
        assert_eq!(
            seen(&stack.media("GET", &link)),
            denied("bad_path"),
            "{link}"
        );
    }
}

#[test]
fn the_refresh_flow_hands_out_path_links_on_a_path_form_site_and_asks_the_application_once() {
    let stack = stack_with_files(
        "grantrefresh",
        Options {
            extra_config: "link_form = \"path\"\n".into(),
            ..Options::default()
        },
    );
    let asked_before = stack.app.asked.lock().unwrap().len();
    // A player opens the playlist without a token: one refresh, the application grants the
    // folder `/media/hls/`, and the link comes back in path form with the rest of the query.
    let hops = stack.browse(
        &format!("http://{MEDIA_HOST}/media/hls/clip/index.m3u8?v=2"),
        Some("session=alice"),
    );
    let statuses: Vec<u16> = hops.iter().map(|hop| hop.status).collect();
    assert_eq!(statuses, [302, 302, 200]);
    let location = hops[1].header("location").unwrap();
    let (host, back) = split_url(location);
    assert_eq!(host, MEDIA_HOST);
    let token = path_token(&back).to_owned();
    assert_eq!(back, format!("/media/hls/~mg~{token}/clip/index.m3u8?v=2"));
    assert_eq!(seen(&hops[2]), served("#EXTM3U playlist\n"));
    assert!(hops[0].header("location").unwrap().starts_with(&format!(
        "http://{WWW_HOST}/_mediagate/refresh/media/hls/clip/index.m3u8?state="
    )));
    // Every segment the playlist names relatively: no further refresh, no application check.
    for (segment, body) in [
        ("clip/seg0.ts", "segment zero\n"),
        ("clip/360p/seg0.ts", "low segment zero\n"),
        ("other/seg0.ts", "another clip\n"),
    ] {
        let response = stack.media("GET", &format!("/media/hls/~mg~{token}/{segment}"));
        assert_eq!(seen(&response), served(body), "{segment}");
    }
    let asked = stack.app.asked.lock().unwrap()[asked_before..].to_vec();
    assert_eq!(asked, ["/media/hls/clip/index.m3u8"]);
    // An exact-path refresh (no folder granted) puts the token in the file's folder.
    let hops = stack.browse(
        &format!("http://{MEDIA_HOST}/media/a%20b/100%25.txt"),
        Some("session=alice"),
    );
    let (_, back) = split_url(hops[1].header("location").unwrap());
    let token = path_token(&back).to_owned();
    assert_eq!(back, format!("/media/a%20b/~mg~{token}/100%25.txt"));
    assert_eq!(seen(&hops[2]), served("odd name\n"));
}

#[test]
fn logs_never_hold_a_path_token() {
    let mut stack = stack_with_files("grantlogs", Options::default());
    let link = stack.sign_path("/media/hls/clip/", true);
    let token = path_token(&link).to_owned();
    assert_eq!(
        seen(&stack.media("GET", &format!("{link}seg0.ts"))),
        served("segment zero\n")
    );
    // Spelled with escapes, twice (refused), and in accel mode.
    let _ = stack.media(
        "GET",
        &format!("/media/hls/clip/%7emg%7e{token}/x/~%6Dg~{token}/seg0.ts"),
    );
    // After an encoded slash, which mediagate refuses (nginx decodes it): still never logged.
    let encoded_slash = stack.media("GET", &format!("/media%2F~mg~{token}/hls/clip/seg0.ts"));
    assert_eq!(seen(&encoded_slash), nginx_denied("bad_path"));
    let accel = stack.sign_path("/files/hls/clip/seg0.ts", false);
    let accel_token = path_token(&accel).to_owned();
    assert_eq!(seen(&stack.media("GET", &accel)), served("segment zero\n"));
    let audit = stack
        .mediagate
        .log_containing("/files/hls/clip/~mg~-/seg0.ts");
    let _ = stack.nginx.terminate(std::time::Duration::from_secs(10));
    let access = std::fs::read_to_string(stack.dir.path().join("access.log")).unwrap();
    assert!(
        access.contains("\"GET /media/hls/clip/~mg~-/seg0.ts\" 200"),
        "{access}"
    );
    assert!(
        access.contains("\"GET /media/hls/clip/~mg~-/x/...\" 403"),
        "{access}"
    );
    assert!(
        access.contains("\"GET /media%2F~mg~-/hls/clip/seg0.ts\" 403"),
        "{access}"
    );
    assert!(audit.contains("/media/hls/clip/~mg~-/seg0.ts"), "{audit}");
    assert!(audit.contains("/media%2F~mg~-/hls/clip/seg0.ts"), "{audit}");
    for (name, text) in [
        ("nginx access log", access),
        ("nginx error log", stack.nginx.log_text()),
        ("mediagate log", audit),
    ] {
        for token in [&token, &accel_token] {
            assert!(
                !text.contains(token.as_str()),
                "a working token in the {name}:\n{text}"
            );
        }
    }
}
