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

# tamper TEXT AFTER: TEXT with one character of the token that follows AFTER ("token=",
# "~mg~", "mg=") changed: the fifth from the token's end, inside its tag (the last one's
# unused bits may make a change no change), so the result is a forged link or cookie that only
# the signature check refuses.
tamper() {
  python3 - "$1" "$2" <<'PY'
import sys
text, after = sys.argv[1:]
start = text.index(after) + len(after)
end = min([i for i in (text.find(c, start) for c in "/&;") if i != -1] + [len(text)])
i = end - 5
print(text[:i] + ("A" if text[i] != "A" else "B") + text[i + 1:])
PY
}

# wait_until WHAT COMMAND...: polls COMMAND for up to 30 s (start-up under valgrind takes
# seconds), else dies naming WHAT. Uses the sourcing script's `die` and `$dir`.
wait_until() {
  local what="$1"
  shift
  for _ in $(seq 300); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  die "$what did not come up (logs in $dir; KEEP=1 keeps them)"
}
