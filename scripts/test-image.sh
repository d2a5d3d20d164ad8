#!/usr/bin/env bash
# Builds the container image (scripts/build-image.sh: a static binary on an empty base, no
# engine, no registry) and runs it with podman the way deploy/docker/compose.yaml runs the
# Docker image: deploy/mediagate.toml mounted, keys as secret files owned by the image's user
# 65532 (generated with the image's own `keygen`), a read-only root, no capabilities, no
# network, the sockets on a shared volume. Checks: the image's `probe` (the Kubernetes exec
# probe) answers, a link signed with that key is allowed through the socket and a forged one
# refused, the development key is refused, a single-use link works once and stays used up
# after a restart (the embedded store on a volume at /var/lib/mediagate, written by the
# image's user), `mediagate uses` inside the container shows it, and SIGTERM stops it with
# status 0.
# Fails loudly on the first broken step; removes its container and image.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "test-image.sh: needs root (podman with runc, files owned by the image's user)" >&2
  exit 1
fi
need_packages=()
command -v umoci >/dev/null 2>&1 || need_packages+=(umoci)
command -v podman >/dev/null 2>&1 || need_packages+=(podman)
command -v runc >/dev/null 2>&1 || need_packages+=(runc)
command -v curl >/dev/null 2>&1 || need_packages+=(curl)
if [ ${#need_packages[@]} -gt 0 ]; then
  echo "test-image.sh: installing ${need_packages[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_packages[@]}" >/dev/null
fi

fail() {
  echo "test-image.sh: FAILED: $*" >&2
  exit 1
}
step() {
  echo "test-image.sh: [${SECONDS}s] $*"
}

# runc rather than crun: crun refuses hybrid cgroup hierarchies such as this machine's. The
# open-files limit is set explicitly: podman's default (1048576) is above what a container
# inside a container may set, and mediagate needs more than the usual 1024.
podman=(podman --runtime runc)
run_flags=(--network none --ulimit nofile=16384:16384 --ulimit nproc=1024:1024)

dir=$(mktemp -d)
name=mediagate-test-$$
image=
cleanup() {
  local status=$?
  if [ $status -ne 0 ]; then
    echo "--- container log" >&2
    "${podman[@]}" logs "$name" 2>&1 | tail -20 >&2 || true
  fi
  "${podman[@]}" rm -f -t 0 "$name" >/dev/null 2>&1 || true
  [ -n "$image" ] && "${podman[@]}" rmi -f "$image" >/dev/null 2>&1
  rm -rf "$dir"
  exit $status
}
trap cleanup EXIT

step "building the image"
archive=$(bash scripts/build-image.sh | tail -1)
[ -f "$archive" ] || fail "build-image.sh printed no archive path"
image=$("${podman[@]}" pull -q "oci-archive:$archive" 2>/dev/null) || fail "podman cannot load $archive"
[ "$("${podman[@]}" image inspect --format '{{.Config.User}}' "$image")" = 65532:65532 ] || fail "image user"
# Every regular file in every layer of the archive: the binary alone.
files=$(python3 - "$archive" <<'PY'
import io, json, sys, tarfile
archive = tarfile.open(sys.argv[1])
blob = lambda digest: archive.extractfile("./blobs/sha256/" + digest.split(":")[1]).read()
index = json.loads(archive.extractfile("./index.json").read())
for entry in index["manifests"]:
    for layer in json.loads(blob(entry["digest"]))["layers"]:
        for member in tarfile.open(fileobj=io.BytesIO(blob(layer["digest"]))):
            if not member.isdir():
                print(member.name, oct(member.mode), member.uid)
PY
)
[ "$files" = "usr/local/bin/mediagate 0o755 0" ] || fail "the image holds more than the binary: $files"
store_dir=$(python3 - "$archive" <<'PY'
import io, json, sys, tarfile
archive = tarfile.open(sys.argv[1])
blob = lambda digest: archive.extractfile("./blobs/sha256/" + digest.split(":")[1]).read()
index = json.loads(archive.extractfile("./index.json").read())
for entry in index["manifests"]:
    for layer in json.loads(blob(entry["digest"]))["layers"]:
        for member in tarfile.open(fileobj=io.BytesIO(blob(layer["digest"]))):
            if member.name.rstrip("/") == "var/lib/mediagate":
                print(member.type == tarfile.DIRTYPE, oct(member.mode), member.uid, member.gid)
PY
)
[ "$store_dir" = "True 0o700 65532 65532" ] || fail "the store's directory in the image: $store_dir"
"${podman[@]}" image inspect --format '{{.Config.Env}}' "$image" | grep -q 'XDG_STATE_HOME=/var/lib' \
  || fail "image environment: $("${podman[@]}" image inspect --format '{{.Config.Env}}' "$image")"

step "keys from the image's own keygen"
mkdir -m 0750 "$dir/run" "$dir/secrets"
mkdir -m 0700 "$dir/state"
"${podman[@]}" run --rm "${run_flags[@]}" "$image" keygen --id 2026-11 | sed -n 1p > "$dir/secrets/key-2026-11"
"${podman[@]}" run --rm "${run_flags[@]}" "$image" keygen | sed -n 1p > "$dir/secrets/internal-secret"
for file in "$dir"/secrets/*; do
  grep -Eqx '[A-Za-z0-9_-]{43}' "$file" || fail "keygen in the image printed no key"
done
chown 65532:65532 "$dir/run" "$dir/state" "$dir/secrets" "$dir"/secrets/*
chmod 0400 "$dir"/secrets/*

# As compose.yaml: the shared example configuration, key paths overridden by the environment.
env_flags=(
  -e MEDIAGATE_CONFIG=/etc/mediagate/mediagate.toml
  -e 'MEDIAGATE_KEYS__SECRETS__2026-11={ file = "/run/secrets/key-2026-11" }'
  -e 'MEDIAGATE_INTERNAL__SECRET={ file = "/run/secrets/internal-secret" }'
)
mounts=(
  -v "$PWD/deploy/mediagate.toml:/etc/mediagate/mediagate.toml:ro"
  -v "$dir/secrets:/run/secrets:ro"
  -v "$dir/run:/run/mediagate"
  -v "$dir/state:/var/lib/mediagate"
)
hardening=(--read-only --cap-drop ALL --security-opt no-new-privileges)

step "the development key is refused"
if "${podman[@]}" run --rm "${run_flags[@]}" "${hardening[@]}" "$image" check-config > "$dir/dev.out" 2>&1; then
  fail "the image starts with a development key"
fi
grep -q 'keys.dev_key = false' "$dir/dev.out" || fail "unexpected refusal: $(cat "$dir/dev.out")"

step "serving"
"${podman[@]}" run -d --name "$name" "${run_flags[@]}" "${hardening[@]}" "${env_flags[@]}" "${mounts[@]}" \
  "$image" >/dev/null || fail "podman run"
wait_ready() {
  for _ in $(seq 100); do
    if "${podman[@]}" exec "$name" mediagate probe --listener internal --path /readyz >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}
wait_ready || fail "the image's probe did not succeed within 10 s"
[ -S "$dir/run/verify.sock" ] || fail "no verify.sock on the shared volume"

token=$("${podman[@]}" exec "${env_flags[@]}" "$name" mediagate sign /media/a.pdf --ttl 5m --token-only)
auth() {
  # The headers nginx/snippets/auth-proxy.conf sends.
  curl -s -o /dev/null -D "$dir/headers" --unix-socket "$dir/run/verify.sock" \
    -H "X-Original-URI: /media/a.pdf?token=$1" -H 'X-Original-Method: GET' \
    -H 'X-Mediagate-Server-Name: media.example.org' -H 'X-Real-IP: 192.0.2.10' http://mediagate/auth
  tr -d '\r' < "$dir/headers" | sed -n '1s/^HTTP\/1.1 \([0-9]*\).*/\1/p'
}
[ "$(auth "$token")" = 204 ] || fail "signed token: $(head -1 "$dir/headers")"
# Change one character inside the tag, not the last one: the last character may carry unused
# bits, and setting one makes the token malformed rather than forged (one spelling per token).
swap=$(if [ "${token: -5:1}" = A ]; then echo B; else echo A; fi)
forged="${token:0:${#token}-5}${swap}${token: -4}"
[ "$(auth "$forged")" = 403 ] && grep -qi '^x-mediagate-reason: bad_signature' "$dir/headers" \
  || fail "forged token: $(cat "$dir/headers")"

step "a single-use link in the embedded store, across a restart"
once=$("${podman[@]}" exec "${env_flags[@]}" "$name" mediagate sign /media/a.pdf --ttl 5m --uses 1 --id img-once --token-only)
[ "$(auth "$once")" = 204 ] || fail "single-use token, first use: $(head -1 "$dir/headers")"
[ "$(auth "$once")" = 403 ] && grep -qi '^x-mediagate-reason: used_up' "$dir/headers" \
  || fail "single-use token, second use: $(cat "$dir/headers")"
[ "$(stat -c '%a %u' "$dir/state/state.redb")" = "600 65532" ] \
  || fail "store file: $(stat -c '%a %u' "$dir/state/state.redb" 2>&1)"
# The CLI inside the container asks the server; the history is written just after the answers.
recorded=no
for _ in $(seq 100); do
  "${podman[@]}" exec "${env_flags[@]}" "$name" mediagate uses img-once > "$dir/uses.out" 2>&1 \
    || fail "mediagate uses: $(cat "$dir/uses.out")"
  if grep -qx 'token id img-once of key 2026-11: 2 uses recorded' "$dir/uses.out"; then
    recorded=yes
    break
  fi
  sleep 0.1
done
[ $recorded = yes ] || fail "mediagate uses: $(cat "$dir/uses.out")"
grep -Eq ' 192\.0\.2\.10 +403 +used_up ' "$dir/uses.out" || fail "mediagate uses: $(cat "$dir/uses.out")"
"${podman[@]}" stop -t 15 "$name" >/dev/null
"${podman[@]}" start "$name" >/dev/null || fail "podman start"
wait_ready || fail "the restarted container's probe did not succeed within 10 s"
[ "$(auth "$once")" = 403 ] && grep -qi '^x-mediagate-reason: used_up' "$dir/headers" \
  || fail "single-use token after a restart: $(cat "$dir/headers")"
[ "$(auth "$token")" = 204 ] || fail "signed token after a restart: $(head -1 "$dir/headers")"

step "SIGTERM"
"${podman[@]}" stop -t 15 "$name" >/dev/null
status=$("${podman[@]}" inspect --format '{{.State.ExitCode}}' "$name")
[ "$status" = 0 ] || fail "exit status $status after SIGTERM"
"${podman[@]}" logs "$name" 2>&1 | grep -q 'all connections closed' || fail "no graceful drain in the log"

step "passed"
