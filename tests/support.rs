//! Test harness: a temporary directory, real nginx rendered from `nginx/example.conf`, the
//! real `mediagate` binary, a tiny stand-in application, and a raw HTTP/1.1 client.
//!
//! Everything talks over Unix sockets inside the temporary directory, so tests never race
//! for ports and can run in parallel. nginx is required: a missing nginx is a failure, not a
//! skip (`scripts/test.sh` installs it).

#![allow(dead_code)]

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use mediagate::config::Config;
use mediagate::keys::Secret;
use mediagate::mint::{mint, MintRequest};

pub const MEDIA_HOST: &str = "media.localhost";
pub const WWW_HOST: &str = "www.localhost";
/// The second site of [`Options::second_site`]: everything below `/media/` is public there.
pub const MEDIA_B_HOST: &str = "media-b.localhost";
/// The second site's session domain (same application, same internal secret).
pub const WWW_B_HOST: &str = "www-b.localhost";

/// mediagate in this process on two pre-bound loopback listeners (port 0: no races), on its
/// own runtime thread, until the returned sender is used or dropped.
pub struct InProcessServer {
    pub verify: std::net::SocketAddr,
    pub internal: std::net::SocketAddr,
    pub stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub thread: Option<thread::JoinHandle<()>>,
}

