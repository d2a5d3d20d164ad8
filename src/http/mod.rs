//! The hyper 1.x server: two listeners, a connection cap, and a bounded graceful drain.
//!
//! - The **verify** listener answers nginx on the media domain (`/auth`, `/accel`).
//! - The **internal** listener answers the session-domain nginx (`/refresh`, `/login`) and
//!   backends (`/mint`), and serves `/metrics`.
//!
//! [`run`] takes already-bound listeners and a shutdown future, so tests bind port 0 (or a
//! temporary Unix socket), hand the listener in, and never race for ports.

mod original;
mod routes;

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;

use crate::config::{Config, ListenAddr};
use crate::metrics::Metrics;

/// Shared state of a running server.
#[derive(Debug)]
pub struct App {
    /// Validated configuration.
    pub config: Config,
    /// Counters.
    pub metrics: Metrics,
    /// False once shutdown has begun (`/readyz` answers 503).
    pub ready: AtomicBool,
}

impl App {
    /// Wraps a configuration.
    pub fn new(config: Config) -> Arc<App> {
        Arc::new(App {
            config,
            metrics: Metrics::default(),
            ready: AtomicBool::new(true),
        })
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

/// Binds both listeners, runs until SIGTERM/SIGINT, then drains.
pub async fn serve(app: Arc<App>) -> io::Result<()> {
    let verify = Listener::bind(&app.config.server.listen)
        .await
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("server.listen {:?}: {e}", app.config.server.listen),
            )
        })?;
    let internal = Listener::bind(&app.config.server.internal_listen)
        .await
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "server.internal_listen {:?}: {e}",
                    app.config.server.internal_listen
                ),
            )
        })?;
    tracing::info!(verify = %verify.describe(), internal = %internal.describe(), "mediagate listening");
    run(app, verify, internal, shutdown_signal()).await;
    Ok(())
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
    let limit = Arc::new(Semaphore::new(app.config.server.max_connections));
    let accepting = async {
        tokio::join!(
            accept_loop(&app, verify, Role::Verify, &graceful, &limit),
            accept_loop(&app, internal, Role::Internal, &graceful, &limit),
        )
    };
    tokio::select! {
        _ = accepting => {}
        () = shutdown => {}
    }
    app.ready.store(false, Ordering::SeqCst);
    let grace = app.config.server.shutdown_grace;
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
    loop {
        // Waiting for a permit before accepting applies back-pressure in the kernel's backlog
        // instead of holding unbounded connections.
        let Ok(permit) = Arc::clone(limit).acquire_owned().await else {
            return;
        };
        let accepted = match &listener {
            Listener::Tcp(listener) => listener.accept().await.map(|(stream, peer)| {
                let _ = stream.set_nodelay(true);
                let trusted = is_trusted(&app.config, peer);
                (Stream::Tcp(stream), trusted)
            }),
            Listener::Unix(listener) => listener
                .accept()
                .await
                .map(|(stream, _)| (Stream::Unix(stream), true)),
        };
        let (stream, trusted) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let app = Arc::clone(app);
        let service = service_fn(move |request| {
            let app = Arc::clone(&app);
            async move {
                Ok::<_, std::convert::Infallible>(
                    routes::handle(&app, role, trusted, request).await,
                )
            }
        });
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(10))
            .keep_alive(true);
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let result = match stream {
                Stream::Tcp(stream) => {
                    watcher
                        .watch(builder.serve_connection(TokioIo::new(stream), service))
                        .await
                }
                Stream::Unix(stream) => {
                    watcher
                        .watch(builder.serve_connection(TokioIo::new(stream), service))
                        .await
                }
            };
            if let Err(error) = result {
                tracing::debug!(%error, "connection ended with an error");
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
