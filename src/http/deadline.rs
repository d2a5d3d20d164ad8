//! Per-connection deadlines: a short one for receiving a request head, a longer one for idling
//! between keep-alive requests.
//!
//! hyper has a single `header_read_timeout`, and it runs from the moment hyper starts waiting
//! for the next request, so it is both the slowloris bound and the keep-alive idle timeout.
//! These two must differ: the head deadline should be short (a silent or dribbling client
//! holds a connection slot until it fires), while the idle deadline must outlast nginx's
//! upstream `keepalive_timeout`, or mediagate closes idle connections just as nginx reuses
//! them ("upstream prematurely closed connection", "broken pipe").
//!
//! [`Deadlines`] tracks the phase of one connection; [`TimedIo`] wraps its stream and fails a
//! read that waits past the phase's deadline, which makes hyper close the connection. The
//! phase moves on three events: bytes arrive while idle (a head starts), the service is
//! called (the head is complete), the service returns (idle again). A new connection starts
//! in the head phase, so a client that connects and says nothing is closed after the head
//! deadline. This does not own the connection caps or header size limits (see `super`).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Waiting for, or reading, a request head.
const HEAD: u8 = 0;
/// A request is being handled (its body read, the service running): no deadline here.
const BUSY: u8 = 1;
/// Between requests on a keep-alive connection.
const IDLE: u8 = 2;

/// Which deadline closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// A request head (or the first request) did not arrive within `server.header_timeout`.
    Head,
    /// The connection sat idle between requests for `server.idle_timeout`.
    Idle,
}

/// The phase of one connection and when it began. Shared by the stream wrapper and the
/// service; every access happens on the connection's own task, so relaxed atomics suffice.
#[derive(Debug)]
pub struct Deadlines {
    head: Duration,
    idle: Duration,
    start: Instant,
    phase: AtomicU8,
    /// Milliseconds from `start` to the beginning of the current phase.
    since: AtomicU64,
    /// 0 until a deadline fired, then 1 + the phase it fired in.
    expired: AtomicU8,
}

impl Deadlines {
    /// A connection accepted at `now`: its first request head is due within `head`.
    pub fn new(head: Duration, idle: Duration, now: Instant) -> Deadlines {
        Deadlines {
            head,
            idle,
            start: now,
            phase: AtomicU8::new(HEAD),
            since: AtomicU64::new(0),
            expired: AtomicU8::new(0),
        }
    }

    fn enter(&self, phase: u8, now: Instant) {
        let since = now.saturating_duration_since(self.start).as_millis();
        self.since
            .store(u64::try_from(since).unwrap_or(u64::MAX), Ordering::Relaxed);
        self.phase.store(phase, Ordering::Relaxed);
    }

    /// Whether bytes arriving now start a new request head.
    pub fn is_idle(&self) -> bool {
        self.phase.load(Ordering::Relaxed) == IDLE
    }

    /// Bytes arrived while idle: a request head has begun at `now`.
    pub fn head_started(&self, now: Instant) {
        if self.is_idle() {
            self.enter(HEAD, now);
        }
    }

    /// hyper parsed a complete head and called the service.
    pub fn request_started(&self) {
        self.phase.store(BUSY, Ordering::Relaxed);
    }

    /// The service answered at `now`; the connection idles until the next request.
    pub fn response_ready(&self, now: Instant) {
        self.enter(IDLE, now);
    }

    /// When a read still waiting must give up, or `None` while a request is being handled.
    pub fn deadline(&self) -> Option<Instant> {
        let limit = match self.phase.load(Ordering::Relaxed) {
            HEAD => self.head,
            IDLE => self.idle,
            _ => return None,
        };
        let since = Duration::from_millis(self.since.load(Ordering::Relaxed));
        Some(self.start + since + limit)
    }

    fn fire(&self) -> io::Error {
        let phase = self.phase.load(Ordering::Relaxed);
        self.expired.store(phase + 1, Ordering::Relaxed);
        let what = if phase == IDLE {
            "keep-alive connection idle for server.idle_timeout"
        } else {
            "request head not received within server.header_timeout"
        };
        io::Error::new(io::ErrorKind::TimedOut, what)
    }