impl InProcessServer {
    pub fn start(app: Arc<mediagate::http::App>) -> InProcessServer {
        use mediagate::http::{self, Listener};
        let verify = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let internal = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addrs = (verify.local_addr().unwrap(), internal.local_addr().unwrap());
        verify.set_nonblocking(true).unwrap();
        internal.set_nonblocking(true).unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let verify = Listener::Tcp(tokio::net::TcpListener::from_std(verify).unwrap());
                let internal = Listener::Tcp(tokio::net::TcpListener::from_std(internal).unwrap());
                http::run(app, verify, internal, async {
                    let _ = stopped.await;
                })
                .await;
            });
        });
        InProcessServer {
            verify: addrs.0,
            internal: addrs.1,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

/// A world-readable temporary directory (nginx workers run as `nobody`), removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let mut random = [0u8; 6];
        getrandom::getrandom(&mut random).unwrap();
        let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let path = std::env::temp_dir().join(format!("mediagate-{name}-{suffix}"));
        fs::create_dir_all(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes a world-readable file, creating parent directories (also world-readable).
    pub fn write(&self, relative: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(relative);
        let mut dir = path.parent().unwrap().to_path_buf();
        fs::create_dir_all(&dir).unwrap();
        while dir.starts_with(&self.0) && dir != self.0 {
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
            dir.pop();
        }
        fs::write(&path, contents).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Not MEDIAGATE_…: the binaries under test inherit this environment, and every
        // MEDIAGATE_ variable must name a setting.
        if std::env::var_os("KEEP_MEDIAGATE_TEST_DIRS").is_none() {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

/// A child process killed on drop, with its stderr in a log file.
pub struct Process {
    pub child: Child,
    pub log: PathBuf,
}

impl Process {
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log once it contains `needle` (log lines are written asynchronously), or after
    /// five seconds, whatever it holds then.
    pub fn log_containing(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = self.log_text();
            if text.contains(needle) || Instant::now() > deadline {
                return text;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM (graceful shutdown) and waits up to `timeout` for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(status);
        }
        let pid = self.child.id() as i32;
        // SAFETY: kill(2) on our own child's pid has no memory-safety implications.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // SIGTERM first: nginx's master then stops its workers (SIGKILL would orphan them)
        // and mediagate drains. SIGKILL only if that takes too long.
        if self.terminate(Duration::from_secs(5)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits until `process` accepts connections on the Unix socket `path`.
pub fn wait_for_socket(path: &Path, process: &mut Process, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if UnixStream::connect(path).is_ok() {
            return;
        }
        if let Ok(Some(status)) = process.child.try_wait() {
            panic!(
                "{what} exited with {status} before listening:\n{}",
                process.log_text()
            );
        }
        thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "{what} did not listen on {} in time:\n{}",
        path.display(),
        process.log_text()
    );
}

fn wait_for_tcp(port: u16, process: &mut Process, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = process.child.try_wait() {
            panic!("{what} exited with {status}:\n{}", process.log_text());
        }
        thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "{what} did not listen on 127.0.0.1:{port}:\n{}",
        process.log_text()
    );
}

/// A free loopback TCP port: bound to port 0 and released. The kernel hands ephemeral ports
/// out in turn, so another process taking it before the server binds is unlikely, and would
/// fail the test loudly (the server cannot bind), never silently.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A random secret in base64.
pub fn random_secret() -> String {
    Secret::generate().unwrap().to_base64()
}

/// What to vary between stacks.
#[derive(Default, Clone)]
pub struct Options {
    /// Extra TOML appended to mediagate's configuration (sections not otherwise set; it
    /// starts inside the `[[sites]]` entry); `{d}` stands for the stack's directory.
    pub extra_config: String,
    /// Replacements applied to the rendered nginx configuration after the standard ones;
    /// `{d}` in a replacement stands for the stack's directory.
    pub nginx_edits: Vec<(String, String)>,
    /// Replacements in copied snippets: (file name, from, to).
    pub snippet_edits: Vec<(String, String, String)>,
    /// Run a second mediagate for the session domain whose signing key the media side does
    /// not know (a key mismatch between the two sides).
    pub session_side_signs_with_unknown_key: bool,
    /// Run a second mediagate for the session domain, with the same keys, whose clock runs
    /// this much behind (a `faketime` offset such as `-2h`): every token it mints has expired
    /// by the media side's clock.
    pub session_clock_offset: Option<&'static str>,
    /// Configure a second site, `b` ([`MEDIA_B_HOST`] with session domain [`WWW_B_HOST`],
    /// `/media/` public), with its own media and session `server { }` blocks in nginx on
    /// `media-b.localhost.sock` and `www-b.localhost.sock`, sharing files, application and
    /// internal secret with the first.
    pub second_site: bool,
    /// Put mediagate's verify listener and a second listener of nginx's media server on
    /// loopback TCP (free ports), so `X-Real-IP` is a real address and `server.trusted_peers`
    /// applies. The Unix sockets stay as well.
    pub tcp: bool,
    /// Extra lines for mediagate's `[server]` section (e.g. `trusted_peers = [...]`).
    pub server_config: String,
    /// mediagate's whole `[store]` section; empty means an embedded store in the stack's
    /// directory (one file per mediagate process).
    pub store_config: String,
    /// Start a second media-side mediagate (`second-verify.sock`, `second-internal.sock`,
    /// same keys and store settings) and give nginx's verify upstream both servers, so
    /// nginx spreads decisions over two sidecars (round robin).
    pub second_verifier: bool,
    /// For a real browser, which cannot use Unix sockets: [`Options::tcp`], and nginx's
    /// session server on a free loopback port as well, with the demo site's `media_origin`,
    /// `session_origin` and `login_url` on those ports so the refresh redirects stay in the
    /// stack ([`Stack::browser_origins`]). nginx's `server_name` ignores the port, so site
    /// selection is unchanged.
    pub browser: bool,
    /// The application nginx asks is the demo's, `examples/demo_app.py` (login form,
    /// `session=<user>` cookie), on a free loopback port, instead of [`TestApp`] (which still
    /// listens on `app.sock`, unasked). Its page links the media origin of
    /// [`Options::browser`] when that is set.
    pub demo_app: bool,
    /// With [`Options::browser`]: the (media, session) host names the browser uses instead
    /// of [`MEDIA_HOST`] and [`WWW_HOST`], e.g. two hosts of one site
    /// (`media.example.localhost`, `www.example.localhost`: Chromium counts `x.localhost`
    /// and `y.localhost` as two sites). The site's origins and nginx's `server_name`s are
    /// renamed to match; Chromium resolves every `*.localhost` to loopback.
    pub browser_hosts: Option<(&'static str, &'static str)>,
}

impl Options {
    /// nginx forwards the client's `Cookie` header to mediagate on the media server named
    /// `server_name`: its line in the snippets' `cookie-grant-sites.conf`, as the ADAPT
    /// comment says for a site with a `cookie_grant`. Without it, no server does.
    pub fn forwarding_cookies(mut self, server_name: &str) -> Options {
        self.snippet_edits.push((
            "cookie-grant-sites.conf".into(),
            "# media.example.org 1;".into(),
            format!("{server_name} 1;"),
        ));
        self
    }

    /// The optional nginx cache of allow decisions, as the snippets' comments say to turn it
    /// on: `media-auth-cached.conf` for `media-auth.conf` in every media server and the zone
    /// in `http { }`, its directory moved into the stack's.
    pub fn with_auth_cache(mut self) -> Options {
        self.nginx_edits.extend([
            (
                "include mediagate/media-auth.conf;".into(),
                "include mediagate/media-auth-cached.conf;".into(),
            ),
            (
                "include mediagate/http.conf;".into(),
                "include mediagate/http.conf;\n    include mediagate/auth-cache-zone.conf;".into(),
            ),
        ]);
        self.snippet_edits.push((
            "auth-cache-zone.conf".into(),
            "/var/cache/nginx/mediagate-auth".into(),
            "tmp/auth-cache".into(),
        ));
        self
    }
}

/// mediagate's `[[sites]]` entry for [`Options::second_site`].
const SECOND_SITE_TOML: &str = r#"
[[sites]]
id = "b"
media_origin = "http://media-b.localhost"
session_origin = "http://www-b.localhost"
login_url = "http://www-b.localhost/login"
public_prefixes = ["/media/"]
"#;

/// The nginx `server { }` blocks of [`Options::second_site`], inserted before the first
/// site's session server. `{d}` is the stack directory, `{secret}` the internal secret.
const SECOND_SITE_NGINX: &str = r#"
    server {
        listen unix:{d}/media-b.localhost.sock;
        server_name media-b.localhost;
        error_log stderr crit;
        access_log access.log mediagate;
        include mediagate/media-auth.conf;
        location /media/ {
            include mediagate/protect.conf;
            root {d}/files;
        }
    }
    server {
        listen unix:{d}/www-b.localhost.sock;
        server_name www-b.localhost;
        set $mediagate_secret "{secret}";
        set $mediagate_app_check /media-access;
        include mediagate/session-refresh.conf;
        location / {
            proxy_pass http://mediagate_app;
        }
    }

    # ---- session domain"#;

/// mediagate's configuration for a stack; `prefix` names the socket files.
fn mediagate_toml(
    dir: &TempDir,
    prefix: &str,
    keys: &str,
    internal_secret: &str,
    extra: &str,
    server: &str,
    store: &str,
) -> String {
    // Each mediagate its own embedded store: redb admits one process per file.
    let store = if store.is_empty() {
        format!(
            "[store]\npath = \"{}/{prefix}state.redb\"",
            dir.path().display()
        )
    } else {
        store.to_owned()
    };
    // The stacks run with path tokens on, as the streaming recipes configure it, unless the
    // test brings its own `[token]` table (which then says everything about sources).
    let token = if extra.contains("[token]") {
        ""
    } else {
        "[token]\nsources = [\"query\", \"path\"]\n"
    };
    format!(
        r#"{token}
[server]
internal_listen = "unix:{dir}/{prefix}internal.sock"
shutdown_grace = "5s"
{server}

[keys]
dev_key = false
{keys}

[internal]
secret = "{internal_secret}"

{store}

[[sites]]
id = "demo"
media_origin = "http://{MEDIA_HOST}"
session_origin = "http://{WWW_HOST}"
login_url = "http://{WWW_HOST}/login"
public_prefixes = ["/media/public/"]
{extra}
"#,
        dir = dir.path().display(),
    )
}

/// mediagate + nginx (rendered from example.conf) + the stand-in application.
pub struct Stack {
    pub dir: TempDir,
    pub config: Config,
    pub internal_secret: String,
    pub app: TestApp,
    // Field order is drop order: nginx stops before mediagate and the demo application.
    pub nginx: Process,
    /// With [`Options::demo_app`]: `examples/demo_app.py`.
    pub demo_app: Option<Process>,
    pub mediagate: Process,
    pub session_mediagate: Option<Process>,
    /// With [`Options::second_verifier`].
    pub second_mediagate: Option<Process>,
    /// With [`Options::tcp`]: mediagate's verify port and nginx's media TCP port.
    pub tcp_ports: Option<(u16, u16)>,
    /// With [`Options::browser`]: nginx's session server's TCP port.
    pub session_port: Option<u16>,
    /// The (media, session) host names of [`Options::browser_hosts`], or the standard ones.
    pub browser_hosts: (&'static str, &'static str),
}

impl Stack {
    pub fn start(name: &str) -> Stack {
        Stack::start_with(name, Options::default())
    }

    pub fn start_with(name: &str, options: Options) -> Stack {
        let dir = TempDir::new(name);
        let internal_secret = random_secret();
        let (k1, k2) = (random_secret(), random_secret());
        let keys = format!("signing = \"k2\"\n[keys.secrets]\nk1 = \"{k1}\"\nk2 = \"{k2}\"");
        let mut extra_config = options
            .extra_config
            .replace("{d}", &dir.path().display().to_string());
        // nginx's root, there before mediagate checks a `files_root` naming it.
        fs::create_dir_all(dir.path().join("files")).unwrap();
        let mut nginx_edits = options.nginx_edits.clone();
        if options.second_site {
            extra_config.push_str(SECOND_SITE_TOML);
            let servers = SECOND_SITE_NGINX
                .replace("{d}", &dir.path().display().to_string())
                .replace("{secret}", &internal_secret);
            nginx_edits.push(("\n    # ---- session domain".into(), servers));
        }
        let d = dir.path().display().to_string();
        let mut server = options.server_config.clone();
        let media_tcp = if options.tcp || options.browser {
            let (verify_port, media_port) = (free_port(), free_port());
            server.push_str(&format!("\nlisten = \"127.0.0.1:{verify_port}\"\n"));
            nginx_edits.push((
                format!("server unix:{d}/verify.sock;"),
                format!("server 127.0.0.1:{verify_port};"),
            ));
            nginx_edits.push((
                format!("listen unix:{d}/media.sock;"),
                format!("listen unix:{d}/media.sock;\n        listen 127.0.0.1:{media_port};"),
            ));
            Some((verify_port, media_port))
        } else {
            server.push_str(&format!("\nlisten = \"unix:{d}/verify.sock\"\n"));
            None
        };
        let mut config_text = mediagate_toml(
            &dir,
            "",
            &keys,
            &internal_secret,
            &extra_config,
            &server,
            &options.store_config,
        );
        let browser_hosts = options.browser_hosts.unwrap_or((MEDIA_HOST, WWW_HOST));
        // The site's origins as the browser sees them, for a session-side mediagate too.
        let mut origin_edits: Vec<(String, String)> = Vec::new();
        let session_port = match (options.browser, media_tcp) {
            (true, Some((_, media_port))) => {
                let session_port = free_port();
                let (media_host, www_host) = browser_hosts;
                if options.browser_hosts.is_some() {
                    // The site is chosen by nginx's server_name, which must be the host of
                    // the site's origin.
                    nginx_edits.push((
                        format!("server_name {MEDIA_HOST};"),
                        format!("server_name {media_host};"),
                    ));
                    nginx_edits.push((
                        format!("server_name {WWW_HOST};"),
                        format!("server_name {www_host};"),
                    ));
                }
                nginx_edits.push((
                    format!("listen unix:{d}/www.sock;"),
                    format!("listen unix:{d}/www.sock;\n        listen 127.0.0.1:{session_port};"),
                ));
                // The origins the browser sees, ports included: the refresh redirects and
                // the return to the media domain are built from them.
                for (from, to) in [
                    (
                        format!("\"http://{MEDIA_HOST}\""),
                        format!("\"http://{media_host}:{media_port}\""),
                    ),
                    (
                        format!("\"http://{WWW_HOST}\""),
                        format!("\"http://{www_host}:{session_port}\""),
                    ),
                    (
                        format!("\"http://{WWW_HOST}/login\""),
                        format!("\"http://{www_host}:{session_port}/login\""),
                    ),
                ] {
                    assert!(
                        config_text.contains(&from),
                        "{from} not in the configuration"
                    );
                    config_text = config_text.replacen(&from, &to, 1);
                    origin_edits.push((from, to));
                }
                // Pages of the session origin may upload to the media origin (CORS).
                nginx_edits.push((
                    "\"http://www.localhost:8081\" $http_origin;".into(),
                    format!("\"http://{www_host}:{session_port}\" $http_origin;"),
                ));
                Some(session_port)
            }
            _ => None,
        };
        let config_path = dir.write("mediagate.toml", config_text);
        let config = mediagate::config::load(Some(&config_path))
            .unwrap_or_else(|error| panic!("test configuration is invalid: {error}"));
        let app = TestApp::start(&dir.path().join("app.sock"));
        let demo_app = options.demo_app.then(|| {
            let port = free_port();
            nginx_edits.push((
                format!("server unix:{d}/app.sock;"),
                format!("server 127.0.0.1:{port};"),
            ));
            let media_origin = match (media_tcp, options.browser) {
                (Some((_, media_port)), true) => format!("http://{MEDIA_HOST}:{media_port}"),
                _ => format!("http://{MEDIA_HOST}"),
            };
            start_demo_app(&dir, port, &media_origin)
        });
        let mediagate = start_mediagate(&dir, &config_path, "", media_tcp.map(|ports| ports.0));
        let session_side = match options.session_clock_offset {
            _ if options.session_side_signs_with_unknown_key => {
                // It can verify the media side's states (k2) but signs with k3, which the
                // media side has never heard of.
                let k3 = random_secret();
                Some((
                    format!("signing = \"k3\"\n[keys.secrets]\nk2 = \"{k2}\"\nk3 = \"{k3}\""),
                    None,
                ))
            }
            Some(offset) => Some((keys.clone(), Some(offset))),
            None => None,
        };
        let session_mediagate = if let Some((keys, clock_offset)) = session_side {
            // A second instance for the session domain.
            let session_server = format!("listen = \"unix:{d}/session-verify.sock\"");
            let mut text = mediagate_toml(
                &dir,
                "session-",
                &keys,
                &internal_secret,
                &extra_config,
                &session_server,
                &options.store_config,
            );
            // It mints the links back to the media origin: the browser's, ports included.
            for (from, to) in &origin_edits {
                text = text.replacen(from, to, 1);
            }
            let path = dir.write("session-mediagate.toml", text);
            nginx_edits.push((
                format!("server unix:{}/internal.sock;", dir.path().display()),
                format!(
                    "server unix:{}/session-internal.sock;",
                    dir.path().display()
                ),
            ));
            Some(start_mediagate_with_clock(
                &dir,
                &path,
                "session-",
                None,
                clock_offset,
            ))
        } else {
            None
        };
        let second_mediagate = options.second_verifier.then(|| {
            assert!(
                media_tcp.is_none(),
                "second_verifier works on Unix sockets only"
            );
            let text = mediagate_toml(
                &dir,
                "second-",
                &keys,
                &internal_secret,
                &extra_config,
                &format!("listen = \"unix:{d}/second-verify.sock\""),
                &options.store_config,
            );
            nginx_edits.push((
                format!("server unix:{d}/verify.sock;"),
                format!(
                    "server unix:{d}/verify.sock;\n        server unix:{d}/second-verify.sock;"
                ),
            ));
            let path = dir.write("second-mediagate.toml", text);
            start_mediagate(&dir, &path, "second-", None)
        });
        let nginx = start_nginx(&dir, &internal_secret, &nginx_edits, &options.snippet_edits);
        Stack {
            dir,
            config,
            internal_secret,
            app,
            nginx,
            demo_app,
            mediagate,
            session_mediagate,
            second_mediagate,
            tcp_ports: media_tcp,
            session_port,
            browser_hosts,
        }
    }

    /// With [`Options::browser`]: the media and session origins as a browser reaches them,
    /// e.g. (`http://media.localhost:41234`, `http://www.localhost:41235`).
    pub fn browser_origins(&self) -> (String, String) {
        let (Some((_, media_port)), Some(session_port)) = (self.tcp_ports, self.session_port)
        else {
            panic!("browser_origins needs Options::browser");
        };
        let (media_host, www_host) = self.browser_hosts;
        (
            format!("http://{media_host}:{media_port}"),
            format!("http://{www_host}:{session_port}"),
        )
    }

    /// Kills mediagate with SIGKILL (no shutdown, no flush) and starts it again on the same
    /// configuration and sockets: what a crash and a supervisor's restart do.
    pub fn restart_mediagate_after_kill(&mut self) {
        // Child::kill is SIGKILL on Unix; the reaped child is never signalled again (its
        // Process's drop sees the cached exit status).
        self.mediagate.child.kill().unwrap();
        self.mediagate.child.wait().unwrap();
        for socket in ["verify.sock", "internal.sock"] {
            let _ = fs::remove_file(self.socket(socket));
        }
        let config_path = self.dir.path().join("mediagate.toml");
        let verify_port = self.tcp_ports.map(|ports| ports.0);
        self.mediagate = start_mediagate(&self.dir, &config_path, "", verify_port);
    }

    /// A signed path-and-query for `path`, minted with the stack's configuration.
    pub fn sign(&self, path: &str) -> String {
        self.sign_with(MintRequest {
            path: path.into(),
            ..MintRequest::default()
        })
    }

    pub fn sign_with(&self, request: MintRequest) -> String {
        mint(&self.config, &request, mediagate::clock::now())
            .unwrap()
            .path_and_query
    }

    /// A link in path form (`~mg~<token>` after the prefix, or in an exact path's folder).
    pub fn sign_path(&self, path: &str, prefix: bool) -> String {
        self.sign_with(MintRequest {
            path: path.into(),
            prefix,
            form: mediagate::config::LinkForm::Path,
            ..MintRequest::default()
        })
    }

    /// mediagate's `/metrics`, scraped from its internal listener.
    pub fn metrics(&self) -> String {
        request(
            &self.socket("internal.sock"),
            "GET",
            "mediagate",
            "/metrics",
            &[],
        )
        .text()
    }

    pub fn socket(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The nginx socket serving `host`; panics for a host no server of this stack serves (a
    /// redirect there would leave the configured hosts).
    pub fn socket_for_host(&self, host: &str) -> PathBuf {
        match host {
            MEDIA_HOST => self.socket("media.sock"),
            WWW_HOST => self.socket("www.sock"),
            MEDIA_B_HOST | WWW_B_HOST if self.socket(&format!("{host}.sock")).exists() => {
                self.socket(&format!("{host}.sock"))
            }
            other => panic!("no server of this stack serves {other:?}"),
        }
    }

    /// GET (or another method) on the media domain through nginx.
    pub fn media(&self, method: &str, path_and_query: &str) -> Response {
        request(
            &self.socket("media.sock"),
            method,
            MEDIA_HOST,
            path_and_query,
            &[],
        )
    }

    /// [`Stack::media`] with extra request headers.
    pub fn media_with(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
    ) -> Response {
        request(
            &self.socket("media.sock"),
            method,
            MEDIA_HOST,
            path_and_query,
            headers,
        )
    }

    /// Follows redirects like a browser, across both domains, sending `cookie` to the
    /// session domain only. Returns every response in order.
    pub fn browse(&self, url: &str, cookie: Option<&str>) -> Vec<Response> {
        self.browse_with(url, cookie, &[])
    }

    /// [`Stack::browse`], sending `headers` on every hop as well.
    pub fn browse_with(
        &self,
        url: &str,
        cookie: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Vec<Response> {
        follow_redirects(url, cookie, headers, |host, path_and_query, hop_headers| {
            request(
                &self.socket_for_host(host),
                "GET",
                host,
                path_and_query,
                hop_headers,
            )
        })
    }
}

/// Follows redirects like a browser: GETs `url` with `send(host, path_and_query, headers)`,
/// sending `cookie` to the session domains only and `headers` on every hop, for at most ten
/// hops. Returns every response in order.
pub fn follow_redirects(
    url: &str,
    cookie: Option<&str>,
    headers: &[(&str, &str)],
    send: impl Fn(&str, &str, &[(&str, &str)]) -> Response,
) -> Vec<Response> {
    let mut responses = Vec::new();
    let mut url = url.to_owned();
    for _ in 0..10 {
        let (host, path_and_query) = split_url(&url);
        let mut hop_headers = headers.to_vec();
        if let (WWW_HOST | WWW_B_HOST, Some(cookie)) = (host.as_str(), cookie) {
            hop_headers.push(("Cookie", cookie));
        }
        let response = send(&host, &path_and_query, &hop_headers);
        let location = response.header("location").map(str::to_owned);
        let redirect = matches!(response.status, 301 | 302 | 303 | 307 | 308);
        responses.push(response);
        match location {
            Some(location) if redirect => url = location,
            _ => return responses,
        }
    }
    panic!("more than 10 redirects: {responses:#?}");
}

fn start_mediagate(
    dir: &TempDir,
    config_path: &Path,
    prefix: &str,
    verify_port: Option<u16>,
) -> Process {
    start_mediagate_with_clock(dir, config_path, prefix, verify_port, None)
}

/// Starts mediagate with libfaketime preloaded when a clock offset is given (a real skewed
/// clock, no test hook in the binary; `scripts/test.sh` installs faketime).
fn start_mediagate_with_clock(
    dir: &TempDir,
    config_path: &Path,
    prefix: &str,
    verify_port: Option<u16>,
    clock_offset: Option<&str>,
) -> Process {
    let log = dir.path().join(format!("{prefix}mediagate.log"));
    let binary = env!("CARGO_BIN_EXE_mediagate");
    let mut command = Command::new(binary);
    if let Some(offset) = clock_offset {
        // What `faketime -m -f OFFSET` sets, without the wrapper: it forks and waits, so a
        // SIGTERM to it would leave mediagate running after the test. `$LIB` is expanded by
        // the dynamic loader; the MT library is for tokio's worker threads.
        // The loader skips a preload it cannot find, and mediagate would run on the real
        // clock: the library itself must be there.
        assert!(
            std::fs::read_dir("/usr/lib")
                .into_iter()
                .flatten()
                .flatten()
                .any(|dir| dir.path().join("faketime/libfaketimeMT.so.1").is_file()),
            "a clock offset needs libfaketimeMT.so.1 (scripts/test.sh installs faketime)"
        );
        command
            .env("LD_PRELOAD", "/usr/$LIB/faketime/libfaketimeMT.so.1")
            .env("FAKETIME", offset);
    }
    let child = command
        .arg("--config")
        .arg(config_path)
        .arg("serve")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start mediagate ({error})"));
    let mut process = Process { child, log };
    match verify_port {
        Some(port) => wait_for_tcp(port, &mut process, "mediagate"),
        None => wait_for_socket(
            &dir.path().join(format!("{prefix}verify.sock")),
            &mut process,
            "mediagate",
        ),
    }
    wait_for_socket(
        &dir.path().join(format!("{prefix}internal.sock")),
        &mut process,
        "mediagate",
    );
    process
}

/// Starts `examples/demo_app.py` on 127.0.0.1:`port` (its stderr in `<dir>/demo_app.log`),
/// linking `media_origin` on its page, and waits until it listens.
fn start_demo_app(dir: &TempDir, port: u16, media_origin: &str) -> Process {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/demo_app.py");
    let log = dir.path().join("demo_app.log");
    let child = Command::new("python3")
        .arg(script)
        .arg(port.to_string())
        .arg(media_origin)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start python3 examples/demo_app.py: {error}"));
    let mut process = Process { child, log };
    wait_for_tcp(port, &mut process, "examples/demo_app.py");
    process
}

/// Renders nginx/example.conf for this directory, replacing exactly the lines marked ADAPT.
pub fn render_nginx_conf(dir: &Path, internal_secret: &str) -> String {
    let root = env!("CARGO_MANIFEST_DIR");
    let example = fs::read_to_string(format!("{root}/nginx/example.conf")).unwrap();
    let d = dir.display();
    let replacements = [
        (
            "listen 127.0.0.1:8080;".to_owned(),
            format!("listen unix:{d}/media.sock;"),
        ),
        (
            "listen 127.0.0.1:8081;".to_owned(),
            format!("listen unix:{d}/www.sock;"),
        ),
        (
            "server 127.0.0.1:8088;".to_owned(),
            format!("server unix:{d}/verify.sock;"),
        ),
        (
            "server 127.0.0.1:8089;".to_owned(),
            format!("server unix:{d}/internal.sock;"),
        ),
        (
            "server 127.0.0.1:8000;".to_owned(),
            format!("server unix:{d}/app.sock;"),
        ),
        ("/srv/mediagate-demo".to_owned(), format!("{d}/files")),
        ("/srv/mediagate-uploads".to_owned(), format!("{d}/uploads")),
        (
            "server 127.0.0.1:8002;".to_owned(),
            format!("server unix:{d}/upload-handler.sock;"),
        ),
        (
            "ZGVtby1pbnRlcm5hbC1zZWNyZXQtY2hhbmdlLW1l".to_owned(),
            internal_secret.to_owned(),
        ),
    ];
    rewrite(example, &replacements, "nginx/example.conf")
}

/// Applies each `(from, to)` to a shipped file's text, insisting that `from` occurs: a test
/// that renders a shipped configuration fails when the file drifts from what it replaces.
pub fn rewrite<F: AsRef<str>, T: AsRef<str>>(
    mut text: String,
    rewrites: &[(F, T)],
    what: &str,
) -> String {
    for (from, to) in rewrites {
        let (from, to) = (from.as_ref(), to.as_ref());
        assert!(text.contains(from), "{what} no longer contains {from:?}");
        text = text.replace(from, to);
    }
    text
}

fn start_nginx(
    dir: &TempDir,
    internal_secret: &str,
    edits: &[(String, String)],
    snippet_edits: &[(String, String, String)],
) -> Process {
    let mut conf = render_nginx_conf(dir.path(), internal_secret);
    for (from, to) in edits {
        assert!(
            conf.contains(from.as_str()),
            "nginx edit target {from:?} not found"
        );
        let to = to.replace("{d}", &dir.path().display().to_string());
        conf = conf.replace(from.as_str(), &to);
    }
    dir.write("nginx.conf", conf);
    let snippets = Path::new(env!("CARGO_MANIFEST_DIR")).join("nginx/snippets");
    for entry in fs::read_dir(snippets).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        let mut text = fs::read_to_string(entry.path()).unwrap();
        for (file, from, to) in snippet_edits.iter().filter(|(file, ..)| *file == name) {
            assert!(text.contains(from.as_str()), "{from:?} not found in {file}");
            text = text.replace(from.as_str(), to);
        }
        dir.write(&format!("mediagate/{name}"), text);
    }
    dir.write("files/.keep", "");
    // DAV uploads are written by nginx's workers (`nobody`).
    let uploads = dir.path().join("uploads");
    fs::create_dir_all(&uploads).unwrap();
    fs::set_permissions(&uploads, fs::Permissions::from_mode(0o777)).unwrap();
    let mut process = spawn_nginx(dir);
    wait_for_socket(&dir.path().join("media.sock"), &mut process, "nginx");
    wait_for_socket(&dir.path().join("www.sock"), &mut process, "nginx");
    process
}

/// Copies the shipped snippets to `<dir>/mediagate/`, where configurations rendered into
/// `dir` include them from.
pub fn copy_snippets(dir: &TempDir) {
    let snippets = Path::new(env!("CARGO_MANIFEST_DIR")).join("nginx/snippets");
    for entry in fs::read_dir(snippets).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        dir.write(
            &format!("mediagate/{name}"),
            fs::read(entry.path()).unwrap(),
        );
    }
}

/// Starts nginx on `<dir>/nginx.conf` (prefix `dir`, its stderr in `<dir>/nginx.log`). The
/// caller waits for its sockets.
pub fn spawn_nginx(dir: &TempDir) -> Process {
    fs::create_dir_all(dir.path().join("tmp")).unwrap();
    let log = dir.path().join("nginx.log");
    let prefix = dir.path().to_str().unwrap().to_owned();
    let conf_path = format!("{prefix}/nginx.conf");
    let spawned = Command::new("nginx")
        .args(["-p", &prefix, "-c", &conf_path, "-g", "daemon off;"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn();
    let child = match spawned {
        Ok(child) => child,
        Err(error) => panic!(
            "cannot start nginx ({error}): these tests need a real nginx; run `bash scripts/test.sh`, which installs it"
        ),
    };
    Process { child, log }
}

/// Starts a program with its stderr in `<dir>/<name>.log` and waits until it listens on the
/// Unix socket `socket`.
pub fn spawn_listening(dir: &TempDir, name: &str, command: &mut Command, socket: &Path) -> Process {
    let log = dir.path().join(format!("{name}.log"));
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start {name}: {error}"));
    let mut process = Process { child, log };
    wait_for_socket(socket, &mut process, name);
    process
}

/// One HTTP response, as bytes on the wire were parsed.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header with this (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one request over a Unix socket and reads the whole response (Connection: close).
pub fn request(
    socket: &Path,
    method: &str,
    host: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> Response {
    let raw = request_text(method, host, target, headers);
    request_raw(socket, raw.as_bytes(), method == "HEAD")
}

/// One HTTP/1.1 request with `Connection: close`, as text.
fn request_text(method: &str, host: &str, target: &str, headers: &[(&str, &str)]) -> String {
    let mut raw = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (name, value) in headers {
        raw.push_str(&format!("{name}: {value}\r\n"));
    }
    raw.push_str("\r\n");
    raw
}

/// Sends one request to a loopback TCP port and reads the whole response.
pub fn request_tcp(port: u16, method: &str, host: &str, target: &str) -> Response {
    request_tcp_with(port, method, host, target, &[])
}

/// Sends raw bytes and parses the response.
pub fn request_raw(socket: &Path, raw: &[u8], head: bool) -> Response {
    let mut stream = UnixStream::connect(socket)
        .unwrap_or_else(|error| panic!("connect {}: {error}", socket.display()));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(raw).unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).unwrap();
    parse_response(&bytes, head)
}

pub fn parse_response(bytes: &[u8], head: bool) -> Response {
    let end = bytes
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(bytes)));
    let head_text = String::from_utf8_lossy(&bytes[..end]).into_owned();
    let mut lines = head_text.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();
    let mut body = bytes[end + 4..].to_vec();
    let chunked = headers.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("transfer-encoding") && value.contains("chunked")
    });
    if chunked && !head {
        body = dechunk(&body);
    }
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = bytes.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_text = String::from_utf8_lossy(&bytes[..line_end]);
        let size =
            usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        let start = line_end + 2;
        out.extend_from_slice(&bytes[start..start + size]);
        bytes = &bytes[start + size + 2..];
    }
}

/// The token of a link in path form (`…/~mg~<token>/…`), written out here rather than read
/// with mediagate's own splitter, so that the tests check that too.
pub fn path_token(link: &str) -> &str {
    let start = link.find("/~mg~").expect("a path-form link") + "/~mg~".len();
    let end = start + link[start..].find('/').expect("a file after the token");
    &link[start..end]
}

/// Splits `http://host/path?query` into host and path-and-query.
pub fn split_url(url: &str) -> (String, String) {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("not an http URL: {url:?}"));
    let slash = rest.find('/').unwrap_or(rest.len());
    (rest[..slash].to_owned(), rest[slash..].to_owned())
}

/// The stand-in application: `/media-access` decides by cookie, `/login` is a login page.
///
/// - `mode=instant-login`: `/login` logs in at once, as the demo did before its form (302 to
///   `next`, setting a session cookie this browser never sends back), and `/media-access`
///   says 401.
/// - `session=alice`: may see everything; folders under `/media/hls/` and `/media/50%/` are
///   granted as a prefix, and so is the folder of a file under `/media/videos/` (a video's
///   playlist and segments, e.g. `/media/videos/clip/`); paths containing `short` get a 60 s
///   grant.
/// - `session=mallory`: logged in but may see nothing (403).
/// - no session: 401.
pub struct TestApp {
    /// Every X-Media-Path the application was asked about.
    pub asked: Arc<Mutex<Vec<String>>>,
}

impl TestApp {
    fn start(socket: &Path) -> TestApp {
        let listener = UnixListener::bind(socket).unwrap();
        fs::set_permissions(socket, fs::Permissions::from_mode(0o666)).unwrap();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let recorder = Arc::clone(&asked);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let recorder = Arc::clone(&recorder);
                thread::spawn(move || serve_app_connection(stream, &recorder));
            }
        });
        TestApp { asked }
    }
}

