#!/usr/bin/env bash
# Instructions per request, nginx and mediagate together, for one file fetched three ways: a
# query link, the same link in path form (~mg~ segment), and a prefix link's grant cookie.
#
# wrk's req/s on a shared 2-vCPU machine moves by as much as these rows differ (the same
# query link, measured twice in one run of run.sh, came out up to 1.20x apart).
# valgrind's callgrind counts executed instructions, which do not depend on the machine's
# load: the same build and the same configuration give the same counts to within 0.5 %.
#
#   bash bench/instructions.sh         (MEDIAGATE_BIN=target/release/mediagate by default)
#
# Environment:
#   MEDIAGATE_BIN   the binary to measure (a release build: counts of a debug build mean little)
#   REQUESTS=1000   requests per row and round, over one keep-alive connection
#   ROUNDS=2        rounds; every row runs once per round, in the same order
#   PCRE_JIT=off    nginx's pcre_jit (main context): "on" measures protect.conf's rewrite with
#                   PCRE's JIT, which nginx leaves off unless configured
#   KEEP=1          keep the temporary directory (callgrind's dumps: cg.mediagate.N, cg.nginx.N)
#   CG_MG_OPTS      more callgrind options for mediagate: "--dump-instr=yes" with a build that
#                   has line tables (CARGO_PROFILE_RELEASE_DEBUG=line-tables-only) shows where
#                   the instructions go (callgrind_annotate)
#
# How: nginx (master_process off, one process) and mediagate (audit log on) both run under
# callgrind. Before each row both counters are zeroed (callgrind_control -z), REQUESTS
# requests are sent, every answer is checked (200 and the file's 4,096 bytes), and both are
# dumped (-d): start-up, warm-up and everything between rows is not counted. Each row's count
# is divided by REQUESTS; the grant rows are compared with the mean of the query rows.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=bench/common.sh
source "$repo/bench/common.sh"
MEDIAGATE_BIN="${MEDIAGATE_BIN:-$repo/target/release/mediagate}"
REQUESTS="${REQUESTS:-1000}"
ROUNDS="${ROUNDS:-2}"
PCRE_JIT="${PCRE_JIT:-off}"
say() { echo "instructions: $*" >&2; }
die() { say "$*"; exit 1; }
for tool in valgrind callgrind_control nginx curl python3; do
  command -v "$tool" >/dev/null || die "needs $tool (apt-get install valgrind nginx curl python3)"
done
[ -x "$MEDIAGATE_BIN" ] || die "no binary at $MEDIAGATE_BIN (cargo build --release)"
bin="$MEDIAGATE_BIN"
# mediagate refuses to start with a MEDIAGATE_* variable that names no setting.
unset MEDIAGATE_BIN