    /// Which deadline, if any, closed the connection.
    pub fn expired(&self) -> Option<Expired> {
        match self.expired.load(Ordering::Relaxed) {
            0 => None,
            n if n - 1 == IDLE => Some(Expired::Idle),
            _ => Some(Expired::Head),
        }
    }
}

/// A stream whose reads fail with `TimedOut` once the connection's current deadline passes.
pub struct TimedIo<S> {
    inner: S,
    deadlines: std::sync::Arc<Deadlines>,
    /// Created on the first read that has to wait; re-armed only when the deadline moves.
    sleep: Option<(Instant, Pin<Box<Sleep>>)>,
}

impl<S> TimedIo<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, deadlines: std::sync::Arc<Deadlines>) -> TimedIo<S> {
        TimedIo {
            inner,
            deadlines,
            sleep: None,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for TimedIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before && this.deadlines.is_idle() {
                    this.deadlines.head_started(Instant::now());
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => this.poll_deadline(cx),
        }
    }
}

impl<S> TimedIo<S> {
    /// A read is waiting: fail it if the phase's deadline has passed, otherwise make sure a
    /// timer wakes the connection when it does.
    ///
    /// While a request is being handled there is no deadline, but a timer stays armed
    /// anyway: hyper, having seen this read wait once, does not read again when the
    /// connection turns idle, so without a wake-up the idle deadline would never be armed.
    /// When the timer fires during handling it is simply re-armed (once per header timeout);
    /// once idle, the wake-up arms the idle deadline. On a busy connection this costs no timer
    /// work per request: the timer is reset only when it fires.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let target = match self.deadlines.deadline() {
                Some(deadline) => deadline,
                None => match &self.sleep {
                    Some((armed, sleep)) if !sleep.is_elapsed() => *armed,
                    _ => Instant::now() + self.deadlines.head,
                },
            };
            let (armed, sleep) = self
                .sleep
                .get_or_insert_with(|| (target, Box::pin(tokio::time::sleep_until(target))));
            if *armed != target {
                sleep.as_mut().reset(target);
                *armed = target;
            }
            match sleep.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) if self.deadlines.deadline().is_some() => {
                    return Poll::Ready(Err(self.deadlines.fire()))
                }
                // Handling a request: re-arm (the elapsed timer now yields `now + head`).
                Poll::Ready(()) => {}
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for TimedIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD_LIMIT: Duration = Duration::from_secs(10);
    const IDLE_LIMIT: Duration = Duration::from_secs(75);

    #[test]
    fn first_request_head_is_due_one_head_timeout_after_accept() {
        let accepted = Instant::now();
        let deadlines = Deadlines::new(HEAD_LIMIT, IDLE_LIMIT, accepted);
        assert_eq!(deadlines.deadline(), Some(accepted + HEAD_LIMIT));
        // Bytes of the first head do not restart the clock: dribbling does not help.
        deadlines.head_started(accepted + Duration::from_secs(5));
        assert_eq!(deadlines.deadline(), Some(accepted + HEAD_LIMIT));
    }

    #[test]
    fn idle_time_between_requests_gets_the_longer_deadline_and_a_new_head_the_short_one() {
        let accepted = Instant::now();
        let deadlines = Deadlines::new(HEAD_LIMIT, IDLE_LIMIT, accepted);
        deadlines.request_started();
        assert_eq!(deadlines.deadline(), None, "no deadline while handling");
        let answered = accepted + Duration::from_secs(1);
        deadlines.response_ready(answered);
        assert!(deadlines.is_idle());
        assert_eq!(deadlines.deadline(), Some(answered + IDLE_LIMIT));
        let next = answered + Duration::from_secs(70);
        deadlines.head_started(next);
        assert_eq!(deadlines.deadline(), Some(next + HEAD_LIMIT));
        assert_eq!(deadlines.expired(), None);
    }

    #[test]
    fn the_expired_phase_is_remembered() {
        let deadlines = Deadlines::new(HEAD_LIMIT, IDLE_LIMIT, Instant::now());
        assert_eq!(deadlines.fire().kind(), io::ErrorKind::TimedOut);
        assert_eq!(deadlines.expired(), Some(Expired::Head));
        deadlines.response_ready(Instant::now());
        deadlines.fire();
        assert_eq!(deadlines.expired(), Some(Expired::Idle));
    }
}
