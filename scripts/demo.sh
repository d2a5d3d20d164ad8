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
# A short H.264/AAC clip with its index up front (+faststart), so a player starts at once.
if command -v ffmpeg >/dev/null; then
  ffmpeg -hide_banner -loglevel error -nostdin -y \
    -f lavfi -i testsrc2=size=640x360:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000 \
    -t 10 -c:v libx264 -preset veryfast -pix_fmt yuv420p -c:a aac -b:a 96k -movflags +faststart \
    "$run/files/media/clip.mp4"
  # The same as HLS: a playlist and 1-second segments named by relative URL, which inherit a
  # path grant (/media/videos/clip/~mg~<token>/seg0.ts).
  mkdir -p "$run/files/media/videos/clip"
  ffmpeg -hide_banner -loglevel error -nostdin -y \
    -f lavfi -i testsrc2=size=640x360:rate=25 -f lavfi -i sine=frequency=660:sample_rate=48000 \
    -t 10 -c:v libx264 -preset veryfast -pix_fmt yuv420p -g 25 -keyint_min 25 -sc_threshold 0 \
    -c:a aac -b:a 96k -f hls -hls_time 1 -hls_playlist_type vod \
    -hls_segment_filename "$run/files/media/videos/clip/seg%d.ts" "$run/files/media/videos/clip/index.m3u8"
else
  echo "demo: ffmpeg is not installed, so there is no video (/media/clip.mp4 and /media/videos/clip/index.m3u8 answer 404); apt-get install ffmpeg to get them" >&2
fi
# The embedded development site, with links handed out in path form: the application grants
# a video's folder, and its playlist's relative segment URLs then carry the grant.
cat > "$run/mediagate.toml" <<'TOML'
[token]
sources = ["query", "path"]

[[sites]]
id = "local"
media_origin = "http://media.localhost:8080"
session_origin = "http://www.localhost:8081"
login_url = "http://www.localhost:8081/login"
public_prefixes = ["/media/public/"]
link_form = "path"
TOML
echo "hello from a public prefix" > "$run/files/media/public/hello.txt"
echo "served through X-Accel-Redirect" > "$run/files/files/notes.txt"
chmod -R a+rX "$run"

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; nginx -p "$run" -c "$run/nginx.conf" -s stop 2>/dev/null || true; rm -rf "$run"; }
trap cleanup EXIT INT TERM

python3 examples/demo_app.py 8000 & pids+=($!)
MEDIAGATE_INTERNAL__SECRET="$secret" target/release/mediagate --config "$run/mediagate.toml" serve & pids+=($!)
nginx -p "$run" -c "$run/nginx.conf" -g 'daemon off;' & pids+=($!)
sleep 1
cat <<MSG

  mediagate demo is running.
    application (session domain):  http://www.localhost:8081/
    a protected file:              http://media.localhost:8080/media/report.pdf
    a protected video:             http://media.localhost:8080/media/clip.mp4
    the same as HLS, on a page:    http://www.localhost:8081/video (log in first)
    a signed link:                 $(target/release/mediagate --config "$run/mediagate.toml" sign /media/report.pdf --ttl 10m)
  Try the protected file while logged out (-> login -> back with a fresh token), and
  curl -i the signed link. Ctrl-C stops everything.

MSG
wait
