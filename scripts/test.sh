#!/usr/bin/env bash
# Runs every test mediagate has: unit, property, vector and end-to-end tests through real nginx.
# Installs what the tests need (nginx with auth_request and secure_link, python3, faketime, wrk,
# caddy, promtool, chromium, node and npm, ffmpeg, redis-server, and the browser tests'
# playwright-core and hls.js) when missing, so it works on a fresh Debian machine. Run as root or with
# sudo available.
set -euo pipefail
cd "$(dirname "$0")/.."

need_packages=()
command -v nginx >/dev/null 2>&1 || need_packages+=(nginx)
command -v python3 >/dev/null 2>&1 || need_packages+=(python3)
# A real skewed clock for the session side of the refresh-loop test.
command -v faketime >/dev/null 2>&1 || need_packages+=(faketime)
# Load during a live reload (tests/reload.rs).
command -v wrk >/dev/null 2>&1 || need_packages+=(wrk)
# deploy/caddy/Caddyfile is run for real (tests/proxies.rs).
command -v caddy >/dev/null 2>&1 || need_packages+=(caddy)
# promtool, which checks /metrics' exposition format and naming (tests/server.rs).
command -v promtool >/dev/null 2>&1 || need_packages+=(prometheus)
# A real browser for tests/browser.rs, and node to drive it with playwright-core.
[ -x /usr/bin/chromium ] || need_packages+=(chromium)
command -v node >/dev/null 2>&1 || need_packages+=(nodejs)
command -v npm >/dev/null 2>&1 || need_packages+=(npm)
# A real H.264/AAC video for the browser's <video> element on a single-use link.
command -v ffmpeg >/dev/null 2>&1 || need_packages+=(ffmpeg)
# Real Redis, standalone and a 3-node Cluster, for the Redis store (tests/store_redis.rs);
# the package brings redis-cli too.
command -v redis-server >/dev/null 2>&1 || need_packages+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need_packages+=(redis-tools)
if [ ${#need_packages[@]} -gt 0 ]; then
  echo "test.sh: installing ${need_packages[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_packages[@]}" >/dev/null
fi

# playwright-core and hls.js, pinned by the committed lock file; playwright-core drives
# Debian's chromium and never downloads a browser of its own (so never `npx playwright
# install`). Installed again when the lock file is newer than the last install (npm ci
# writes node_modules/.package-lock.json), so a checkout that gained a dependency gets it.
if [ ! -d tests/browser/node_modules ] ||
  [ tests/browser/package-lock.json -nt tests/browser/node_modules/.package-lock.json ]; then
  echo "test.sh: npm ci in tests/browser" >&2
  (cd tests/browser && npm ci --no-audit --no-fund --silent)
fi

# No switch needed to make the end-to-end tests strict: they fail (never skip) without nginx.
cargo test --all-targets "$@"
