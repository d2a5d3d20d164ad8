//! Front proxies other than nginx (issue 12): Caddy for real, rendered from
//! `deploy/caddy/Caddyfile`, and Traefik's exact ForwardAuth request shape, built from
//! `deploy/traefik/dynamic.yml`, sent to `/forward` in-process.

use mediagate::mint::MintRequest;

use crate::support::{deny_body, split_url, CaddyStack, Response, MEDIA_HOST, WWW_HOST};

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
