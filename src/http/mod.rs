//! The hyper 1.x server: two listeners, a connection cap and request-head limits per
//! listener, head and idle deadlines per connection, and a bounded graceful drain.
//!
//! - The **verify** listener answers nginx on the media domain (`/auth`, `/accel`).
//! - The **internal** listener answers the session-domain nginx (`/refresh`, `/login`) and
//!   backends (`/mint`), and serves `/metrics`.
//!
//! Each listener has its own connection cap (`server.max_connections`,
//! `server.internal_max_connections`): idle or hostile connections on one never delay the
//! other. Request heads are bounded by [`MAX_HEAD_BYTES`] and [`MAX_HEADERS`]; the deadlines
//! live in [`deadline`].
//!
//! [`run`] takes already-bound listeners and a shutdown future, so tests bind port 0 (or a
//! temporary Unix socket), hand the listener in, and never race for ports.
//!
//! The configuration is swapped, never locked: [`App::config`] is one lock-free load, each
//! request decides everything with the snapshot it loaded, and [`App::reload`] (on SIGHUP,
//! see [`serve`]) replaces the whole snapshot at once. Requests in flight finish with the
//! configuration they started with; no connection is touched.

mod admin;
pub mod deadline;
mod original;
mod routes;
pub mod state;

use std::ffi::OsString;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, Guard};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, UnixListener};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::Semaphore;

use crate::config::{self, Config, ConfigError, KeyOrigin, ListenAddr};
use crate::metrics::Metrics;
use deadline::{Deadlines, Expired, TimedIo};

/// Largest request head (request line and headers) either listener reads; a larger one is
/// answered `431 Request Header Fields Too Large` and the connection is closed.
///
/// What nginx forwards with the shipped snippets is a handful of fixed headers plus a few
/// client-controlled values: the request URI (`X-Original-URI`), `User-Agent`, `Range`,
/// `Authorization` and `Cookie`. With nginx's default `large_client_header_buffers 4 8k`,
/// each of those is at most 8 KiB (one buffer) and all of them together at most the client's
/// whole head, 32 KiB: 32 KiB admits what any client nginx accepted can make it send but a
/// head filled to the last byte with exactly those headers, while bounding what one
/// connection can make mediagate buffer (hyper's default is about 400 KiB). hyper's read
/// buffer is capped at the same size.
pub const MAX_HEAD_BYTES: usize = 32 * 1024;

/// Most request headers either listener accepts; more are answered `431` as well. nginx sends
/// at most ten with the shipped snippets, but Caddy's `forward_auth` copies all of the
/// browser's own headers to `/forward`, and a browser with extensions and many cookies can
/// send several dozen: the count stays at hyper's default (the parser keeps them on the
/// stack), and memory is bounded by [`MAX_HEAD_BYTES`], not by the count.
pub const MAX_HEADERS: usize = 100;

/// Shared state of a running server.
#[derive(Debug)]
pub struct App {
    /// The configuration in force; see [`App::config`].
    config: ArcSwap<Config>,
    /// Counters.
    pub metrics: Metrics,
    /// False once shutdown has begun (`/readyz` answers 503).
    pub ready: AtomicBool,
    /// Where [`App::reload`] reads the configuration; `None` when it cannot.
    source: Option<ConfigSource>,
    /// Serialises reloads, so two cannot interleave their read of the running configuration
    /// and their swap. Requests never take it.
    reloading: Mutex<()>,
    /// Rate limit for the "request head too large" warning.
    refusals: RefusalLog,
    /// Rate limit for the warning about files whose version cannot be read.
    file_errors: RefusalLog,
    /// The store and the revocations in force.
    pub state: Arc<state::StateEdge>,
}

/// The sources the running configuration was loaded from, kept for reloads: the
/// configuration file and the environment as it was at start-up. A reload re-reads the file
/// and every `{ file = … }` secret; `{ env = … }` secrets and `MEDIAGATE_*` variables keep
/// their start-up values (a process's environment cannot change from outside).
#[derive(Clone)]
pub struct ConfigSource {
    /// `--config` or `MEDIAGATE_CONFIG`.
    pub file: Option<PathBuf>,
    /// The environment captured at start-up.
    pub env: Vec<(OsString, OsString)>,
}

