#!/usr/bin/env bash
# Interleaved A/B of server builds: the same measurement against each build in turn, several
# rounds, medians. For before/after comparisons of one change on a noisy machine, where two
# separate runs of run.sh differ by more than the change.
#
#   benches/e2e/ab.sh lockstep [--reps N] [--blksize B] [--unpinned] NAME=CMD ...
#       one 64 MiB curl download at a time, server and curl pinned to CPU 0 (unless
#       --unpinned: run.sh's unpinned rows); prints the server's CPU per MB (all its threads,
#       from /proc/PID/task/*/schedstat) and MB/s
#   benches/e2e/ab.sh window [--reps N] [--blksize B] [--windowsize W] [--size MiB] [--pinned] NAME=CMD ...
#       one tftp-loadgen download of a --size MiB file (default 256: at 2 GB/s a 64 MiB
#       transfer lasts 30 ms, shorter than the scheduler's noise), unpinned unless --pinned
#       (server and client on CPU 0); prints the server's CPU per MB and MB/s
#   benches/e2e/ab.sh concurrency [--reps N] [--clients N] [--bind-from RANGE] [--ramp S] [--apart] [--pss] NAME=CMD ...
#       tftp-loadgen: N clients × 1 MiB at once (blksize 1468); prints sessions/s and the
#       server's CPU per MB, all of it and in user mode (its own code, without the kernel's
#       per-packet work, which is most of it and the same for every server); --bind-from spreads the clients over source addresses, as
#       run.sh's multi-address rows do (127.0.1.1-127.0.1.250: loopback owns all of 127/8);
#       --ramp starts the clients over S seconds (run.sh's ramp=10s row); also prints the
#       load client's retransmissions (median); --apart pins the servers to CPU 1 and the load
#       client to CPU 0, as issue 15 measured its concurrency rows (unpinned, a server that
#       sleeps often gets woken on the load client's CPU and shares its caches: the loopback's
#       copies hit and its buffers are freed where they were allocated, which a client on
#       another machine never gives; see results/2026-12-06-apart.txt); --pss also samples
#       each server's proportional set size (smaps_rollup, as run.sh's memory rows) and
#       prints its peak; then every round starts each server afresh, from its program read
#       in afresh (a process's rounds are one sample of its peak: see start_server)
#
# CMD is a server command line with the words ROOT and PORT in it (NAME:N=CMD: the server
# listens on port N whatever its command says, as dnsmasq on 69), e.g.
#   benches/e2e/ab.sh lockstep before="/tmp/old/tftpd --root ROOT --listen 127.0.0.1:PORT" \
#                             after="target/release/tftpd --root ROOT --listen 127.0.0.1:PORT"
# Rounds alternate the servers' order. Each server after the first also gets its CPU ratio to
# the first round by round (median and range): a VM that switches speed between rounds moves
# both servers of a round alike. AB_VERBOSE=1 prints every round's figures too.
# Runs as root in a network namespace of its own (loopback only); needs curl, taskset,
# python3 and the load tools (cargo build --release -p tftp-benches).
set -euo pipefail

MODE=${1:-}
[[ $MODE == lockstep || $MODE == window || $MODE == concurrency ]] || { sed -n '2,37p' "$0"; exit 64; }
shift
REPS=5 BLKSIZE=1468 CLIENTS=1000 WINDOWSIZE=64 SIZE=256 PINNED=0 UNPINNED=0 APART=0 BIND_FROM= RAMP=0 PSS=0
SERVERS=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --reps) REPS=$2; shift ;;
    --blksize) BLKSIZE=$2; shift ;;
    --clients) CLIENTS=$2; shift ;;
    --windowsize) WINDOWSIZE=$2; shift ;;
    --size) SIZE=$2; shift ;;
    --pinned) PINNED=1 ;;
    --unpinned) UNPINNED=1 ;;
    --apart) APART=1 ;;
    --pss) PSS=1 ;;
    --bind-from) BIND_FROM=$2; shift ;;
    --ramp) RAMP=$2; shift ;;
    *=*) SERVERS+=("$1") ;;
    *) echo "unknown argument: $1" >&2; exit 64 ;;
  esac
  shift
