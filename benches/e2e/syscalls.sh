#!/usr/bin/env bash
# System calls per DATA packet, counted rather than timed: each server runs under `perf stat`
# with the kernel's syscall tracepoints (no PMU needed), forked children included, while
# tftp-loadgen fetches a file with N clients at once. Prints, per DATA packet the clients
# received, the server's system calls in all and each kind of call it made.
#
#   benches/e2e/syscalls.sh [--clients N] [--size KiB] [--bind-from RANGE] NAME[:PORT]=CMD ...
#
# Why: issue 15 asks where a server's CPU beyond the kernel's per-packet work goes, and a
# system call is the one piece of it that can be counted exactly: how many packets a
# `recvmmsg` takes, whether a wait precedes every receive, what a forking server adds. The
# counts do not depend on the VM's speed that minute (the batch sizes do, a little: a slower
# server finds more datagrams queued).
#
# CMD is a server command line with the words ROOT and PORT in it, as for ab.sh (NAME:N=CMD:
# the server listens on port N whatever its command says, as dnsmasq on 69), e.g.
#   benches/e2e/syscalls.sh --clients 1000 \
#     tftpd="target/release/tftpd --root ROOT --listen 127.0.0.1:PORT" \
#     floor="target/release/tftp-floor --concurrent --single-port --root ROOT --listen 127.0.0.1:PORT"
# The server runs on CPU 1 and the load client on CPU 0. Runs as root in a network namespace of
# its own (loopback only); needs perf (apt-get install linux-perf or linux-tools), python3
# and the load tools (cargo build --release -p tftp-benches). Each run is bounded by the load
# client's deadline (150 s).
set -euo pipefail

CLIENTS=1000 SIZE_KIB=1024
extra_option() { return 1; }
# shellcheck source=benches/e2e/counted.sh
source "$(dirname "$0")/counted.sh"
counted_parse "$@"
counted_enter perf "apt-get install linux-perf" "$@"

echo "# $CLIENTS clients x $SIZE_KIB KiB at once, blksize 1468${BIND_FROM:+, from $BIND_FROM}; server on CPU 1, load client on CPU 0"
port=7600
for s in "${SERVERS[@]}"; do
  counted_server "$s" "$port"
  name=$NAME
  # Every syscall tracepoint: perf prints each count, the ones never hit as 0.
  # shellcheck disable=SC2086
  taskset -c 1 perf stat -x, -e raw_syscalls:sys_enter -e 'syscalls:sys_enter_*' \
    -o "$DIR/$name.perf" -- $CMD > "$DIR/$name.log" 2>&1 &
  perf_pid=$!
  sleep 2
  "$LOADGEN" --server "127.0.0.1:$LISTEN" "${FROM[@]}" --file file --clients "$CLIENTS" \
    --threads 1 --cpus 0 --blksize 1468 --expect-size $((SIZE_KIB << 10)) --deadline 150 \
    --output "$DIR/$name.json" > /dev/null 2> "$DIR/$name.err" || true
  # The server is perf's child; perf writes its counts when the server exits.
  server=$(pgrep -P "$perf_pid" | head -1 || true)
  if [[ -n $server ]]; then
    counted_stop "$server" 5
  fi
  wait "$perf_pid" 2>/dev/null || true
  counted_report "$name" "$DIR/$name.perf" <<'PY'
total, kinds = None, {}
for line in lines:
    fields = line.strip().split(",")
    if len(fields) < 3 or not fields[0].isdigit():
        continue
    count, event = int(fields[0]), fields[2]
    if event == "raw_syscalls:sys_enter":
        total = count
    elif event.startswith("syscalls:sys_enter_") and count:
        kinds[event[len("syscalls:sys_enter_"):]] = count
if total is None or not data:
    sys.exit(3)  # no counts: the script says why
print(f"{name:<14} {total / data:6.3f} system calls a DATA ({data} DATA, "
      f"{r.get('failures', '?')} failed, {r.get('retransmissions', '?')} client retransmissions)")
top = sorted(kinds.items(), key=lambda kv: -kv[1])
print("    " + ", ".join(f"{k} {v / data:.3f}" for k, v in top if v / data >= 0.0005))
PY
  port=$((port + 1))
done
