//! tracing-subscriber set-up: text or JSON lines on stderr, filtered by `log.level` (or
//! `RUST_LOG`, which wins when set). Audit lines use the target `mediagate::audit`.
//!
//! Lines are handed to a dedicated writer thread through a bounded queue
//! (tracing-appender's non-blocking writer), so a slow or blocked stderr never stalls a
//! request: the verify path does no blocking I/O. If the queue is full, lines are dropped
//! (and counted by tracing-appender) rather than delaying decisions.

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber. Keep the returned guard alive until exit: dropping it
/// flushes the queue.
pub fn init(config: &LogConfig) -> WorkerGuard {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // The writer thread flushes whenever its queue runs empty, so buffering costs no latency
    // when idle and turns one write(2) per line into one per batch under load.
    let stderr = std::io::BufWriter::with_capacity(64 * 1024, std::io::stderr());
    let (writer, guard) = tracing_appender::non_blocking(stderr);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(false);
    let _ = match config.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    guard
}
