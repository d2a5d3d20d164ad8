#!/usr/bin/env bash
# Builds the container image without a Docker engine and without pulling anything: a static
# mediagate on an empty base, assembled with umoci as an OCI image layout and packed as
# target/image/mediagate_<version>_oci.tar (load it with `podman load -i FILE`, or
# `skopeo copy oci-archive:FILE docker-daemon:mediagate:<version>`). Prints that path last.
#
# Static without the musl target (which cannot be installed here): glibc's static-pie
# linking, `-C target-feature=+crt-static`. mediagate calls no glibc function that needs NSS
# modules at run time (no getaddrinfo or getpwnam: listeners are literal addresses or
# socket paths), which is checked below, so the binary needs no file from a base image.
# The image holds that one file and the store's empty directory; same user, entrypoint and
# environment as deploy/docker/Dockerfile.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in umoci readelf nm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "build-image.sh: $tool is missing (apt-get install umoci binutils)" >&2
    exit 1
  fi
done

triple=x86_64-unknown-linux-gnu
# --target keeps RUSTFLAGS off build scripts and proc macros, which must stay dynamic.
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --target "$triple"
binary=target/$triple/release/mediagate
if readelf -d "$binary" | grep -q NEEDED || readelf -l "$binary" | grep -q INTERP; then
  echo "build-image.sh: $binary is not static" >&2
  exit 1
fi
if nm "$binary" | grep -Eq ' U | (getaddrinfo|gethostbyname|getpwnam|getpwuid|getgrnam)'; then
  echo "build-image.sh: $binary needs NSS or unresolved symbols at run time" >&2
  exit 1
fi
version=$("$binary" --version | sed -n 's/^mediagate \([0-9][0-9A-Za-z.+~-]*\)$/\1/p')
[ -n "$version" ] || { echo "build-image.sh: cannot read the version" >&2; exit 1; }

out=target/image
layout=$out/layout
rm -rf "$layout"
mkdir -p "$out"
# The one layer, written by GNU tar (umoci 0.4.7's `insert` writes a layer without tar's
# padding and end-of-archive blocks), one fixed timestamp: the binary, root-owned and 0755;
# and /var/lib/mediagate, the embedded store's directory (XDG_STATE_HOME=/var/lib below makes
# it the default store.path), 0700 and owned by the image's user, so that a volume mounted
# there starts out writable by it (Docker and podman copy a new named volume's owner and mode
# from the image).
rootfs=$out/rootfs
rm -rf "$rootfs"
install -d -m 0755 "$rootfs/usr/local/bin" "$rootfs/var/lib"
install -d -m 0700 "$rootfs/var/lib/mediagate"
install -m 0755 "$binary" "$rootfs/usr/local/bin/mediagate"
strip --strip-unneeded "$rootfs/usr/local/bin/mediagate"
mtime=$(git log -1 --format=%ct 2>/dev/null || date +%s)
tar_layer() {
  tar --no-recursion --numeric-owner --mtime="@$mtime" --format=posix \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime -C "$rootfs" "$@"
}
tar_layer --owner=0 --group=0 -cf "$out/layer.tar" \
  usr usr/local usr/local/bin usr/local/bin/mediagate var var/lib
tar_layer --owner=65532 --group=65532 -rf "$out/layer.tar" var/lib/mediagate
tar -tvf "$out/layer.tar" >/dev/null

image=$layout:$version
umoci init --layout "$layout"
umoci new --image "$image"
umoci raw add-layer --image "$image" "$out/layer.tar"
# Numeric user, so Kubernetes runAsNonRoot can verify it (65532 as in distroless "nonroot").
# Keys come from files (secrets): never a development key.
umoci config --image "$image" \
  --os linux --architecture amd64 \
  --config.user 65532:65532 \
  --config.entrypoint /usr/local/bin/mediagate \
  --config.cmd serve \
  --config.env MEDIAGATE_KEYS__DEV_KEY=false \
  --config.env XDG_STATE_HOME=/var/lib \
  --config.stopsignal SIGTERM \
  --config.label "org.opencontainers.image.title=mediagate" \
  --config.label "org.opencontainers.image.version=$version"
umoci gc --layout "$layout"

archive=$out/mediagate_${version}_oci.tar
tar --sort=name -C "$layout" -cf "$archive" .
rm -rf "$rootfs" "$out/layer.tar"
echo "$archive"
