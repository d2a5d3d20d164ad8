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

/// Issue 8, item 11: `sign --help` named a `--bind-host` flag that never existed. Every
/// `--flag` in every command's help must be a flag that command accepts.
#[test]
fn help_mentions_only_real_flags() {
    let home = TempDir::new("cli-help");
    let mut cli = <mediagate::cli::Cli as clap::CommandFactory>::command();
    cli.build();
    let mut commands = vec![(None, cli.clone())];
    commands.extend(
        cli.get_subcommands()
            // clap's own `help` subcommand takes command names, not --help.
            .filter(|sub| sub.get_name() != "help")
            .map(|sub| (Some(sub.get_name().to_owned()), sub.clone())),
    );
    let longs = |command: &clap::Command| -> Vec<String> {
        command
            .get_arguments()
            .filter_map(|arg| arg.get_long().map(|long| format!("--{long}")))
            .collect()
    };
    for (name, command) in commands {
        let mut real = longs(&command);
        if name.is_none() {
            // The top-level help carries each subcommand's summary, which may name its flags.
            real.extend(command.get_subcommands().flat_map(longs));
        }
        let output = mediagate(&home)
            .args(name.as_deref())
            .arg("--help")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{name:?} --help: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let help = stdout(&output);
        let mentioned = help.match_indices("--").filter_map(|(at, _)| {
            let before = help[..at].chars().next_back();
            let flag: String = help[at + 2..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            let standalone = !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-');
            (standalone && !flag.is_empty()).then(|| format!("--{flag}"))
        });
        for flag in mentioned {
            assert!(
                real.contains(&flag),
                "`mediagate {} --help` mentions {flag}, which is not one of its flags {real:?}:\n{help}",
                name.as_deref().unwrap_or("")
            );
        }
    }
}
