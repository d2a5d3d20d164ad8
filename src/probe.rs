//! A small blocking HTTP/1.1 client for the CLI's conversations with a running mediagate:
//! `mediagate probe` (one health request, for orchestrators that cannot reach its sockets: the
//! Kubernetes kubelet connects to the pod's IP, not to a Unix socket in the pod, and the
//! distroless image has no HTTP client for an exec probe) and the state commands (`revoke`,
//! `revocations`, `uses`), which must ask the server because the embedded store is
//! single-process.
//!
//! One request per connection (`Connection: close`), over TCP or a Unix socket, blocking std
//! I/O with a deadline on every step and a bound on what is read: it runs in its own
//! short-lived process, never inside the server, and trusts the answer no more than any other
//! input. It does not own what the requests mean ([`crate::remote`] does).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::config::ListenAddr;

/// Largest response head read, in bytes: mediagate's heads are a few hundred bytes.
const MAX_HEAD: usize = 16 * 1024;

/// Why a request failed. The message is what an operator reads (in a probe's event or on the
/// terminal); it names the address, never a header value (the bearer secret is one).
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Occurs when nothing accepts connections at the address (not started, crashed).
    #[error("cannot connect to {0}: {1}")]
    Connect(String, std::io::Error),
    /// Occurs when the connection fails or times out before the answer is complete (hung).
    #[error("no answer from {0}: {1}")]
    Io(String, std::io::Error),
    /// Occurs when the answer does not start with an HTTP/1.1 status line, or its head or
    /// framing cannot be read.
    #[error("not an HTTP answer from {0}")]
    NotHttp(String),
    /// Occurs when the answer's body is larger than the caller accepts.
    #[error("the answer from {0} is larger than {1} bytes")]
    TooLarge(String, usize),
    /// Occurs when mediagate answers with anything but 200 (`/readyz` says 503 while draining).
    #[error("{0} answered {1} {2}")]
    Status(String, u16, String),
}

/// One request to send.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `GET`, `POST`, ...
    pub method: &'a str,
    /// Origin-form target: path and query, already percent-encoded.
    pub target: &'a str,
    /// Extra header lines (name, value); `Host`, `Connection` and `Content-Length` are
    /// written by [`send`]. Values must not contain CR or LF.
    pub headers: &'a [(&'a str, &'a str)],
    /// The body; a `Content-Length` is sent when it is not empty or the method is `POST`.
    pub body: &'a [u8],
}

/// What the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Reason phrase as sent.
    pub phrase: String,
    /// The body (de-chunked), at most the `max_body` given to [`send`].
    pub body: Vec<u8>,
}

/// The address as messages name it: `127.0.0.1:8089` or `unix:/run/mediagate/internal.sock`.
pub fn address_name(addr: &ListenAddr) -> String {
    match addr {
        ListenAddr::Tcp(addr) => addr.to_string(),
        ListenAddr::Unix(path) => format!("unix:{}", path.display()),
    }
}

/// Sends `request` to the listener at `addr` and reads the whole answer, waiting at most
/// `timeout` for each step and refusing a body above `max_body` bytes.
pub fn send(
    addr: &ListenAddr,
    request: &Request<'_>,
    timeout: Duration,
    max_body: usize,
) -> Result<Answer, ProbeError> {
    let name = address_name(addr);
    let mut stream =
        connect(addr, timeout).map_err(|error| ProbeError::Connect(name.clone(), error))?;
    stream
        .write_all(&encode(request))
        .map_err(|error| ProbeError::Io(name.clone(), error))?;
    read_answer(&mut stream, max_body).map_err(|failure| match failure {
        Failure::Io(error) => ProbeError::Io(name, error),
        Failure::NotHttp => ProbeError::NotHttp(name),
        Failure::TooLarge => ProbeError::TooLarge(name, max_body),
    })
}

