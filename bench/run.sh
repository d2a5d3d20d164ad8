#!/usr/bin/env bash
# End-to-end benchmark: one nginx (1 worker) in front of mediagate, compared with nginx
# alone (static files, secure_link, auth_request / X-Accel-Redirect "floors" that always
# allow). Prints a markdown report (docs/benchmarks.md holds a real run).
#
# Usage: bench/run.sh                      (from anywhere; builds target/release/mediagate)
#   DURATION=5         seconds per row and round          (wrk -d)
#   ROUNDS=3           rounds; rows are interleaved and each row reports its median
#   WARMUP=1           seconds of untimed load before each row in the first round
#   CONNECTIONS=32     connections for the normal rows    (wrk -c)
#   BIG_CONNECTIONS=1000  connections for the "many connections" rows
#   FOREIGN_MAX=25     repeat a run during which other processes used more than this % of a
#   RETRIES=1          core (this machine is shared), at most RETRIES times, keeping the
#   RETRY_BUDGET=6     quietest attempt, and at most RETRY_BUDGET repeats in the whole run
#   NICE=              e.g. -10: run nginx, mediagate and wrk at this nice level (root only),
#                      so other work on a shared machine disturbs the rows less
#   MEDIAGATE_BIN=...  use this binary instead of `cargo build --release`
#   KEEP=1             keep the temporary directory (logs, configs) after the run
#   OUT=file           also write the raw per-round results (TSV) there
#   INSTRUCTIONS=1     then run bench/instructions.sh (needs valgrind; 0 skips it): the grant
#                      rows against the query link in instructions, which this machine's
#                      load does not move as it moves req/s
#
# Everything lives in a world-readable temporary directory (nginx workers run as nobody)
# that is removed on exit; nginx listens on free ports chosen at start, mediagate on Unix
# sockets (plus one TCP port for the rows that hit it directly), each instance with its own
# embedded store file there, and one instance on a redis-server (Unix socket, no
# persistence) started in that directory for the counted rows.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
# shellcheck source=bench/common.sh
source "$repo/bench/common.sh"

DURATION="${DURATION:-5}"
ROUNDS="${ROUNDS:-3}"
WARMUP="${WARMUP:-1}"
CONNECTIONS="${CONNECTIONS:-32}"
BIG_CONNECTIONS="${BIG_CONNECTIONS:-1000}"
FOREIGN_MAX="${FOREIGN_MAX:-25}"
RETRIES="${RETRIES:-1}"
RETRY_BUDGET="${RETRY_BUDGET:-6}"
prio=()
[ -z "${NICE:-}" ] || prio=(nice -n "$NICE")

say() { echo "bench: $*" >&2; }
die() { echo "bench: ERROR: $*" >&2; exit 1; }

# ---- tools -----------------------------------------------------------------------------
missing=()
tools=(nginx wrk curl python3 redis-server redis-cli)
[ "${INSTRUCTIONS:-1}" = 0 ] || tools+=(valgrind)
for tool in "${tools[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  packages=(nginx wrk curl python3 redis-server redis-tools)
  [ "${INSTRUCTIONS:-1}" = 0 ] || packages+=(valgrind)
  $sudo apt-get install -y "${packages[@]}" >/dev/null
fi

# 1,000 client connections plus as many upstream connections, in wrk, nginx and mediagate.
ulimit -n 16384 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -ge $((2 * BIG_CONNECTIONS + 200)) ] ||
  die "ulimit -n is $(ulimit -n); need at least $((2 * BIG_CONNECTIONS + 200)) open files"

if [ -z "${MEDIAGATE_BIN:-}" ]; then
  say "cargo build --release"
  cargo build --release --quiet
  MEDIAGATE_BIN="$repo/target/release/mediagate"
fi
[ -x "$MEDIAGATE_BIN" ] || die "no mediagate binary at $MEDIAGATE_BIN"
# Not a setting: mediagate refuses MEDIAGATE_ variables that name none, so keep it out of
# the environment the servers below inherit.
export -n MEDIAGATE_BIN

