//! Upload slots (issue 9), through real nginx rendered from `nginx/example.conf` (its
//! `/uploads/` location proxies to `examples/upload_handler.py`, its `/dav/` location writes
//! with nginx's DAV module) and a real mediagate with its embedded store: a slot takes one
//! upload, 20 concurrent uploads reach the handler once, a failed upload (the handler's 500,
//! an unreachable handler, a client gone mid-body) gives the slot back, the headers are
//! judged before the body is read, a download token never uploads and a slot never
//! downloads, the handler only sees what mediagate said, and CORS preflights never reach
//! mediagate.

use std::fs;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use mediagate::mint::{mint, MintRequest};
use mediagate::token::{Methods, Purpose};
use serde_json::Value;

use crate::support::{
    nginx_denied, request_raw, seen, spawn_listening, Options, Process, Response, Stack,
};

const ORIGIN: &str = "http://www.localhost:8081";

/// The stack and the example upload handler behind its `/uploads/` location.
pub struct Uploads {
    pub stack: Stack,
    /// The handler, once started (`None` while it is "unreachable").
    handler: Option<Process>,
}

impl Uploads {
    fn start(name: &str) -> Uploads {
        Uploads::start_with(name, Options::default())
    }

    /// [`Uploads::start`] on a stack started with `options`.
    pub fn start_with(name: &str, options: Options) -> Uploads {
        let stack = Stack::start_with(name, options);
        let mut uploads = Uploads {
            stack,
            handler: None,
        };
        uploads.start_handler();
        uploads
    }

    /// Starts `examples/upload_handler.py` on the socket example.conf's upstream names; it
    /// answers 500 while `<dir>/handler-fails` exists.
    fn start_handler(&mut self) {
        let dir = self.stack.dir.path();
        let socket = dir.join("upload-handler.sock");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/upload_handler.py");
        let mut command = Command::new("python3");
        command
            .arg(script)
            .arg("--listen")
            .arg(format!("unix:{}", socket.display()))
            .arg("--dir")
            .arg(dir.join("handler"))
            .arg("--fail-while")
            .arg(dir.join("handler-fails"));
        self.handler = Some(spawn_listening(
            &self.stack.dir,
            "upload-handler",
            &mut command,
            &socket,
        ));
    }

    /// A slot (v2 upload token, single-use unless `uses` says otherwise) for `path`.
    pub fn slot(&self, path: &str, tweak: impl FnOnce(&mut MintRequest)) -> String {
        let mut request = MintRequest {
            path: path.into(),
            purpose: Purpose::Upload,
            ..MintRequest::default()
        };
        tweak(&mut request);
        mint(&self.stack.config, &request, mediagate::clock::now())
            .unwrap()
            .path_and_query
    }

    /// Sends `method target` with `body` (its `Content-Length` unless `headers` frame it).
    fn send(&self, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        request_raw(
            &self.stack.socket("media.sock"),
            &raw_request(method, target, headers, body),
            false,
        )
    }

    fn upload(&self, method: &str, target: &str, body: &str) -> Response {
        self.send(
            method,
            target,
            &[("Content-Type", "text/plain")],
            body.as_bytes(),
        )
    }

