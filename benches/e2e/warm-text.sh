#!/usr/bin/env bash
# Writes tftpd/warm-text.ld: every function of tftpd that runs when it serves, laid out
# together (the per-packet ones are in tftp-blocking/hot-text.ld, ahead of them).
#
#   TFTP_NO_HOT_TEXT=1 CARGO_TARGET_DIR=/tmp/nh cargo build --release -p tftpd
#   benches/e2e/warm-text.sh /tmp/nh/release/tftpd > tftpd/warm-text.ld
#
# Why: the kernel maps a program's code 64 KiB at a time around the page a fault asks for
# ("fault-around"), and the ~740 functions a serving tftpd runs (0.87 MB) were spread over 43
# such windows of its 5 MB of code: 2.4-2.8 MB of its memory (PSS) was code, most of it never
# run. Laid out together, 1.5 MB is (benches/e2e/results/2026-12-06-warm-text.txt). The list
# comes from running tftpd, in both of its engines, under callgrind through what its users
# do: start, downloads with and without options (curl, tftp-hpa's client), windowed ones and
# a thousand at once (tftp-loadgen), a missing file, a refused upload, and a stop on SIGTERM,
# with a session log (--session-log, as operators who ship logs and run.sh run it). A function the list misses (renamed since, or
# a path not run here) still works; it costs the 64 KiB around it when it first runs.
#
# Needs valgrind, curl and tftp-loadgen (cargo build --release -p tftp-benches); tftp (tftp-hpa)
# is used when installed. The build must be TFTP_NO_HOT_TEXT=1: callgrind names no function in
# the script's sections. Loopback only, ports 7700-7701; a few minutes. KEEP=1 keeps the
# profiles (the directory is named on stderr).
set -euo pipefail

TFTPD=${1:?usage: warm-text.sh PATH/TO/tftpd (built with TFTP_NO_HOT_TEXT=1)}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
LOADGEN=${LOADGEN:-$REPO/target/release/tftp-loadgen}
for tool in valgrind curl python3 "$LOADGEN"; do
  command -v "$tool" > /dev/null || { echo "warm-text.sh: $tool is needed" >&2; exit 1; }
done
if readelf -SW "$TFTPD" | grep -q 'tftp_hot\|tftp_warm'; then
  echo "warm-text.sh: $TFTPD was linked with the layout scripts; build with TFTP_NO_HOT_TEXT=1" >&2
  exit 1
fi

DIR=$(mktemp -d /tmp/warm-text.XXXXXX)
[[ -z ${KEEP:-} ]] || echo "warm-text.sh: profiles in $DIR" >&2
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2> /dev/null || true; done
  [[ -n ${KEEP:-} ]] || rm -rf "$DIR"
}
trap cleanup EXIT
mkdir -p "$DIR/root"
head -c 1048576 /dev/urandom > "$DIR/root/file"
head -c 65536 /dev/urandom > "$DIR/root/small"
echo hello > "$DIR/root/hello.txt"