/// GETs `path` from the listener at `addr` and succeeds on 200, within `timeout` per step.
pub fn probe(addr: &ListenAddr, path: &str, timeout: Duration) -> Result<(), ProbeError> {
    let request = Request {
        method: "GET",
        target: path,
        headers: &[],
        body: b"",
    };
    // Health bodies are a word; a bound keeps a confused listener from feeding us forever.
    let answer = send(addr, &request, timeout, 4096)?;
    if answer.status == 200 {
        Ok(())
    } else {
        Err(ProbeError::Status(
            address_name(addr),
            answer.status,
            answer.phrase,
        ))
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

/// The request's bytes.
fn encode(request: &Request<'_>) -> Vec<u8> {
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: mediagate\r\nConnection: close\r\n",
        request.method, request.target
    );
    for (name, value) in request.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !request.body.is_empty() || request.method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", request.body.len()));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(request.body);
    bytes
}

/// Why an answer could not be read, before the address is attached.
#[derive(Debug)]
enum Failure {
    Io(std::io::Error),
    NotHttp,
    TooLarge,
}

impl From<std::io::Error> for Failure {
    fn from(error: std::io::Error) -> Failure {
        Failure::Io(error)
    }
}

/// How the body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
    /// Until the server closes (we asked for `Connection: close`).
    Close,
}

/// Reads the head, then the body as the head frames it.
fn read_answer(stream: &mut dyn Read, max_body: usize) -> Result<Answer, Failure> {
    let mut buffer = Vec::with_capacity(1024);
    let head_end = loop {
        if let Some(at) = find(&buffer, b"\r\n\r\n") {
            break at + 4;
        }
        if buffer.len() >= MAX_HEAD || fill(stream, &mut buffer, MAX_HEAD)? == 0 {
            // A status line and nothing more before the close is still an answer.
            if !buffer.is_empty() && status_line(&buffer).is_some() && buffer.len() < MAX_HEAD {
                break buffer.len();
            }
            return Err(Failure::NotHttp);
        }
    };
    let (status, phrase) = status_line(&buffer[..head_end]).ok_or(Failure::NotHttp)?;
    let phrase = phrase.to_owned();
    let framing = framing(&buffer[..head_end]).ok_or(Failure::NotHttp)?;
    let mut body = buffer.split_off(head_end);
    // A status without a body (RFC 9110 section 6.4.1).
    if matches!(status, 100..=199 | 204 | 304) {
        body.clear();
        return Ok(Answer {
            status,
            phrase,
            body,
        });
    }
    let body = match framing {
        Framing::Length(length) => {
            if length > max_body {
                return Err(Failure::TooLarge);
            }
            while body.len() < length {
                if fill(stream, &mut body, length)? == 0 {
                    return Err(Failure::NotHttp);
                }
            }
            body.truncate(length);
            body
        }
        Framing::Close => {
            while fill(stream, &mut body, max_body + 1)? > 0 {}
            if body.len() > max_body {
                return Err(Failure::TooLarge);
            }
            body
        }
        Framing::Chunked => {
            // The encoded form is at most a little larger than the body; bound it too.
            let bound = max_body.saturating_mul(2).saturating_add(4096);
            loop {
                match dechunk(&body, max_body)? {
                    Some(decoded) => break decoded,
                    None if body.len() >= bound => return Err(Failure::TooLarge),
                    None => {
                        if fill(stream, &mut body, bound)? == 0 {
                            return Err(Failure::NotHttp);
                        }
                    }
                }
            }
        }
    };
    Ok(Answer {
        status,
        phrase,
        body,
    })
}

/// Reads once into `buffer`, never past `limit` bytes in total; returns what was read (0 at
/// the end of the stream or when the limit is reached).
fn fill(stream: &mut dyn Read, buffer: &mut Vec<u8>, limit: usize) -> std::io::Result<usize> {
    let room = limit.saturating_sub(buffer.len()).min(64 * 1024);
    if room == 0 {
        return Ok(0);
    }
    let start = buffer.len();
    buffer.resize(start + room, 0);
    let read = loop {
        match stream.read(&mut buffer[start..]) {
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            other => break other,
        }
    };
    buffer.truncate(start + *read.as_ref().unwrap_or(&0));
    read
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
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

/// The body framing the head declares; `None` when it is contradictory or unreadable (two
/// different lengths, a length with chunking, a transfer coding other than chunked).
fn framing(head: &[u8]) -> Option<Framing> {
    let text = std::str::from_utf8(head).ok()?;
    let mut length = None;
    let mut chunked = false;
    for line in text.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let parsed: usize = value.parse().ok()?;
            if length
                .replace(parsed)
                .is_some_and(|earlier| earlier != parsed)
            {
                return None;
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if !value.eq_ignore_ascii_case("chunked") {
                return None;
            }
            chunked = true;
        }
    }
    match (length, chunked) {
        (Some(_), true) => None,
        (Some(length), false) => Some(Framing::Length(length)),
        (None, true) => Some(Framing::Chunked),
        (None, false) => Some(Framing::Close),
    }
}