    /// What the handler stored, one JSON object per upload, oldest first.
    pub fn received(&self) -> Vec<Value> {
        let log = self.stack.dir.path().join("handler/received.jsonl");
        fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// nginx's access log once `needle` occurs `count` times in it (panics after 15 s).
    fn access_log_with(&self, needle: &str, count: usize) -> String {
        let path = self.stack.dir.path().join("access.log");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let log = fs::read_to_string(&path).unwrap_or_default();
            if log.matches(needle).count() >= count {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "{needle:?} not logged {count}x:\n{log}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until mediagate has settled `count` reservations with `outcome`.
    fn wait_settled(&mut self, outcome: &str, count: usize) {
        self.stack
            .mediagate
            .wait_for_log_count(&format!("outcome=\"{outcome}\""), count);
    }
}

/// One HTTP/1.1 request with `Connection: close`: `Content-Length` from `body` unless the
/// headers name `Content-Length` or `Transfer-Encoding` themselves.
fn raw_request(method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut raw =
        format!("{method} {target} HTTP/1.1\r\nHost: media.localhost\r\nConnection: close\r\n");
    let framed = headers.iter().any(|(name, _)| {
        name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("transfer-encoding")
    });
    if !framed {
        raw.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (name, value) in headers {
        raw.push_str(&format!("{name}: {value}\r\n"));
    }
    raw.push_str("\r\n");
    let mut raw = raw.into_bytes();
    raw.extend_from_slice(body);
    raw
}

/// Status, reason and body of a refusal.
fn refused(response: &Response) -> (u16, Option<&str>) {
    (response.status, response.header("x-mediagate-reason"))
}

#[test]
fn a_slot_takes_one_upload_by_post_put_or_dav_then_is_used_up() {
    let uploads = Uploads::start("upload-once");
    for method in ["POST", "PUT"] {
        let path = format!("/uploads/{method}.txt");
        let slot = uploads.slot(&path, |request| {
            request.subject = Some("alice".into());
            request.token_id = Some(format!("slot-{method}"));
            request.data = Some(b"album=7".to_vec());
        });
        let response = uploads.upload(method, &slot, "first body");
        assert_eq!(response.status, 201, "{method}: {}", response.text());
        let stored = uploads
            .stack
            .dir
            .path()
            .join(format!("handler/files/slot-{method}/{method}.txt"));
        assert_eq!(fs::read_to_string(stored).unwrap(), "first body");
        let again = uploads.upload(method, &slot, "second body");
        assert_eq!(refused(&again), (403, Some("used_up")), "{method}");
    }
    let received = uploads.received();
    assert_eq!(received.len(), 2);
    for (record, method) in received.iter().zip(["POST", "PUT"]) {
        assert_eq!(record["method"], method);
        // The handler never sees the token: $mediagate_api_uri took it out.
        assert_eq!(record["path"], format!("/uploads/{method}.txt"));
        assert_eq!(record["subject"], "alice");
        assert_eq!(record["token_id"], format!("slot-{method}"));
        assert_eq!(record["data"], "YWxidW09Nw");
        assert_eq!(record["size"], 10);
    }

    let dav = uploads.slot("/dav/in/new/x.txt", |_| {});
    let response = uploads.upload("PUT", &dav, "to disk");
    assert_eq!(response.status, 201, "{}", response.text());
    let written = uploads.stack.dir.path().join("uploads/dav/in/new/x.txt");
    assert_eq!(fs::read_to_string(&written).unwrap(), "to disk");
    let again = uploads.upload("PUT", &dav, "overwritten");
    assert_eq!(refused(&again), (403, Some("used_up")));
    assert_eq!(fs::read_to_string(&written).unwrap(), "to disk");
}

#[test]
fn twenty_concurrent_posts_of_one_slot_reach_the_handler_once() {
    let uploads = Arc::new(Uploads::start("upload-race"));
    let slot = Arc::new(uploads.slot("/uploads/race.txt", |_| {}));
    let barrier = Arc::new(std::sync::Barrier::new(20));
    let threads: Vec<_> = (0..20)
        .map(|n| {
            let (uploads, slot, barrier) = (
                Arc::clone(&uploads),
                Arc::clone(&slot),
                Arc::clone(&barrier),
            );
            thread::spawn(move || {
                barrier.wait();
                uploads.upload("POST", &slot, &format!("body {n:02}"))
            })
        })
        .collect();
    let responses: Vec<Response> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let created = responses.iter().filter(|r| r.status == 201).count();
    let used_up = responses
        .iter()
        .filter(|r| refused(r) == (403, Some("used_up")))
        .count();
    assert_eq!((created, used_up), (1, 19), "{responses:#?}");
    assert_eq!(uploads.received().len(), 1);
}

#[test]
fn a_failing_handler_gives_the_slot_back_and_a_retry_succeeds() {
    let mut uploads = Uploads::start("upload-handler-500");
    let slot = uploads.slot("/uploads/retry.txt", |_| {});
    let switch = uploads.stack.dir.write("handler-fails", "");
    let failed = uploads.upload("POST", &slot, "attempt 1");
    assert_eq!(failed.status, 500);
    uploads.wait_settled("released", 1);
    fs::remove_file(switch).unwrap();
    let retried = uploads.upload("POST", &slot, "attempt 2");
    assert_eq!(retried.status, 201, "{}", retried.text());
    uploads.wait_settled("committed", 1);
    assert_eq!(
        refused(&uploads.upload("POST", &slot, "3")),
        (403, Some("used_up"))
    );
    let received = uploads.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0]["size"], 9);
}

#[test]
fn an_unreachable_handler_gives_the_slot_back() {
    let mut uploads = Uploads::start("upload-handler-502");
    let slot = uploads.slot("/uploads/later.txt", |_| {});
    drop(uploads.handler.take());
    let _ = fs::remove_file(uploads.stack.dir.path().join("upload-handler.sock"));
    assert_eq!(uploads.upload("PUT", &slot, "nobody home").status, 502);
    uploads.wait_settled("released", 1);
    uploads.start_handler();
    let response = uploads.upload("PUT", &slot, "now");
    assert_eq!(response.status, 201, "{}", response.text());
    assert_eq!(uploads.received().len(), 1);
}

#[test]
fn a_client_that_disconnects_mid_body_gives_the_slot_back() {
    let mut uploads = Uploads::start("upload-disconnect");
    let slot = uploads.slot("/uploads/cut.txt", |_| {});
    {
        let mut stream = UnixStream::connect(uploads.stack.socket("media.sock")).unwrap();
        let head = raw_request(
            "POST",
            &slot,
            &[("Content-Length", "100000"), ("Content-Type", "text/plain")],
            b"only the first bytes",
        );
        stream.write_all(&head).unwrap();
        // Leaving: the rest of the body never comes.
    }
    uploads.wait_settled("released", 1);
    assert_eq!(
        uploads.received().len(),
        0,
        "a partial body reached the handler"
    );
    let response = uploads.upload("POST", &slot, "whole body");
    assert_eq!(response.status, 201, "{}", response.text());
    assert_eq!(uploads.received().len(), 1);
}

#[test]
fn the_headers_are_judged_before_the_body_and_a_refusal_costs_nothing() {
    let uploads = Uploads::start("upload-headers");
    let slot = uploads.slot("/uploads/pic.png", |request| {
        request.max_size = Some(10);
        request.content_types = Some("image/png".into());
    });
    let png = [("Content-Type", "image/png")];
    let too_large = uploads.send("POST", &slot, &png, b"eleven byte");
    assert_eq!(refused(&too_large), (413, Some("too_large")));
    assert_eq!(too_large.text(), "upload refused: too_large\n");
    let chunked = uploads.send(
        "POST",
        &slot,
        &[
            ("Content-Type", "image/png"),
            ("Transfer-Encoding", "chunked"),
        ],
        b"5\r\nhello\r\n0\r\n\r\n",
    );
    assert_eq!(refused(&chunked), (411, Some("length_required")));
    let wrong_type = uploads.send("POST", &slot, &[("Content-Type", "image/gif")], b"gif");
    assert_eq!(refused(&wrong_type), (415, Some("content_type")));
    let no_type = uploads.send("POST", &slot, &[], b"png");
    assert_eq!(refused(&no_type), (415, Some("content_type")));
    assert_eq!(uploads.received().len(), 0);
    // None of them reserved anything: the slot still takes its one upload.
    let fits = uploads.send(
        "POST",
        &slot,
        &[("Content-Type", "image/png; x=y")],
        b"0123456789",
    );
    assert_eq!(fits.status, 201, "{}", fits.text());
    assert_eq!(uploads.received()[0]["content_type"], "image/png; x=y");
}

#[test]
fn a_download_token_cannot_upload_and_a_slot_cannot_download() {
    let uploads = Uploads::start("upload-purpose");
    uploads.stack.dir.write("files/media/clip.txt", "clip");
    let download = uploads.stack.sign_with(MintRequest {
        path: "/uploads/x.txt".into(),
        methods: Some(Methods::WRITE),
        ..MintRequest::default()
    });
    assert_eq!(
        refused(&uploads.upload("PUT", &download, "x")),
        (403, Some("wrong_purpose"))
    );
    let slot_for_media = uploads.slot("/media/clip.txt", |_| {});
    assert_eq!(
        seen(&uploads.stack.media("GET", &slot_for_media)),
        nginx_denied("wrong_purpose")
    );
    // Nor through the upload location: GET is no upload method.
    let slot = uploads.slot("/uploads/x.txt", |_| {});
    assert_eq!(
        refused(&uploads.send("GET", &slot, &[], b"")),
        (403, Some("method"))
    );
    assert_eq!(uploads.received().len(), 0);
}

#[test]
fn forged_grant_headers_never_reach_the_handler() {
    let uploads = Uploads::start("upload-forged");
    let slot = uploads.slot("/uploads/who.txt", |request| {
        request.subject = Some("alice".into());
    });
    let response = uploads.send(
        "POST",
        &slot,
        &[
            ("Content-Type", "text/plain"),
            ("X-Mediagate-Subject", "mallory"),
            ("X-Mediagate-Data", "Zm9yZ2Vk"),
            ("X-Mediagate-Token-Id", "forged"),
            ("X-Mediagate-Reservation", "forged"),
        ],
        b"hi",
    );
    assert_eq!(response.status, 201, "{}", response.text());
    let record = &uploads.received()[0];
    assert_eq!(record["subject"], "alice");
    assert_eq!(record["data"], Value::Null);
    assert_ne!(record["token_id"], "forged");
    let reservation = record["reservation"].as_str().unwrap();
    assert!(
        mediagate::upload::Reservation::parse(reservation).is_some(),
        "{reservation:?}"
    );
}

#[test]
fn cors_preflights_are_answered_by_nginx_for_allowed_origins_only() {
    let mut uploads = Uploads::start("upload-cors");
    let slot = uploads.slot("/uploads/cors.png", |_| {});
    let decisions = |uploads: &Uploads| uploads.stack.mediagate.log_count("mode=\"upload\"");
    let preflight = |origin: &str| {
        uploads.send(
            "OPTIONS",
            &slot,
            &[
                ("Origin", origin),
                ("Access-Control-Request-Method", "PUT"),
                ("Access-Control-Request-Headers", "content-type"),
            ],
            b"",
        )
    };
    for _ in 0..3 {
        let allowed = preflight(ORIGIN);
        assert_eq!(allowed.status, 204);
        assert_eq!(allowed.header("access-control-allow-origin"), Some(ORIGIN));
        assert_eq!(
            allowed.header("access-control-allow-methods"),
            Some("POST, PUT")
        );
        let other = preflight("http://evil.localhost");
        assert_eq!(other.status, 204);
        assert_eq!(other.header("access-control-allow-origin"), None);
    }
    // Not one of them reached mediagate (no upload decision was made)...
    assert_eq!(decisions(&uploads), 0);
    // ...and the slot still takes its upload, whose answer the allowed origin may read.
    let response = uploads.send(
        "PUT",
        &slot,
        &[("Origin", ORIGIN), ("Content-Type", "image/png")],
        b"png",
    );
    assert_eq!(response.status, 201, "{}", response.text());
    assert_eq!(response.header("access-control-allow-origin"), Some(ORIGIN));
    uploads.wait_settled("committed", 1);
    assert_eq!(decisions(&uploads), 1);
    let refused_again = uploads.send("PUT", &slot, &[("Origin", ORIGIN)], b"png");
    assert_eq!(refused(&refused_again), (403, Some("used_up")));
    assert_eq!(
        refused_again.header("access-control-allow-origin"),
        Some(ORIGIN)
    );
    assert_eq!(
        refused_again.header("access-control-expose-headers"),
        Some("X-Mediagate-Reason")
    );
    // The access log shows what the clients saw, not the settle's own answer.
    // (nginx writes a line once the settle is done: wait for both.)
    let log = uploads.access_log_with("\"PUT /uploads/cors.png\"", 2);
    let statuses: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("\"PUT /uploads/cors.png\""))
        .map(|line| line.split("\" ").nth(1).unwrap().split(' ').next().unwrap())
        .collect();
    assert_eq!(statuses, ["201", "403"], "{log}");
}