done
[[ ${#SERVERS[@]} -gt 0 ]] || { echo "no servers (NAME=CMD)" >&2; exit 64; }
if [[ $APART == 1 ]] && ! { taskset -c 0 true && taskset -c 1 true; } 2>/dev/null; then
  echo "--apart needs CPUs 0 and 1" >&2; exit 64
fi

HERE=$(cd "$(dirname "$0")/../.." && pwd)
LOADGEN=${LOADGEN:-$HERE/target/release/tftp-loadgen}

if [[ ${AB_INNER:-} != 1 ]]; then
  [[ $(id -u) == 0 ]] || { echo "run as root (network namespace)" >&2; exit 64; }
  ROOT=$(mktemp -d /tmp/tftp-ab.XXXXXX)
  chmod 755 "$ROOT" # servers that drop privileges (atftpd runs as nobody) read it too
  trap 'rm -rf "$ROOT"' EXIT
  head -c $((64 << 20)) /dev/urandom > "$ROOT/big"
  head -c $((1 << 20)) /dev/urandom > "$ROOT/small"
  [[ $MODE != window ]] || head -c $((SIZE << 20)) /dev/urandom > "$ROOT/window"
  # The options without a default, passed on to the inner run only when given.
  given=(); [[ $PINNED == 1 ]] && given=(--pinned)
  [[ $UNPINNED == 1 ]] && given+=(--unpinned)
  [[ $APART == 1 ]] && given+=(--apart)
  [[ $PSS == 1 ]] && given+=(--pss)
  [[ -n $BIND_FROM ]] && given+=(--bind-from "$BIND_FROM")
  AB_INNER=1 AB_ROOT=$ROOT unshare --net -- bash "$0" "$MODE" --reps "$REPS" --blksize "$BLKSIZE" \
    --clients "$CLIENTS" --windowsize "$WINDOWSIZE" --size "$SIZE" --ramp "$RAMP" "${given[@]}" "${SERVERS[@]}"
  exit
fi

ip link set lo up
# tftpd-hpa resolves its --address with AI_ADDRCONFIG, which wants an address beyond
# loopback's own 127.0.0.1 (else it exits 66 at once).
ip addr add 127.0.0.2/8 dev lo 2>/dev/null || true
ROOT=$AB_ROOT
RES=$ROOT/results
: > "$RES"
declare -a NAMES CMDS PIDS PORTS CGS
# Each server in a cgroup of its own, so that its CPU time counts the children it forks and
# the threads that exit (tftpd-hpa's and atftpd's transfers): v2, else v1 cpuacct.
CG_BASE=""
if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then CG_BASE=/sys/fs/cgroup/tftp-ab.$$
elif [[ -f /sys/fs/cgroup/cpuacct/cpuacct.usage ]]; then CG_BASE=/sys/fs/cgroup/cpuacct/tftp-ab.$$
fi
[[ -n $CG_BASE ]] && ! mkdir -p "$CG_BASE" 2>/dev/null && CG_BASE=""
pin=()
[[ ($MODE == lockstep && $UNPINNED == 0) || $PINNED == 1 ]] && pin=(taskset -c 0)
lgcpus=()
if [[ $APART == 1 ]]; then pin=(taskset -c 1) lgcpus=(--cpus 0); fi
pss=()
[[ $PSS == 1 ]] && pss=(--pss)
# Server $1 (an index) started: its program read in afresh first with --pss (as after a
# boot): the kernel maps a program's code and data in 64 KiB windows around a fault, but only
# the pages of a window that are in the page cache, so a program's PSS grows with how much of
# its file happens to be cached (a copy just made is cached in whole or in part, dirty pages
# too, which only a sync lets go): two copies of one tftpd, one read in whole and one in
# part, differed by 0.23-0.32 MiB at 1,000 clients, all of it .rodata
# (results/2026-12-07-session-diet.txt).
start_server() {
  local j=$1 prog
  if [[ $PSS == 1 ]]; then
    prog=$(command -v "${CMDS[j]%% *}" || true)
    [[ -z $prog ]] || { sync "$prog" && dd if="$prog" iflag=nocache count=0 status=none; } || true
  fi
  # shellcheck disable=SC2086
  "${pin[@]}" ${CMDS[j]} >> "$ROOT/${NAMES[j]}.log" 2>&1 &
  PIDS[j]=$!
  if [[ -n ${CGS[j]} ]]; then echo "${PIDS[j]}" > "${CGS[j]}/cgroup.procs"; fi
}
stop_server() {
  kill "${PIDS[$1]}" 2>/dev/null || true
  wait "${PIDS[$1]}" 2>/dev/null || true
}
i=0
for s in "${SERVERS[@]}"; do
  name=${s%%=*} cmd=${s#*=} port=$((7400 + i))
  # NAME:PORT=CMD: a server on a port of its own (dnsmasq's TFTP is on 69 only).
  if [[ $name == *:* ]]; then port=${name#*:} name=${name%%:*}; fi
  cmd=${cmd//ROOT/$ROOT}; cmd=${cmd//PORT/$port}
  NAMES[i]=$name CMDS[i]=$cmd PORTS[i]=$port CGS[i]=""
  if [[ -n $CG_BASE ]] && mkdir -p "$CG_BASE/$i"; then CGS[i]=$CG_BASE/$i; fi
  start_server "$i"
  i=$((i + 1))
done
cleanup() {
  kill "${PIDS[@]}" 2>/dev/null || true
  [[ -n $CG_BASE ]] || return 0
  sleep 0.3
  for cg in "$CG_BASE"/*/; do
    while read -r p; do kill -9 "$p" 2>/dev/null || true; done < "$cg/cgroup.procs"
  done
  sleep 0.2
  rmdir "$CG_BASE"/* "$CG_BASE" 2>/dev/null || true
}
trap cleanup EXIT
sleep 1

# CPU ns of server $1 (an index): its cgroup's counter, else its live threads' schedstat.
cpu_ns() {
  local cg=${CGS[$1]} t=0 a _
  if [[ -n $cg && -f $cg/cpuacct.usage ]]; then cat "$cg/cpuacct.usage"; return; fi
  if [[ -n $cg && -f $cg/cpu.stat ]]; then
    awk '$1 == "usage_usec" { printf "%d\n", $2 * 1000 }' "$cg/cpu.stat"; return
  fi
  for f in /proc/"${PIDS[$1]}"/task/*/schedstat; do read -r a _ < "$f"; t=$((t + a)); done
  echo "$t"
}

# User-mode CPU ticks (1/100 s) of server $1, its threads and reaped children (utime +
# cutime): the part of its CPU that is its own code, apart from the kernel's per-packet work.
user_ticks() {
  local stat
  stat=$(cat "/proc/${PIDS[$1]}/stat" 2>/dev/null) || { echo 0; return; }
  stat=${stat##*) }
  awk '{ print $12 + $14 }' <<< "$stat"
}

# Every other round in reverse order: whichever server runs right after another pays for
# what the first left behind (sockets in teardown, dirty caches), and a fixed order hands that
# cost to the same server every round (two 5-round A/Bs of one pair, swapped, each put the
# second of the pair behind, x1.07 and x1.03; alternating keeps such a cost, whatever its
# cause, out of the ratio).
order=("${!NAMES[@]}") reversed=()
for ((j = ${#order[@]} - 1; j >= 0; j--)); do reversed+=("${order[j]}"); done
for round in $(seq "$REPS"); do
  turn=("${order[@]}"); ((round % 2 == 0)) && turn=("${reversed[@]}")
  for j in "${turn[@]}"; do
    if [[ $MODE == lockstep ]]; then
      a=$(cpu_ns "$j") s=$(date +%s%N)
      "${pin[@]}" curl -s --max-time 120 --tftp-blksize "$BLKSIZE" -o /dev/null "tftp://127.0.0.1:${PORTS[j]}/big"
      e=$(date +%s%N) b=$(cpu_ns "$j")
      echo "${NAMES[j]} $(((b - a) / 64 / 1000)) $((64 * 1000000000 / (e - s)))" >> "$RES"
    elif [[ $MODE == window ]]; then
      a=$(cpu_ns "$j")
      "${pin[@]}" "$LOADGEN" --server "127.0.0.1:${PORTS[j]}" --file window --clients 1 \
        --blksize "$BLKSIZE" --windowsize "$WINDOWSIZE" --expect-size $((SIZE << 20)) \
        --rcvbuf $((32 << 20)) --deadline 120 --output "$ROOT/one.json" > /dev/null 2>&1 \
        || echo "${NAMES[j]}: failed" >&2
      b=$(cpu_ns "$j")
      # CPU per MiB; MB/s as the loadgen measured it (from its first request to the last block).
      echo "${NAMES[j]} $(((b - a) / SIZE / 1000)) $(python3 -c "import json; \
print(json.load(open('$ROOT/one.json'))['mb_per_sec'])")" >> "$RES"
    else
      # With --pss, every round a server afresh: a server's peak is set by its heap, whose
      # shape its first load leaves for the rest of its life (the rounds of one process are
      # one sample: copies of one tftpd, each kept for its rounds, stayed 0.15 and 0.27 MiB
      # apart round after round), and by which of its program's pages its first faults map.
      if [[ $PSS == 1 ]] && ((round > 1)); then
        stop_server "$j"
        start_server "$j"
        sleep 1
      fi
      ua=$(user_ticks "$j")
      "$LOADGEN" --server "127.0.0.1:${PORTS[j]}" --file small --clients "$CLIENTS" --threads 1 "${lgcpus[@]}" \
        ${BIND_FROM:+--bind-from "$BIND_FROM"} \
        --ramp "$RAMP" --blksize 1468 --expect-size $((1 << 20)) --deadline $((120 + RAMP)) --min-timeout-ms 1000 \
        --server-pid "${PIDS[j]}" ${CGS[j]:+--server-cgroup "${CGS[j]}"} "${pss[@]}" --output "$ROOT/one.json" > /dev/null 2>&1
      # A round where every transfer failed delivered no bytes: no CPU per MB ("nan"),
      # which the medians and the round-by-round ratios leave out.
      python3 -c "import json; d = json.load(open('$ROOT/one.json')); \
u = d['server_usage']; mb = d['bytes'] / 1e6; \
print('${NAMES[j]}', round(u['cpu_secs_per_mb'] * 1e6) if u.get('cpu_secs_per_mb') is not None else 'nan', \
d['sessions_per_sec'], d['failures'], u.get('peak_rss_kib', 0), u.get('peak_threads', 0), \
round(($(user_ticks "$j") - $ua) * 1e4 / mb) if mb else 'nan', d.get('retransmissions', 0), \
u.get('peak_pss_kib') or 'nan')" >> "$RES"
    fi
  done
done

MODE=$MODE python3 - "$RES" <<'EOF'
import collections, os, statistics, sys
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    name, *values = line.split()
    rows[name].append([float(v) for v in values])


def median(values):
    # Without the rounds that measured nothing (NaN: no bytes delivered).
    values = [v for v in values if v == v]
    return statistics.median(values) if values else float("nan")


base = base_runs = None
for name, runs in rows.items():
    cpu = median(r[0] for r in runs) / 1000  # ms per MB
    other = median(r[1] for r in runs)
    base = base or (cpu, other)
    base_runs = base_runs or runs
    unit = "sessions/s" if os.environ["MODE"] == "concurrency" else "MB/s"
    extra = "" if os.environ["MODE"] != "concurrency" else (
        f"  failures {[int(r[2]) for r in runs]}"
        f"  peak RSS {median(r[3] for r in runs) / 1024:.1f} MiB"
        f"  threads {median(r[4] for r in runs):.0f}"
        f"  user {median(r[5] for r in runs) / 1000:.2f} ms/MB"
        f"  retransmissions {median(r[6] for r in runs):.0f}"
        + (f"  peak PSS {median(r[7] for r in runs) / 1024:.2f} MiB"
           if any(r[7] == r[7] for r in runs) else ""))
    print(f"{name:12s} cpu {cpu:7.2f} ms/MB ×{cpu / base[0]:.3f}   {other:8.1f} {unit} ×{other / base[1]:.3f}"
          f"   (n={len(runs)}){extra}")
    # The same ratio round by round: each round runs every server once, minutes apart at
    # most, so a round's ratio compares servers in one mode of a VM that switches speed
    # between rounds, which the ratio of the medians above can mix.
    paired = [r[0] / b[0] for r, b in zip(runs, base_runs) if b[0] > 0 and r[0] == r[0]]
    if runs is not base_runs and paired:
        print(f"{'':12s} cpu round by round ×{statistics.median(paired):.3f} "
              f"(×{min(paired):.3f}–×{max(paired):.3f} over {len(paired)} rounds)")
    if os.environ.get("AB_VERBOSE"):
        print(f"{'':12s} ms/MB: {' '.join(f'{r[0] / 1000:.2f}' for r in runs)}")
        if os.environ["MODE"] == "concurrency":
            print(f"{'':12s} user ms/MB: {' '.join(f'{r[5] / 1000:.2f}' for r in runs)}")
            print(f"{'':12s} retransmissions: {' '.join(f'{r[6]:.0f}' for r in runs)}")
            if any(r[7] == r[7] for r in runs):
                print(f"{'':12s} peak PSS MiB: {' '.join(f'{r[7] / 1024:.2f}' for r in runs)}")
        print(f"{'':12s} {unit}: {' '.join(f'{r[1]:.0f}' for r in runs)}")
EOF
