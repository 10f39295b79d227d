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
# run. Laid out together, 1.5 MB is (benches/e2e/results/2026-12-06-warm-text.txt); 1.06 MB
# since the patterns name only the instances of generic functions that ran, not every
# instance (v0 symbol names: results/2026-12-07-v0-mangling.txt). What serving runs comes
# first, then what only start-up ran (the command line, the configuration, the runtime's
# construction): tftpd gives start-up's pages back once it serves (`start_up_pages` in
# src/bin/tftpd.rs), and serving then maps only the windows of the first part again. The list
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
# The patterns need v0 names (.cargo/config.toml): a legacy name is a path and a hash, and a
# pattern without the hash (which differs between the release and dist profiles) names every
# instance of a generic function, 390 KB of which never run.
if nm "$TFTPD" | grep -q ' _ZN5tftpd4main17h'; then
  echo "warm-text.sh: $TFTPD has legacy symbol names; build it without RUSTFLAGS (.cargo/config.toml selects v0)" >&2
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
  # valgrind's start-up: up to 60 s until the server says it serves. Start-up in $out.1;
  # from then on, serving, in $out at the end: what a first transfer sets up once is
  # serving's (tftpd gives start-up's pages back before it comes), and so is the giving back
  # (a second after it serves: its code maps back in as it returns).
  for _ in $(seq 600); do
    grep -q "serving" "$DIR/$mode.log" && break
    sleep 0.1
  done
  callgrind_control -d "$pid" > /dev/null 2>&1
  [[ -s $out.1 ]] || { echo "warm-text.sh: no start-up profile from $mode" >&2; exit 1; }
  for _ in $(seq 30); do
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
# pattern, its v0 mangled name (which spells a generic function's type arguments, so that the
# pattern names the instances that ran and not their siblings) without the crate
# disambiguators and back-references (which differ between profiles and toolchains), with what
# a script's lexer might not take as one character wildcards. A legacy name (`_ZN`, from a
# crate built without the workspace's flags) loses its hash.
{
  # What a native run of tftpd (1,000 clients at once) executed outside the two sections and
  # these callgrind runs did not name: found with `perf record -e minor-faults -d` (the
  # first instruction fetched in each 64 KiB window faults).
  # And two that the build with the layout does not inline where the build without it does.
  # And drop glue that fat LTO folds with other types' identical glue, naming the copy it
  # keeps by one of the types, not the same one from build to build (one of these runs).
  # And the rebalancing of the endpoint's maps as sessions end at scale (which of these runs
  # depends on the order the thousand sessions of the profile end in), and the rehash of a
  # table full of tombstones (the routes and peers as sessions come and go).
  printf '%s\n' _RINvMs10_NtNtNtCs0_5alloc11collections5btree4nodeINtB7_16BalancingContextNtNtCs0_10tftp_proto8endpoint13SessionHandleNtNtNtCs0_4core3net11socket_addr10SocketAddrE25merge_tracking_child_edgeNtNtBd_5alloc6GlobalECs0_11tftp_server \
    _RINvMs10_NtNtNtCs0_5alloc11collections5btree4nodeINtB7_16BalancingContextNtNtNtCs0_4core3net11socket_addr10SocketAddrNtNtCs0_10tftp_proto8endpoint4LiveE25merge_tracking_child_edgeNtNtBd_5alloc6GlobalECs0_11tftp_server \
    _RNvMs10_NtNtNtCs0_5alloc11collections5btree4nodeINtB6_16BalancingContextNtNtCs0_10tftp_proto8endpoint13SessionHandleNtNtNtCs0_4core3net11socket_addr10SocketAddrE15bulk_steal_leftCs0_11tftp_server \
    _RNvMs10_NtNtNtCs0_5alloc11collections5btree4nodeINtB6_16BalancingContextNtNtCs0_10tftp_proto8endpoint13SessionHandleNtNtNtCs0_4core3net11socket_addr10SocketAddrE16bulk_steal_rightCs0_11tftp_server \
    _RNvMs10_NtNtNtCs0_5alloc11collections5btree4nodeINtB6_16BalancingContextNtNtNtCs0_4core3net11socket_addr10SocketAddrNtNtCs0_10tftp_proto8endpoint4LiveE15bulk_steal_leftCs0_11tftp_server \
    _RNvMs10_NtNtNtCs0_5alloc11collections5btree4nodeINtB6_16BalancingContextNtNtNtCs0_4core3net11socket_addr10SocketAddrNtNtCs0_10tftp_proto8endpoint4LiveE16bulk_steal_rightCs0_11tftp_server \
    _RNvMsa_NtCs0_9hashbrown3rawNtB5_13RawTableInner15rehash_in_place \
    _RINvNtCs0_4core3ptr13drop_in_placeNtNtCs0_5tftpd4http15RedirectRefusedE \
    _RINvNtCs0_4core3ptr13drop_in_placeNtNtCs0_3std4path7PathBufE \
    _RNvMNtNtCs0_14cap_primitives2fs8metadataNtB2_8Metadata9from_file \
    _RNvMs1_NtCs0_11tftp_server5statsNtB5_14StatsCollector17transfer_progress \
    _RNvMs3_NtCs0_5alloc7raw_vecINtB5_6RawVecNtNtNtNtCs0_3std4sync4mpmc5waker5EntryE8grow_one \
    _RINvYNtNtNtCs0_3std4hash6random11RandomStateNtNtCs0_4core4hash11BuildHasher8hash_oneRNtNtCs0_7metrics3key3KeyE
  # Serving (either engine), then start-up: a function in both is laid out with serving's.
  for part in port-per-transfer.cg single-port.cg port-per-transfer.cg.1 single-port.cg.1; do
    python3 "$HERE/hot-functions.py" "$DIR/$part" 1 "$(basename "$TFTPD")" 2> /dev/null
    if [[ $part == single-port.cg ]]; then echo "-- start-up"; fi
  done
} | python3 -c '
import re, sys
seen = []
serving = None
for name in sys.stdin:
    if name.strip() == "-- start-up":
        serving = len(seen)
        continue
    name = re.sub(r"\x27\d+$", "", name.strip())
    if not name or name.startswith("0x") or name == "???":
        continue
    # LTO numbers the copies it makes of a function (NAME.6091, NAME.llvm.123): not stable.
    name = re.sub(r"(\.llvm)?\.[0-9]+$", "", name)
    name = re.sub(r"17h[0-9a-f]{16}E$", "17h", name)
    if name.startswith("_R"):
        # v0 names carry a disambiguator per crate, which changes with the profile and the
        # toolchain, and back-references, offsets that move with them.
        name = re.sub(r"Cs[0-9A-Za-z]*_", "Cs@_", name)
        name = re.sub(r"B[0-9A-Za-z]*_", "B@_", name)
        # The handler tftpd serves with names its origin among its type arguments:
        # Option<HttpOrigin>, or (built without the http-origin feature, the .deb that
        # leaves it out) Option<DirHandler>, which v0 spells as a back-reference to the
        # Option<DirHandler> before it: so any.
        origin = r"NtNt(B@_|Cs@_5tftpd)4http10HttpOrigin"
        name = re.sub(r"I(B@_|NtNtCs@_4core6option6Option)" + origin + "E", "@", name)
        name = re.sub(origin, "@", name)
        # An instance of a generic function ends with the crate that instantiated it; which
        # of the copies a build keeps (and calls) differs between builds, so any of them.
        # (`...Cs@_5tftpd` at the end, where the length is that of the name that follows:
        # `_RNvCs@_5tftpd4main` is a path, tftpd::main, and keeps it).
        crate = re.search(r"(Cs@_([0-9]+)([A-Za-z_][0-9A-Za-z_]*)|B@_)$", name)
        if crate and (crate.group(2) is None or int(crate.group(2)) == len(crate.group(3))):
            name = name[: crate.start()]
    pattern = re.sub(r"[^A-Za-z0-9_.@]", "?", name).replace("@", "*")
    if pattern not in seen:
        seen.append(pattern)
print("/*")
print(" * Generated by benches/e2e/warm-text.sh, which says why and how; do not edit by hand.")
print(" * Every function tftpd ran (%d patterns), laid out together after the per-packet ones" % len(seen))
print(" * (tftp-blocking/hot-text.ld): what serving runs first (%d), then what only start-up ran." % serving)
print(" * Passed to the linker by tftpd/build.rs.")
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
