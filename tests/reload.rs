//! Reload without a restart (issue 12): SIGHUP re-reads the configuration and keys while
//! nginx keeps sending requests, through real nginx and `wrk`.

use std::time::{Duration, Instant};

use mediagate::config::Config;
use mediagate::mint::{mint, MintRequest};

use crate::support::*;

const PDF: &[u8] = b"%PDF-1.4 reloaded\n";
const PDF_PATH: &str = "/media/report.pdf";

/// A stack whose media server also listens on a loopback TCP port (wrk speaks TCP only);
/// mediagate stays on its Unix sockets.
fn stack_with_tcp_media(name: &str) -> (Stack, u16) {
    let port = free_port();
    let stack = Stack::start_with(
        name,
        Options {
            nginx_edits: vec![(
                "server_name media.localhost;".into(),
                format!("server_name media.localhost;\n        listen 127.0.0.1:{port};"),
            )],
            ..Options::default()
        },
    );
    stack.dir.write(&format!("files{PDF_PATH}"), PDF);
    (stack, port)
}

/// A signed path-and-query for [`PDF_PATH`] under `config`.
fn signed(config: &Config) -> String {
    let request = MintRequest {
        path: PDF_PATH.into(),
        ..MintRequest::default()
    };
    mint(config, &request, mediagate::clock::now())
        .unwrap()
        .path_and_query
}

/// `text` with `k3` (read from a file, as systemd credentials and Kubernetes secrets are)
/// added to `[keys.secrets]` and made the signing key.
fn with_k3_signing(stack: &Stack, text: &str) -> String {
    let k3_file = stack.dir.write("keys/k3", random_secret());
    let signing = "signing = \"k2\"\n";
    assert!(text.contains(signing), "{text}");
    text.replace(signing, "signing = \"k3\"\n").replace(
        "[keys.secrets]\n",
        &format!(
            "[keys.secrets]\nk3 = {{ file = \"{}\" }}\n",
            k3_file.display()
        ),
    )
}

fn load(stack: &Stack) -> Config {
    mediagate::config::load(Some(&stack.config_path())).unwrap()
}

/// How a refreshable denial looks through nginx: 302 to the session domain's refresh
/// location, the reason, nginx's page.
fn refresh_seen(response: &Response) -> (u16, Option<String>, Option<String>, String) {
    let (status, reason, body) = seen(response);
    let location = response
        .header("location")
        .map(|location| location.split("?state=").next().unwrap().to_owned());
    (status, reason, location, body)
}

fn refreshes_with(reason: &str) -> (u16, Option<String>, Option<String>, String) {
    (
        302,
        Some(reason.into()),
        Some(format!("http://{WWW_HOST}/_mediagate/refresh{PDF_PATH}")),
        nginx_page("302 Found"),
    )
}

#[test]
fn signing_key_rotates_under_load_without_a_failed_request() {
    let (mut stack, port) = stack_with_tcp_media("reload-rotate");
    let k2_link = stack.sign(PDF_PATH);
    assert!(k2_link.contains("token="), "{k2_link}");
    let rotated = with_k3_signing(
        &stack,
        &std::fs::read_to_string(stack.config_path()).unwrap(),
    );
    let k3_config = {
        // Minted before the reload: the running mediagate does not know k3 yet.
        let staged = stack.dir.write("rotated.toml", &rotated);
        mediagate::config::load(Some(&staged)).unwrap()
    };
    assert_eq!(k3_config.keys.signing_key().id(), "k3");
    let k3_link = signed(&k3_config);
    assert_eq!(
        refresh_seen(&stack.media("GET", &k3_link)),
        refreshes_with("unknown_key"),
        "k3 must be unknown before the reload, or this test proves nothing"
    );

    // Load through nginx with the k2 link, and the rotation in the middle of it.
    let mut wrk = Wrk::start(&stack.dir, port, MEDIA_HOST, &k2_link, PDF, 4, 4);
    let access_log = stack.dir.path().join("access.log");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&access_log)
        .unwrap_or_default()
        .lines()
        .count()
        < 100
    {
        assert!(
            Instant::now() < deadline,
            "wrk's requests never reached nginx"
        );
        assert!(wrk.running(), "wrk ended before its load reached nginx");
        std::thread::sleep(Duration::from_millis(20));
    }
    stack.write_config(&rotated);
    let log = stack.reload("configuration reloaded");
    assert!(
        wrk.running(),
        "wrk ended before the reload: the rotation did not happen under load"
    );
    assert!(
        log.contains("configuration reloaded keys=k3,k1,k2 signing=k3"),
        "{log}"
    );
    // A token minted with the new configuration is accepted at once, while the load goes on.
    assert_eq!(seen(&stack.media("GET", &k3_link)), served_pdf());
    let counts = wrk.finish();
    assert_eq!(counts.unexpected, 0, "{counts:?}");
    assert_eq!(counts.socket_errors, [0; 4], "{counts:?}");
    assert_eq!(counts.expected, counts.requests, "{counts:?}");
    assert!(counts.requests >= 100, "{counts:?}");

    // The old key still verifies while it is configured.
    assert_eq!(seen(&stack.media("GET", &k2_link)), served_pdf());
    // mediagate signs with k3 now: its own /mint says so.
    assert_eq!(minted_kid(&stack), "k3");

    // Retire k2 (and change a restart-only setting, which keeps its value with a warning).
    let retired = rotated
        .lines()
        .filter(|line| !line.starts_with("k2 = "))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("[server]\n", "[server]\nmax_connections = 99\n");
    stack.write_config(&retired);
    let log = stack.reload("configuration reloaded");
    assert!(
        log.contains("configuration reloaded keys=k3,k1 signing=k3"),
        "{log}"
    );
    assert!(
        log.contains(
            "configuration reload: this setting changes only with a restart; keeping the running \
             value setting=\"server.max_connections\""
        ),
        "{log}"
    );
    assert_eq!(
        refresh_seen(&stack.media("GET", &k2_link)),
        refreshes_with("unknown_key")
    );
    assert_eq!(seen(&stack.media("GET", &k3_link)), served_pdf());
    assert_eq!(load(&stack).keys.ids(), ["k3", "k1"]);
    // Never key material in the log.
    let k3 = std::fs::read_to_string(stack.dir.path().join("keys/k3")).unwrap();
    let inline = rotated.lines().filter_map(|line| {
        line.strip_prefix("k1 = \"")
            .or(line.strip_prefix("k2 = \""))
    });
    for secret in inline
        .map(|rest| rest.trim_end_matches('"'))
        .chain([k3.as_str()])
    {
        assert!(secret.len() >= 40, "{secret:?}");
        assert!(!log.contains(secret), "a key is in the log");
    }
}