impl ConfigSource {
    /// The file and this process's environment, now.
    pub fn capture(file: Option<PathBuf>) -> ConfigSource {
        ConfigSource {
            file,
            env: std::env::vars_os().collect(),
        }
    }
}

impl fmt::Debug for ConfigSource {
    // The environment may hold secrets (`{ env = … }` sources): never print its values.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigSource")
            .field("file", &self.file)
            .field("env", &format_args!("{} variables", self.env.len()))
            .finish()
    }
}

impl App {
    /// Wraps a configuration that cannot be reloaded ([`App::reload`] refuses).
    pub fn new(config: Config) -> Arc<App> {
        App::build(config, None)
    }

    /// Wraps a configuration loaded from `source`, which [`App::reload`] reads again.
    pub fn reloadable(config: Config, source: ConfigSource) -> Arc<App> {
        App::build(config, Some(source))
    }

    fn build(config: Config, source: Option<ConfigSource>) -> Arc<App> {
        Arc::new(App {
            config: ArcSwap::from_pointee(config),
            metrics: Metrics::default(),
            ready: AtomicBool::new(true),
            source,
            reloading: Mutex::new(()),
            refusals: RefusalLog::default(),
            file_errors: RefusalLog::default(),
            state: Arc::default(),
        })
    }

    /// The configuration in force: one lock-free load. A request loads it once and decides
    /// everything with that snapshot, so a reload never mixes two configurations in one
    /// decision.
    pub fn config(&self) -> Guard<Arc<Config>> {
        self.config.load()
    }

    /// Reads the configuration again from the start-up sources and, if it is valid, puts it
    /// in force for every later request. Settings that need a restart
    /// ([`config::RESTART_ONLY`]) keep their running values, with a warning naming each one
    /// that changed. An invalid configuration is refused with one log line per problem (the
    /// messages `check-config` prints) and the running one stays.
    ///
    /// Blocking (it reads files): call it off the runtime's worker threads.
    pub fn reload(&self) -> Result<(), ConfigError> {
        let _one_at_a_time = self
            .reloading
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let loaded = match &self.source {
            Some(source) => config::load_with_env(source.file.as_deref(), source.env.clone()),
            None => Err(ConfigError(vec![
                "this server was started without a configuration source to reload from".into(),
            ])),
        };
        let mut config = match loaded {
            Ok(config) => config,
            Err(error) => {
                self.metrics.reloaded(false);
                for problem in &error.0 {
                    tracing::error!(
                        %problem,
                        "configuration not reloaded: the running configuration stays in force"
                    );
                }
                return Err(error);
            }
        };
        for setting in config.keep_restart_only(&self.config.load()) {
            tracing::warn!(
                setting,
                "configuration reload: this setting changes only with a restart; keeping the running value"
            );
        }
        warn_about_risks(&config);
        let (keys, signing) = (
            config.keys.ids().join(","),
            config.keys.signing_key().id().to_owned(),
        );
        self.config.store(Arc::new(config));
        self.metrics.reloaded(true);
        // After the swap: whoever waits for this line may rely on the new configuration.
        tracing::info!(%keys, %signing, "configuration reloaded");
        Ok(())
    }
}

/// Warns about a configuration that works but should not be used in production; at start-up
/// and after every reload.
pub fn warn_about_risks(config: &Config) {
    if let KeyOrigin::Development(file) = &config.key_origin {
        tracing::warn!(
            key_file = %file.display(),
            "DEVELOPMENT KEY IN USE: tokens are signed with a key generated on this machine. \
             Configure [keys.secrets] and set keys.dev_key = false for production."
        );
    }
    if config.internal_secret.is_none() {
        tracing::warn!("internal.secret is not set: /mint and /refresh refuse every request");
    }
}

/// Which listener a connection arrived on; selects the routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `/auth`, `/accel`.
    Verify,
    /// `/mint`, `/refresh`, `/login`, `/metrics`.
    Internal,
}

