#!/usr/bin/env bash
# The two-domain demo on localhost: nginx (rendered from nginx/example.conf with the shipped
# snippets), mediagate, and a stand-in application. Then open http://www.localhost:8081/
# (browsers and curl resolve *.localhost to 127.0.0.1). Ctrl-C stops everything.
#
# Ports 8080/8081 (nginx), 8088/8089 (mediagate) and 8000 (app) must be free.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v nginx >/dev/null || { echo "demo: installing nginx" >&2; apt-get update -qq && apt-get install -y -qq nginx >/dev/null; }
cargo build --release --quiet
run="$(mktemp -d /tmp/mediagate-demo.XXXXXX)"
chmod 755 "$run"
secret="$(target/release/mediagate keygen | head -n 1)"

mkdir -p "$run/mediagate" "$run/tmp" "$run/files/media/public" "$run/files/files"
cp nginx/snippets/*.conf "$run/mediagate/"
sed -e "s|/srv/mediagate-demo|$run/files|g" \
    -e "s|ZGVtby1pbnRlcm5hbC1zZWNyZXQtY2hhbmdlLW1l|$secret|" \
    nginx/example.conf > "$run/nginx.conf"
python3 examples/demo_pdf.py > "$run/files/media/report.pdf"
echo "hello from a public prefix" > "$run/files/media/public/hello.txt"
echo "served through X-Accel-Redirect" > "$run/files/files/notes.txt"
chmod -R a+rX "$run"

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; nginx -p "$run" -c "$run/nginx.conf" -s stop 2>/dev/null || true; rm -rf "$run"; }
trap cleanup EXIT INT TERM

python3 examples/demo_app.py 8000 & pids+=($!)
MEDIAGATE_INTERNAL__SECRET="$secret" target/release/mediagate serve & pids+=($!)
nginx -p "$run" -c "$run/nginx.conf" -g 'daemon off;' & pids+=($!)
sleep 1
cat <<MSG

  mediagate demo is running.
    application (session domain):  http://www.localhost:8081/
    a protected file:              http://media.localhost:8080/media/report.pdf
    a signed link:                 $(target/release/mediagate sign /media/report.pdf --ttl 10m)
  Try the protected file while logged out (-> login -> back with a fresh token), and
  curl -i the signed link. Ctrl-C stops everything.

MSG
wait
