#!/usr/bin/env bash
# Builds the Debian package, installs it on this machine, checks what a new user gets, and
# purges it again, checking that nothing is left. Fails loudly on the first broken step.
#
# Checked after install: the files and their modes, the user and group, the generated keys;
# `mediagate check-config` of the installed configuration (as root and as the service user,
# and refused for a user outside the group); `systemd-analyze verify` of the unit; `nginx -t`
# of a small http { } + server { } configuration that includes the installed snippets the way
# the README says; then mediagate and that nginx running for real (as the unit would run them:
# user mediagate, nginx workers as www-data through /run/mediagate's group): a link without
# a token is sent to the session domain, the refresh mints a token, a signed link is served, a
# forged one is refused; a single-use link works once, `mediagate uses` shows both requests,
# `mediagate revoke` takes effect, and both survive a restart of mediagate (the embedded store
# in /var/lib/mediagate). A reinstall keeps the keys, a remove keeps the store. After purge:
# no file, user or group left.
#
# Run it on a disposable machine (CI): it refuses to touch an installed mediagate.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "test-deb.sh: needs root (dpkg -i, a system user)" >&2
  exit 1
fi
if dpkg-query -W -f='${db:Status-Status}' mediagate 2>/dev/null | grep -qv '^not-installed$'; then
  echo "test-deb.sh: mediagate is already installed here (or not purged); this test installs" >&2
  echo "and purges it. Purge it first (apt-get purge mediagate) or use a disposable machine." >&2
  exit 1
fi
if getent passwd mediagate >/dev/null || getent group mediagate >/dev/null; then
  echo "test-deb.sh: a user or group 'mediagate' exists without the package; refusing" >&2
  exit 1
fi

need_packages=()
command -v dpkg-shlibdeps >/dev/null 2>&1 || need_packages+=(dpkg-dev)
command -v strip >/dev/null 2>&1 || need_packages+=(binutils)
command -v nginx >/dev/null 2>&1 || need_packages+=(nginx)
command -v curl >/dev/null 2>&1 || need_packages+=(curl)
command -v systemd-analyze >/dev/null 2>&1 || need_packages+=(systemd)
if [ ${#need_packages[@]} -gt 0 ]; then
  echo "test-deb.sh: installing ${need_packages[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_packages[@]}" >/dev/null
fi

fail() {
  echo "test-deb.sh: FAILED: $*" >&2
  exit 1
}
step() {
  echo "test-deb.sh: [${SECONDS}s] $*"
}

dir=$(mktemp -d)
pids=()
installed=no
cleanup() {
  local status=$?
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [ $status -ne 0 ] && [ -f "$dir/error.log" ]; then
    echo "--- nginx error log" >&2
    tail -20 "$dir/error.log" >&2
  fi
  if [ $status -ne 0 ] && [ -f "$dir/mediagate.log" ]; then
    echo "--- mediagate log" >&2
    tail -20 "$dir/mediagate.log" >&2
  fi
  if [ "$installed" = yes ]; then
    DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq mediagate >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
  exit $status
}
trap cleanup EXIT

step "building the package"
deb=$(bash scripts/build-deb.sh | tail -1)
[ -f "$deb" ] || fail "build-deb.sh printed no package path"
case "$(basename "$deb")" in
  mediagate_*_amd64.deb | mediagate_*_"$(dpkg --print-architecture)".deb) ;;
  *) fail "unexpected package name $deb" ;;
esac
version=$(dpkg-deb -f "$deb" Version)
step "installing $deb"
installed=yes
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "./$deb" > "$dir/install.log" 2>&1 \
  || { cat "$dir/install.log" >&2; fail "apt-get install ./$deb"; }
grep -q 'NOT enabled or started' "$dir/install.log" || fail "postinst did not say the service is not started"
[ "$(dpkg-query -W -f='${db:Status-Status}' mediagate)" = installed ] || fail "not installed"

step "checking files, user and keys"
[ "$(/usr/bin/mediagate --version)" = "mediagate $version" ] || fail "mediagate --version"
getent passwd mediagate | grep -q ':/nonexistent:/usr/sbin/nologin$' || fail "user mediagate: $(getent passwd mediagate)"
id -nG www-data | tr ' ' '\n' | grep -qx mediagate || fail "www-data is not in group mediagate"
mode() { stat -c '%a %U:%G' "$1"; }
[ "$(mode /etc/mediagate/keys)" = "750 root:mediagate" ] || fail "/etc/mediagate/keys: $(mode /etc/mediagate/keys)"
[ "$(mode /var/lib/mediagate)" = "700 mediagate:mediagate" ] || fail "/var/lib/mediagate: $(mode /var/lib/mediagate)"
for key in k1 internal-secret; do
  file=/etc/mediagate/keys/$key
  [ "$(mode "$file")" = "400 mediagate:mediagate" ] || fail "$file: $(mode "$file")"
  grep -Eqx '[A-Za-z0-9_-]{43}' "$file" || fail "$file holds no key"