fn serve_app_connection(stream: UnixStream, asked: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = HashMap::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
            }
        }
        let path = request_line.split(' ').nth(1).unwrap_or("/").to_owned();
        let (status, extra, body) = app_decide(&path, &headers, asked);
        let mut response = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n", body.len());
        for (name, value) in extra {
            response.push_str(&format!("{name}: {value}\r\n"));
        }
        response.push_str("\r\n");
        response.push_str(&body);
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

fn app_decide(
    path: &str,
    headers: &HashMap<String, String>,
    asked: &Mutex<Vec<String>>,
) -> (&'static str, Vec<(&'static str, String)>, String) {
    let cookie = headers.get("cookie").map(String::as_str).unwrap_or("");
    if path.starts_with("/login") {
        if cookie == "mode=instant-login" {
            // The demo's instant login: it sets a session cookie and sends the browser back
            // to `next` at once; this browser withholds the cookie (an `<img>` on another
            // site), so the access check that follows says 401 again.
            let next = path
                .split_once("next=")
                .map(|(_, next)| percent_decode(next.split('&').next().unwrap_or("")))
                .unwrap_or_default();
            let extra = vec![
                ("Set-Cookie", "session=alice; Path=/; HttpOnly".to_owned()),
                ("Location", format!("http://{WWW_HOST}{next}")),
            ];
            return ("302 Found", extra, String::new());
        }
        return ("200 OK", vec![], "login page".into());
    }
    if path.starts_with("/api/") {
        return ("200 OK", vec![], api_echo(path, headers));
    }
    if !path.starts_with("/media-access") {
        return ("200 OK", vec![], "application".into());
    }
    let media_path = headers.get("x-media-path").cloned().unwrap_or_default();
    asked.lock().unwrap().push(media_path.clone());
    match cookie {
        "session=alice" => {
            let mut grant = vec![("X-Mediagate-Grant-Subject", "alice".to_owned())];
            // Folders granted whole, named as the application sees paths: decoded.
            for folder in ["/media/hls/", "/media/50%/", "/media/photos/"] {
                if media_path.starts_with(folder) {
                    grant.push(("X-Mediagate-Grant-Prefix", folder.to_owned()));
                }
            }
            if let Some(rest) = media_path.strip_prefix("/media/videos/") {
                if let Some(slash) = rest.rfind('/') {
                    let folder = format!("/media/videos/{}", &rest[..=slash]);
                    grant.push(("X-Mediagate-Grant-Prefix", folder));
                }
            }
            if media_path.contains("short") {
                grant.push(("X-Mediagate-Grant-Ttl", "60".to_owned()));
            }
            ("200 OK", grant, String::new())
        }
        "session=mallory" => ("403 Forbidden", vec![], String::new()),
        _ => ("401 Unauthorized", vec![], String::new()),
    }
}