# ---- temporary directory, cleanup -------------------------------------------------------
dir="$(mktemp -d /tmp/mediagate-bench.XXXXXX)"
chmod 755 "$dir"
pids=()
nginx_pid=""
sampler=""
cleanup() {
  set +e
  [ -n "$sampler" ] && kill "$sampler" 2>/dev/null
  [ -n "$nginx_pid" ] && kill -QUIT "$nginx_pid" 2>/dev/null
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${pids[@]}" $nginx_pid; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
  done
  if [ -n "${KEEP:-}" ]; then say "kept $dir"; else rm -rf "$dir"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A private copy: others may rebuild target/release while this runs.
cp "$MEDIAGATE_BIN" "$dir/mediagate-bin"
mg="$dir/mediagate-bin"

read -r PORT PORT_NOAUDIT PORT_DIRECT PORT_CACHED PORT_REDIS < <(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(5)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
for s in socks:
    s.close()
PY
)

# ---- files ------------------------------------------------------------------------------
mkdir -p "$dir/files/media" "$dir/files/files" "$dir/tmp" "$dir/mediagate" "$dir/mediagate-noaudit" \
  "$dir/mediagate-redis"
head -c 4096 /dev/urandom > "$dir/files/media/4k.bin"
head -c 1048576 /dev/urandom > "$dir/files/media/1m.bin"
# accel mode serves /files/X from alias $dir/files/ + /files/X: the same bytes.
ln "$dir/files/media/4k.bin" "$dir/files/files/4k.bin"
ln "$dir/files/media/1m.bin" "$dir/files/files/1m.bin"
declare -A SIZE=([4k]=4096 [1m]=1048576)

# ---- Redis, for the instance that counts there ------------------------------------------
# As tests/store_redis.rs starts it: a Unix socket, no TCP port, no persistence (the embedded
# store, by contrast, fsyncs every commit).
redis-server --save "" --appendonly no --port 0 --unixsocket "$dir/redis.sock" \
  --unixsocketperm 700 --dir "$dir" --logfile "$dir/redis.log" </dev/null >/dev/null 2>&1 &
redis_pid=$!
pids+=($redis_pid)

# ---- mediagate: two configurations, four instances --------------------------------------
key="$("$mg" keygen | head -n 1)"
mediagate_config "$dir/mediagate.toml" "$dir" "$key"
# The same, counting in Redis.
cp "$dir/mediagate.toml" "$dir/mediagate-redis.toml"
cat >> "$dir/mediagate-redis.toml" <<EOF

[store]
backend = "redis"
redis_urls = ["unix://$dir/redis.sock"]
EOF

# start_mediagate NAME INTERNAL_SOCKET CONFIG [VAR=VALUE...]: stderr (audit lines) goes to
# NAME.log. Each instance on the embedded store gets its own file (redb admits one process
# per file).
declare -A MGPID MGINTERNAL AUDIT_LINES
start_mediagate() {
  local name="$1"
  MGINTERNAL[$name]="$2"
  local config="$3"
  shift 3
  "${prio[@]}" env -u RUST_LOG "$@" "$mg" --config "$config" serve \
    </dev/null >/dev/null 2>>"$dir/$name.log" &
  MGPID[$name]=$!
  pids+=($!)
}
start_mediagate mg "$dir/mg-internal.sock" "$dir/mediagate.toml" \
  "MEDIAGATE_STORE__PATH=$dir/mg.redb"
start_mediagate mg_noaudit "$dir/mg-noaudit-internal.sock" "$dir/mediagate.toml" \
  MEDIAGATE_LOG__AUDIT=false "MEDIAGATE_STORE__PATH=$dir/mg-noaudit.redb" \
  "MEDIAGATE_SERVER__LISTEN=unix:$dir/mg-noaudit-verify.sock" \
  "MEDIAGATE_SERVER__INTERNAL_LISTEN=unix:$dir/mg-noaudit-internal.sock"
start_mediagate mg_direct "$dir/mg-direct-internal.sock" "$dir/mediagate.toml" \
  "MEDIAGATE_STORE__PATH=$dir/mg-direct.redb" \
  "MEDIAGATE_SERVER__LISTEN=127.0.0.1:$PORT_DIRECT" \
  "MEDIAGATE_SERVER__INTERNAL_LISTEN=unix:$dir/mg-direct-internal.sock"
start_mediagate mg_redis "$dir/mg-redis-internal.sock" "$dir/mediagate-redis.toml" \
  "MEDIAGATE_SERVER__LISTEN=unix:$dir/mg-redis-verify.sock" \
  "MEDIAGATE_SERVER__INTERNAL_LISTEN=unix:$dir/mg-redis-internal.sock"

wait_until "mediagate" curl -fsS --unix-socket "$dir/mg-verify.sock" http://mg/healthz
wait_until "mediagate (audit off)" curl -fsS --unix-socket "$dir/mg-noaudit-verify.sock" http://mg/healthz
wait_until "mediagate (direct)" curl -fsS "http://127.0.0.1:$PORT_DIRECT/healthz"
wait_until "redis-server" redis-cli -s "$dir/redis.sock" ping
wait_until "mediagate (Redis)" curl -fsS --unix-socket "$dir/mg-redis-verify.sock" http://mg/healthz

# ---- nginx: the shipped snippets, copied as tests/support.rs does ----------------------
cp "$repo"/nginx/snippets/*.conf "$dir/mediagate/"
# The bench site has a cookie grant (the cookie row): its server forwards the Cookie header.
echo "media.localhost 1;" >> "$dir/mediagate/cookie-grant-sites.conf"
# The audit-off instance needs its own upstream: its server includes a copy of the snippets
# in which only the upstream name (and the include directory) differ.
cp "$repo"/nginx/snippets/*.conf "$dir/mediagate-noaudit/"
sed -i -e 's|http://mediagate_verify\([/;]\)|http://mediagate_verify_noaudit\1|' \
  -e 's|include mediagate/|include mediagate-noaudit/|' "$dir"/mediagate-noaudit/*.conf
grep -rq 'mediagate_verify_noaudit' "$dir/mediagate-noaudit/" ||
  die "nginx/snippets/ no longer proxy to http://mediagate_verify"
# Likewise for the instance counting in Redis.
cp "$repo"/nginx/snippets/*.conf "$dir/mediagate-redis/"
sed -i -e 's|http://mediagate_verify\([/;]\)|http://mediagate_verify_redis\1|' \
  -e 's|include mediagate/|include mediagate-redis/|' "$dir"/mediagate-redis/*.conf
sl_secret="$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
# The optional auth cache (media-auth-cached.conf) keeps its entries in the temp dir.
sed -i "s|/var/cache/nginx/mediagate-auth|$dir/tmp/auth-cache|" "$dir/mediagate/auth-cache-zone.conf"
sed -e "s|@DIR@|$dir|g" -e "s|@PORT@|$PORT|g" -e "s|@PORT_NOAUDIT@|$PORT_NOAUDIT|g" \
  -e "s|@PORT_CACHED@|$PORT_CACHED|g" -e "s|@PORT_REDIS@|$PORT_REDIS|g" \
  -e "s|@SL_SECRET@|$sl_secret|g" "$repo/bench/nginx.conf.in" > "$dir/nginx.conf"
chmod -R a+rX "$dir"
nginx_args=(-p "$dir" -c "$dir/nginx.conf" -e "$dir/nginx-error.log")
nginx "${nginx_args[@]}" -t -q 2>"$dir/nginx-t.log" || { cat "$dir/nginx-t.log" >&2; die "nginx -t failed"; }
"${prio[@]}" nginx "${nginx_args[@]}" -g 'daemon off;' </dev/null >/dev/null 2>>"$dir/nginx-error.log" &
nginx_pid=$!
wait_until "nginx" curl -sS -o /dev/null "http://127.0.0.1:$PORT/"
wait_until "nginx" curl -sS -o /dev/null "http://127.0.0.1:$PORT_NOAUDIT/"
wait_until "nginx" curl -sS -o /dev/null "http://127.0.0.1:$PORT_CACHED/"
wait_until "nginx" curl -sS -o /dev/null "http://127.0.0.1:$PORT_REDIS/"
nginx_worker="$(cat "/proc/$nginx_pid/task/$nginx_pid/children" | awk '{print $1}')"
[ -n "$nginx_worker" ] || die "cannot find nginx's worker process"

# ---- links ------------------------------------------------------------------------------
sign() { "$mg" --config "$dir/mediagate.toml" sign "$@" --ttl 3h --base ""; }
expires=$(($(date +%s) + 3 * 3600))
secure_link() { # secure_link PATH: nginx secure_link_md5 "$secure_link_expires$uri SECRET"
  python3 - "$1" "$expires" "$sl_secret" <<'PY'
import base64, hashlib, sys
path, expires, secret = sys.argv[1:]
digest = hashlib.md5(f"{expires}{path} {secret}".encode()).digest()
print(f"{path}?md5={base64.urlsafe_b64encode(digest).decode().rstrip('=')}&expires={expires}")
PY
}
declare -A URL
for f in 4k 1m; do
  URL[static_$f]="/static/$f.bin"
  URL[secure_link_$f]="$(secure_link "/sl/$f.bin")"
  URL[auth_floor_$f]="/af/$f.bin"
  URL[auth_proxy_floor_$f]="/apf/$f.bin"
  URL[accel_floor_$f]="/xf/$f.bin"
  URL[mediagate_auth_$f]="$(sign "/media/$f.bin")"
  URL[mediagate_accel_$f]="$(sign "/files/$f.bin")"
done
URL[mediagate_auth_noaudit_4k]="${URL[mediagate_auth_4k]}"
# Grants (issue 10): the same file through the same kind of link carried in the path, and
# through the grant cookie of a prefix link (no token in the URL). Each is one token check, as
# the query link's is. (An exact link, as the query row's: a prefix link's allow would also
# set the site's grant cookie on every answer.)
URL[grant_path_4k]="$(sign /media/4k.bin --form path)"
URL[grant_cookie_4k]="/media/4k.bin"
declare -A COOKIE=([mediagate_auth_cookie_4k]="mg=$(sign /media/ --prefix --token-only)")
# Counted tokens: a limit no run reaches (4e9 < 2^32) and a token id new to every run. wrk
# sends the same User-Agent on every connection and no Range header, so every request is a
# NEW use: the worst case, one counted write per request (grouped into shared commits by the
# embedded store) plus its history entry.
run_id="$(date +%s)-$$"
URL[counted_embedded]="$(sign /media/4k.bin --uses 4000000000 --id "bench-embedded-$run_id")"
URL[counted_redis]="$(sign /media/4k.bin --uses 4000000000 --id "bench-redis-$run_id")"
direct_uri="${URL[mediagate_auth_4k]}"

# ---- rows -------------------------------------------------------------------------------
# id|row|file|connections|url|mediagate instance|expected status
rows=()
for f in 4k 1m; do
  rows+=("static_$f|static|$f|$CONNECTIONS|http://127.0.0.1:$PORT${URL[static_$f]}|-|200")
  rows+=("secure_link_$f|secure_link|$f|$CONNECTIONS|http://127.0.0.1:$PORT${URL[secure_link_$f]}|-|200")
  rows+=("auth_floor_$f|auth_floor|$f|$CONNECTIONS|http://127.0.0.1:$PORT${URL[auth_floor_$f]}|-|200")
  [ "$f" = 4k ] && rows+=("auth_proxy_floor_$f|auth_proxy_floor|$f|$CONNECTIONS|http://127.0.0.1:$PORT${URL[auth_proxy_floor_$f]}|-|200")
  rows+=("mediagate_auth_$f|mediagate_auth|$f|$CONNECTIONS|http://127.0.0.1:$PORT${URL[mediagate_auth_$f]}|mg|200")
  [ "$f" = 4k ] && rows+=("mediagate_auth_noaudit_$f|mediagate_auth (audit off)|$f|$CONNECTIONS|http://127.0.0.1:$PORT_NOAUDIT${URL[mediagate_auth_$f]}|mg_noaudit|200")
  [ "$f" = 4k ] && rows+=("mediagate_auth_path_$f|mediagate_auth (path grant)|$f|$CONNECTIONS|http://127.0.0.1:$PORT${URL[grant_path_4k]}|mg|200")
  [ "$f" = 4k ] && rows+=("mediagate_auth_cookie_$f|mediagate_auth (cookie grant)|$f|$CONNECTIONS|http://127.0.0.1:$PORT${URL[grant_cookie_4k]}|mg|200")
  # The query link again, right after the grant rows: they are compared with the mean of
  # the two, so that what the position of a row in the run costs (it does: the same query
  # link measured at the grant rows' place came out 0.87x) is not charged to the grants.
  [ "$f" = 4k ] && rows+=("mediagate_auth_again_$f|mediagate_auth (query link, again)|$f|$CONNECTIONS|http://127.0.0.1:$PORT${URL[mediagate_auth_$f]}|mg|200")
  [ "$f" = 4k ] && rows+=("mediagate_auth_counted_$f|mediagate_auth counted (embedded)|$f|$CONNECTIONS|http://127.0.0.1:$PORT${URL[counted_embedded]}|mg|200")
  [ "$f" = 4k ] && rows+=("mediagate_auth_counted_redis_$f|mediagate_auth counted (Redis)|$f|$CONNECTIONS|http://127.0.0.1:$PORT_REDIS${URL[counted_redis]}|mg_redis|200")
  [ "$f" = 4k ] && rows+=("mediagate_auth_cached_$f|mediagate_auth (nginx auth cache)|$f|$CONNECTIONS|http://127.0.0.1:$PORT_CACHED${URL[mediagate_auth_$f]}|mg|200")
  rows+=("accel_floor_$f|accel_floor|$f|$CONNECTIONS|http://127.0.0.1:$PORT${URL[accel_floor_$f]}|-|200")
  rows+=("mediagate_accel_$f|mediagate_accel|$f|$CONNECTIONS|http://127.0.0.1:$PORT${URL[mediagate_accel_$f]}|mg|200")
done
rows+=("nginx_204_direct|nginx return 204 (direct)|-|$CONNECTIONS|http://127.0.0.1:$PORT/direct204|-|204")
rows+=("mediagate_direct|mediagate /auth (direct)|-|$CONNECTIONS|http://127.0.0.1:$PORT_DIRECT/auth|mg_direct|204")
# Many connections: last in every round (their memory high-water mark stays).
big_rows=()
big_rows+=("static_4k_c$BIG_CONNECTIONS|static|4k|$BIG_CONNECTIONS|http://127.0.0.1:$PORT${URL[static_4k]}|-|200")
big_rows+=("mediagate_auth_4k_c$BIG_CONNECTIONS|mediagate_auth|4k|$BIG_CONNECTIONS|http://127.0.0.1:$PORT${URL[mediagate_auth_4k]}|mg|200")
big_rows+=("mediagate_auth_counted_4k_c$BIG_CONNECTIONS|mediagate_auth counted (embedded)|4k|$BIG_CONNECTIONS|http://127.0.0.1:$PORT${URL[counted_embedded]}|mg|200")
big_rows+=("mediagate_auth_counted_redis_4k_c$BIG_CONNECTIONS|mediagate_auth counted (Redis)|4k|$BIG_CONNECTIONS|http://127.0.0.1:$PORT_REDIS${URL[counted_redis]}|mg_redis|200")
big_rows+=("mediagate_direct_c$BIG_CONNECTIONS|mediagate /auth (direct)|-|$BIG_CONNECTIONS|http://127.0.0.1:$PORT_DIRECT/auth|mg_direct|204")

# The direct rows send what nginx's auth subrequest would (same headers to nginx's 204).
direct_env=(BENCH_ORIGINAL_URI="$direct_uri" BENCH_ORIGINAL_METHOD=GET
  BENCH_ORIGINAL_HOST=media.localhost BENCH_REAL_IP=127.0.0.1)
is_direct() { [[ "$1" == *direct* ]]; }

# check_row ID URL FILE STATUS: one request with curl; right status and right bytes, or abort.
check_row() {
  local id="$1" url="$2" file="$3" status="$4" got
  local headers=(-H "Host: media.localhost")
  [ -z "${COOKIE[$id]:-}" ] || headers+=(-H "Cookie: ${COOKIE[$id]}")
  if is_direct "$id"; then
    headers+=(-H "X-Original-URI: $direct_uri" -H "X-Original-Method: GET"
      -H "X-Mediagate-Server-Name: media.localhost" -H "X-Real-IP: 127.0.0.1")
  fi
  got="$(curl -sS -o "$dir/check.body" -w '%{http_code} %{size_download}' "${headers[@]}" "$url")" ||
    die "$id: curl $url failed"
  if [ "$file" = - ]; then
    [ "$got" = "$status 0" ] || die "$id: expected $status with an empty body, got '$got' from $url"
  else
    [ "$got" = "$status ${SIZE[$file]}" ] ||
      die "$id: expected $status and ${SIZE[$file]} bytes, got '$got' from $url"
    cmp -s "$dir/check.body" "$dir/files/media/$file.bin" || die "$id: wrong bytes from $url"
  fi
}

# Negative checks, once: the protected rows really check something.
expect_status() { # expect_status WANT URL [curl args...]
  local want="$1" url="$2" got
  shift 2
  got="$(curl -sS -o /dev/null -w '%{http_code}' -H "Host: media.localhost" "$@" "$url")"
  [ "$got" = "$want" ] || die "expected $want from $url, got $got"
}
expect_status 403 "http://127.0.0.1:$PORT$(tamper "${URL[mediagate_auth_4k]}" "token=")"
expect_status 403 "http://127.0.0.1:$PORT$(tamper "${URL[mediagate_accel_4k]}" "token=")"
expect_status 403 "http://127.0.0.1:$PORT_NOAUDIT$(tamper "${URL[mediagate_auth_4k]}" "token=")"
expect_status 403 "http://127.0.0.1:$PORT/media/4k.bin"
# A grant in the path or a cookie with one character of its tag changed.
expect_status 403 "http://127.0.0.1:$PORT$(tamper "${URL[grant_path_4k]}" "~mg~")"
expect_status 403 "http://127.0.0.1:$PORT/media/4k.bin" -H "Cookie: $(tamper "${COOKIE[mediagate_auth_cookie_4k]}" "mg=")"
# The counted rows really count: a single-use token works once on each store.
for port in "$PORT" "$PORT_REDIS"; do
  once="$(sign /media/4k.bin --uses 1 --id "bench-once-$port-$run_id")"
  expect_status 200 "http://127.0.0.1:$port$once"
  got="$(curl -sS -o /dev/null -D - -H "Host: media.localhost" "http://127.0.0.1:$port$once" |
    tr -d '\r' | awk 'NR == 1 {s = $2} tolower($1) == "x-mediagate-reason:" {r = $2} END {print s, r}')"
  [ "$got" = "403 used_up" ] || die "a single-use token on port $port: second use got '$got'"
done
expect_status 403 "http://127.0.0.1:$PORT/sl/4k.bin?md5=AAAAAAAAAAAAAAAAAAAAAA&expires=$expires"
expect_status 403 "http://127.0.0.1:$PORT_DIRECT/auth" -H "X-Original-URI: $(tamper "$direct_uri" "token=")" \
  -H "X-Original-Method: GET" -H "X-Mediagate-Server-Name: media.localhost" -H "X-Real-IP: 127.0.0.1"
for row in "${rows[@]}" "${big_rows[@]}"; do
  IFS='|' read -r id _ file _ url _ status <<<"$row"
  check_row "$id" "$url" "$file" "$status"
done
say "all rows answer correctly; ${#rows[@]}+${#big_rows[@]} rows x $ROUNDS rounds x ${DURATION}s"

# ---- measuring --------------------------------------------------------------------------
clk_tck="$(getconf CLK_TCK)"
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # utime + stime, whole process
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
nfds() { ls "/proc/$1/fd" | wc -l; }
# decisions INSTANCE: "ALLOWS OTHERS" from the instance's /metrics (internal listener).
decisions() {
  curl -fsS --unix-socket "${MGINTERNAL[$1]}" http://mg/metrics |
    awk '/^mediagate_decisions_total/ { if ($0 ~ /verdict="allow"/) a += $NF; else o += $NF }
         END { print a + 0, o + 0 }'
}
results="$dir/results.tsv"
printf 'round\tid\trow\tfile\tconns\trequests\tduration_us\tp50_us\tp99_us\tnon2xx\tsocket_errors\tmg_cpu_ticks\tnginx_cpu_ticks\tclk_tck\tmg_hwm_kib\tmg_fds\tmg_log_bytes\tmg_audit_lines\tmg_allows\tmg_other\twrk_cpu_ticks\tforeign_pct\tsteal_pct\tstore_cpu_ticks\tretries\n' > "$results"

run_wrk() { # run_wrk ID CONNS SECONDS URL
  local id="$1" conns="$2" seconds="$3" url="$4"
  if [ -n "${COOKIE[$id]:-}" ]; then
    "${prio[@]}" env BENCH_COOKIE="${COOKIE[$id]}" wrk -t1 -c"$conns" -d"${seconds}s" -H "Host: media.localhost" -s "$repo/bench/wrk.lua" "$url"
  elif is_direct "$id"; then
    "${prio[@]}" env "${direct_env[@]}" wrk -t1 -c"$conns" -d"${seconds}s" -H "Host: media.localhost" -s "$repo/bench/wrk.lua" "$url"
  else
    "${prio[@]}" wrk -t1 -c"$conns" -d"${seconds}s" -H "Host: media.localhost" -s "$repo/bench/wrk.lua" "$url"
  fi
}

# Ticks of CPU time (utime+stime) of everything this benchmark runs: nginx, every mediagate
# instance, redis-server, and this shell's reaped children (wrk, curl).
own_ticks() {
  local total=0 pid
  for pid in "$nginx_pid" "$nginx_worker" "${MGPID[@]}" "$redis_pid"; do total=$((total + $(cpu_ticks "$pid"))); done
  echo $((total + $(awk '{print $16 + $17}' "/proc/$$/stat")))
}
host_ticks() { awk '/^cpu / {print $2 + $3 + $4, $9}' /proc/stat; } # "busy steal"

# measure_once ROUND ROW: one timed run; appends a result line to $dir/attempt.tsv and sets
# FOREIGN (CPU used by other processes on this machine during the run, % of one core).
measure_once() {
  local round="$1" id row file conns url inst status
  IFS='|' read -r id row file conns url inst status <<<"$2"
  check_row "$id" "$url" "$file" "$status"
  local pid="" mg0=0 log="" log0=0 allow0=0 other0=0
  if [ "$inst" != - ]; then
    pid="${MGPID[$inst]}"
    log="$dir/$inst.log"
    log0="$(stat -c %s "$log")"
    read -r allow0 other0 < <(decisions "$inst")
    echo 5 > "/proc/$pid/clear_refs" 2>/dev/null || true # reset VmHWM to the current RSS
    # Highest number of open descriptors (~ connections) during the row.
    echo 0 > "$dir/fds"
    (max=0; while sleep 0.5 && kill -0 $$ 2>/dev/null && [ -d "/proc/$pid" ]; do
       n="$(nfds "$pid")"; [ "$n" -gt "$max" ] && max="$n" && echo "$max" > "$dir/fds"; done) &
    sampler=$!
    mg0="$(cpu_ticks "$pid")"
  fi
  # The Redis rows' store works in another process: its CPU is part of their cost.
  local store0=0 store1=0
  [ "$inst" != mg_redis ] || store0="$(cpu_ticks "$redis_pid")"
  local nx0 lines0 out own0 busy0 steal0 wrk0 t0
  lines0="$(awk '$3 != 499' "$dir/non2xx.log" 2>/dev/null | wc -l)"
  wrk0="$(awk '{print $16 + $17}' "/proc/$$/stat")"
  own0="$(own_ticks)"
  read -r busy0 steal0 < <(host_ticks)
  nx0="$(cpu_ticks "$nginx_worker")"
  t0="$(date +%s%N)"
  out="$(run_wrk "$id" "$conns" "$DURATION" "$url")"
  local t1 nx1 busy1 steal1 own1 wrk1 mg1=0
  t1="$(date +%s%N)"
  nx1="$(cpu_ticks "$nginx_worker")"
  [ -z "$pid" ] || mg1="$(cpu_ticks "$pid")"
  [ "$inst" != mg_redis ] || store1="$(cpu_ticks "$redis_pid")"
  read -r busy1 steal1 < <(host_ticks)
  own1="$(own_ticks)"
  wrk1="$(awk '{print $16 + $17}' "/proc/$$/stat")"
  local lines1 hwm=0 fds=0 logb=0 audit=0 allow1=0 other1=0
  # 499 = wrk hung up at the end of the run with requests in flight: not an answer.
  lines1="$(awk '$3 != 499' "$dir/non2xx.log" 2>/dev/null | wc -l)"
  if [ -n "$pid" ]; then
    hwm="$(hwm_kib "$pid")"
    kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true
    sampler=""
    fds="$(cat "$dir/fds")"
    logb=$(($(stat -c %s "$log") - log0))
    audit="$(grep -c 'mediagate::audit' "$log" || true)"
    AUDIT_LINES[$inst]=$((${AUDIT_LINES[$inst]:-0} + audit))
    read -r allow1 other1 < <(decisions "$inst")
    # Keep the disk bounded: audit lines are only counted, then dropped (stderr is O_APPEND).
    : > "$log"
  fi
  local line
  line="$(grep '^BENCH ' <<<"$out")" || die "$id: no result from wrk:"$'\n'"$out"
  local requests duration_us p50_us p99_us status_errors socket_errors
  read -r requests duration_us p50_us p99_us status_errors socket_errors \
    <<<"$(sed -e 's/^BENCH //' -e 's/[a-z0-9_]*=//g' <<<"$line")"
  local non2xx=$((lines1 - lines0))
  if is_direct "$id"; then non2xx="$status_errors"; fi # not through nginx: wrk's count (>= 400)
  # Every request wrk completed must have been an allow by the intended instance, except
  # behind the auth cache, where nginx answers repeats itself (checked the other way round:
  # mediagate must have seen only a small share of them).
  if [[ "$id" == mediagate_auth_cached_* ]]; then
    [ $((allow1 - allow0)) -le $((requests / 10 + 100)) ] ||
      die "$id: the auth cache passed $((allow1 - allow0)) of $requests requests to $inst"
  elif [ -n "$pid" ] && [ $((allow1 - allow0)) -lt "$requests" ]; then
    die "$id: $inst decided only $((allow1 - allow0)) allows for $requests completed requests"
  fi
  local window=$(((t1 - t0) * clk_tck / 1000000)) # elapsed, in ticks x 1000
  FOREIGN=$(((busy1 - busy0 - (own1 - own0)) * 100000 / window))
  [ "$FOREIGN" -ge 0 ] || FOREIGN=0
  local steal=$(((steal1 - steal0) * 100000 / window))
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
    "$round" "$id" "$row" "$file" "$conns" "$requests" "$duration_us" "$p50_us" "$p99_us" \
    "$non2xx" "$socket_errors" "$((mg1 - mg0))" "$((nx1 - nx0))" "$clk_tck" "$hwm" "$fds" "$logb" \
    "$audit" "$((allow1 - allow0))" "$((other1 - other0))" "$((wrk1 - wrk0))" "$FOREIGN" "$steal" \
    "$((store1 - store0))" \
    >> "$dir/attempt.tsv"
  say "round $round $(printf '%-28s' "$id") $((requests * 1000000 / duration_us)) req/s  p99 ${p99_us}us  non-2xx $non2xx  other load ${FOREIGN}%"
}

# measure ROUND ROW: like measure_once, but a run during which other processes used more than
# FOREIGN_MAX % of a core is repeated (up to RETRIES times); the quietest attempt counts.
measure() {
  local attempt best="" best_foreign="" id conns url
  IFS='|' read -r id _ _ conns url _ _ <<<"$2"
  if [ "$1" = 1 ] && [ "$WARMUP" != 0 ]; then run_wrk "$id" "$conns" "$WARMUP" "$url" >/dev/null; fi
  for attempt in $(seq 0 "$RETRIES"); do
    : > "$dir/attempt.tsv"
    measure_once "$1" "$2"
    if [ -z "$best" ] || [ "$FOREIGN" -lt "$best_foreign" ]; then
      best="$(cat "$dir/attempt.tsv")"
      best_foreign="$FOREIGN"
    fi
    [ "$FOREIGN" -gt "$FOREIGN_MAX" ] && [ "$attempt" != "$RETRIES" ] && [ "$RETRY_BUDGET" -gt 0 ] || break
    RETRY_BUDGET=$((RETRY_BUDGET - 1))
    say "  other processes used ${FOREIGN}% of a core: again"
    sleep 1
  done
  printf '%s\t%s\n' "$best" "$attempt" >> "$results"
}

started="$(date -u '+%Y-%m-%d %H:%M UTC')"
t0=$SECONDS
n=${#rows[@]}
for round in $(seq "$ROUNDS"); do
  # Rotate the order every round so no row always follows the same neighbour.
  for i in $(seq 0 $((n - 1))); do
    measure "$round" "${rows[$(((i + (round - 1) * 5) % n))]}"
  done
  for row in "${big_rows[@]}"; do measure "$round" "$row"; done
done
say "measured in $((SECONDS - t0)) s"
# Audit lines written vs decisions taken, per instance over the whole run (the logs were
# truncated after every row; lines still queued at a truncation may be missed).
audit_note=""
for inst in mg mg_noaudit mg_direct mg_redis; do
  sleep 0.2
  lines=$((${AUDIT_LINES[$inst]:-0} + $(grep -c 'mediagate::audit' "$dir/$inst.log" || true)))
  read -r allows others < <(decisions "$inst")
  audit_note+="${audit_note:+; }$inst: $lines audit lines for $((allows + others)) decisions"
done
[ -n "${OUT:-}" ] && cp "$results" "$OUT"

# ---- report -----------------------------------------------------------------------------
cpu_model="$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
python3 "$repo/bench/report.py" "$results" \
  --date "$started" \
  --command "${NICE:+NICE=$NICE }DURATION=$DURATION ROUNDS=$ROUNDS CONNECTIONS=$CONNECTIONS BIG_CONNECTIONS=$BIG_CONNECTIONS bench/run.sh" \
  --machine "$(nproc) CPUs ($cpu_model), Linux $(uname -r), $(nginx -v 2>&1 | sed 's/^nginx version: //'), $(wrk -v 2>&1 | head -n 1 | awk '{print $1, $2}'), $("$mg" --version)" \
  --note "$audit_note" \
  --revision "$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$repo" diff --quiet HEAD -- src 2>/dev/null || echo ' (+ uncommitted changes in src/)')"

if [ "${INSTRUCTIONS:-1}" != 0 ]; then
  echo
  echo "## The grant rows in instructions (bench/instructions.sh)"
  echo
  # Its own rounds (ROUNDS here means wrk's).
  env -u ROUNDS MEDIAGATE_BIN="$mg" bash "$repo/bench/instructions.sh" ||
    say "bench/instructions.sh failed (INSTRUCTIONS=0 skips it)"
fi
