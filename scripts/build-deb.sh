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

cargo deb -p tftpd --profile "$profile" ${variant[@]+"${variant[@]}"} --locked --strip
