#!/usr/bin/env python3
"""A stand-in application for the mediagate demo (python3 standard library only).

It plays the part of your web application on the session domain:
  GET /              a page with media links: the report (PDF), the video (MP4), ...
  GET /video         a page playing the HLS video (<video src=playlist>, no token: the
                     refresh flow fetches one; browsers with native HLS, e.g. Chrome, Safari)
  GET /login?next=   a login form: a user name (any name of letters, digits, '-' or '_'; no
                     password, this is a stand-in) and `next` in a hidden field
  POST /login        sets the session cookie and sends you back to `next` (a local path only:
                     never an open redirect); a browser that withholds the cookie (an <img> on
                     another site) comes back unauthenticated, and mediagate ends that detour on
                     403 refresh_loop after refresh.max_attempts instead of redirecting forever
  GET /logout        forgets the cookie
  GET /media-access  nginx's access check: 200 if logged in (the user name as grant subject,
                     and a video's whole folder under /media/videos/ as grant prefix), else 401

    python3 examples/demo_app.py [PORT [MEDIA_ORIGIN]]    (8000, http://media.localhost:8080)
"""

import html
import re
import sys
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

MEDIA = "http://media.localhost:8080"
LINKS = ["/media/report.pdf", "/media/clip.mp4", "/media/public/hello.txt", "/files/notes.txt"]
USER = re.compile(r"[A-Za-z0-9_-]{1,32}")
# A video's folder: the playlist and its segments (the X-Media-Path mediagate sends is decoded).
VIDEO_FOLDER = re.compile(r"/media/videos/[A-Za-z0-9_-]+/")
# A login form is a few hundred bytes; anything larger is refused unread.
MAX_FORM = 4096


def local_path(target):
    """`target` if it is a printable-ASCII path on this site, else "/": never an open redirect,
    never a header split by a CR or LF in `next`."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    if any(not 0x21 <= ord(c) <= 0x7E for c in target):
        return "/"
    return target


def login_form(target, problem=""):
    note = f"<p><strong>{html.escape(problem)}</strong></p>" if problem else ""
    return (
        "<!doctype html><title>Log in</title><h1>Log in to the mediagate demo</h1>"
        f"{note}<form method='post' action='/login'>"
        "<label>User name <input name='user' autocomplete='username' required "
        "pattern='[A-Za-z0-9_-]{1,32}'></label> "
        f"<input type='hidden' name='next' value=\"{html.escape(target, quote=True)}\">"
        "<button type='submit'>Log in</button></form>"
    ).encode()


class App(BaseHTTPRequestHandler):
    def user(self):
        """The logged-in user name, or None."""
        try:
            morsel = SimpleCookie(self.headers.get("Cookie") or "").get("session")
        except CookieError:
            return None
        return morsel.value if morsel and USER.fullmatch(morsel.value) else None

    def send(self, status, body=b"", headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_html(self, status, body, headers=()):
        self.send(status, body, [("Content-Type", "text/html; charset=utf-8"), *headers])

    def do_GET(self):
        url = urlsplit(self.path)
        if url.path == "/media-access":
            user = self.user()
            if user is None:
                return self.send(401)
            grant = [("X-Mediagate-Grant-Subject", user)]
            # A video's playlist and segments are one grant: one check plays all of it.
            video = VIDEO_FOLDER.match(self.headers.get("X-Media-Path") or "")
            if video:
                grant.append(("X-Mediagate-Grant-Prefix", video.group(0)))
            return self.send(200, headers=grant)
        if url.path == "/login":
            target = local_path(parse_qs(url.query).get("next", ["/"])[0])
            return self.send_html(200, login_form(target), [("Cache-Control", "no-store")])
        if url.path == "/logout":
            return self.send(302, headers=[("Set-Cookie", "session=; Max-Age=0; Path=/"), ("Location", "/")])
        if url.path == "/video":
            src = html.escape(MEDIA + "/media/videos/clip/index.m3u8", quote=True)
            page = (
                "<!doctype html><title>mediagate demo: HLS</title><h1>A protected HLS video</h1>"
                f"<video controls muted autoplay width='640' src=\"{src}\"></video>"
                "<p>No token in the page: the refresh flow fetches one for the whole folder. "
                "<a href='/'>back</a></p>"
            )
            return self.send_html(200, page.encode())
        if url.path != "/":
            return self.send_html(404, b"<h1>Not found</h1>")
        user = self.user()
        state = f"logged in as {html.escape(user)}" if user else "not logged in"
        links = "".join(f'<li><a href="{html.escape(MEDIA + p)}">{html.escape(p)}</a></li>' for p in LINKS)
        page = (
            "<!doctype html><title>mediagate demo</title><h1>mediagate demo</h1>"
            f"<p>You are {state}. <a href='/login?next=/'>log in</a> <a href='/logout'>log out</a></p>"
            f"<ul>{links}</ul><p><a href='/video'>the video as HLS, on a page</a></p>"
        )
        self.send_html(200, page.encode())

    def do_POST(self):
        if urlsplit(self.path).path != "/login":
            return self.send_html(404, b"<h1>Not found</h1>")
        try:
            length = int(self.headers.get("Content-Length") or "")
        except ValueError:
            return self.send_html(411, b"<h1>A form needs a Content-Length</h1>")
        if not 0 <= length <= MAX_FORM:
            self.close_connection = True
            return self.send_html(413, b"<h1>Form too large</h1>")
        try:
            form = parse_qs(self.rfile.read(length).decode("utf-8"), strict_parsing=False)
        except UnicodeDecodeError:
            return self.send_html(400, b"<h1>The form is not UTF-8</h1>")
        target = local_path(form.get("next", ["/"])[0])
        user = form.get("user", [""])[0]
        if not USER.fullmatch(user):
            problem = "A user name is 1 to 32 letters, digits, '-' or '_'."
            return self.send_html(400, login_form(target, problem), [("Cache-Control", "no-store")])
        cookie = f"session={user}; Path=/; HttpOnly; SameSite=Lax"
        self.send(303, headers=[("Set-Cookie", cookie), ("Location", target)])

    def log_message(self, format, *args):
        sys.stderr.write("app: " + format % args + "\n")


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    if len(sys.argv) > 2:
        MEDIA = sys.argv[2]
    ThreadingHTTPServer(("127.0.0.1", port), App).serve_forever()