dir="$(mktemp -d /tmp/mediagate-instructions.XXXXXX)"
chmod 755 "$dir"
pids=()
cleanup() {
  set +e
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
  if [ -n "${KEEP:-}" ]; then say "kept $dir"; else rm -rf "$dir"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cp "$bin" "$dir/mediagate-bin"
mg="$dir/mediagate-bin"
mkdir -p "$dir/files/media" "$dir/mediagate" "$dir/tmp"
head -c 4096 /dev/urandom > "$dir/files/media/4k.bin"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"

# ---- mediagate: run.sh's configuration ------------------------------------------------
mediagate_config "$dir/mediagate.toml" "$dir" "$("$mg" keygen | head -n 1)"

# ---- nginx: the shipped snippets, one server, one process ------------------------------
cp "$repo"/nginx/snippets/*.conf "$dir/mediagate/"
echo "media.localhost 1;" >> "$dir/mediagate/cookie-grant-sites.conf"
cat > "$dir/nginx.conf" <<EOF
worker_processes 1;
master_process off;
daemon off;
pcre_jit $PCRE_JIT;
error_log $dir/nginx-error.log warn;
pid $dir/nginx.pid;
events {
    worker_connections 64;
}
http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    sendfile on;
    keepalive_requests 1000000;
    access_log off;
    client_body_temp_path tmp;
    proxy_temp_path tmp;
    fastcgi_temp_path tmp;
    uwsgi_temp_path tmp;
    scgi_temp_path tmp;
    include mediagate/http.conf;
    upstream mediagate_verify {
        server unix:$dir/mg-verify.sock;
        keepalive 16;
    }
    server {
        listen 127.0.0.1:$port;
        server_name media.localhost;
        include mediagate/media-auth.conf;
        location /media/ {
            include mediagate/protect.conf;
            root $dir/files;
        }
    }
}
EOF
chmod -R a+rX "$dir"

wait_until() { # wait_until WHAT COMMAND...: start-up under valgrind takes seconds
  local what="$1"
  shift
  for _ in $(seq 300); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  die "$what did not come up (logs in $dir; KEEP=1 keeps them)"
}
MEDIAGATE_STORE__PATH="$dir/mg.redb" valgrind --tool=callgrind ${CG_MG_OPTS:-} \
  --callgrind-out-file="$dir/cg.mediagate" "$mg" --config "$dir/mediagate.toml" serve </dev/null >/dev/null 2>"$dir/mediagate.log" &
mg_pid=$!
pids+=("$mg_pid")
wait_until mediagate curl -fsS --unix-socket "$dir/mg-verify.sock" http://mg/healthz
valgrind --tool=callgrind --callgrind-out-file="$dir/cg.nginx" \
  nginx -p "$dir" -c "$dir/nginx.conf" </dev/null >/dev/null 2>"$dir/nginx.log" &
nginx_pid=$!
pids+=("$nginx_pid")
wait_until nginx curl -sS -o /dev/null "http://127.0.0.1:$port/"

# ---- links ------------------------------------------------------------------------------
sign() { "$mg" --config "$dir/mediagate.toml" sign "$@" --ttl 3h --base ""; }
declare -A URL COOKIE
URL[query]="$(sign /media/4k.bin)"
URL[path]="$(sign /media/4k.bin --form path)"
URL[cookie]="/media/4k.bin"
COOKIE[cookie]="mg=$(sign /media/ --prefix --token-only)"

# send ROW N: N requests over one connection; exits non-zero unless every answer is the file.
send() {
  python3 - "$port" "${URL[$1]}" "$2" "${COOKIE[$1]:-}" "$dir/files/media/4k.bin" <<'PY'
import http.client, sys
port, url, n, cookie, file = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
want = open(file, "rb").read()
headers = {"Host": "media.localhost"}
if cookie:
    headers["Cookie"] = cookie
conn = http.client.HTTPConnection("127.0.0.1", port)
for _ in range(n):
    conn.request("GET", url, headers=headers)
    answer = conn.getresponse()
    body = answer.read()
    if answer.status != 200 or body != want:
        sys.exit(f"{url}: {answer.status}, {len(body)} bytes")
PY
}
# The rows must really check: a changed tag in each form is refused.
for check in "$(tamper "${URL[query]}" "token=")" "$(tamper "${URL[path]}" "~mg~")"; do
  status="$(curl -sS -o /dev/null -w '%{http_code}' -H 'Host: media.localhost' "http://127.0.0.1:$port$check")"
  [ "$status" = 403 ] || die "a forged link got $status, not 403"
done
status="$(curl -sS -o /dev/null -w '%{http_code}' -H 'Host: media.localhost' \
  -H "Cookie: $(tamper "${COOKIE[cookie]}" "mg=")" "http://127.0.0.1:$port/media/4k.bin")"
[ "$status" = 403 ] || die "a forged grant cookie got $status, not 403"

# ---- measuring --------------------------------------------------------------------------
rows=(query path cookie)
for row in "${rows[@]}"; do send "$row" 100 || die "row $row failed its warm-up"; done
dumps=0
# total FILE: the instruction count of one callgrind dump.
total() { awk '/^(summary|totals):/ {print $2; exit}' "$1"; }
# dumped PREFIX: waits for dump number $dumps of PREFIX to be complete, prints its count.
dumped() {
  local file="$1.$dumps"
  for _ in $(seq 300); do
    [ -s "$file" ] && grep -q '^totals:' "$file" && { total "$file"; return; }
    sleep 0.1
  done
  die "no callgrind dump $file"
}
declare -A MG NGINX
for round in $(seq "$ROUNDS"); do
  for row in "${rows[@]}"; do
    callgrind_control -z "$mg_pid" >/dev/null 2>&1
    callgrind_control -z "$nginx_pid" >/dev/null 2>&1
    send "$row" "$REQUESTS" || die "row $row failed"
    callgrind_control -d "$row" "$mg_pid" >/dev/null 2>&1
    callgrind_control -d "$row" "$nginx_pid" >/dev/null 2>&1
    dumps=$((dumps + 1))
    MG[$row]="${MG[$row]:-} $(dumped "$dir/cg.mediagate")"
    NGINX[$row]="${NGINX[$row]:-} $(dumped "$dir/cg.nginx")"
    say "round $round, $row: done"
  done
done

# ---- report -----------------------------------------------------------------------------
python3 - "$REQUESTS" "$PCRE_JIT" "${MG[query]}" "${NGINX[query]}" "${MG[path]}" "${NGINX[path]}" \
  "${MG[cookie]}" "${NGINX[cookie]}" <<'PY'
import sys
requests, jit = int(sys.argv[1]), sys.argv[2]
def per_request(counts):
    values = [int(c) / requests for c in counts.split()]
    return sum(values) / len(values), max(values) / min(values) - 1
rows = {}
for i, name in enumerate(["query", "path", "cookie"]):
    rows[name] = (per_request(sys.argv[3 + 2 * i]), per_request(sys.argv[4 + 2 * i]))
label = {
    "query": "query link (?token=)",
    "path": "path grant (~mg~ segment)",
    "cookie": "cookie grant (no token in the URL)",
}
(mq, _), (nq, _) = rows["query"]
print(f"Instructions per request, mean of the rounds (nginx pcre_jit {jit}, audit on):\n")
print("| row | mediagate | nginx | both | both, against the query link | spread between rounds |")
print("|---|---:|---:|---:|---:|---:|")
for name, ((m, ms), (n, ns)) in rows.items():
    ratio = (mq + nq) / (m + n)
    print(f"| {label[name]} | {m:,.0f} | {n:,.0f} | {m + n:,.0f} | "
          f"{ratio:.3f}x (as req/s) | {max(ms, ns) * 100:.1f} % |")
PY