impl Role {
    /// The listener's name in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Verify => "verify",
            Role::Internal => "internal",
        }
    }
}

/// At most one warning per second about refused request heads, with the number of refusals
/// that were not logged since the previous one: a client sending oversized heads in a loop
/// must not be able to flood the log.
#[derive(Debug, Default)]
pub struct RefusalLog {
    state: Mutex<RefusalState>,
}

#[derive(Debug, Default)]
struct RefusalState {
    last_line: Option<Instant>,
    unlogged: u64,
}

impl RefusalLog {
    /// Records one refusal at `now`. Returns `Some(refusals not logged before this one)` when
    /// a line should be written now, `None` when this one is counted for the next line.
    pub fn note(&self, now: Instant) -> Option<u64> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        match state.last_line {
            Some(last) if now.saturating_duration_since(last) < Duration::from_secs(1) => {
                state.unlogged += 1;
                None
            }
            _ => {
                state.last_line = Some(now);
                Some(std::mem::take(&mut state.unlogged))
            }
        }
    }
}

/// A bound listener.
#[derive(Debug)]
pub enum Listener {
    /// TCP.
    Tcp(TcpListener),
    /// Unix domain socket.
    Unix(UnixListener),
}

impl Listener {
    /// Binds `addr`. A Unix socket replaces a stale socket file and is made connectable by
    /// nginx workers running as another user.
    pub async fn bind(addr: &ListenAddr) -> io::Result<Listener> {
        match addr {
            ListenAddr::Tcp(addr) => TcpListener::bind(addr).await.map(Listener::Tcp),
            ListenAddr::Unix(path) => bind_unix(path),
        }
    }

    /// The local address, for logs.
    pub fn describe(&self) -> String {
        match self {
            Listener::Tcp(listener) => listener
                .local_addr()
                .map_or_else(|_| "tcp:?".into(), |addr| addr.to_string()),
            Listener::Unix(listener) => listener
                .local_addr()
                .ok()
                .and_then(|addr| {
                    addr.as_pathname()
                        .map(|path| format!("unix:{}", path.display()))
                })
                .unwrap_or_else(|| "unix:?".into()),
        }
    }
}

fn bind_unix(path: &Path) -> io::Result<Listener> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()) => {
            std::fs::remove_file(path)?;
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ))
        }
        Err(_) => {}
    }
    let listener = UnixListener::bind(path)?;
    // Access control for Unix sockets is the directory's permissions (see deploy/): the
    // socket itself must be connectable by the nginx worker user.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
    Ok(Listener::Unix(listener))
}

/// Binds both listeners, reloads the configuration on SIGHUP, runs until SIGTERM/SIGINT,
/// then drains.
pub async fn serve(app: Arc<App>) -> io::Result<()> {
    // Before binding: SIGHUP's default action ends the process, so the handler must be in
    // place before anyone can see a socket and send one.
    let hangups = signal(SignalKind::hangup())?;
    let config = app.config();
    app.state
        .open(&config.store)
        .await
        .map_err(|e| io::Error::other(format!("store: {e}")))?;
    let verify = Listener::bind(&config.server.listen).await.map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("server.listen {:?}: {e}", config.server.listen),
        )
    })?;
    let internal = Listener::bind(&config.server.internal_listen)
        .await
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "server.internal_listen {:?}: {e}",
                    config.server.internal_listen
                ),
            )
        })?;
    drop(config);
    tracing::info!(verify = %verify.describe(), internal = %internal.describe(), "mediagate listening");
    tokio::select! {
        () = run(Arc::clone(&app), verify, internal, shutdown_signal()) => {}
        () = reload_on_hangup(app, hangups) => {}
    }
    Ok(())
}

/// Calls [`App::reload`] for every SIGHUP (`systemctl reload`), one at a time; never returns.
/// The reload runs on a blocking thread, so reading files never stalls requests.
async fn reload_on_hangup(app: Arc<App>, mut hangups: Signal) {
    while hangups.recv().await.is_some() {
        tracing::info!("SIGHUP received: reloading the configuration");
        let app = Arc::clone(&app);
        if let Err(error) = tokio::task::spawn_blocking(move || app.reload()).await {
            tracing::error!(%error, "configuration reload failed");
        }
    }
    std::future::pending().await
}

