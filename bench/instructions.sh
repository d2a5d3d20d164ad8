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
# callgrind. Before each row both are dumped (callgrind_control -d, which also zeroes the
# counters), REQUESTS requests are sent, every answer is checked (200 and the file's 4,096
# bytes), and both are dumped again: that dump is the row, and start-up, warm-up and
# everything between rows is not counted. Each row's count is divided by REQUESTS; the
# grant rows are compared with the mean of the query rows.
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
    variables_hash_bucket_size 128;
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
# The rows must really check: a changed tag in each form is refused for its signature (a
# forged cookie counts as no token: the site has no session origin, so missing_token).
# refused EXPECTED_REASON URL [CURL_ARGS...]: the answer is 403 with that reason.
refused() {
  local want="$1" url="$2"
  shift 2
  local got
  got="$(curl -sS -o /dev/null -D - -H 'Host: media.localhost' "$@" "http://127.0.0.1:$port$url" |
    tr -d '\r' | awk 'NR == 1 {s = $2} tolower($1) == "x-mediagate-reason:" {r = $2} END {print s, r}')"
  [ "$got" = "403 $want" ] || die "a forged link or cookie got '$got', not '403 $want'"
}
refused bad_signature "$(tamper "${URL[query]}" "token=")"
refused bad_signature "$(tamper "${URL[path]}" "~mg~")"
refused missing_token /media/4k.bin -H "Cookie: $(tamper "${COOKIE[cookie]}" "mg=")"

# ---- measuring --------------------------------------------------------------------------
rows=(query path cookie)
for row in "${rows[@]}"; do send "$row" 100 || die "row $row failed its warm-up"; done
# dump NAME: has callgrind dump both processes' counters (which also zeroes them) under the
# trigger NAME, waits until both files are complete and are that dump, and sets COUNT_MG and
# COUNT_NGINX to their instruction counts. callgrind_control exits 0 even when it reached no
# process, so its answer is checked too.
dumps=0
dump() {
  local name="$1" pid
  for pid in "$mg_pid" "$nginx_pid"; do
    callgrind_control -d "$name" "$pid" >"$dir/control.out" 2>&1 || true
    grep -q "sending command dump $name to pid $pid" "$dir/control.out" ||
      die "callgrind_control could not dump pid $pid: $(cat "$dir/control.out")"
  done
  dumps=$((dumps + 1))
  COUNT_MG="$(dumped "$dir/cg.mediagate.$dumps" "$name")"
  COUNT_NGINX="$(dumped "$dir/cg.nginx.$dumps" "$name")"
}
# dumped FILE NAME: FILE's instruction count, once it is complete; dies unless it is the dump
# triggered as NAME.
dumped() {
  local file="$1" name="$2"
  for _ in $(seq 300); do
    if [ -s "$file" ] && grep -q '^totals:' "$file"; then
      grep -qx "desc: Trigger: dump $name" "$file" ||
        die "$file is not the dump '$name': $(grep '^desc: Trigger' "$file")"
      awk '/^totals:/ {print $2; exit}' "$file"
      return
    fi
    sleep 0.1
  done
  die "no callgrind dump $file"
}
declare -A MG NGINX
for round in $(seq "$ROUNDS"); do
  for row in "${rows[@]}"; do
    dump "before-$row"
    send "$row" "$REQUESTS" || die "row $row failed"
    dump "$row"
    MG[$row]="${MG[$row]:-} $COUNT_MG"
    NGINX[$row]="${NGINX[$row]:-} $COUNT_NGINX"
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