#[test]
fn broken_configuration_is_refused_and_the_running_one_stays() {
    let (mut stack, _) = stack_with_tcp_media("reload-broken");
    let running = std::fs::read_to_string(stack.config_path()).unwrap();
    let k2_link = stack.sign(PDF_PATH);
    let k3_signing = with_k3_signing(&stack, &running);
    let k3_link = {
        let staged = stack.dir.write("k3-signing.toml", &k3_signing);
        signed(&mediagate::config::load(Some(&staged)).unwrap())
    };
    // k3 signing, plus two mistakes: a misspelt key and a value that makes no sense.
    let broken =
        format!("{k3_signing}\n[accel]\nmax_expirs = \"1d\"\n[refresh]\nmax_attempts = 0\n");
    stack.write_config(&broken);
    let problems = match mediagate::config::load(Some(&stack.config_path())) {
        Err(error) => error.0,
        Ok(_) => panic!("the broken configuration loads"),
    };
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].contains("accel.max_expirs"), "{problems:?}");
    assert!(problems[1].contains("refresh.max_attempts"), "{problems:?}");

    stack.reload("configuration not reloaded");
    // One line per problem, in check-config's words.
    for problem in &problems {
        let line = format!(
            "configuration not reloaded: the running configuration stays in force problem={problem}"
        );
        let log = stack.mediagate.wait_for_log_count(&line, 1);
        assert_eq!(log.matches(&line).count(), 1, "{log}");
    }
    assert!(
        !stack
            .mediagate
            .log_text()
            .contains("configuration reloaded"),
        "{}",
        stack.mediagate.log_text()
    );
    // Still the old configuration: k2 signs and verifies, k3 is unknown.
    assert_eq!(seen(&stack.media("GET", &k2_link)), served_pdf());
    assert_eq!(
        refresh_seen(&stack.media("GET", &k3_link)),
        refreshes_with("unknown_key")
    );
    assert_eq!(minted_kid(&stack), "k2");

    assert_eq!(reload_counts(&stack), (0, 1));

    // Fixed: the next reload takes it.
    stack.write_config(&k3_signing);
    stack.reload("configuration reloaded");
    assert_eq!(seen(&stack.media("GET", &k3_link)), served_pdf());
    assert_eq!(minted_kid(&stack), "k3");
    assert_eq!(reload_counts(&stack), (1, 1));
}

/// `mediagate_config_reloads_total` for success and failure, scraped from `/metrics`.
fn reload_counts(stack: &Stack) -> (u64, u64) {
    let scrape = stack.metrics();
    let count = |result: &str| {
        let prefix = format!("mediagate_config_reloads_total{{result=\"{result}\"}} ");
        scrape
            .lines()
            .find_map(|line| line.strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| panic!("no {prefix} in:\n{scrape}"))
            .parse()
            .unwrap()
    };
    (count("success"), count("failure"))
}

fn served_pdf() -> Seen {
    served(std::str::from_utf8(PDF).unwrap())
}

/// The key id of a token mediagate's own `POST /mint` signs now.
fn minted_kid(stack: &Stack) -> String {
    let body = format!("{{\"path\":\"{PDF_PATH}\"}}");
    let raw = format!(
        "POST /mint HTTP/1.1\r\nHost: mediagate\r\nConnection: close\r\n\
         Authorization: Bearer {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        stack.internal_secret,
        body.len()
    );
    let response = request_raw(&stack.socket("internal.sock"), raw.as_bytes(), false);
    assert_eq!(response.status, 200, "{}", response.text());
    let json: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    let token = json["token"].as_str().unwrap();
    let mut buf = mediagate::token::TokenBuf::new();
    mediagate::token::decode(token, &mut buf)
        .unwrap()
        .kid
        .to_owned()
}
