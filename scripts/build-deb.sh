#!/usr/bin/env bash
# Build the Debian package of tftpd and the client (installed as tftp-rs), with cargo-deb:
#   scripts/build-deb.sh [--profile dist|release] [--no-http-origin]
# writes target/debian/tftp-rs_VERSION-1_ARCH.deb (tftp-rs-no-http-origin_... without the
# HTTP origin) and prints its path. The dist profile is the release profile (fat LTO, one
# codegen unit: a few minutes on two cores) without debug information, stripped; with
# --profile release the build keeps line tables for profilers, and cargo-deb strips it too.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=dist
variant=()
features=()
while [ $# -gt 0 ]; do
    case "$1" in
        --profile) profile="$2"; shift 2 ;;
        --profile=*) profile="${1#*=}"; shift ;;
        --no-http-origin) variant=(--variant no-http-origin); features=(--no-default-features); shift ;;
        *) echo "usage: $0 [--profile dist|release] [--no-http-origin]" >&2; exit 64 ;;
    esac
done

# Once per machine (a few minutes); later runs find it in ~/.cargo/bin.
command -v cargo-deb >/dev/null || cargo install cargo-deb --locked

# Man pages and completions from the clap definitions (a dev build of one example; normal
# builds never compile it), documenting the flags of the build being packaged.
rm -rf dist/generated
cargo run --quiet -p tftpd ${features[@]+"${features[@]}"} --example gen-docs -- dist/generated

deb=$(cargo deb -p tftpd --profile "$profile" ${variant[@]+"${variant[@]}"} --locked --strip | tail -1)

# A binary linked with packed relative relocations (DT_RELR: tftpd/build.rs passes
# -z pack-relative-relocs where the building machine's glibc is 2.36 or later) needs glibc
# 2.36, which the binary says by requiring the version GLIBC_ABI_DT_RELR. dpkg-shlibdeps
# (cargo-deb's $auto) derives the libc6 dependency from the symbols a binary uses, and no
# symbol carries that version: it would write libc6 (>= 2.34), and the package would install
# on Ubuntu 22.04 or RHEL-like 2.34 systems where tftpd cannot start. Raise it.
if readelf -V -W "target/$profile/tftpd" | grep -q GLIBC_ABI_DT_RELR; then
    unpacked=$(mktemp -d)
    trap 'rm -rf "$unpacked"' EXIT
    chmod 755 "$unpacked"  # the package's ./, as cargo-deb made it
    dpkg-deb --raw-extract "$deb" "$unpacked"
    control="$unpacked/DEBIAN/control"
    if grep -q '^Depends:.*libc6 (' "$control"; then
        sed -i 's/^\(Depends:.*\)libc6 ([^)]*)/\1libc6 (>= 2.36)/' "$control"
    elif grep -q '^Depends:' "$control"; then
        sed -i 's/^Depends: /Depends: libc6 (>= 2.36), /' "$control"
    else
        sed -i '/^Package:/a Depends: libc6 (>= 2.36)' "$control"
    fi
    dpkg-deb --root-owner-group --build "$unpacked" "$deb" >/dev/null
fi
echo "$deb"