/// What the stand-in application's `/api/` answers: the request target it received and every
/// header (names lower case, sorted), one per line, so a test can prove what reached it.
pub fn api_echo(target: &str, headers: &HashMap<String, String>) -> String {
    let mut lines: Vec<String> = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}"))
        .collect();
    lines.sort();
    format!("target {target}\n{}\n", lines.join("\n"))
}

/// `%XX` sequences decoded (the stand-in application's `next`; the test controls the input).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|hex| std::str::from_utf8(hex).ok());
        match (
            bytes[i],
            hex.and_then(|hex| u8::from_str_radix(hex, 16).ok()),
        ) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

/// The body mediagate writes for a denial without `Accept: text/html` and without site
/// overrides: the built-in plain-text page (its exact bytes are pinned in `denials.rs`).
pub fn deny_body(status: u16, reason: &str) -> String {
    let reason = mediagate::reason::Reason::from_wire(reason)
        .unwrap_or_else(|| panic!("{reason:?} is no reason"));
    let page = mediagate::pages::render(status, Some(reason), mediagate::pages::Format::Text, None);
    String::from_utf8(page.to_vec()).unwrap()
}

/// nginx's own error page for `status_line` (e.g. `"403 Forbidden"`), as nginx writes it
/// with its version in the footer replaced by [`without_nginx_version`].
pub fn nginx_page(status_line: &str) -> String {
    format!(
        "<html>\r\n<head><title>{status_line}</title></head>\r\n<body>\r\n\
         <center><h1>{status_line}</h1></center>\r\n<hr><center>nginx</center>\r\n\
         </body>\r\n</html>\r\n"
    )
}

