#!/usr/bin/env bash
# CI: build the .deb, install it with dpkg, smoke-test what it installed, remove it.
#   scripts/deb-smoke.sh [--profile release|dist] [--no-http-origin]
# The dist profile by default, as the package ships: the release profile (fat LTO, one
# codegen unit) without the debug information that only makes its link slower here
# (cargo-deb strips either).
# Needs root (or sudo) for dpkg, and man-db and systemd's systemd-socket-activate
# (scripts/test-deps.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."

args=(--profile dist)
[ $# -eq 0 ] || args=("$@")
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

./scripts/build-deb.sh "${args[@]}"
deb=$(ls -t target/debian/*.deb | head -1)
package=$(dpkg-deb --field "$deb" Package)
ls -l "$deb"

work=$(mktemp -d)
activator=""
cleanup() {
    [ -z "$activator" ] || kill "$activator" 2>/dev/null || true
    [ -z "$activator" ] || wait "$activator" 2>/dev/null || true
    rm -rf "$work"
    # dpkg -r (below) keeps the conffile; leave the machine as it was.
    $sudo dpkg --purge "$package" >/dev/null 2>&1 || true
}
trap cleanup EXIT

$sudo dpkg -i "$deb"

# The man pages (generated from the clap definitions) and the binaries.
MANPAGER=cat man tftpd | grep -q -- '--max-window-memory'
MANPAGER=cat man 1 tftp-rs | grep -q 'tftp-rs'
tftpd --version | grep -qx "tftpd $(dpkg-deb --field "$deb" Version | cut -d- -f1)"
tftp-rs --version >/dev/null
test -s /usr/share/bash-completion/completions/tftpd
test -f /etc/tftpd.toml
dpkg-query -W -f='${Conffiles}\n' "$package" | grep -q ' /etc/tftpd.toml '

# A binary with packed relocations (DT_RELR) depends on the glibc that can load it
# (build-deb.sh raises what dpkg-shlibdeps derives).
if readelf -V -W /usr/sbin/tftpd | grep -q GLIBC_ABI_DT_RELR; then
    dpkg-deb --field "$deb" Depends | grep -q 'libc6 (>= 2.36)' ||
        { echo "tftpd needs GLIBC_ABI_DT_RELR, the package: $(dpkg-deb --field "$deb" Depends)" >&2; exit 1; }
fi

# The installed service unit stays hardened.
score=$(systemd-analyze security --offline=yes /usr/lib/systemd/system/tftpd.service 2>/dev/null |
    sed -n 's/.*Overall exposure level for tftpd.service: \([0-9.]*\).*/\1/p')
echo "systemd-analyze security tftpd.service: $score"
awk -v s="$score" 'BEGIN { exit !(s != "" && s <= 2.5) }'

# Start the server as tftpd.socket would: the service unit's ExecStart= command line, with
# the UDP socket passed in (LISTEN_FDS) by systemd-socket-activate, which starts it on the
# first datagram. Our config instead of /etc/tftpd.toml.
mkdir "$work/root"
echo "hello from the package" >"$work/root/hello.txt"
chmod -R a+rX "$work"
printf 'root = "%s"\nsession-log = "%s"\n' "$work/root" "$work/sessions.jsonl" >"$work/tftpd.toml"
exec_start=$(sed -n 's/^ExecStart=//p' /usr/lib/systemd/system/tftpd.service)
read -r -a command <<<"${exec_start//\/etc\/tftpd.toml/$work/tftpd.toml}"
port=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
systemd-socket-activate --datagram --listen "127.0.0.1:$port" "${command[@]}" 2>"$work/stderr" &
activator=$!
got=$(curl -sS --max-time 20 "tftp://127.0.0.1:$port/hello.txt") || { cat "$work/stderr"; exit 1; }
[ "$got" = "hello from the package" ] || { echo "got: $got"; cat "$work/stderr"; exit 1; }
grep -q 'using sockets from the service manager' "$work/stderr" || { cat "$work/stderr"; exit 1; }
kill "$activator"
wait "$activator" 2>/dev/null || true
activator=""
grep -q '"file":"hello.txt"' "$work/sessions.jsonl" || { cat "$work/sessions.jsonl"; exit 1; }

$sudo dpkg -r "$package"
if [ -e /usr/sbin/tftpd ]; then echo "dpkg -r left /usr/sbin/tftpd" >&2; exit 1; fi
echo "deb smoke test passed: $deb"
