#!/usr/bin/env python3
"""An upload handler behind mediagate's upload slots (python3 standard library only).

nginx checks the slot with mediagate before it reads the body (nginx/snippets/upload.conf),
reads the whole body, and only then calls this handler with what the slot's token says:

  X-Mediagate-Subject      the slot's subject (e.g. the user it was minted for), if any
  X-Mediagate-Token-Id     the slot's token id
  X-Mediagate-Data         the slot's opaque data, base64url, if any
  X-Mediagate-Reservation  the reservation nginx settles after this answer

nginx sets these itself (upload-handler.conf): a client's own copies never arrive. The token
does not arrive either. Answer 2xx (or 3xx) when the upload is stored: nginx then makes the
slot's use final. Any other answer (or none: a crash, a timeout) gives the slot back, so the
client can try again.

This handler stores each body under DIR/files/<token id>/<file name> and appends one JSON line
per stored upload to DIR/received.jsonl, then answers 201 with that line.

  upload_handler.py --listen 127.0.0.1:8002 --dir /var/lib/uploads
  upload_handler.py --listen unix:/run/upload-handler.sock --dir /var/lib/uploads

--fail-while PATH answers 500 (and stores nothing) while PATH exists: a broken handler, to
watch the slot come back.
"""

import argparse
import json
import os
import socketserver
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def address_string(self):
        # A Unix socket peer has no address.
        return str(self.client_address[0]) if self.client_address else "unix"

    def answer(self, status, body):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        self.store()

    def do_PUT(self):
        self.store()

    def do_GET(self):
        self.answer(405, json.dumps({"error": "uploads only"}) + "\n")

    def store(self):
        # nginx buffers the body and sends it with a Content-Length.
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if self.server.fail_while and os.path.exists(self.server.fail_while):
            self.answer(500, json.dumps({"error": "handler failing on purpose"}) + "\n")
            return
        token_id = self.headers.get("X-Mediagate-Token-Id")
        if not token_id:
            # Only nginx reaches this handler, and only after mediagate allowed the upload.
            self.answer(403, json.dumps({"error": "no slot"}) + "\n")
            return
        name = os.path.basename(self.path.split("?", 1)[0]) or "upload"
        folder = os.path.join(self.server.dir, "files", token_id.replace("/", "_"))
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, name), "wb") as out:
            out.write(body)
        record = {
            "method": self.command,
            "path": self.path,
            "size": len(body),
            "content_type": self.headers.get("Content-Type"),
            "subject": self.headers.get("X-Mediagate-Subject"),
            "token_id": token_id,
            "data": self.headers.get("X-Mediagate-Data"),
            "reservation": self.headers.get("X-Mediagate-Reservation"),
        }
        line = json.dumps(record, sort_keys=True)
        with LOCK, open(os.path.join(self.server.dir, "received.jsonl"), "a") as log:
            log.write(line + "\n")
        self.answer(201, line + "\n")

    def log_message(self, format, *args):
        sys.stderr.write("upload_handler: " + (format % args) + "\n")


class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--listen", default="127.0.0.1:8002", help="host:port or unix:PATH")
    parser.add_argument("--dir", required=True, help="where uploads are stored")
    parser.add_argument("--fail-while", help="answer 500 while this file exists")
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    if args.listen.startswith("unix:"):
        path = args.listen[len("unix:"):]
        if os.path.exists(path):
            os.unlink(path)
        server = UnixServer(path, Handler)
        os.chmod(path, 0o666)  # nginx's workers run as another user
    else:
        host, port = args.listen.rsplit(":", 1)
        server = ThreadingHTTPServer((host, int(port)), Handler)
    server.dir = args.dir
    server.fail_while = args.fail_while
    server.serve_forever()


if __name__ == "__main__":
    main()
