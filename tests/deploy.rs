//! The deployment files, run for real: the Docker Compose and Kubernetes nginx configurations
//! (`deploy/docker/nginx.conf`, the `nginx.conf` of `deploy/kubernetes/mediagate.yaml`) with
//! the shipped snippets, in front of mediagate configured as those deployments configure it
//! (`deploy/mediagate.toml` plus Compose's environment overrides; the Kubernetes ConfigMap's
//! `mediagate.toml`), keys read from `{ file = … }` secret sources.
//!
//! Only paths are rewritten (sockets, secret files, document root, log files, listen
//! addresses); every rewrite must find its target, so a deployment file that drifts from what
//! this test runs fails here.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::support::{
    copy_snippets, random_secret, request, rewrite, spawn_listening, spawn_nginx, wait_for_socket,
    Process, TempDir,
};

const MEDIA_HOST: &str = "media.example.org";
const PDF: &[u8] = b"%PDF-1.4 deployed\n";

fn repo_file(relative: &str) -> String {
    fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)).unwrap()
}

/// The literal block `  <key>: |` of a Kubernetes manifest, unindented.
fn yaml_block(manifest: &str, key: &str) -> String {
    let header = format!("  {key}: |");
    let mut lines = manifest.lines().skip_while(|line| *line != header);
    assert!(lines.next().is_some(), "no {key} block in the manifest");
    lines
        .take_while(|line| line.is_empty() || line.starts_with("    "))
        .map(|line| line.get(4..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A deployment under test: its directory, mediagate, nginx.
struct Deployment {
    dir: TempDir,
    env: Vec<(String, String)>,
    // Held for their Drop (which stops them), nginx first.
    _nginx: Process,
    mediagate: Process,
}

impl Deployment {
    /// Starts mediagate with `toml` and `env` (after path rewrites) and nginx with
    /// `server_conf` (an `http { }`-level fragment, as both images include conf.d files).
    fn start(
        name: &str,
        toml: &str,
        env: &[(String, String)],
        server_conf: &str,
        listens: &[(&str, &str)],
    ) -> Deployment {
        let dir = TempDir::new(name);
        let d = dir.path().display().to_string();
        fs::create_dir_all(dir.path().join("run")).unwrap();
        // The secret files the deployments point at, written as a secret store would:
        // Kubernetes' Secret volume and Compose's secrets. Nothing is written where
        // deploy/mediagate.toml points (systemd credentials), so Compose's environment
        // overrides must take effect for mediagate to start at all.
        let key = random_secret();
        let internal = random_secret();
        for file in [
            "secrets/mediagate/key-2026-11",
            "secrets/mediagate_key_2026_11",
        ] {
            dir.write(file, format!("{key}\n"));
        }
        for file in [
            "secrets/mediagate/internal-secret",
            "secrets/mediagate_internal",
        ] {
            dir.write(file, format!("{internal}\n"));
        }
        let paths = |text: &str| {
            text.replace("/run/mediagate/", &format!("{d}/run/"))
                .replace(
                    "/run/credentials/mediagate.service/",
                    &format!("{d}/creds/"),
                )
                .replace("/run/secrets/", &format!("{d}/secrets/"))
        };
        let config = dir.write("mediagate.toml", paths(toml));
        let mut env: Vec<(String, String)> = env
            .iter()
            .map(|(name, value)| (name.clone(), paths(value)))
            .collect();
        env.push(("MEDIAGATE_CONFIG".into(), config.display().to_string()));
        env.push((
            "MEDIAGATE_STORE__PATH".into(),
            format!("{d}/state/state.redb"),
        ));
        // Keep the internal listener off TCP: tests run in parallel.
        env.push((
            "MEDIAGATE_SERVER__INTERNAL_LISTEN".into(),
            format!("unix:{d}/run/internal.sock"),
        ));
        let mut command = Command::new(env!("CARGO_BIN_EXE_mediagate"));
        command.arg("serve").envs(env.iter().cloned());
        let mediagate = spawn_listening(
            &dir,
            "mediagate",
            &mut command,
            &dir.path().join("run/verify.sock"),
        );

        copy_snippets(&dir);
        let mut rewrites = vec![
            ("/etc/nginx/mediagate/", format!("{d}/mediagate/")),
            ("/srv/media", format!("{d}/srv")),
            ("/var/log/nginx/access.log", format!("{d}/access.log")),
            ("/var/log/nginx/error.log", "stderr".into()),
        ];
        for (listen, socket) in listens {
            rewrites.push((listen, format!("listen unix:{d}/{socket};")));
        }
        let server_conf = rewrite(paths(server_conf), &rewrites, name);
        dir.write(
            "nginx.conf",
            format!(
                "worker_processes 1;\nerror_log stderr;\npid nginx.pid;\nevents {{ worker_connections 64; }}\n\
                 http {{\n    include /etc/nginx/mime.types;\n    client_body_temp_path tmp/body;\n    \
                 proxy_temp_path tmp/proxy;\n    fastcgi_temp_path tmp/fastcgi;\n    uwsgi_temp_path tmp/uwsgi;\n    \
                 scgi_temp_path tmp/scgi;\n{server_conf}\n}}\n"
            ),
        );
        dir.write("srv/media/a.pdf", PDF);
        dir.write("srv/media/public/logo.txt", "public");
        let mut nginx = spawn_nginx(&dir);
        wait_for_socket(&dir.path().join("media.sock"), &mut nginx, "nginx");
        Deployment {
            dir,
            env,
            _nginx: nginx,
            mediagate,
        }
    }

    /// `mediagate sign PATH --token-only`, configured like the server.
    fn sign(&self, path: &str) -> String {
        let output = Command::new(env!("CARGO_BIN_EXE_mediagate"))
            .args(["sign", path, "--token-only"])
            .envs(self.env.iter().cloned())
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }

    fn get(&self, target: &str) -> crate::support::Response {
        request(
            &self.dir.path().join("media.sock"),
            "GET",
            MEDIA_HOST,
            target,
            &[],
        )
    }

    /// What every deployment must do: serve with a token, refresh without one, refuse a
    /// forgery, serve public files, and log no token.
    fn check(&self) {
        let token = self.sign("/media/a.pdf");
        let served = self.get(&format!("/media/a.pdf?token={token}"));
        assert_eq!(
            served.status,
            200,
            "{served:#?}\n{}",
            self.mediagate.log_text()
        );
        assert_eq!(served.body, PDF);
        assert_eq!(served.header("cache-control"), Some("private"));

        let missing = self.get("/media/a.pdf");
        assert_eq!(missing.status, 302);
        assert_eq!(missing.header("x-mediagate-reason"), Some("missing_token"));
        let location = missing.header("location").unwrap();
        assert!(
            location.starts_with("https://www.example.org/_mediagate/refresh/media/a.pdf?state="),
            "{location}"
        );

        let mut forged = token.clone().into_bytes();
        let last = forged.len() - 2;
        forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        let refused = self.get(&format!("/media/a.pdf?token={forged}"));
        assert_eq!(refused.status, 403);
        assert_eq!(refused.header("x-mediagate-reason"), Some("bad_signature"));

        let public = self.get("/media/public/logo.txt");
        assert_eq!(public.status, 200);
        assert_eq!(public.text(), "public");

        let log = fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default();
        assert!(log.contains(r#""GET /media/a.pdf" 200"#), "{log}");
        assert!(!log.contains(&token), "{log}");
    }
}

/// `MEDIAGATE_*` variables of the mediagate service in `deploy/docker/compose.yaml`, values
/// unquoted (Compose hands them to the process as they are written).
fn compose_environment() -> Vec<(String, String)> {
    repo_file("deploy/docker/compose.yaml")
        .lines()
        .filter_map(|line| line.trim().split_once(": "))
        .filter(|(name, _)| name.starts_with("MEDIAGATE_") && *name != "MEDIAGATE_CONFIG")
        .map(|(name, value)| (name.to_owned(), value.trim_matches('\'').to_owned()))
        .collect()
}

#[test]
fn docker_compose_nginx_and_mediagate_configuration_work_together() {
    let env = compose_environment();
    assert!(
        env.iter()
            .any(|(name, _)| name == "MEDIAGATE_INTERNAL__SECRET"),
        "{env:?}"
    );
    let deployment = Deployment::start(
        "docker",
        &repo_file("deploy/mediagate.toml"),
        &env,
        &repo_file("deploy/docker/nginx.conf"),
        &[
            ("listen 80;", "media.sock"),
            ("listen 127.0.0.1:8081;", "health.sock"),
        ],
    );
    deployment.check();
    // The container health check asks mediagate's /readyz through nginx.
    let health = request(
        &deployment.dir.path().join("health.sock"),
        "GET",
        "127.0.0.1",
        "/readyz",
        &[],
    );
    assert_eq!(health.status, 200);
    assert_eq!(health.text(), "ready\n");
}

#[test]
fn kubernetes_nginx_and_mediagate_configuration_work_together() {
    let manifest = repo_file("deploy/kubernetes/mediagate.yaml");
    let deployment = Deployment::start(
        "kubernetes",
        &yaml_block(&manifest, "mediagate.toml"),
        &[],
        &yaml_block(&manifest, "nginx.conf"),
        &[("listen 8080;", "media.sock")],
    );
    deployment.check();
}
