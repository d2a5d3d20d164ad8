# Shared by bench/run.sh and bench/instructions.sh, which source it.

# mediagate_config FILE DIR KEY: the benchmark's mediagate configuration, with its listeners
# on Unix sockets in DIR and KEY as its signing key. Audit on; query and path tokens (the
# path-grant row's link carries its token in the path); one site, whose grant cookie is the
# cookie row's (the other rows' exact links set none).
mediagate_config() {
  cat > "$1" <<EOF
[server]
listen = "unix:$2/mg-verify.sock"
internal_listen = "unix:$2/mg-internal.sock"

[log]
audit = true

[token]
sources = ["query", "path"]

[keys]
dev_key = false
signing = "bench"
[keys.secrets]
bench = "$3"

[[sites]]
id = "bench"
media_origin = "http://media.localhost"
cookie_grant = { name = "mg" }
EOF
}

# tamper TEXT AFTER: TEXT with one character changed, 20 places after where AFTER ends
# ("token=", "~mg~", "mg="): inside the token's tag, so the result is a forged link or cookie
# rather than a malformed one.
tamper() {
  python3 -c 'import sys; s, a = sys.argv[1:]; i = s.index(a) + len(a) + 20; print(s[:i] + ("A" if s[i] != "A" else "B") + s[i + 1:])' "$1" "$2"
}