/// `body` with nginx's `nginx/1.22.1` footer reduced to `nginx`, so expectations do not
/// depend on the installed version.
pub fn without_nginx_version(body: &str) -> String {
    let Some(start) = body.find("<center>nginx/") else {
        return body.to_owned();
    };
    let version_start = start + "<center>nginx".len();
    match body[version_start..].find("</center>") {
        Some(end) => format!("{}{}", &body[..version_start], &body[version_start + end..]),
        None => body.to_owned(),
    }
}

/// What a client sees of a decision through nginx; see [`seen`].
pub type Seen = (u16, Option<String>, String);

/// What a client sees of a decision through nginx: status, the `X-Mediagate-Reason` value
/// (`"<disagree: …>"` if occurrences differ; how many there are is not pinned here), and the
/// body with nginx's version taken out.
pub fn seen(response: &Response) -> Seen {
    let reasons: Vec<&str> = response
        .headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("x-mediagate-reason"))
        .map(|(_, value)| value.as_str())
        .collect();
    let reason = match reasons.as_slice() {
        [] => None,
        [first, rest @ ..] if rest.iter().all(|other| other == first) => Some((*first).to_owned()),
        _ => Some(format!("<disagree: {}>", reasons.join(", "))),
    };
    (
        response.status,
        reason,
        without_nginx_version(&response.text()),
    )
}

