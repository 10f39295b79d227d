#!/usr/bin/env bash
# Cache misses per DATA packet, counted rather than timed: each server runs under valgrind's
# cachegrind, with its last-level cache simulated as one core's private L2 (default 2 MiB,
# 16-way: what a session's state must stay in to be cheap), while tftp-loadgen fetches a file
# with N clients at once. Prints, per DATA packet the clients received, the server's user-space
# instructions (Ir), L1 data misses and L2 ("LL") read and write misses, and the functions
# with the most L2 misses.
#
#   benches/e2e/misses.sh [--clients N] [--size KiB] [--bind-from RANGE] [--l2 BYTES] NAME[:PORT]=CMD ...
#
# Why: at 10,000 clients the server's user-mode CPU per MB is twice what it is at 1,000, while
# a timed A/B of a change to it moves by ±20% between runs on a shared VM. Simulated misses
# do not depend on the neighbours: two runs of one build agree within a few percent (the
# retransmissions differ), so a change that removes misses shows here before it can show in
# benches/e2e/ab.sh. Only user space is simulated: the kernel's copies are not counted.
#
# CMD is a server command line with the words ROOT and PORT in it, as for ab.sh, e.g.
#   benches/e2e/misses.sh --bind-from 127.0.1.1-127.0.1.250 \
#     tftpd="target/release/tftpd --root ROOT --listen 127.0.0.1:PORT" \
#     floor="target/release/tftp-floor --concurrent --root ROOT --listen 127.0.0.1:PORT"
# Under valgrind a server is ~30x slower, so the defaults are modest (5,000 clients x 64 KiB,
# 230,000 DATA); each run is bounded by the load client's deadline (300 s).
# Runs as root in a network namespace of its own (loopback only); needs valgrind
# (apt-get install valgrind), python3 and the load tools (cargo build --release -p tftp-benches).
set -euo pipefail

CLIENTS=5000 SIZE_KIB=64 L2=2097152
extra_option() {
  case $1 in
    --l2) L2=$2 ;;
    *) return 1 ;;
  esac
}
# shellcheck source=benches/e2e/counted.sh
source "$(dirname "$0")/counted.sh"
counted_parse "$@"
counted_enter valgrind "apt-get install valgrind" "$@"

echo "# $CLIENTS clients x $SIZE_KIB KiB at once, blksize 1468${BIND_FROM:+, from $BIND_FROM}; simulated L2 $L2 bytes, 16-way"
printf '%-14s %9s %9s %9s %9s %9s %9s %8s\n' server DATA Ir/DATA D1mr/DATA D1mw/DATA L2mr/DATA L2mw/DATA failed
port=7500
for s in "${SERVERS[@]}"; do
  counted_server "$s" "$port"
  name=$NAME
  out=$DIR/$name.cg
  # shellcheck disable=SC2086
  valgrind --tool=cachegrind --cache-sim=yes "--LL=$L2,16,64" --cachegrind-out-file="$out" \
    $CMD > "$DIR/$name.log" 2>&1 &
  pid=$!
  sleep 5 # valgrind's start-up
  "$LOADGEN" --server "127.0.0.1:$LISTEN" "${FROM[@]}" --file file --clients "$CLIENTS" --threads 1 \
    --blksize 1468 --deadline 300 --min-timeout-ms 1000 --max-timeout-ms 8000 --retries 10 \
    > "$DIR/$name.json" 2> "$DIR/$name.err" || true
  # cachegrind writes its counts when the server exits, however it was stopped.
  counted_stop "$pid" 10
  wait "$pid" 2>/dev/null || true
  counted_report "$name" "$out" <<'PY'
events, totals, funcs = [], None, []
for line in lines:
    if line.startswith("events:"):
        events = line.split()[1:]
    elif line.startswith("summary:"):
        totals = dict(zip(events, map(int, line.split()[1:])))
    elif line.startswith("fn="):
        fn = line[3:].strip()
        funcs.append([fn, dict.fromkeys(events, 0)])
    elif funcs and line[:1].isdigit():
        for e, v in zip(events, map(int, line.split()[1:])):
            funcs[-1][1][e] += v
if not totals or not data:
    sys.exit(3)  # no counts: the script says why
per = lambda e: totals.get(e, 0) / data
print(f"{name:<14} {data:>9} {per('Ir'):>9.0f} {per('D1mr'):>9.2f} {per('D1mw'):>9.2f} "
      f"{per('DLmr'):>9.2f} {per('DLmw'):>9.2f} {r.get('failures', '?'):>8}")
merged = {}
for fn, c in funcs:
    m = merged.setdefault(fn, dict.fromkeys(events, 0))
    for e in events:
        m[e] += c[e]
top = sorted(merged.items(), key=lambda kv: -(kv[1]["DLmr"] + kv[1]["DLmw"]))[:8]
for fn, c in top:
    if c["DLmr"] + c["DLmw"] == 0:
        break
    print(f"    {(c['DLmr'] + c['DLmw']) / data:7.2f} L2 misses/DATA ({c['DLmr'] / data:.2f} read, "
          f"{c['DLmw'] / data:.2f} write)  {fn[:110]}")
PY
  port=$((port + 1))
done