/// Serves both listeners until `shutdown` completes, then lets in-flight requests finish for
/// at most `server.shutdown_grace`.
pub async fn run(
    app: Arc<App>,
    verify: Listener,
    internal: Listener,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    // One cap per listener: with a shared one, idle connections on the internal listener
    // delayed /auth (observed: /healthz on the verify listener waited 9.8 s).
    let (verify_cap, internal_cap) = {
        let config = app.config();
        (
            config.server.max_connections,
            config.server.internal_max_connections,
        )
    };
    let verify_limit = Arc::new(Semaphore::new(verify_cap));
    let internal_limit = Arc::new(Semaphore::new(internal_cap));
    let accepting = async {
        tokio::join!(
            accept_loop(&app, verify, Role::Verify, &graceful, &verify_limit),
            accept_loop(&app, internal, Role::Internal, &graceful, &internal_limit),
        )
    };
    tokio::select! {
        _ = accepting => {}
        () = shutdown => {}
    }
    app.ready.store(false, Ordering::SeqCst);
    let grace = app.config().server.shutdown_grace;
    tracing::info!(in_flight = graceful.count(), grace = ?grace, "shutting down: draining connections");
    match tokio::time::timeout(grace, graceful.shutdown()).await {
        Ok(()) => tracing::info!("all connections closed"),
        Err(_) => tracing::warn!("grace period over: closing remaining connections"),
    }
}

async fn accept_loop(
    app: &Arc<App>,
    listener: Listener,
    role: Role,
    graceful: &GracefulShutdown,
    limit: &Arc<Semaphore>,
) {
    let address: Arc<str> = listener.describe().into();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // Replaced by `deadline`: hyper's one timeout would also be the idle timeout.
        .header_read_timeout(None)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_header_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS)
        .keep_alive(true);
    loop {
        // Waiting for a permit before accepting applies back-pressure in the kernel's backlog
        // instead of holding unbounded connections.
        let Ok(permit) = Arc::clone(limit).acquire_owned().await else {
            return;
        };
        let accepted = match &listener {
            Listener::Tcp(listener) => listener.accept().await.map(|(stream, peer)| {
                let _ = stream.set_nodelay(true);
                (Stream::Tcp(stream), Some(peer))
            }),
            Listener::Unix(listener) => listener
                .accept()
                .await
                .map(|(stream, _)| (Stream::Unix(stream), None)),
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Per connection, so a reload's timeouts apply to the connections accepted after it.
        let deadlines = {
            let config = app.config();
            Arc::new(Deadlines::new(
                config.server.header_timeout,
                config.server.idle_timeout,
                tokio::time::Instant::now(),
            ))
        };
        let service = {
            let app = Arc::clone(app);
            let deadlines = Arc::clone(&deadlines);
            service_fn(move |request| {
                let app = Arc::clone(&app);
                let deadlines = Arc::clone(&deadlines);
                deadlines.request_started();
                async move {
                    // One snapshot per request: trust (a reload may remove a peer from a
                    // keep-alive connection's trust) and the decision come from it.
                    let config = app.config();
                    // Unix sockets are trusted: their directory is the access control.
                    let trusted = peer.is_none_or(|peer| is_trusted(&config, peer));
                    let response = routes::handle(&app, &config, role, trusted, request).await;
                    deadlines.response_ready(tokio::time::Instant::now());
                    Ok::<_, std::convert::Infallible>(response)
                }
            })
        };
        let watcher = graceful.watcher();
        let builder = builder.clone();
        let app = Arc::clone(app);
        let address = Arc::clone(&address);
        tokio::spawn(async move {
            let result = match stream {
                Stream::Tcp(stream) => {
                    let io = TokioIo::new(TimedIo::new(stream, Arc::clone(&deadlines)));
                    watcher.watch(builder.serve_connection(io, service)).await
                }
                Stream::Unix(stream) => {
                    let io = TokioIo::new(TimedIo::new(stream, Arc::clone(&deadlines)));
                    watcher.watch(builder.serve_connection(io, service)).await
                }
            };
            match (result, deadlines.expired()) {
                (Err(error), _) if error.is_parse_too_large() => {
                    if let Some(unlogged) = app.refusals.note(Instant::now()) {
                        // Sizes and where, never the head itself: it may carry a token.
                        tracing::warn!(
                            listener = role.as_str(),
                            address = %address,
                            peer = %peer.map_or_else(|| "-".to_owned(), |peer| peer.to_string()),
                            max_head_bytes = MAX_HEAD_BYTES,
                            max_headers = MAX_HEADERS,
                            not_logged_before = unlogged,
                            "request head too large: answered 431 and closed the connection"
                        );
                    }
                }
                (_, Some(Expired::Head)) => {
                    tracing::debug!(
                        listener = role.as_str(),
                        "closed a connection that sent no complete request head in time"
                    );
                }
                (_, Some(Expired::Idle)) => {
                    tracing::debug!(
                        listener = role.as_str(),
                        "closed an idle keep-alive connection"
                    );
                }
                (Err(error), None) => {
                    tracing::debug!(%error, "connection ended with an error");
                }
                (Ok(()), None) => {}
            }
            drop(permit);
        });
    }
}