/// A denial in auth_request mode as the client sees it: mediagate's page (protect.conf's
/// `error_page 403` asks `/denied` for it), mediagate's reason.
pub fn nginx_denied(reason: &str) -> Seen {
    (403, Some(reason.to_owned()), deny_body(403, reason))
}

/// A denial in X-Accel-Redirect mode: nginx passes mediagate's own body through.
pub fn accel_denied(reason: &str) -> Seen {
    (403, Some(reason.to_owned()), deny_body(403, reason))
}

/// A file served: 200, no reason, exactly these bytes.
pub fn served(body: &str) -> Seen {
    (200, None, body.to_owned())
}

/// Sends one request with extra headers to a loopback TCP port and reads the whole response.
pub fn request_tcp_with(
    port: u16,
    method: &str,
    host: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> Response {
    let raw = request_text(method, host, target, headers);
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(raw.as_bytes()).unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).unwrap();
    parse_response(&bytes, method == "HEAD")
}

/// mediagate + real Caddy (rendered from `deploy/caddy/Caddyfile`) + the stand-in
/// application. Caddy serves both domains on one free loopback port (told apart by `Host`);
/// mediagate and the application listen on Unix sockets in the temporary directory. Caddy is
/// required: a missing caddy is a failure, not a skip (`scripts/test.sh` installs it).
pub struct CaddyStack {
    pub dir: TempDir,
    pub config: Config,
    pub app: TestApp,
    pub port: u16,
    // Field order is drop order: Caddy stops before mediagate.
    pub caddy: Process,
    pub mediagate: Process,
}

