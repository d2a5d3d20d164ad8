//! The `mediagate` binary's commands, run as a user would run them.

use std::process::{Command, Output};

use crate::support::{request, request_raw, Process, TempDir};

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

/// Issue 9: `sign --upload` mints a single-use upload slot (token format v2), says the token
/// id it generated on stderr (stdout stays one URL), and `inspect` shows the v2 fields.
#[test]
fn sign_upload_prints_the_generated_token_id_and_inspect_shows_v2_fields() {
    let home = TempDir::new("cli-upload");
    let signed = mediagate(&home)
        .args([
            "sign",
            "/uploads/a.bin",
            "--upload",
            "--max-size",
            "10M",
            "--content-type",
            "image/png,image/jpeg",
            "--content-type",
            "application/pdf",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&signed.stderr);
    assert!(signed.status.success(), "{stderr}");
    let url = stdout(&signed).trim().to_owned();
    assert_eq!(url.lines().count(), 1, "{url}");
    let token_id = stderr
        .split_once("mediagate: token id ")
        .and_then(|(_, rest)| rest.split_once(' '))
        .map(|(id, _)| id.to_owned())
        .unwrap_or_else(|| panic!("no generated token id on stderr: {stderr}"));
    assert_eq!(token_id.len(), 22, "{stderr}");
    let output = mediagate(&home)
        .args(["inspect", &url, "--method", "PUT"])
        .output()
        .unwrap();
    let text = stdout(&output);
    for expected in [
        "version     2".to_owned(),
        "purpose     upload".to_owned(),
        format!("token id    {token_id}"),
        "uses        1 (single use; counted per key id and token id)".to_owned(),
        "max size    10485760 bytes".to_owned(),
        "types       application/pdf, image/jpeg, image/png".to_owned(),
        "issued at   20".to_owned(),
        // /auth (whose verdict inspect gives) serves downloads only.
        "denied: wrong_purpose".to_owned(),
    ] {
        assert!(text.contains(&expected), "{expected:?} missing in:\n{text}");
    }

    // Refused with the front end's messages, never repaired.
    for (args, message) in [
        (&["--max-size", "10M"][..], "need an upload token"),
        (&["--uses", "0"], "uses must be at least 1"),
        (&["--upload", "--content-type", "Image/PNG"], "lower case"),
        (
            &["--upload", "--content-type", "text/plain;charset=utf-8"],
            "parameters",
        ),
        (&["--upload", "--max-size", "10MB"], "size \"10MB\""),
    ] {
        let output = mediagate(&home)
            .args(["sign", "/uploads/a.bin"])
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?}: {}", stdout(&output));
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }

    // A given token id is not announced; a plain link stays v1 and announces nothing.
    let given = mediagate(&home)
        .args(["sign", "/media/a.pdf", "--uses", "3", "--id", "t-3"])
        .output()
        .unwrap();
    assert!(given.status.success());
    assert_eq!(String::from_utf8_lossy(&given.stderr), "");
    let plain = mediagate(&home)
        .args(["sign", "/media/a.pdf", "--token-only"])
        .output()
        .unwrap();
    assert!(stdout(&plain).starts_with("AQ"), "{}", stdout(&plain));
    let text = stdout(
        &mediagate(&home)
            .args(["inspect", stdout(&plain).trim(), "--path", "/media/a.pdf"])
            .output()
            .unwrap(),
    );
    assert!(text.contains("version     1\n"), "{text}");
    assert!(!text.contains("issued at"), "{text}");
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

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `mediagate serve` as configured by `command`, once its verify socket accepts connections.
fn serve(mut command: Command, home: &TempDir, name: &str) -> Process {
    let log = home.path().join(format!("{name}.log"));
    let child = command
        .arg("serve")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut process = Process { child, log };
    let verify = home.path().join("verify.sock");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(&verify).is_err() {
        if let Ok(Some(status)) = process.child.try_wait() {
            panic!("serve exited with {status}:\n{}", process.log_text());
        }
        assert!(std::time::Instant::now() < deadline, "serve did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Then the internal socket (for /mint).
    while std::os::unix::net::UnixStream::connect(home.path().join("internal.sock")).is_err() {
        assert!(std::time::Instant::now() < deadline, "serve did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    process
}

/// `/auth` for a signed URL on the media domain of `[[sites]]` in [`secret_sources_toml`].
fn auth_status(home: &TempDir, url: &str) -> (u16, Option<String>) {
    let uri = url
        .strip_prefix("https://media.example.org")
        .unwrap_or_else(|| panic!("unexpected URL {url}"));
    let headers = [
        ("X-Original-URI", uri),
        ("X-Original-Method", "GET"),
        ("X-Mediagate-Server-Name", "media.example.org"),
        ("X-Real-IP", "127.0.0.1"),
    ];
    let response = request(
        &home.path().join("verify.sock"),
        "GET",
        "mediagate",
        "/auth",
        &headers,
    );
    let reason = response.header("x-mediagate-reason").map(str::to_owned);
    (response.status, reason)
}

/// `POST /mint` on the internal socket with this bearer secret: status and body.
fn mint_status(home: &TempDir, bearer: &str) -> (u16, String) {
    let body = r#"{"path": "/media/a.pdf", "ttl": "10m"}"#;
    let raw = format!(
        "POST /mint HTTP/1.1\r\nHost: mediagate\r\nConnection: close\r\n\
         Authorization: Bearer {bearer}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let response = request_raw(&home.path().join("internal.sock"), raw.as_bytes(), false);
    (
        response.status,
        String::from_utf8_lossy(&response.body).into_owned(),
    )
}

const KEY_A: &str = "a2V5LWEta2V5LWEta2V5LWEta2V5LWEta2V5LWEta2U";
const KEY_B: &str = "a2V5LWIta2V5LWIta2V5LWIta2V5LWIta2V5LWIta2U";
const INTERNAL_FILE: &str = "aW50ZXJuYWwtZnJvbS1hLWZpbGUtaW50ZXJuYWw";
const INTERNAL_ENV: &str = "aW50ZXJuYWwtZnJvbS1lbnYtdmFyLWludGVybmFs";

/// Keys and the internal secret as every deploy file gives them: from files and variables.
fn secret_sources_toml(home: &TempDir) -> std::path::PathBuf {
    let key_file = home.write("secrets/key-a", format!("{KEY_A}\n"));
    let internal_file = home.write("secrets/internal", format!("{INTERNAL_FILE}\n"));
    let dir = home.path().display();
    home.write(
        "mediagate.toml",
        format!(
            "[server]\nlisten = \"unix:{dir}/verify.sock\"\n\
             internal_listen = \"unix:{dir}/internal.sock\"\n\
             [keys]\ndev_key = false\nsigning = \"a\"\n\
             [keys.secrets]\na = {{ file = \"{}\" }}\nb = {{ env = \"TEST_MEDIAGATE_KEY_B\" }}\n\
             [internal]\nsecret = {{ file = \"{}\" }}\n\
             [[sites]]\nid = \"example\"\nmedia_origin = \"https://media.example.org\"\n",
            key_file.display(),
            internal_file.display()
        ),
    )
}

/// Issue 8, items 10 and 14: `{ file = … }` and `{ env = … }` secret sources (keys and the
/// internal secret), as every deploy file uses them, through the real binary.
#[test]
fn secrets_from_files_and_variables_sign_verify_and_guard_mint() {
    let home = TempDir::new("cli-secret-sources");
    let config = secret_sources_toml(&home);
    let with_config = || {
        let mut command = mediagate(&home);
        command.arg("--config").arg(&config);
        command
    };

    // Without the variable the key is missing, and the error says which key and where.
    let output = with_config().arg("check-config").output().unwrap();
    assert_eq!(output.status.code(), Some(64));
    assert_eq!(
        stderr(&output),
        format!(
            "mediagate: invalid configuration:\n  - {}: keys.secrets.b: environment variable \
             TEST_MEDIAGATE_KEY_B is not set\n",
            config.display()
        )
    );

    let output = with_config()
        .env("TEST_MEDIAGATE_KEY_B", KEY_B)
        .arg("check-config")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.contains("key ring (signing key first): a, b"),
        "{text}"
    );
    for secret in [KEY_A, KEY_B, INTERNAL_FILE] {
        assert!(!text.contains(secret), "secret printed:\n{text}");
    }
    assert!(!text.contains("internal.secret is not set"), "{text}");

    let sign = |signing: &str| {
        let output = with_config()
            .env("TEST_MEDIAGATE_KEY_B", KEY_B)
            .env("MEDIAGATE_KEYS__SIGNING", signing)
            .args(["sign", "/media/a.pdf", "--ttl", "10m"])
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
        stdout(&output).trim().to_owned()
    };
    let signed_a = sign("a");
    let signed_b = sign("b");
    assert_ne!(signed_a, signed_b);

    // serve reads the same sources: tokens under either key verify, and /mint takes the
    // internal secret from its file.
    let server = {
        let mut command = with_config();
        command.env("TEST_MEDIAGATE_KEY_B", KEY_B);
        serve(command, &home, "serve-file")
    };
    assert_eq!(auth_status(&home, &signed_a), (204, None));
    assert_eq!(auth_status(&home, &signed_b), (204, None));
    let tampered = signed_a.replace("/media/a.pdf", "/media/b.pdf");
    assert_eq!(
        auth_status(&home, &tampered),
        (403, Some("bad_signature".into()))
    );
    let (status, body) = mint_status(&home, INTERNAL_FILE);
    assert_eq!(status, 200, "{body}");
    assert_eq!(mint_status(&home, INTERNAL_ENV).0, 401);
    drop(server);

    // The internal secret from a variable, named by a MEDIAGATE_ variable: a variable that a
    // `{ env = … }` source names is not mistaken for a misspelt setting.
    let with_env_secret = || {
        let mut command = with_config();
        command
            .env("TEST_MEDIAGATE_KEY_B", KEY_B)
            .env(
                "MEDIAGATE_INTERNAL__SECRET",
                r#"{ env = "MEDIAGATE_TEST_INTERNAL_SECRET" }"#,
            )
            .env("MEDIAGATE_TEST_INTERNAL_SECRET", INTERNAL_ENV);
        command
    };
    // The variable's source replaces the file's as a whole (not merged into both).
    let output = with_env_secret().arg("check-config").output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(
        text.contains("[internal.secret]\nenv = \"MEDIAGATE_TEST_INTERNAL_SECRET\"\n\n"),
        "{text}"
    );
    let server = serve(with_env_secret(), &home, "serve-env");
    let (status, body) = mint_status(&home, INTERNAL_ENV);
    assert_eq!(status, 200, "{body}");
    assert_eq!(mint_status(&home, INTERNAL_FILE).0, 401);
    assert_eq!(auth_status(&home, &signed_b), (204, None));
    let log = server.log_text();
    for secret in [KEY_A, KEY_B, INTERNAL_FILE, INTERNAL_ENV] {
        assert!(!log.contains(secret), "secret logged:\n{log}");
    }
}

/// Issue 8, item 10: every unknown key, stray variable and bad value in one run, each with
/// the file or variable it came from; exit 64 before anything is bound or written.
#[test]
fn every_configuration_problem_is_reported_with_its_origin() {
    let home = TempDir::new("cli-allproblems");
    let dir = home.path().display();
    let file = home.write(
        "mediagate.toml",
        format!(
            "[server]\nlisten = \"unix:{dir}/verify.sock\"\nlistn = \"127.0.0.1:1\"\n\
             workers = \"many\"\n[token]\nleeway = \"soon\"\n[refresh]\nmax_atempts = 3\n\
             [[sites]]\nid = \"a\"\nmedia_origin = \"https://media.example.org/path\"\n\
             colour = \"blue\"\n"
        ),
    );
    let file = file.display();
    let expected = format!(
        "mediagate: invalid configuration:\n\
         \x20 - {file}: refresh.max_atempts: unknown key\n\
         \x20 - {file}: server.listn: unknown key\n\
         \x20 - {file}: sites[0].colour: unknown key\n\
         \x20 - MEDIAGATE_SERVER__LISTN: unknown setting server.listn\n\
         \x20 - MEDIAGATE_SERVER_LISTEN: maps to no setting; did you mean \
         MEDIAGATE_SERVER__LISTEN? (section and key are separated by two underscores)\n\
         \x20 - {file}: server.workers: invalid type: found string \"many\", expected usize\n\
         \x20 - {file}: token.leeway: \"soon\" is not a duration like 30s, 10m, 1h or 7d\n\
         \x20 - MEDIAGATE_LOG__FORMAT: log.format: \"xml\" is not \"text\" or \"json\"\n\
         \x20 - {file}: sites[0].media_origin: \"https://media.example.org/path\" must be an \
         origin like https://media.example.org (no path, user or query)\n"
    );
    for command in ["check-config", "serve"] {
        let output = mediagate(&home)
            // The file through MEDIAGATE_CONFIG: the one allow-listed non-setting variable.
            .env("MEDIAGATE_CONFIG", home.path().join("mediagate.toml"))
            .env("MEDIAGATE_SERVER_LISTEN", "unix:/tmp/typo.sock")
            .env("MEDIAGATE_SERVER__LISTN", "unix:/tmp/typo.sock")
            .env("MEDIAGATE_LOG__FORMAT", "xml")
            .arg(command)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(64), "{command}");
        assert_eq!(stderr(&output), expected, "{command}");
        assert!(stdout(&output).is_empty(), "{command}");
    }
    // Nothing was bound, and no development key was left behind by a broken configuration.
    assert!(!home.path().join("verify.sock").exists());
    assert!(!home.path().join(".local").exists());
}

/// Issue 8, item 10: a value in the wrong place, or unparsable TOML, never echoes a secret.
#[test]
fn configuration_errors_never_print_secret_values() {
    let home = TempDir::new("cli-secret-errors");
    for (name, text) in [
        ("map.toml", format!("[keys]\nsecrets = \"{KEY_A}\"\n")),
        (
            "table.toml",
            format!("[internal]\nsecret = [\"{KEY_A}\"]\n"),
        ),
        ("syntax.toml", format!("[keys.secrets]\nk1 = \"{KEY_A}\n")),
    ] {
        let file = home.write(name, text);
        let output = check_config(&home, &file);
        assert_eq!(output.status.code(), Some(64), "{name}");
        let text = stderr(&output);
        assert!(text.contains(&file.display().to_string()), "{name}: {text}");
        assert!(!text.contains(KEY_A), "{name} printed the secret:\n{text}");
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

/// A site's `link_form`, `sign --form` (and `/mint`'s `"form"`, tests/server.rs) read one
/// spelling and name a bad one alike.
#[test]
fn a_bad_link_form_is_named_alike_by_the_configuration_and_sign() {
    let home = TempDir::new("cli-link-form");
    let expected = "\"paths\" is not \"query\" or \"path\"";
    let file = home.write(
        "form.toml",
        "[[sites]]\nid = \"a\"\nmedia_origin = \"http://media.localhost\"\nlink_form = \"paths\"\n",
    );
    let output = check_config(&home, &file);
    assert_eq!(output.status.code(), Some(64));
    assert!(
        stderr(&output).contains(&format!("link_form: {expected}")),
        "{}",
        stderr(&output)
    );
    let output = mediagate(&home)
        .args(["sign", "/media/a.pdf", "--form", "paths"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64), "{}", stderr(&output));
    assert!(stderr(&output).contains(expected), "{}", stderr(&output));
    assert!(stdout(&output).is_empty());
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
    use mediagate::store::revoked::Revoked;
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
            authorization: mediagate::gate::Authorization::Absent,
            cookie: mediagate::gate::CookieHeader::Absent,
            purpose: mediagate::token::Purpose::Download,
        };
        let expected = match gate::decide(&config, &request, &mut buf, now, &Revoked::default()) {
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

/// `mediagate probe`: what a Kubernetes exec probe runs, since the kubelet cannot reach the
/// pod's sockets. It exits 0 only on a 200 from the listener it names.
#[test]
fn probe_exits_zero_only_when_the_listener_answers_200() {
    let home = TempDir::new("probe");
    let d = home.path().display();
    let config = home.write(
        "probe.toml",
        format!(
            "[server]\nlisten = \"unix:{d}/verify.sock\"\ninternal_listen = \"unix:{d}/internal.sock\"\n\
             [keys]\ndev_key = false\n[keys.secrets]\nk1 = \"QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI\"\n"
        ),
    );
    let probe = |args: &[&str]| {
        let output = mediagate(&home)
            .arg("--config")
            .arg(&config)
            .arg("probe")
            .args(args)
            .output()
            .unwrap();
        (output.status.code(), stdout(&output), stderr(&output))
    };

    // Nothing listening yet.
    let (code, _, err) = probe(&[]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains(&format!("cannot connect to unix:{d}/verify.sock")),
        "{err}"
    );

    // A listener that answers 503, then one that never answers.
    for (answer, expected) in [
        (
            Some("HTTP/1.1 503 Service Unavailable\r\n\r\n"),
            "answered 503 Service Unavailable",
        ),
        (None, "no answer from"),
    ] {
        let socket = home.path().join("verify.sock");
        let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0u8; 512];
            let _ = std::io::Read::read(&mut stream, &mut request);
            match answer {
                Some(answer) => std::io::Write::write_all(&mut stream, answer.as_bytes()).unwrap(),
                // Hold the connection until the probe gives up and closes it.
                None => while std::io::Read::read(&mut stream, &mut request).unwrap_or(0) > 0 {},
            }
        });
        let (code, _, err) = probe(&["--timeout", "1"]);
        assert_eq!(code, Some(1), "{err}");
        assert!(err.contains(expected), "{err}");
        server.join().unwrap();
        std::fs::remove_file(&socket).unwrap();
    }

    // mediagate itself.
    let mut command = mediagate(&home);
    command.arg("--config").arg(&config);
    let _server = serve(command, &home, "probe-serve");
    assert_eq!(
        probe(&[]),
        (Some(0), "verify /healthz: ok\n".into(), String::new())
    );
    assert_eq!(
        probe(&["--listener", "internal", "--path", "/readyz"]),
        (Some(0), "internal /readyz: ok\n".into(), String::new())
    );
}

const STATE_SECRET: &str = "c3RhdGUtY29tbWFuZHMtaW50ZXJuYWwtc2VjcmV0";

/// Sockets in `home`, key `a`, the internal secret `secret` when given, and the embedded store
/// at its default place under `home` (the test's private HOME).
fn state_toml(home: &TempDir, file: &str, secret: Option<&str>) -> std::path::PathBuf {
    let dir = home.path().display();
    let internal = secret.map_or(String::new(), |secret| {
        format!("[internal]\nsecret = \"{secret}\"\n")
    });
    home.write(
        file,
        format!(
            "[server]\nlisten = \"unix:{dir}/verify.sock\"\n\
             internal_listen = \"unix:{dir}/internal.sock\"\n\
             [keys]\ndev_key = false\nsigning = \"a\"\n[keys.secrets]\na = \"{KEY_A}\"\n\
             {internal}\
             [[sites]]\nid = \"example\"\nmedia_origin = \"https://media.example.org\"\n"
        ),
    )
}

/// `/auth` for a signed URL as a browser with this user agent sends it through nginx.
fn auth_as(home: &TempDir, url: &str, agent: &str) -> (u16, Option<String>) {
    let uri = url.strip_prefix("https://media.example.org").unwrap();
    let headers = [
        ("X-Original-URI", uri),
        ("X-Original-Method", "GET"),
        ("X-Mediagate-Server-Name", "media.example.org"),
        ("X-Real-IP", "192.0.2.7"),
        ("User-Agent", agent),
    ];
    let response = request(
        &home.path().join("verify.sock"),
        "GET",
        "mediagate",
        "/auth",
        &headers,
    );
    let reason = response.header("x-mediagate-reason").map(str::to_owned);
    (response.status, reason)
}

/// Issue 9: `revoke`, `revocations` and `uses` ask the running server over its internal
/// listener (the embedded store is the server's alone), authenticated with internal.secret.
#[test]
fn state_commands_revoke_list_and_show_history_through_the_running_server() {
    let home = TempDir::new("cli-state");
    let config = state_toml(&home, "state.toml", Some(STATE_SECRET));
    let cli = |args: &[&str]| {
        let output = mediagate(&home)
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .unwrap();
        (output.status.code(), stdout(&output), stderr(&output))
    };
    let sign = |args: &[&str]| {
        let (code, out, err) = cli(&[&["sign", "/media/a.pdf", "--ttl", "1h"], args].concat());
        assert_eq!(code, Some(0), "{err}");
        out.trim().to_owned()
    };
    let mut command = mediagate(&home);
    command.arg("--config").arg(&config);
    let server = serve(command, &home, "state-serve");

    // Nothing revoked yet.
    assert_eq!(
        cli(&["revocations"]),
        (Some(0), "no revocations in force\n".into(), String::new())
    );

    // A single-use link: its first use is allowed, the second is used up, and `uses` shows
    // both once the history (written off the answer's path) has them.
    let once = sign(&["--uses", "1", "--id", "once-1"]);
    assert_eq!(auth_as(&home, &once, "agent/1"), (204, None));
    assert_eq!(
        auth_as(&home, &once, "agent/2"),
        (403, Some("used_up".into()))
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let json = loop {
        let (code, out, err) = cli(&["uses", "once-1", "--json"]);
        assert_eq!(code, Some(0), "{err}");
        let json: serde_json::Value = serde_json::from_str(&out).unwrap();
        if json["uses"].as_array().unwrap().len() == 2 {
            break json;
        }
        assert!(std::time::Instant::now() < deadline, "history: {out}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(json["kid"], "a");
    assert_eq!(json["token_id"], "once-1");
    let uses = json["uses"].as_array().unwrap();
    let fields = |entry: &serde_json::Value| {
        (
            entry["client"].clone(),
            entry["user_agent"].clone(),
            entry["status"].clone(),
            entry["reason"].clone(),
        )
    };
    assert_eq!(
        fields(&uses[0]),
        (
            "192.0.2.7".into(),
            "agent/1".into(),
            200.into(),
            serde_json::Value::Null
        )
    );
    assert_eq!(
        fields(&uses[1]),
        (
            "192.0.2.7".into(),
            "agent/2".into(),
            403.into(),
            "used_up".into()
        )
    );
    let (code, table, err) = cli(&["uses", "once-1", "--kid", "a"]);
    assert_eq!(code, Some(0), "{err}");
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert_eq!(lines[0], "token id once-1 of key a: 2 uses recorded");
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["TIME", "CLIENT", "STATUS", "REASON", "USER", "AGENT"]
    );
    let row = |line: &str| {
        line.split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(row(lines[2]), "192.0.2.7 200 - agent/1");
    assert_eq!(row(lines[3]), "192.0.2.7 403 used_up agent/2");
    for (line, at) in lines[2..].iter().zip(uses) {
        let time = line.split_whitespace().next().unwrap();
        assert_eq!(
            mediagate::clock::parse_rfc3339(time),
            Ok(at["at"].as_u64().unwrap())
        );
    }
    // An unknown token has no history.
    assert_eq!(
        cli(&["uses", "never-used"]),
        (
            Some(0),
            "token id never-used of key a: 0 uses recorded\n".into(),
            String::new()
        )
    );

    // By token id.
    let by_id = sign(&["--id", "inv-7"]);
    assert_eq!(auth_as(&home, &by_id, "a"), (204, None));
    let (code, out, err) = cli(&["revoke", "--token-id", "inv-7"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with("revoked token id inv-7 of key a; in force until 20"),
        "{out}"
    );
    assert_eq!(auth_as(&home, &by_id, "a"), (403, Some("revoked".into())));

    // By subject: every token of it, whatever its id.
    let bob = sign(&["--subject", "bob"]);
    let bob_too = sign(&["--subject", "bob", "--id", "bob-2"]);
    let alice = sign(&["--subject", "alice"]);
    let (code, out, err) = cli(&["revoke", "--subject", "bob"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with("revoked every token of subject \"bob\"; in force until 20"),
        "{out}"
    );
    assert_eq!(auth_as(&home, &bob, "a"), (403, Some("revoked".into())));
    assert_eq!(auth_as(&home, &bob_too, "a"), (403, Some("revoked".into())));
    assert_eq!(auth_as(&home, &alice, "a"), (204, None));

    // By whole URL: its key id and token id.
    let leaked = sign(&["--id", "leaked-1"]);
    let sibling = sign(&["--id", "leaked-2"]);
    let (code, out, err) = cli(&["revoke", "--token", &leaked]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with("revoked token id leaked-1 of key a; in force until 20"),
        "{out}"
    );
    assert_eq!(auth_as(&home, &leaked, "a"), (403, Some("revoked".into())));
    assert_eq!(auth_as(&home, &sibling, "a"), (204, None));

    // By key cut-off, an hour ago: a token that shows it was signed now stays valid; one
    // without an issued-at cannot show it and counts as signed before.
    let cutoff = mediagate::clock::now() - 3600;
    let stamped = sign(&["--issued-at"]);
    let unstamped = sign(&[]);
    let (code, out, err) = cli(&[
        "revoke",
        "--key",
        "a",
        "--before",
        &mediagate::clock::format_utc(cutoff),
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out,
        format!(
            "revoked every token key a signed before {} [{cutoff}]; kept for ever (remove the \
             key from the ring to forget it)\n",
            mediagate::clock::format_utc(cutoff)
        )
    );
    assert_eq!(auth_as(&home, &stamped, "a"), (204, None));
    assert_eq!(
        auth_as(&home, &unstamped, "a"),
        (403, Some("revoked".into()))
    );

    // All four are listed, as JSON and as a table.
    let (code, out, err) = cli(&["revocations", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let listed: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let mut summary: Vec<String> = listed
        .iter()
        .map(|entry| {
            format!(
                "{} {} {} {} {}",
                entry["kind"].as_str().unwrap(),
                entry["kid"].as_str().unwrap_or("-"),
                entry["token_id"].as_str().unwrap_or("-"),
                entry["subject"].as_str().unwrap_or("-"),
                entry["before"]
                    .as_u64()
                    .map_or("-".into(), |b| b.to_string()),
            )
        })
        .collect();
    summary.sort();
    assert_eq!(
        summary,
        [
            format!("key_before a - - {cutoff}"),
            "subject - - bob -".into(),
            "token a inv-7 - -".into(),
            "token a leaked-1 - -".into(),
        ]
    );
    let key_entry = listed.iter().find(|e| e["kind"] == "key_before").unwrap();
    assert_eq!(key_entry["expires"], u64::MAX);
    let (code, table, err) = cli(&["revocations"]);
    assert_eq!(code, Some(0), "{err}");
    let mut rows: Vec<Vec<&str>> = table
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().collect())
        .collect();
    rows.sort();
    assert_eq!(
        table
            .lines()
            .next()
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["KIND", "WHAT", "CREATED", "EXPIRES"]
    );
    assert_eq!(rows.len(), 4, "{table}");
    let cutoff_text = format!("before={}", mediagate::clock::format_utc(cutoff));
    assert_eq!(rows[0][..3], ["key_before", "kid=a", cutoff_text.as_str()]);
    assert_eq!(rows[0][4], "never");
    assert_eq!(rows[1][..2], ["subject", "subject=\"bob\""]);
    assert_eq!(rows[2][..3], ["token", "kid=a", "token_id=inv-7"]);
    assert_eq!(rows[3][..3], ["token", "kid=a", "token_id=leaked-1"]);
    for row in &rows[1..] {
        // created, expires: RFC 3339 instants, the expiry after the creation.
        let created = mediagate::clock::parse_rfc3339(row[row.len() - 2]).unwrap();
        let expires = mediagate::clock::parse_rfc3339(row[row.len() - 1]).unwrap();
        assert!(expires > created, "{row:?}");
    }

    // The wrong secret: refused, exit 1, the secret never printed.
    let wrong = "d3Jvbmctd3Jvbmctd3Jvbmctd3Jvbmctd3Jvbmc";
    let output = mediagate(&home)
        .arg("--config")
        .arg(&config)
        .env("MEDIAGATE_INTERNAL__SECRET", wrong)
        .args(["revoke", "--subject", "carol"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert_eq!(
        err,
        format!(
            "mediagate: unix:{}/internal.sock refused: 401 missing or wrong bearer secret (is \
             internal.secret the same as the server's?)\n",
            home.path().display()
        )
    );
    assert!(!err.contains(wrong) && !err.contains(STATE_SECRET));

    // No secret configured: a configuration error, nothing sent.
    let unset = state_toml(&home, "nosecret.toml", None);
    let output = mediagate(&home)
        .arg("--config")
        .arg(&unset)
        .arg("revocations")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    assert!(
        stderr(&output).starts_with("mediagate: internal.secret is not set"),
        "{}",
        stderr(&output)
    );

    // Usage errors: 64, before anything is sent.
    for args in [
        &["revoke"][..],
        &["revoke", "--token-id", "x", "--subject", "y"],
        &["revoke", "--kid", "a", "--subject", "y"],
        &["revoke", "--subject", "y", "--before", "1"],
        &["revoke", "--key", "a", "--before", "yesterday"],
        &["uses"],
    ] {
        let (code, _, err) = cli(args);
        assert_eq!(code, Some(64), "{args:?}: {err}");
    }
    let (_, _, err) = cli(&["revoke", "--key", "a", "--before", "yesterday"]);
    assert!(
        err.contains("--before \"yesterday\": neither unix seconds nor"),
        "{err}"
    );
    // A request the server refuses: its reason is shown, exit 1.
    let (code, _, err) = cli(&["revoke", "--token-id", "bad id\u{7f}"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("refused: 400 token_id: 1-64 visible ASCII characters"),
        "{err}"
    );

    // Server down: exit 1, naming the address.
    drop(server);
    let (code, out, err) = cli(&["revocations"]);
    assert_eq!((code, out.as_str()), (Some(1), ""));
    assert!(
        err.starts_with(&format!(
            "mediagate: cannot connect to unix:{}/internal.sock: ",
            home.path().display()
        )),
        "{err}"
    );
    assert!(err.contains("is `mediagate serve` running"), "{err}");
}

/// Issue 11: `sign --filename --disposition --max-age` mints the per-link overrides the
/// configuration allows (and refuses the others and hostile names), and `inspect` shows them.
#[test]
fn sign_mints_allowed_response_overrides_and_inspect_shows_them() {
    let home = TempDir::new("cli-overrides");
    let config = home.write(
        "mediagate.toml",
        "[accel]\noverrides = [\"filename\", \"disposition\"]\n",
    );
    let sign = |args: &[&str]| {
        mediagate(&home)
            .arg("--config")
            .arg(&config)
            .args(["sign", "/media/report.pdf"])
            .args(args)
            .output()
            .unwrap()
    };
    let signed = sign(&[
        "--filename",
        "Résumé 2026 \"final\".pdf",
        "--disposition",
        "inline",
    ]);
    assert!(signed.status.success(), "{}", stderr(&signed));
    let url = stdout(&signed).trim().to_owned();
    let inspected = mediagate(&home)
        .arg("--config")
        .arg(&config)
        .args(["inspect", &url])
        .output()
        .unwrap();
    let text = stdout(&inspected);
    for expected in [
        "version     2",
        "filename    \"Résumé 2026 \\\"final\\\".pdf\" (per-link download name)",
        "disposition inline",
        "max-age     -",
        "overrides   allowed by accel.overrides",
        "verdict     valid now",
    ] {
        assert!(text.contains(expected), "{expected:?} in:\n{text}");
    }
    for (args, message) in [
        (
            &["--max-age", "1h"][..],
            "max_age is not among accel.overrides",
        ),
        (
            &["--disposition", "Inline"],
            "is not \"inline\" or \"attachment\"",
        ),
        (
            &["--filename", "a\r\nSet-Cookie: x=1"],
            "a file name has no control characters",
        ),
        (&["--filename", "../a.pdf"], "it is one name, not a path"),
    ] {
        let output = sign(args);
        assert!(!output.status.success(), "{args:?}: {}", stdout(&output));
        assert!(
            stderr(&output).contains(message),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}

/// Issue 11: `sign --scope` mints one token for several (methods, path or prefix) pairs and
/// `--recipient` names who gets it (token format v2); `inspect` lists the scopes and gives
/// the reason `/auth` gives for each request.
#[test]
fn sign_scopes_and_recipient_and_inspect_explains_them() {
    let home = TempDir::new("cli-scopes");
    let signed = mediagate(&home)
        .args([
            "sign",
            "--scope",
            "PUT:/api/v1/uploads/x",
            "--scope",
            "GET,HEAD:/api/v1/foo/",
            "--recipient",
            "partner app",
        ])
        .output()
        .unwrap();
    assert!(signed.status.success(), "{}", stderr(&signed));
    let url = stdout(&signed).trim().to_owned();
    // No path given: the link points at the first scope in canonical order.
    assert!(url.contains("/api/v1/foo/?token=A"), "{url}");
    let inspect = |path: &str, method: &str| {
        let output = mediagate(&home)
            .args(["inspect", &url, "--path", path, "--method", method])
            .output()
            .unwrap();
        (output.status.code(), stdout(&output))
    };
    let (code, text) = inspect("/api/v1/foo/bar", "GET");
    assert_eq!(code, Some(0), "{text}");
    for expected in [
        "version     2\n",
        "scope       2 scopes (methods per path; carried, not bound)\n",
        "  scope     GET,HEAD below /api/v1/foo/\n",
        "  scope     PUT on /api/v1/uploads/x\n",
        "methods     per scope (above)\n",
        "recipient   partner app\n",
        "verdict     valid now",
    ] {
        assert!(text.contains(expected), "{expected:?} missing in:\n{text}");
    }
    for (path, method, reason) in [
        (
            "/api/v1/foo/bar",
            "PUT",
            "denied: method (the scopes covering this path",
        ),
        ("/api/v1/uploads/x", "GET", "denied: method"),
        (
            "/api/v1/foobar/secret",
            "GET",
            "denied: out_of_scope (no scope",
        ),
    ] {
        let (code, text) = inspect(path, method);
        assert_eq!(code, Some(1), "{method} {path}: {text}");
        assert!(text.contains(reason), "{method} {path}: {text}");
    }
    let (code, _) = inspect("/api/v1/uploads/x", "PUT");
    assert_eq!(code, Some(0));

    // Refused, never repaired or merged.
    for (args, message) in [
        (
            &["--scope", "GET:/api/"][..],
            "a single scope is a plain token",
        ),
        (
            &["--scope", "GET:/api/", "--scope", "GET,PUT:/api/x"],
            "both grant GET",
        ),
        (
            &["--scope", "GET:/a/../b/", "--scope", "PUT:/x"],
            "not canonical",
        ),
        (&["--scope", "get:/a/", "--scope", "PUT:/x"], "upper case"),
        (&["--scope", "/a/", "--scope", "PUT:/x"], "METHODS:PATH"),
        (
            &["--scope", "GET:/a/", "--scope", "PUT:/x", "--prefix"],
            "cannot be used with",
        ),
        (
            &["--scope", "GET:/a/", "--scope", "PUT:/x", "--method", "GET"],
            "cannot be used with",
        ),
        (
            &["/b/c", "--scope", "GET:/a/", "--scope", "PUT:/x"],
            "outside every scope",
        ),
        (&["/a.pdf", "--recipient", "tab\there"], "bad recipient"),
    ] {
        let output = mediagate(&home).arg("sign").args(args).output().unwrap();
        assert!(!output.status.success(), "{args:?}: {}", stdout(&output));
        assert!(
            stderr(&output).contains(message),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}
