#!/usr/bin/env python3
"""A stand-in application for the mediagate demo (python3 standard library only).

It plays the part of your web application on the session domain:
  GET /              a page with media links
  GET /login?next=   "logs you in" (sets a cookie) and sends you back to `next` at once; a
                     browser that withholds the cookie (an <img> on another site) comes back
                     unauthenticated, and mediagate ends that detour on 403 refresh_loop
                     after refresh.max_attempts instead of redirecting forever
  GET /logout        forgets the cookie
  GET /media-access  nginx's access check: 200 if logged in (with a grant subject), else 401
"""

import html
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

MEDIA = "http://media.localhost:8080"


class App(BaseHTTPRequestHandler):
    def logged_in(self):
        return "session=demo" in (self.headers.get("Cookie") or "")

    def send(self, status, body=b"", headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        url = urlsplit(self.path)
        if url.path == "/media-access":
            if not self.logged_in():
                return self.send(401)
            return self.send(200, headers=[("X-Mediagate-Grant-Subject", "demo-user")])
        if url.path == "/login":
            target = parse_qs(url.query).get("next", ["/"])[0]
            # Only local paths: never an open redirect.
            if not target.startswith("/") or target.startswith("//") or "\\" in target:
                target = "/"
            return self.send(302, headers=[("Set-Cookie", "session=demo; Path=/; HttpOnly"), ("Location", target)])
        if url.path == "/logout":
            return self.send(302, headers=[("Set-Cookie", "session=; Max-Age=0; Path=/"), ("Location", "/")])
        state = "logged in" if self.logged_in() else "not logged in"
        links = "".join(
            f'<li><a href="{MEDIA}{p}">{html.escape(p)}</a></li>'
            for p in ["/media/report.pdf", "/media/public/hello.txt", "/files/notes.txt"]
        )
        page = f"<h1>mediagate demo</h1><p>You are {state}. <a href='/logout'>log out</a></p><ul>{links}</ul>"
        self.send(200, page.encode(), [("Content-Type", "text/html; charset=utf-8")])

    def log_message(self, format, *args):
        sys.stderr.write("app: " + format % args + "\n")


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    ThreadingHTTPServer(("127.0.0.1", port), App).serve_forever()