impl CaddyStack {
    /// With [`SECOND_SITE_TOML`]'s site `b` configured in mediagate (not in Caddy): a
    /// request that could make mediagate pick `b` would find `/media/` public.
    pub fn start(name: &str) -> CaddyStack {
        let dir = TempDir::new(name);
        let internal_secret = random_secret();
        let keys = format!(
            "signing = \"k1\"\n[keys.secrets]\nk1 = \"{}\"",
            random_secret()
        );
        let d = dir.path().display().to_string();
        let server = format!("listen = \"unix:{d}/verify.sock\"");
        let text = mediagate_toml(
            &dir,
            "",
            &keys,
            &internal_secret,
            SECOND_SITE_TOML,
            &server,
            "",
        );
        let config_path = dir.write("mediagate.toml", text);
        let config = mediagate::config::load(Some(&config_path))
            .unwrap_or_else(|error| panic!("test configuration is invalid: {error}"));
        let app = TestApp::start(&dir.path().join("app.sock"));
        let mediagate = start_mediagate(&dir, &config_path, "", None);
        let port = free_port();
        dir.write("Caddyfile", render_caddyfile(&dir, port));
        dir.write("files/.keep", "");
        let caddy = start_caddy(&dir, &internal_secret, port);
        CaddyStack {
            dir,
            config,
            app,
            port,
            caddy,
            mediagate,
        }
    }

    /// A signed path-and-query, minted with the stack's configuration for the first site.
    pub fn sign_with(&self, request: MintRequest) -> String {
        let request = MintRequest {
            host: request.host.or(Some(MEDIA_HOST.to_owned())),
            ..request
        };
        mint(&self.config, &request, mediagate::clock::now())
            .unwrap()
            .path_and_query
    }

    /// One request to Caddy for `host`.
    pub fn get(&self, host: &str, target: &str, headers: &[(&str, &str)]) -> Response {
        request_tcp_with(self.port, "GET", host, target, headers)
    }