done
cmp -s /etc/mediagate/keys/k1 /etc/mediagate/keys/internal-secret && fail "key and secret are the same"
for conffile in /etc/mediagate/mediagate.toml /etc/nginx/mediagate/http.conf /etc/nginx/mediagate/session-refresh.conf; do
  dpkg-query -W -f='${Conffiles}' mediagate | grep -q " $conffile " || fail "$conffile is not a conffile"
done
# Nothing that a running nginx would pick up by itself.
dpkg -L mediagate | grep -E '^/etc/nginx/(conf\.d|sites-enabled|sites-available)/' && fail "the package installs into nginx's active configuration"
for page in mediagate mediagate-sign mediagate-check-config; do
  zcat "/usr/share/man/man1/$page.1.gz" | grep -q "^\.TH $page 1" || fail "man page $page.1"
done
if command -v man >/dev/null 2>&1; then
  MANWIDTH=80 man -P cat mediagate 2>/dev/null | grep -q 'check-config' || fail "man mediagate does not render"
fi
bash -c 'source /usr/share/bash-completion/completions/mediagate && complete -p mediagate' >/dev/null \
  || fail "bash completion does not load"
grep -q 'check-config' /usr/share/zsh/vendor-completions/_mediagate || fail "zsh completion"
grep -q 'check-config' /usr/share/fish/vendor_completions.d/mediagate.fish || fail "fish completion"

step "check-config of the installed configuration"
config=/etc/mediagate/mediagate.toml
/usr/bin/mediagate --config "$config" check-config > "$dir/check.out" || fail "check-config as root"
grep -qx '# Effective key ring (signing key first): k1' "$dir/check.out" || fail "check-config: key ring: $(tail -3 "$dir/check.out")"
grep -q 'WARNING\|NOTE' "$dir/check.out" && fail "check-config warns: $(grep 'WARNING\|NOTE' "$dir/check.out")"
runuser -u mediagate -- /usr/bin/mediagate --config "$config" check-config >/dev/null || fail "check-config as mediagate"
# www-data is in group mediagate (for the sockets), and PHP or other applications may run as
# www-data too: the keys must be the service user's alone.
for user in www-data nobody; do
  if runuser -u "$user" -- /usr/bin/mediagate --config "$config" check-config >/dev/null 2>&1; then
    fail "$user can read the keys"
  fi
done
unit=/lib/systemd/system/mediagate.service
grep -qx 'ExecStart=/usr/bin/mediagate serve' "$unit" || fail "unit's ExecStart"
grep -qx 'StateDirectory=mediagate' "$unit" && grep -qx 'StateDirectoryMode=0700' "$unit" \
  || fail "unit has no private StateDirectory for the store"
grep -qx 'path = "/var/lib/mediagate/state.redb"' "$config" || fail "store.path is not in the StateDirectory"
systemd-analyze verify "$unit" > "$dir/verify.out" 2>&1 || { cat "$dir/verify.out" >&2; fail "systemd-analyze verify"; }

step "nginx -t with the installed snippets"
chmod 0755 "$dir"
mkdir -p "$dir/srv/media" "$dir/tmp"
printf 'hello from the package test\n' > "$dir/srv/media/a.txt"
# The command the README gives for the 0600 include, writing into the test directory.
printf 'set $mediagate_secret "%s";\n' "$(cat /etc/mediagate/keys/internal-secret)" \
  | install -m 0600 -o root -g root /dev/stdin "$dir/mediagate-secret.conf"
[ "$(mode "$dir/mediagate-secret.conf")" = "600 root:root" ] || fail "secret include mode"
# nginx resolves relative includes against the directory of -c: this link stands for
# /etc/nginx, so the snippets' own `include mediagate/auth-proxy.conf` works as installed.
ln -s /etc/nginx/mediagate "$dir/mediagate"
cat > "$dir/nginx.conf" <<NGINX
daemon off;
user www-data;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log;
events { worker_connections 64; }
http {
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    # As /etc/nginx/conf.d/mediagate.conf would hold (README, Install).
    include mediagate/http.conf;
    variables_hash_bucket_size 128;
    upstream mediagate_verify   { server unix:/run/mediagate/verify.sock; keepalive 8; keepalive_timeout 60s; }
    upstream mediagate_internal { server unix:/run/mediagate/internal.sock; keepalive 8; keepalive_timeout 60s; }
    upstream mediagate_app      { server unix:$dir/app.sock; }

    # As sites-available/media.example.org would hold.
    server {
        listen unix:$dir/media.sock;
        server_name media.example.org;
        access_log $dir/media.access.log mediagate;
        error_log $dir/media.error.log crit;
        include mediagate/media-auth.conf;
        location /media/ {
            include mediagate/protect.conf;
            root $dir/srv;
        }
    }
    # As sites-available/www.example.org would hold.
    server {
        listen unix:$dir/www.sock;
        server_name www.example.org;
        access_log $dir/www.access.log;
        include $dir/mediagate-secret.conf;
        set \$mediagate_app_check /media-access;
        include mediagate/session-refresh.conf;
    }
    # The application's access check: everyone may see everything.
    server {
        listen unix:$dir/app.sock;
        access_log off;
        location = /media-access { return 204; }
    }
}
NGINX
nginx -t -p "$dir" -c "$dir/nginx.conf" > "$dir/nginx-t.out" 2>&1 || { cat "$dir/nginx-t.out" >&2; fail "nginx -t"; }