port=7700
for mode in port-per-transfer single-port; do
  flags=()
  [[ $mode == single-port ]] && flags=(--single-port)
  out=$DIR/$mode.cg
  valgrind --tool=callgrind --demangle=no --dump-instr=yes --callgrind-out-file="$out" \
    "$TFTPD" --root "$DIR/root" --listen "127.0.0.1:$port" "${flags[@]}" \
    --session-log "$DIR/$mode.sessions.jsonl" > "$DIR/$mode.log" 2>&1 &
  pid=$!
  PIDS+=("$pid")
  url=tftp://127.0.0.1:$port
  # valgrind's start-up: up to 60 s until the server answers.
  for _ in $(seq 60); do
    curl -s -m 5 -o /dev/null "$url/hello.txt" && break
    sleep 1
  done
  curl -sS -m 60 -o /dev/null --tftp-blksize 1468 "$url/file"
  curl -sS -m 60 -o /dev/null --tftp-no-options "$url/file"
  curl -s -m 30 -o /dev/null "$url/missing" || true
  curl -s -m 30 -T "$DIR/root/hello.txt" "$url/upload.txt" || true
  if command -v tftp > /dev/null; then
    (cd "$DIR" && tftp -m binary 127.0.0.1 "$port" -c get file tftp-hpa.out) || true
  fi
  "$LOADGEN" --server "127.0.0.1:$port" --file file --clients 50 --blksize 1468 \
    --deadline 120 > /dev/null
  "$LOADGEN" --server "127.0.0.1:$port" --file file --clients 10 --blksize 1468 \
    --windowsize 8 --deadline 120 > /dev/null
  # A thousand at once: the tables grow, the send queues fill, and under valgrind's slowness
  # clients retransmit.
  "$LOADGEN" --server "127.0.0.1:$port" --file small --clients 1000 --blksize 1468 \
    --initial-timeout-ms 3000 --min-timeout-ms 1000 --retries 10 --deadline 300 > /dev/null || true
  # callgrind writes its profile when the server exits.
  kill -TERM "$pid"
  wait "$pid" || true
  [[ -s $out ]] || { echo "warm-text.sh: no profile from $mode (see $DIR/$mode.log)" >&2; exit 1; }
  port=$((port + 1))
done

# Every function of the binary that ran at least once, in either engine: as a linker
# pattern, its mangled name up to the hash (all of a generic function's instances, and the
# same pattern across builds whose hashes differ), with what a script's lexer might not take
# as one character wildcards.
{
  # What a native run of tftpd (1,000 clients at once) executed outside the two sections and
  # these callgrind runs did not name: found with `perf record -e minor-faults -d` (the
  # first instruction fetched in each 64 KiB window faults).
  printf '%s\n' _ZN14cap_primitives2fs8metadata8Metadata9from_file17h0000000000000000E \
    _ZN11tftp_server5stats14StatsCollector17transfer_progress17h0000000000000000E
  python3 "$HERE/hot-functions.py" "$DIR/port-per-transfer.cg" 1 "$(basename "$TFTPD")" 2> /dev/null
  python3 "$HERE/hot-functions.py" "$DIR/single-port.cg" 1 "$(basename "$TFTPD")" 2> /dev/null
} | python3 -c '
import re, sys
seen = []
for name in sys.stdin:
    name = re.sub(r"\x27\d+$", "", name.strip())
    if not name or name.startswith("0x") or name == "???":
        continue
    # LTO numbers the copies it makes of a function (NAME.6091, NAME.llvm.123): not stable.
    name = re.sub(r"(\.llvm)?\.[0-9]+$", "", name)
    name = re.sub(r"17h[0-9a-f]{16}E$", "17h", name)
    if name.startswith("_R"):
        # v0 names (those of the standard library) carry a disambiguator per crate, which changes
        # with the toolchain, and back-references, offsets that move with it.
        name = re.sub(r"Cs[0-9A-Za-z]*_", "Cs@_", name)
        name = re.sub(r"B[0-9A-Za-z]*_", "B@_", name)
    pattern = re.sub(r"[^A-Za-z0-9_.@]", "?", name).replace("@", "*")
    if pattern not in seen:
        seen.append(pattern)
print("/*")
print(" * Generated by benches/e2e/warm-text.sh, which says why and how; do not edit by hand.")
print(" * Every function tftpd ran while serving (%d patterns), laid out together after the" % len(seen))
print(" * per-packet ones (tftp-blocking/hot-text.ld). Passed to the linker by tftpd/build.rs.")
print(" */")
print("SECTIONS")
print("{")
print("  .text.tftp_warm : {")
for p in seen:
    # #[cold] functions (OnceLock initialisation, Vec growth) are in .text.unlikely.NAME.
    print("    *(.text.%s* .text.unlikely.%s*)" % (p, p))
print("  }")
print("}")
print("INSERT BEFORE .text;")
'
