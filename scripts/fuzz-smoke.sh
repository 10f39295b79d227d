#!/usr/bin/env bash
# Run every fuzz target for a short while (default 20 s each) on the kept corpus.
# The machine has one stable toolchain; RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its -Z flags.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-20}"
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz >/dev/null
export RUSTC_BOOTSTRAP=1
for target in $(cargo fuzz list); do
    # Fuzz into a scratch copy so the kept corpus only changes when someone minimises it.
    work="$(mktemp -d)"
    cp -r "corpus/$target/." "$work/" 2>/dev/null || true
    echo "fuzz $target for ${secs}s"
    cargo fuzz run "$target" "$work" -- -max_total_time="$secs" 2>&1 | grep -E '^Done|ERROR|panicked' || true
    rm -rf "$work"
    [ -z "$(ls -A artifacts/"$target" 2>/dev/null)" ] || { echo "fuzz $target found a crash"; exit 1; }
done