step "running mediagate and nginx as installed"
# What systemd's RuntimeDirectory= would create.
install -d -m 0750 -o mediagate -g mediagate /run/mediagate
# As the unit runs it. setpriv execs mediagate itself (runuser would stay in between and print
# on SIGTERM).
start_mediagate() {
  setpriv --reuid=mediagate --regid=mediagate --init-groups -- /usr/bin/mediagate --config "$config" serve >> "$dir/mediagate.log" 2>&1 &
  mediagate_pid=$!
  pids+=($mediagate_pid)
}
# SIGTERM, as systemd stops it; waits for the exit.
stop_mediagate() {
  kill "$mediagate_pid"
  wait "$mediagate_pid" 2>/dev/null || true
  local running=()
  for pid in "${pids[@]}"; do
    [ "$pid" = "$mediagate_pid" ] || running+=("$pid")
  done
  pids=("${running[@]}")
}
start_mediagate
nginx -p "$dir" -c "$dir/nginx.conf" &
pids+=($!)
wait_ready() {
  for _ in $(seq 100); do
    if /usr/bin/mediagate --config "$config" probe --listener internal --path /readyz >/dev/null 2>&1 \
       && [ -S "$dir/media.sock" ] && [ -S "$dir/www.sock" ]; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}
wait_ready || fail "mediagate or nginx did not come up within 10 s"

media() { curl -s -o "$dir/body" -D "$dir/headers" --unix-socket "$dir/media.sock" "http://media.example.org$1"; }
header() { tr -d '\r' < "$dir/headers" | sed -n "s/^$1: //Ip" | head -1; }
status() { tr -d '\r' < "$dir/headers" | sed -n '1s/^HTTP\/1.1 \([0-9]*\).*/\1/p'; }

media /media/a.txt
[ "$(status)" = 302 ] || fail "no token: status $(status)"
refresh=$(header Location)
case "$refresh" in
  https://www.example.org/_mediagate/refresh/media/a.txt\?state=*) ;;
  *) fail "no token: Location $refresh" ;;
esac
curl -s -o /dev/null -D "$dir/headers" --unix-socket "$dir/www.sock" "http://www.example.org${refresh#https://www.example.org}"
[ "$(status)" = 302 ] || fail "refresh: status $(status) $(header X-Mediagate-Reason)"
fresh=$(header Location)
case "$fresh" in
  https://media.example.org/media/a.txt\?token=*) ;;
  *) fail "refresh: Location $fresh" ;;
esac
media "${fresh#https://media.example.org}"
[ "$(status)" = 200 ] && grep -qx 'hello from the package test' "$dir/body" || fail "refreshed link: status $(status)"

signed=$(/usr/bin/mediagate --config "$config" sign /media/a.txt --ttl 5m)
media "${signed#https://media.example.org}"
[ "$(status)" = 200 ] && grep -qx 'hello from the package test' "$dir/body" || fail "signed link: status $(status)"
# Change one character inside the tag, not the last one: the last character may carry unused
# bits, and setting one makes the link malformed rather than forged (one spelling per token).
swap=$(if [ "${signed: -5:1}" = A ]; then echo B; else echo A; fi)
forged="${signed:0:${#signed}-5}${swap}${signed: -4}"
media "${forged#https://media.example.org}"
[ "$(status)" = 403 ] && [ "$(header X-Mediagate-Reason)" = bad_signature ] \
  || fail "forged link: status $(status) reason $(header X-Mediagate-Reason)"
grep -q 'token=' "$dir/media.access.log" && fail "the media access log holds a token"

step "limited-use links and revocation in the embedded store"
once=$(/usr/bin/mediagate --config "$config" sign /media/a.txt --ttl 5m --uses 1 --id deb-once)
media "${once#https://media.example.org}"
[ "$(status)" = 200 ] || fail "single-use link, first use: status $(status) $(header X-Mediagate-Reason)"
media "${once#https://media.example.org}"
[ "$(status)" = 403 ] && [ "$(header X-Mediagate-Reason)" = used_up ] \
  || fail "single-use link, second use: status $(status) reason $(header X-Mediagate-Reason)"
