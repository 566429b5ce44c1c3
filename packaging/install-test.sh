#!/usr/bin/env bash
# Install test of the packages, as root on a Debian machine (CI runs it after building them
# with packaging/build.sh). Leaves the machine as it found it: refuses to run when a starling
# package or user already exists, and removes everything it installed.
#
#   1. .deb: lintian (no errors), dpkg -i, the files, the user, `starling validate` on the
#      packaged config; the installed binary run as the starling user with the packaged config
#      (ports moved by flags), a message sent with logger and read back; dpkg -r keeps the
#      data, dpkg -P deletes it and the user.
#   2. .rpm: metadata, file list and scriptlets (rpm -qpi, -qpl, -qp --scripts).
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "install-test: $*" >&2; exit 1; }
step() { printf '\n--> %s\n' "$*"; }

[ "$(id -u)" = 0 ] || fail "must run as root"
deb=$(ls -1t target/debian/starling_*.deb 2>/dev/null | head -n1)
rpm_file=$(ls -1t target/generate-rpm/starling-*.rpm 2>/dev/null | head -n1)
[ -n "$deb" ] && [ -n "$rpm_file" ] || fail "build the packages first: packaging/build.sh"
dpkg -s starling >/dev/null 2>&1 && fail "a starling package is already installed"
getent passwd starling >/dev/null && fail "a starling user already exists"
[ -e /var/lib/starling ] && fail "/var/lib/starling already exists"

node_pid=""
cleanup() {
    [ -n "$node_pid" ] && kill "$node_pid" 2>/dev/null || true
    if dpkg -s starling >/dev/null 2>&1 || [ -e /var/lib/starling ]; then
        dpkg -P starling >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

step "lintian $deb"
if command -v lintian >/dev/null; then
    # Errors fail the test; warnings are printed for the record.
    lintian --fail-on error --suppress-tags no-manual-page "$deb" || fail "lintian reported errors"
else
    fail "lintian is not installed"
fi

step "dpkg -i"
dpkg -i "$deb"
for file in /usr/bin/starling /etc/starling/starling.toml /lib/systemd/system/starling.service \
    /usr/share/man/man1/starling.1.gz /usr/share/man/man1/starling-run.1.gz \
    /usr/share/bash-completion/completions/starling /usr/share/zsh/vendor-completions/_starling \
    /usr/share/fish/vendor_completions.d/starling.fish /usr/share/doc/starling/README.md \
    /usr/share/doc/starling/rsyslog.md; do
    [ -e "$file" ] || fail "missing $file"
done
grep -qx '/etc/starling/starling.toml' /var/lib/dpkg/info/starling.conffiles || fail "config is not a conffile"
getent passwd starling >/dev/null || fail "no starling user"
[ "$(stat -c %U /var/lib/starling)" = starling ] || fail "/var/lib/starling is not owned by starling"
grep -q '^Type=notify' /lib/systemd/system/starling.service || fail "unit is not Type=notify"
starling validate --config /etc/starling/starling.toml
man -l /usr/share/man/man1/starling.1.gz >/dev/null 2>&1 || zcat /usr/share/man/man1/starling.1.gz | grep -q starling

step "run the installed binary as the starling user with the packaged config"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
log=$(mktemp)
# setpriv execs the binary itself (runuser would stay in between and turn the node's clean
# exit on SIGTERM into its own "killed by SIGTERM" status).
setpriv --reuid=starling --regid=starling --init-groups -- /usr/bin/starling run --config /etc/starling/starling.toml \
    --syslog-udp "127.0.0.1:$port" --syslog-tcp "127.0.0.1:$port" --api "127.0.0.1:$(free_port)" \
    --gossip "127.0.0.1:$(free_port)" --forward "127.0.0.1:$(free_port)" >"$log" 2>&1 &
node_pid=$!
for _ in $(seq 1 200); do grep -q 'starling: ready' "$log" && break; sleep 0.05; done
grep -q 'starling: ready' "$log" || { cat "$log"; fail "the node did not start"; }
grep -q 'storing in /var/lib/starling' "$log" || fail "the node does not store in /var/lib/starling"
logger -n 127.0.0.1 -P "$port" -T --rfc5424 -t install-test "hello from the install test"
found=""
for _ in $(seq 1 200); do
    if runuser -u starling -- starling read --data-dir /var/lib/starling --format json \
        | grep -q '"message":"hello from the install test"'; then found=yes; break; fi
    sleep 0.05
done
[ -n "$found" ] || fail "the message was not stored"
kill -TERM "$node_pid"; wait "$node_pid" || fail "the node did not exit cleanly on SIGTERM"
node_pid=""

step "dpkg -r keeps the data"
dpkg -r starling
[ -d /var/lib/starling ] || fail "dpkg -r deleted the data"
[ -n "$(ls -A /var/lib/starling)" ] || fail "dpkg -r emptied the data directory"
step "dpkg -P deletes the data and the user"
dpkg -P starling
[ ! -e /var/lib/starling ] || fail "dpkg -P kept /var/lib/starling"
! getent passwd starling >/dev/null || fail "dpkg -P kept the starling user"

step "rpm metadata, files and scriptlets of $rpm_file"
command -v rpm >/dev/null || fail "rpm is not installed"
info=$(rpm -qpi "$rpm_file")
echo "$info"
echo "$info" | grep -q '^Name *: starling' || fail "rpm name"
files=$(rpm -qpl "$rpm_file")
for file in /usr/bin/starling /etc/starling/starling.toml /usr/lib/systemd/system/starling.service \
    /usr/share/man/man1/starling.1.gz /usr/share/doc/starling/README.md; do
    echo "$files" | grep -qx "$file" || fail "rpm lacks $file"
done
rpm -qp --configfiles "$rpm_file" | grep -qx /etc/starling/starling.toml || fail "rpm config file"
scripts=$(rpm -qp --scripts "$rpm_file")
echo "$scripts" | grep -q 'useradd --system' || fail "rpm pre-install does not create the user"
echo "$scripts" | grep -q 'systemctl disable --now starling.service' || fail "rpm pre-uninstall"
echo "install-test: all checks passed"
