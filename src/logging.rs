//! tracing-subscriber set-up: text or JSON lines on stderr, filtered by `log.level` (or
//! `RUST_LOG`, which wins when set). Audit lines use the target `mediagate::audit`.
//!
//! Requests never write to stderr themselves: a formatted line is appended to an in-memory
//! buffer, and a background thread writes the buffer out every [`FLUSH_INTERVAL`]. So a slow
//! or blocked stderr never stalls a decision (the verify path does no blocking I/O), and no
//! thread is woken per line. A queue with a per-line wake-up (tracing-appender) measured at
//! about 13 µs of scheduler work per audited request; this costs one short mutex hold. When
//! the buffer is full, lines are dropped and counted, never waited for.
//!
//! Audit lines ([`crate::audit`]) bypass tracing's formatting and are written into the same
//! buffer through [`append_line`].

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// The buffer and format that [`init`] installed, for [`append_line`].
static SINK: OnceLock<(Arc<Shared>, LogFormat)> = OnceLock::new();

/// How often buffered lines are written out.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(50);
/// Most bytes held between two flushes (bounds memory; about 16,000 audit lines).
pub const BUFFER_LIMIT: usize = 4 * 1024 * 1024;

/// Installs the global subscriber and starts the writer thread. Keep the returned guard
/// alive until exit: dropping it writes out what is still buffered.
pub fn init(config: &LogConfig) -> LogGuard {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = BufferedStderr::start();
    let _ = SINK.set((Arc::clone(&writer.0), config.format));
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

#[derive(Debug, Default)]
struct Shared {
    lines: Mutex<Vec<u8>>,
    dropped: AtomicU64,
    stop: AtomicBool,
}

/// The `MakeWriter` handed to tracing: appends whole formatted lines to the shared buffer.
#[derive(Debug, Clone)]
pub struct BufferedStderr(Arc<Shared>);

impl BufferedStderr {
    fn start() -> (BufferedStderr, LogGuard) {
        let shared = Arc::new(Shared::default());
        let flusher = Arc::clone(&shared);
        let thread = thread::Builder::new()
            .name("mediagate-log".into())
            .spawn(move || {
                let mut spare = Vec::new();
                while !flusher.stop.load(Ordering::Acquire) {
                    thread::park_timeout(FLUSH_INTERVAL);
                    write_out(&flusher, &mut spare);
                }
                write_out(&flusher, &mut spare);
            })
            .ok();
        (
            BufferedStderr(Arc::clone(&shared)),
            LogGuard { shared, thread },
        )
    }
}

/// Swaps the buffer for an empty one and writes the full one, outside the lock.
fn write_out(shared: &Shared, spare: &mut Vec<u8>) {
    {
        let mut lines = shared
            .lines
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        std::mem::swap(&mut *lines, spare);
    }
    let dropped = shared.dropped.swap(0, Ordering::Relaxed);
    let mut stderr = io::stderr().lock();
    // Nothing sensible is left to do if stderr itself fails.
    let _ = stderr.write_all(spare);
    if dropped > 0 {
        let _ = writeln!(
            stderr,
            "mediagate: {dropped} log lines dropped (log buffer full)"
        );
    }
    let _ = stderr.flush();
    spare.clear();
}

/// Appends one line, written by `write_line` straight into the shared buffer (under its
/// lock, so lines never interleave). A line that would overflow the buffer is dropped and
/// counted. Does nothing before [`init`].
pub fn append_line(write_line: impl FnOnce(&mut Vec<u8>, LogFormat)) {
    if let Some((shared, format)) = SINK.get() {
        append_to(shared, *format, write_line);
    }
}

fn append_to(shared: &Shared, format: LogFormat, write_line: impl FnOnce(&mut Vec<u8>, LogFormat)) {
    let mut lines = shared
        .lines
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let start = lines.len();
    write_line(&mut lines, format);
    if lines.len() > BUFFER_LIMIT {
        lines.truncate(start);
        shared.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

impl Write for BufferedStderr {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let mut lines = self
            .0
            .lines
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if lines.len() + line.len() > BUFFER_LIMIT {
            self.0.dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            lines.extend_from_slice(line);
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BufferedStderr {
    type Writer = BufferedStderr;

    fn make_writer(&'a self) -> BufferedStderr {
        self.clone()
    }
}

/// Stops the writer thread and writes out what is left.
#[derive(Debug)]
pub struct LogGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_buffer_drops_and_counts_instead_of_growing() {
        let shared = Arc::new(Shared::default());
        let mut writer = BufferedStderr(Arc::clone(&shared));
        let line = vec![b'x'; 1024];
        for _ in 0..(BUFFER_LIMIT / line.len() + 10) {
            writer.write_all(&line).unwrap();
        }
        assert!(shared.lines.lock().unwrap().len() <= BUFFER_LIMIT);
        assert_eq!(shared.dropped.load(Ordering::Relaxed), 10);
    }

    #[test]
    fn appended_lines_that_do_not_fit_are_dropped_whole() {
        let shared = Shared::default();
        let line = [b'y'; 1000];
        let append = || {
            append_to(&shared, LogFormat::Text, |out, _| {
                out.extend_from_slice(&line)
            })
        };
        for _ in 0..(BUFFER_LIMIT / line.len() + 3) {
            append();
        }
        let lines = shared.lines.lock().unwrap();
        assert_eq!(lines.len(), BUFFER_LIMIT / line.len() * line.len());
        assert_eq!(shared.dropped.load(Ordering::Relaxed), 3);
    }
}
