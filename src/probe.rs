//! `mediagate probe`: one health request to a running mediagate, for orchestrators that
//! cannot reach its sockets themselves. The Kubernetes kubelet connects to the pod's IP, not
//! to a Unix socket in the pod, and the distroless image has no HTTP client for an exec probe;
//! this is that client.
//!
//! Blocking std I/O with a deadline on every step: it runs as its own short-lived process,
//! never inside the server.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::config::ListenAddr;

/// Why a probe failed. The message is what an operator reads in the probe's event.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Occurs when nothing accepts connections at the address (not started, crashed).
    #[error("cannot connect to {0}: {1}")]
    Connect(String, std::io::Error),
    /// Occurs when the connection fails or times out before a status line arrives (hung).
    #[error("no answer from {0}: {1}")]
    Io(String, std::io::Error),
    /// Occurs when the answer does not start with an HTTP/1.1 status line.
    #[error("not an HTTP answer from {0}")]
    NotHttp(String),
    /// Occurs when mediagate answers with anything but 200 (`/readyz` says 503 while draining).
    #[error("{0} answered {1} {2}")]
    Status(String, u16, String),
}

/// GETs `path` from the listener at `addr` and succeeds on 200, within `timeout` per step.
pub fn probe(addr: &ListenAddr, path: &str, timeout: Duration) -> Result<(), ProbeError> {
    let name = match addr {
        ListenAddr::Tcp(addr) => addr.to_string(),
        ListenAddr::Unix(path) => format!("unix:{}", path.display()),
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: mediagate\r\nConnection: close\r\n\r\n");
    let mut stream =
        connect(addr, timeout).map_err(|error| ProbeError::Connect(name.clone(), error))?;
    let mut head = [0u8; 256];
    let read = exchange(&mut stream, request.as_bytes(), &mut head)
        .map_err(|error| ProbeError::Io(name.clone(), error))?;
    let (status, phrase) = status_line(&head[..read]).ok_or(ProbeError::NotHttp(name.clone()))?;
    if status == 200 {
        Ok(())
    } else {
        Err(ProbeError::Status(name, status, phrase.to_owned()))
    }
}

/// A connected stream of either kind.
trait Stream: Read + Write {}
impl<S: Read + Write> Stream for S {}

/// Connects with read and write deadlines of `timeout` set.
fn connect(addr: &ListenAddr, timeout: Duration) -> std::io::Result<Box<dyn Stream>> {
    Ok(match addr {
        ListenAddr::Tcp(addr) => {
            let stream = TcpStream::connect_timeout(addr, timeout)?;
            stream.set_read_timeout(Some(timeout))?;
            stream.set_write_timeout(Some(timeout))?;
            Box::new(stream)
        }
        ListenAddr::Unix(path) => {
            let stream = UnixStream::connect(path)?;
            stream.set_read_timeout(Some(timeout))?;
            stream.set_write_timeout(Some(timeout))?;
            Box::new(stream)
        }
    })
}

/// Writes the request and reads until the status line is complete (or the buffer is full).
fn exchange(stream: &mut dyn Stream, request: &[u8], head: &mut [u8]) -> std::io::Result<usize> {
    stream.write_all(request)?;
    let mut filled = 0;
    while filled < head.len() && !head[..filled].contains(&b'\n') {
        match stream.read(&mut head[filled..])? {
            0 => break,
            read => filled += read,
        }
    }
    Ok(filled)
}

/// `HTTP/1.1 200 OK\r\n` -> (200, "OK").
fn status_line(head: &[u8]) -> Option<(u16, &str)> {
    let line = head.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
    let rest = line.strip_prefix("HTTP/1.1 ")?;
    let (code, phrase) = rest.split_once(' ').unwrap_or((rest, ""));
    let code: u16 = code.parse().ok().filter(|code| (100..600).contains(code))?;
    Some((code, phrase))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_are_read_strictly() {
        assert_eq!(status_line(b"HTTP/1.1 200 OK\r\n"), Some((200, "OK")));
        assert_eq!(
            status_line(b"HTTP/1.1 503 Service Unavailable\r\ncontent-type"),
            Some((503, "Service Unavailable"))
        );
        assert_eq!(status_line(b"HTTP/1.0 200 OK\r\n"), None);
        assert_eq!(status_line(b"HTTP/1.1 2000 OK\r\n"), None);
        assert_eq!(status_line(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(status_line(b""), None);
    }
}