enum Stream {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

fn is_trusted(config: &Config, peer: SocketAddr) -> bool {
    let ip: IpAddr = peer.ip();
    config
        .server
        .trusted_peers
        .iter()
        .any(|net| net.contains(ip))
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("shutdown signal received");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_logged_at_most_once_a_second_with_a_count_of_the_rest() {
        let log = RefusalLog::default();
        let start = Instant::now();
        assert_eq!(log.note(start), Some(0));
        assert_eq!(log.note(start + Duration::from_millis(10)), None);
        assert_eq!(log.note(start + Duration::from_millis(999)), None);
        assert_eq!(log.note(start + Duration::from_secs(1)), Some(2));
        assert_eq!(log.note(start + Duration::from_secs(5)), Some(0));
    }

    #[test]
    fn a_reload_swaps_a_valid_configuration_and_counts_both_outcomes() {
        let file =
            std::env::temp_dir().join(format!("mediagate-reload-{}.toml", std::process::id()));
        let keys = |signing: &str| {
            format!(
                "[keys]\ndev_key = false\nsigning = \"{signing}\"\n[keys.secrets]\n\
                 k1 = \"QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI\"\n\
                 k2 = \"Q0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0NDQ0M\"\n"
            )
        };
        std::fs::write(&file, keys("k1")).unwrap();
        let source = ConfigSource {
            file: Some(file.clone()),
            env: Vec::new(),
        };
        let config = config::load_with_env(Some(&file), Vec::new()).unwrap();
        let app = App::reloadable(config, source);
        let before = app.config();

        std::fs::write(&file, keys("k2")).unwrap();
        app.reload().unwrap();
        assert_eq!(app.config().keys.signing_key().id(), "k2");
        // A snapshot taken before the reload is unchanged: a request keeps its configuration.
        assert_eq!(before.keys.signing_key().id(), "k1");
        drop(before);

        std::fs::write(&file, keys("k9")).unwrap();
        let error = app.reload().unwrap_err();
        assert_eq!(error.0.len(), 1, "{error}");
        assert!(
            error.0[0]
                .ends_with("keys.signing: signing key \"k9\" is not among the configured keys"),
            "{error}"
        );
        assert_eq!(app.config().keys.signing_key().id(), "k2");
        assert_eq!(app.metrics.reloads(), (1, 1));
        std::fs::remove_file(&file).unwrap();

        // Without a source there is nothing to reload from: refused, counted.
        let fixed = App::new(app.config().as_ref().clone());
        assert!(fixed.reload().is_err());
        assert_eq!(fixed.metrics.reloads(), (0, 1));
    }
}