[ "$(mode /var/lib/mediagate/state.redb)" = "600 mediagate:mediagate" ] \
  || fail "store file: $(mode /var/lib/mediagate/state.redb 2>&1)"
# The CLI (as root) asks the running server; the history is written just after the answers.
recorded=no
for _ in $(seq 100); do
  /usr/bin/mediagate --config "$config" uses deb-once > "$dir/uses.out" 2>&1 || fail "mediagate uses: $(cat "$dir/uses.out")"
  if grep -qx 'token id deb-once of key k1: 2 uses recorded' "$dir/uses.out"; then
    recorded=yes
    break
  fi
  sleep 0.1
done
[ $recorded = yes ] || fail "mediagate uses: $(cat "$dir/uses.out")"
grep -Eq '^[0-9T:Z-]+ +[^ ]+ +200 +- +curl/' "$dir/uses.out" && grep -Eq ' 403 +used_up +curl/' "$dir/uses.out" \
  || fail "mediagate uses: $(cat "$dir/uses.out")"
doomed=$(/usr/bin/mediagate --config "$config" sign /media/a.txt --ttl 5m --id deb-doomed)
/usr/bin/mediagate --config "$config" revoke --token-id deb-doomed > "$dir/revoke.out" 2>&1 \
  || fail "mediagate revoke: $(cat "$dir/revoke.out")"
grep -q '^revoked token id deb-doomed of key k1; in force until ' "$dir/revoke.out" || fail "mediagate revoke: $(cat "$dir/revoke.out")"
media "${doomed#https://media.example.org}"
[ "$(status)" = 403 ] && [ "$(header X-Mediagate-Reason)" = revoked ] \
  || fail "revoked link: status $(status) reason $(header X-Mediagate-Reason)"

step "restarting mediagate: the use and the revocation stay"
stop_mediagate
start_mediagate
wait_ready || fail "mediagate did not come back within 10 s"
media "${once#https://media.example.org}"
[ "$(status)" = 403 ] && [ "$(header X-Mediagate-Reason)" = used_up ] \
  || fail "single-use link after restart: status $(status) reason $(header X-Mediagate-Reason)"
media "${doomed#https://media.example.org}"
[ "$(status)" = 403 ] && [ "$(header X-Mediagate-Reason)" = revoked ] \
  || fail "revoked link after restart: status $(status) reason $(header X-Mediagate-Reason)"
/usr/bin/mediagate --config "$config" revocations > "$dir/revocations.out" 2>&1 || fail "mediagate revocations: $(cat "$dir/revocations.out")"
grep -Eq '^token +kid=k1 token_id=deb-doomed ' "$dir/revocations.out" || fail "mediagate revocations: $(cat "$dir/revocations.out")"
for pid in "${pids[@]}"; do kill "$pid"; wait "$pid" 2>/dev/null || true; done
pids=()

step "reinstalling keeps the keys and the configuration"
sum_before=$(cat /etc/mediagate/keys/* /etc/mediagate/mediagate.toml | md5sum)
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --reinstall "./$deb" > "$dir/install.log" 2>&1 \
  || { cat "$dir/install.log" >&2; fail "reinstall"; }
[ "$(cat /etc/mediagate/keys/* /etc/mediagate/mediagate.toml | md5sum)" = "$sum_before" ] || fail "reinstall changed keys or configuration"

step "removing keeps the store"
DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq mediagate > "$dir/remove.log" 2>&1 \
  || { cat "$dir/remove.log" >&2; fail "apt-get remove mediagate"; }
[ -f /var/lib/mediagate/state.redb ] || fail "remove deleted the store"

step "purging"
DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq mediagate > "$dir/purge.log" 2>&1 \
  || { cat "$dir/purge.log" >&2; fail "apt-get purge mediagate"; }
installed=no
[ "$(dpkg-query -W -f='${db:Status-Status}' mediagate 2>/dev/null || echo not-installed)" = not-installed ] \
  || fail "dpkg still knows mediagate"
for path in /usr/bin/mediagate /etc/mediagate /etc/nginx/mediagate /run/mediagate /var/lib/mediagate \
            /lib/systemd/system/mediagate.service /usr/share/doc/mediagate \
            /usr/share/man/man1/mediagate.1.gz /usr/share/bash-completion/completions/mediagate \
            /usr/share/zsh/vendor-completions/_mediagate /usr/share/fish/vendor_completions.d/mediagate.fish; do
  [ -e "$path" ] && fail "$path is left after purge"
done
getent passwd mediagate >/dev/null && fail "user mediagate is left after purge"
getent group mediagate >/dev/null && fail "group mediagate is left after purge"
id -nG www-data | tr ' ' '\n' | grep -qx mediagate && fail "www-data is still in group mediagate"

step "passed"