/// The body of a complete chunked encoding in `encoded`, `None` while it is incomplete.
fn dechunk(encoded: &[u8], max_body: usize) -> Result<Option<Vec<u8>>, Failure> {
    let mut body = Vec::new();
    let mut rest = encoded;
    loop {
        let Some(line_end) = find(rest, b"\r\n") else {
            return Ok(None);
        };
        let size_text = std::str::from_utf8(&rest[..line_end]).map_err(|_| Failure::NotHttp)?;
        // Chunk extensions (`;name=value`) are allowed and ignored.
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| Failure::NotHttp)?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            // Then trailer fields (ignored) and an empty line.
            let complete = rest.starts_with(b"\r\n") || find(rest, b"\r\n\r\n").is_some();
            return Ok(complete.then_some(body));
        }
        if body.len().saturating_add(size) > max_body {
            return Err(Failure::TooLarge);
        }
        if rest.len() < size.saturating_add(2) {
            return Ok(None);
        }
        if &rest[size..size + 2] != b"\r\n" {
            return Err(Failure::NotHttp);
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
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

    fn answer(bytes: &[u8], max_body: usize) -> Result<Answer, Failure> {
        read_answer(&mut &bytes[..], max_body)
    }

    #[test]
    fn bodies_are_read_as_the_head_frames_them() {
        let framed = answer(
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello, and more",
            100,
        )
        .unwrap();
        assert_eq!((framed.status, &framed.body[..]), (200, &b"hello"[..]));
        let chunked = answer(
            b"HTTP/1.1 401 Unauthorized\r\nTransfer-Encoding: chunked\r\n\r\n\
              3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
            100,
        )
        .unwrap();
        assert_eq!(
            (chunked.status, chunked.phrase.as_str(), &chunked.body[..]),
            (401, "Unauthorized", &b"abcde"[..])
        );
        let closed = answer(b"HTTP/1.1 503 Service Unavailable\r\n\r\ndraining", 100).unwrap();
        assert_eq!((closed.status, &closed.body[..]), (503, &b"draining"[..]));
        let bare = answer(b"HTTP/1.1 200 OK\r\n", 100).unwrap();
        assert_eq!((bare.status, bare.body.len()), (200, 0));
        let empty = answer(b"HTTP/1.1 204 No Content\r\n\r\n", 100).unwrap();
        assert_eq!((empty.status, empty.body.len()), (204, 0));
    }

    #[test]
    fn oversized_truncated_or_contradictory_answers_are_refused() {
        let large = |bytes: &[u8]| matches!(answer(bytes, 4), Err(Failure::TooLarge));
        let broken = |bytes: &[u8]| matches!(answer(bytes, 100), Err(Failure::NotHttp));
        assert!(large(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"));
        assert!(large(b"HTTP/1.1 200 OK\r\n\r\nhello"));
        assert!(large(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        ));
        // The body ends before the declared length.
        assert!(broken(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nhello"));
        // Two different lengths, or a length and chunking: smuggling shapes.
        assert!(broken(
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!"
        ));
        assert!(broken(
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\nhello"
        ));
        assert!(broken(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\nhello"
        ));
        assert!(broken(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n"
        ));
        assert!(broken(b"SSH-2.0-OpenSSH\r\n"));
        assert!(broken(b""));
    }

    #[test]
    fn requests_carry_length_and_headers() {
        let request = Request {
            method: "POST",
            target: "/revoke",
            headers: &[("Content-Type", "application/json")],
            body: b"{}",
        };
        assert_eq!(
            String::from_utf8(encode(&request)).unwrap(),
            "POST /revoke HTTP/1.1\r\nHost: mediagate\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        );
        let get = Request {
            method: "GET",
            target: "/revocations",
            headers: &[],
            body: b"",
        };
        assert_eq!(
            String::from_utf8(encode(&get)).unwrap(),
            "GET /revocations HTTP/1.1\r\nHost: mediagate\r\nConnection: close\r\n\r\n"
        );
    }
}
