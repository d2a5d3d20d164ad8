//! The `mediagate` binary's commands, run as a user would run them.

use std::process::{Command, Output};

use crate::support::{request, TempDir};

/// The binary with a private HOME (so the development key is this test's own) and no
/// MEDIAGATE_* variables from the environment.
fn mediagate(home: &TempDir) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mediagate"));
    for (name, _) in std::env::vars() {
        if name.starts_with("MEDIAGATE_") || name == "XDG_STATE_HOME" {
            command.env_remove(name);
        }
    }
    command.env("HOME", home.path());
    command
}

/// `mediagate --config FILE check-config`.
fn check_config(home: &TempDir, file: &std::path::Path) -> Output {
    mediagate(home)
        .arg("--config")
        .arg(file)
        .arg("check-config")
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn invalid_configuration_exits_64_naming_every_bad_setting() {
    let home = TempDir::new("cli-badconfig");
    let file = home.write(
        "bad.toml",
        "[token]\ndefault_ttl = \"0s\"\n[server]\nlisten = \"nowhere\"\n[log]\nformat = \"xml\"\n",
    );
    let output = check_config(&home, &file);
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    for setting in ["token.default_ttl", "server.listen", "log.format"] {
        assert!(
            stderr.contains(setting),
            "{setting} not named in:\n{stderr}"
        );
    }
    let typo = home.write("typo.toml", "[token]\nparm = \"t\"\n");
    let output = check_config(&home, &typo);
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr).contains("parm"));
}

#[test]
fn production_setting_refuses_the_development_key() {
    let home = TempDir::new("cli-nodev");
    let output = mediagate(&home)
        .env("MEDIAGATE_KEYS__DEV_KEY", "false")
        .arg("check-config")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr).contains("keys.dev_key = false"));
}

#[test]
fn check_config_redacts_secrets() {
    let home = TempDir::new("cli-redact");
    let key = "q7lK1b0o3Yb3QhM2-5iN8rQm3m2tq6sO0GQm2v7lJ5w";
    let file = home.write(
        "prod.toml",
        format!("[keys]\ndev_key = false\n[keys.secrets]\nk1 = \"{key}\"\n[internal]\nsecret = \"{key}\"\n"),
    );
    let output = check_config(&home, &file);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = stdout(&output);
    assert!(!text.contains(key), "secret printed:\n{text}");
    assert!(text.contains("k1 = \"***\""), "{text}");
}