    /// Follows redirects like a browser across both domains (served by this Caddy), sending
    /// `cookie` to the session domain only and `headers` on every hop.
    pub fn browse(
        &self,
        url: &str,
        cookie: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Vec<Response> {
        follow_redirects(url, cookie, headers, |host, path_and_query, hop_headers| {
            assert!(
                host == MEDIA_HOST || host == WWW_HOST,
                "redirected to a host this Caddy does not serve: {host}{path_and_query}"
            );
            self.get(host, path_and_query, hop_headers)
        })
    }
}

/// `deploy/caddy/Caddyfile` with only its ADAPT values replaced: hosts, sockets, the files'
/// root, loopback-only plain HTTP on `port`, no admin API.
pub fn render_caddyfile(dir: &TempDir, port: u16) -> String {
    let d = dir.path().display().to_string();
    let example =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/caddy/Caddyfile"))
            .unwrap();
    let replacements = [
        (
            "admin unix//run/caddy/admin.sock".to_owned(),
            "admin off\n\tauto_https off".to_owned(),
        ),
        (
            "media.example.org {\n".to_owned(),
            format!("http://{MEDIA_HOST}:{port} {{\n\tbind 127.0.0.1\n"),
        ),
        (
            "www.example.org {\n".to_owned(),
            format!("http://{WWW_HOST}:{port} {{\n\tbind 127.0.0.1\n"),
        ),
        (
            "X-Mediagate-Server-Name media.example.org".to_owned(),
            format!("X-Mediagate-Server-Name {MEDIA_HOST}"),
        ),
        (
            "X-Mediagate-Server-Name www.example.org".to_owned(),
            format!("X-Mediagate-Server-Name {WWW_HOST}"),
        ),
        (
            "unix//run/mediagate/verify.sock".to_owned(),
            format!("unix/{d}/verify.sock"),
        ),
        (
            "unix//run/mediagate/internal.sock".to_owned(),
            format!("unix/{d}/internal.sock"),
        ),
        ("localhost:8000".to_owned(), format!("unix/{d}/app.sock")),
        ("/srv/media".to_owned(), format!("{d}/files")),
    ];
    rewrite(example, &replacements, "deploy/caddy/Caddyfile")
}

/// Starts Caddy on `<dir>/Caddyfile` with its data and configuration directories in `dir`
/// and the internal secret in its environment, and waits until it listens on `port`.
fn start_caddy(dir: &TempDir, internal_secret: &str, port: u16) -> Process {
    let log = dir.path().join("caddy.log");
    let home = dir.path().join("caddy-home");
    fs::create_dir_all(&home).unwrap();
    let spawned = Command::new("caddy")
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(dir.path().join("Caddyfile"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("XDG_DATA_HOME", &home)
        .env("XDG_CONFIG_HOME", &home)
        .env("CADDY_MEDIAGATE_SECRET", internal_secret)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn();
    let child = match spawned {
        Ok(child) => child,
        Err(error) => panic!(
            "cannot start caddy ({error}): these tests need a real Caddy; run `bash scripts/test.sh`, which installs it"
        ),
    };
    let mut process = Process { child, log };
    wait_for_tcp(port, &mut process, "caddy");
    process
}

// ---- reload and load (tests/reload.rs) -------------------------------------------------

impl Process {
    /// Sends `signal` (e.g. `libc::SIGHUP`) to the process.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid has no memory-safety implications.
        let sent = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(sent, 0, "kill({}, {signal}) failed", self.child.id());
    }

    /// How often `needle` occurs in the log.
    pub fn log_count(&self, needle: &str) -> usize {
        self.log_text().matches(needle).count()
    }

    /// Waits until `needle` occurs `count` times in the log and returns the log; panics with
    /// the log after 15 seconds, or when the process has exited.
    pub fn wait_for_log_count(&mut self, needle: &str, count: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let text = self.log_text();
            if text.matches(needle).count() >= count {
                return text;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("process exited with {status} before logging {needle:?} {count}x:\n{text}");
            }
            if Instant::now() > deadline {
                panic!("{needle:?} not logged {count}x in time:\n{text}");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Stack {
    /// mediagate's configuration file, which a test may rewrite before a reload.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("mediagate.toml")
    }

    /// Replaces mediagate's configuration file at once (write beside it, then rename), so a
    /// reload never reads half a file.
    pub fn write_config(&self, text: &str) {
        let staged = self.dir.write("mediagate.toml.new", text);
        fs::rename(staged, self.config_path()).unwrap();
    }

    /// Sends SIGHUP to mediagate and waits until it logs one more `outcome` line
    /// (`"configuration reloaded"`, or `"configuration not reloaded"`, logged once per
    /// problem). Returns the log.
    pub fn reload(&mut self, outcome: &str) -> String {
        let before = self.mediagate.log_count(outcome);
        self.mediagate.signal(libc::SIGHUP);
        self.mediagate.wait_for_log_count(outcome, before + 1)
    }
}

/// A `wrk` run in the background; see [`Wrk::start`].
pub struct Wrk {
    /// `None` once [`Wrk::finish`] took it.
    child: Option<Child>,
}

/// What [`Wrk::finish`] reports: counts from wrk's Lua `done()` hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrkCounts {
    /// Responses with status 200 and exactly the expected body.
    pub expected: u64,
    /// Every other response.
    pub unexpected: u64,
    /// All responses wrk counted.
    pub requests: u64,
    /// Socket errors: connect, read, write, timeout.
    pub socket_errors: [u64; 4],
}

impl Wrk {
    /// Starts `wrk` (one thread, `connections` connections, `seconds` long) against
    /// `http://127.0.0.1:{port}{path_and_query}` with `Host: host`, counting responses that
    /// are not `200` with `body`. The Lua script and output live in `dir`. A missing wrk is
    /// a failure, not a skip: `scripts/test.sh` installs it.
    pub fn start(
        dir: &TempDir,
        port: u16,
        host: &str,
        path_and_query: &str,
        body: &[u8],
        connections: u32,
        seconds: u32,
    ) -> Wrk {
        // Lua decimal escapes: any byte, no quoting rules to get wrong.
        let expected: String = body.iter().map(|byte| format!("\\{byte}")).collect();
        let script = format!(
            r#"local threads = {{}}
function setup(thread) table.insert(threads, thread) end
function init(args) expected = 0; unexpected = 0 end
function response(status, headers, body)
  if status == 200 and body == "{expected}" then expected = expected + 1
  else unexpected = unexpected + 1 end
end
function done(summary, latency, requests)
  local good, bad = 0, 0
  for _, thread in ipairs(threads) do
    good = good + thread:get("expected")
    bad = bad + thread:get("unexpected")
  end
  local e = summary.errors
  io.write(string.format("mediagate-wrk %d %d %d %d %d %d %d\n", good, bad,
    summary.requests, e.connect, e.read, e.write, e.timeout))
end
"#
        );
        let script_path = dir.write("wrk.lua", script);
        let child = Command::new("wrk")
            .arg("-t1")
            .arg(format!("-c{connections}"))
            .arg(format!("-d{seconds}s"))
            .args(["--timeout", "5s", "-s"])
            .arg(&script_path)
            .args(["-H", &format!("Host: {host}")])
            .arg(format!("http://127.0.0.1:{port}{path_and_query}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| {
                panic!("cannot start wrk ({error}): this test needs it; run `bash scripts/test.sh`, which installs it")
            });
        Wrk { child: Some(child) }
    }

    /// Whether wrk is still running.
    pub fn running(&mut self) -> bool {
        let child = self.child.as_mut().unwrap();
        matches!(child.try_wait(), Ok(None))
    }

    /// Waits for wrk to end and returns its counts.
    pub fn finish(mut self) -> WrkCounts {
        let output = self.child.take().unwrap().wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "wrk failed: {}\n{stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let line = stdout
            .lines()
            .find_map(|line| line.strip_prefix("mediagate-wrk "))
            .unwrap_or_else(|| panic!("no counts from wrk's done() hook:\n{stdout}"));
        let numbers: Vec<u64> = line.split(' ').map(|n| n.parse().unwrap()).collect();
        let [expected, unexpected, requests, connect, read, write, timeout] = numbers[..] else {
            panic!("wrk counts: {line:?}");
        };
        WrkCounts {
            expected,
            unexpected,
            requests,
            socket_errors: [connect, read, write, timeout],
        }
    }
}

impl Drop for Wrk {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