#[test]
fn default_serve_accepts_what_default_sign_prints() {
    let home = TempDir::new("cli-defaults");
    let sock = |name: &str| format!("unix:{}/{name}", home.path().display());
    let server = mediagate(&home)
        .env("MEDIAGATE_SERVER__LISTEN", sock("verify.sock"))
        .env("MEDIAGATE_SERVER__INTERNAL_LISTEN", sock("internal.sock"))
        .arg("serve")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let verify = home.path().join("verify.sock");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(&verify).is_err() {
        assert!(std::time::Instant::now() < deadline, "serve did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let signed = mediagate(&home)
        .args(["sign", "/media/report.pdf", "--ttl", "10m"])
        .output()
        .unwrap();
    assert!(signed.status.success());
    let url = stdout(&signed).trim().to_owned();
    assert!(
        url.starts_with("http://media.localhost:8080/media/report.pdf?token="),
        "{url}"
    );
    let uri = &url["http://media.localhost:8080".len()..];
    let headers = [
        ("X-Original-URI", uri),
        ("X-Original-Method", "GET"),
        ("X-Mediagate-Server-Name", "media.localhost"),
        ("X-Real-IP", "127.0.0.1"),
    ];
    let response = request(&verify, "GET", "mediagate", "/auth", &headers);
    assert_eq!(response.status, 204, "{response:?}");
    // SIGTERM, as a supervisor stops it: mediagate drains, flushes its log and exits 0.
    // SAFETY: kill(2) on our own child's pid has no memory-safety implications.
    unsafe {
        libc::kill(server.id() as i32, libc::SIGTERM);
    }
    let output = server.wait_with_output().unwrap();
    assert!(output.status.success(), "{:?}", output.status);
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.contains("DEVELOPMENT KEY IN USE"), "{log}");
    // The key file is private.
    let key = home.path().join(".local/state/mediagate/dev.key");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn inspect_explains_fields_and_why_a_request_fails() {
    let home = TempDir::new("cli-inspect");
    let signed = mediagate(&home)
        .args([
            "sign",
            "/media/a.pdf",
            "--ttl",
            "1h",
            "--subject",
            "alice",
            "--method",
            "GET",
            "--ip",
            "203.0.113.0/24",
        ])
        .output()
        .unwrap();
    let url = stdout(&signed).trim().to_owned();
    let output = mediagate(&home)
        .args(["inspect", &url, "--ip", "203.0.113.5"])
        .output()
        .unwrap();
    let text = stdout(&output);
    for expected in [
        "purpose     download",
        "key id      dev (known)",
        "subject     alice",
        "ip          203.0.113.0/24",
        "methods     GET",
        "signed      mediagate\\x00",
        "verdict     valid now",
    ] {
        assert!(text.contains(expected), "{expected:?} missing in:\n{text}");
    }
    let moved = url.replace("/media/a.pdf", "/media/b.pdf");
    let text = stdout(&mediagate(&home).args(["inspect", &moved]).output().unwrap());
    assert!(text.contains("denied: bad_signature"), "{text}");
    let text = stdout(
        &mediagate(&home)
            .args(["inspect", &url, "--ip", "198.51.100.1"])
            .output()
            .unwrap(),
    );
    assert!(text.contains("denied: ip"), "{text}");
    // Without any key the fields are still readable.
    let token = url.split_once("token=").unwrap().1;
    let text = stdout(
        &mediagate(&home)
            .env("MEDIAGATE_KEYS__DEV_KEY", "false")
            .args(["inspect", token])
            .output()
            .unwrap(),
    );
    assert!(
        text.contains("subject     alice") && text.contains("verdict     unknown"),
        "{text}"
    );
}

#[test]
fn keygen_prints_a_usable_key() {
    let home = TempDir::new("cli-keygen");
    let output = mediagate(&home)
        .args(["keygen", "--id", "2026-11"])
        .output()
        .unwrap();
    let text = stdout(&output);
    let secret = text.lines().next().unwrap();
    let bytes = mediagate::keys::Secret::from_base64(secret).unwrap();
    assert_eq!(bytes.expose().len(), 32);
    let file = home.write("prod.toml", &text[secret.len()..]);
    let check = check_config(&home, &file);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(stdout(&check).contains("key ring (signing key first): 2026-11"));
}

#[test]
fn closed_stdout_is_not_a_crash() {
    // `mediagate keygen | head -n 1`: the reader goes away before the output is written.
    let home = TempDir::new("cli-pipe");
    let mut child = mediagate(&home)
        .arg("keygen")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn sign_refuses_scopes_that_could_never_match() {
    let home = TempDir::new("cli-deadscopes");
    let sign = |args: [&str; 2]| {
        mediagate(&home)
            .args(["sign", "/media/a.pdf"])
            .args(args)
            .output()
            .unwrap()
    };
    for args in [
        ["--host", "media.example.org:8080"],
        ["--ip", "::ffff:198.51.100.0/120"],
    ] {
        let output = sign(args);
        assert!(
            !output.status.success(),
            "{args:?} was accepted: {}",
            stdout(&output)
        );
    }
    for args in [["--host", "media.example.org"], ["--host", "[2001:db8::1]"]] {
        let output = sign(args);
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// A configuration file with two sites sharing one key, and the first one's public prefix.
fn two_sites(home: &TempDir) -> std::path::PathBuf {
    home.write(
        "two-sites.toml",
        "[keys]\ndev_key = false\n[keys.secrets]\nk1 = \"QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI\"\n\
         [[sites]]\nid = \"a\"\nmedia_origin = \"https://media-a.example.org\"\n\
         public_prefixes = [\"/media/public/\"]\n\
         [[sites]]\nid = \"b\"\nmedia_origin = \"https://media-b.example.org:8443\"\n",
    )
}

/// Issue 8, item 12: `sign` repaired what the spec's vectors refuse (`/media/a` as a prefix
/// became `/media/a/`, `Media.Example.com` and `get` were lower/upper-cased, `?x=1` was signed
/// into the path). Before: each printed a URL and exited 0.
#[test]
fn sign_refuses_what_it_used_to_normalise() {
    let home = TempDir::new("cli-sign-refuses");
    let cases: &[(&[&str], &str)] = &[
        (&["/media/a", "--prefix"], "must end with '/'"),
        (&["/media/a.pdf?x=1"], "contains '?'"),
        (
            &["/media/a.pdf", "--host", "Media.Example.com"],
            "lower case",
        ),
        (
            &["/media/a.pdf", "--method", "get"],
            "unknown HTTP method \"get\"",
        ),
        (
            &["/media/a.pdf", "--method", "GET,HEAD"],
            "unknown HTTP method",
        ),
        (
            &["/media/a.pdf", "--method", "GET", "--method", "GET"],
            "named twice",
        ),
        (
            &["/media/a.pdf", "--ip", "::ffff:0.0.0.0/108"],
            "IPv4-mapped",
        ),
        (
            &["/media/a.pdf", "--ip", "fe80::1%eth0"],
            "not an IP address",
        ),
        (
            &["/media/a.pdf", "--host", "media.example.org."],
            "trailing dot",
        ),
        (&["/media/a.pdf", "--site", "nope"], "unknown site"),
    ];
    for (args, message) in cases {
        let output = mediagate(&home).arg("sign").args(*args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{args:?} printed {}",
            stdout(&output)
        );
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(stdout(&output).is_empty(), "{args:?}");
    }
    let folder = mediagate(&home)
        .args(["sign", "/media/a/", "--prefix"])
        .output()
        .unwrap();
    assert!(folder.status.success());
}

/// With several sites sharing a key, an unbound token would open the same path on every site:
/// `sign` binds the chosen site's media host unless `--host` says otherwise.
#[test]
fn sign_with_several_sites_binds_the_chosen_sites_host() {
    let home = TempDir::new("cli-two-sites");
    let config = two_sites(&home);
    let sign = |extra: &[&str]| {
        let output = mediagate(&home)
            .arg("--config")
            .arg(&config)
            .args(["sign", "/media/x.pdf"])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout(&output).trim().to_owned()
    };
    let inspect = |url: &str| {
        let output = mediagate(&home)
            .arg("--config")
            .arg(&config)
            .args(["inspect", url])
            .output()
            .unwrap();
        stdout(&output)
    };
    let first = sign(&[]);
    assert!(first.starts_with("https://media-a.example.org/media/x.pdf?token="));
    assert!(inspect(&first).contains("host        media-a.example.org\n"));
    let second = sign(&["--site", "b"]);
    assert!(second.starts_with("https://media-b.example.org:8443/media/x.pdf?token="));
    assert!(inspect(&second).contains("host        media-b.example.org\n"));
    let explicit = sign(&["--site", "b", "--host", "cdn.example.org"]);
    assert!(inspect(&explicit).contains("host        cdn.example.org\n"));
    // Site b's token presented on site a's host is refused by the host binding.
    let moved = second.replace(
        "https://media-b.example.org:8443",
        "https://media-a.example.org",
    );
    assert!(inspect(&moved).contains("verdict     denied: wrong_host"));
}

/// Issue 8, item 11: `inspect` exited 0 whatever its verdict. Now 0 allowed, 1 denied, 64 no
/// verdict. Before: every line below exited 0.
#[test]
fn inspect_exit_status_follows_the_verdict() {
    let home = TempDir::new("cli-inspect-exit");
    let signed = mediagate(&home)
        .args(["sign", "/media/a.pdf"])
        .output()
        .unwrap();
    let url = stdout(&signed).trim().to_owned();
    let token = url.split_once("token=").unwrap().1.to_owned();
    let moved = url.replace("/media/a.pdf", "/media/b.pdf");
    let cases: &[(&[&str], i32, &str)] = &[
        (&[&url], 0, "verdict     valid now"),
        (&[&moved], 1, "verdict     denied: bad_signature"),
        (&[&url, "--method", "POST"], 1, "verdict     denied: method"),
        (
            &[&token, "--path", "/media/a.pdf"],
            0,
            "verdict     valid now",
        ),
        (&[&token], 64, "verdict     unknown"),
    ];
    for (args, code, line) in cases {
        let output = mediagate(&home)
            .arg("inspect")
            .args(*args)
            .output()
            .unwrap();
        assert_eq!(
            output.status.code(),
            Some(*code),
            "{args:?}: {}",
            stdout(&output)
        );
        assert!(
            stdout(&output).contains(line),
            "{args:?}: {}",
            stdout(&output)
        );
    }
    let no_key = mediagate(&home)
        .env("MEDIAGATE_KEYS__DEV_KEY", "false")
        .args(["inspect", &url])
        .output()
        .unwrap();
    assert_eq!(no_key.status.code(), Some(64), "{}", stdout(&no_key));
}

/// Issue 8, items 11 and 12: `inspect` judged differently from `/auth` (key before purpose,
/// token before path, trimmed input, download tokens only). The verdict `inspect` prints must
/// be the reason `gate::decide` gives for the same request, for every row.
#[test]
fn inspect_gives_the_reason_auth_gives() {
    use mediagate::gate::{self, MediaRequest, Outcome};
    use mediagate::token::{self, Claims, Purpose, Scope, TokenBuf};

    let home = TempDir::new("cli-inspect-auth");
    let file = two_sites(&home);
    let config = mediagate::config::load(Some(&file)).unwrap();
    let now = mediagate::clock::now();
    let key = config.keys.signing_key();
    let sign = |claims: Claims| token::sign(&claims, key).unwrap();
    let exact = |path: &str| Scope::Exact(path.to_owned());
    let download = |expires| Claims {
        host: Some("media-a.example.org".into()),
        ..Claims::download(exact("/media/a.pdf"), expires)
    };
    let valid = sign(download(now + 3600));
    let expired = sign(download(now - 10));
    let state = sign(Claims {
        purpose: Purpose::RefreshState,
        ..download(now + 3600)
    });
    let upload = sign(Claims {
        purpose: Purpose::Upload,
        ..download(now + 3600)
    });
    let other_key = {
        let secret = mediagate::keys::Secret::new(vec![7; 32]);
        let key = mediagate::keys::Key::new("k9", &secret).unwrap();
        // Unknown key *and* wrong purpose: /auth reports the purpose first.
        token::sign(
            &Claims {
                purpose: Purpose::RefreshState,
                ..download(now + 3600)
            },
            &key,
        )
        .unwrap()
    };
    let ip_bound = sign(Claims {
        ip: Some("203.0.113.0/24".parse().unwrap()),
        ..download(now + 3600)
    });
    // Two sites share the key: an unbound token is refused (wrong_host) on either.
    let unbound = sign(Claims::download(exact("/media/a.pdf"), now + 3600));
    let host = "media-a.example.org";
    // (uri, method, server name, client ip)
    let rows: Vec<(String, &str, &str, Option<&str>)> = vec![
        (format!("/media/a.pdf?token={valid}"), "GET", host, None),
        (format!("/media/a.pdf?token={unbound}"), "GET", host, None),
        (format!("/media/a.pdf?token={expired}"), "GET", host, None),
        (format!("/media/b.pdf?token={valid}"), "GET", host, None),
        (format!("/media/a.pdf?token={valid}"), "get", host, None),
        (
            format!("/media/a.pdf?token={valid}"),
            "GET",
            "media-b.example.org",
            None,
        ),
        (
            format!("/media/a.pdf?token={valid}"),
            "GET",
            "elsewhere.example",
            None,
        ),
        (format!("/media/a.pdf?token={state}"), "GET", host, None),
        (format!("/media/a.pdf?token={upload}"), "GET", host, None),
        (format!("/media/a.pdf?token={other_key}"), "GET", host, None),
        ("/media/../a.pdf?token=!!".to_owned(), "GET", host, None),
        (format!("/media/a.pdf?token=%20{valid}"), "GET", host, None),
        (
            format!("/media/a.pdf?token={valid}&token={valid}"),
            "GET",
            host,
            None,
        ),
        (
            format!("/media/a.pdf?token=&token={valid}"),
            "GET",
            host,
            None,
        ),
        (format!("/media/a.pdf?TOKEN={valid}"), "GET", host, None),
        ("/media/a.pdf?other=1".to_owned(), "GET", host, None),
        ("/media/public/x.pdf".to_owned(), "GET", host, None),
        (
            format!("/media/a.pdf?token={ip_bound}"),
            "GET",
            host,
            Some("203.0.113.9"),
        ),
        (
            format!("/media/a.pdf?token={ip_bound}"),
            "GET",
            host,
            Some("198.51.100.1"),
        ),
        (format!("/media/a.pdf?token={ip_bound}"), "GET", host, None),
    ];
    for (uri, method, host, ip) in &rows {
        let mut buf = TokenBuf::new();
        let request = MediaRequest {
            uri,
            method,
            server_name: host,
            client_ip: ip.map(|ip| ip.parse().unwrap()),
        };
        let expected = match gate::decide(&config, &request, &mut buf, now) {
            Outcome::Allow { .. } => "allowed".to_owned(),
            outcome => format!("denied: {}", outcome.reason().unwrap()),
        };
        let mut command = mediagate(&home);
        command.arg("--config").arg(&file).arg("inspect");
        command.arg(format!("https://{host}{uri}"));
        command.args(["--method", method]);
        if let Some(ip) = ip {
            command.args(["--ip", ip]);
        }
        let output = command.output().unwrap();
        let text = stdout(&output);
        let verdict = text
            .lines()
            .find_map(|line| line.strip_prefix("verdict     "))
            .unwrap_or("(no verdict)");
        let got = if verdict.starts_with("valid now") || verdict.starts_with("allowed") {
            "allowed".to_owned()
        } else {
            verdict.split(" (").next().unwrap().to_owned()
        };
        assert_eq!(
            got, expected,
            "{method} {uri} host={host} ip={ip:?}:\n{text}"
        );
        let code = if expected == "allowed" { 0 } else { 1 };
        assert_eq!(output.status.code(), Some(code), "{uri}:\n{text}");
    }
}
