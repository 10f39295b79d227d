#!/usr/bin/env bash
# End-to-end TFTP benchmark: the distribution's servers (and ours, once enabled below) on
# loopback, inside a network namespace this script creates, measured with curl, atftp and
# tftp-loadgen. See benches/e2e/README.md.
#
#   benches/e2e/run.sh            # full run (about an hour on 2 cores; --skip lossy,origin: 45 minutes)
#   benches/e2e/run.sh --quick    # smoke test with small files (about 1-2 minutes)
#   benches/e2e/run.sh --lossy-only   # only curl through tftp-netem at 1% loss (about 10 minutes)
#   benches/e2e/run.sh --help
#
# Results: bench-results/<timestamp>/{table.txt,summary.json,summary.csv,results.jsonl,raw/,logs/}
set -euo pipefail

# ---------------------------------------------------------------------------------------------
# The servers. One line each:
#   name | port | features | cargo package to build | command | lifted limits | default limits
# features, comma-separated: "window" (windowsize, RFC 7440: the windowed rows), "concurrent"
# (serves many transfers at once: the concurrency and lossy sections), "nothroughput" (left out
# of the throughput rows). Every other server takes part in the lock-step throughput rows.
# In the command, $ROOT is the directory served, $PORT the port, $BIN the cargo release dir,
# $ATFTPD the unpacked atftpd binary, $LOGS the logs directory. The command must stay in the
# foreground. The last two columns are appended to it: "lifted limits" everywhere (every
# client comes from 127.0.0.1, so per-client and global session limits would measure the
# limit, not the server), "default limits" instead in the multi-address concurrency rows,
# which run each server at its out-of-the-box limits. tftpd's lifted --max-sessions (and the
# blocking server's) is $TFTPD_MAX_SESSIONS: twice the largest row where the descriptor limit
# allows (65,536 gives 20,000 for 10,000 clients), else the largest row: their transfers are
# connected to their peers only with a descriptor to spare for each beyond --max-sessions
# (tftp_server::connect), so 20,000 under a hard limit of 20,000 (a container that cannot
# raise it) would connect none of them, which the rows would then measure.
# dnsmasq's TFTP port is fixed at 69, which is why everything runs in a network namespace.
# ---------------------------------------------------------------------------------------------
SERVERS=(
  "tftpd-hpa|6901|concurrent||in.tftpd --foreground --secure --address 127.0.0.1:\$PORT \$ROOT||"
  "atftpd|6902|window,concurrent||\$ATFTPD --daemon --no-fork --port \$PORT --bind-address 127.0.0.1 --logfile /dev/null \$ROOT|--maxthread 20000|"
  "dnsmasq|69|concurrent||dnsmasq --keep-in-foreground --conf-file=/dev/null --port=0 --enable-tftp --tftp-root=\$ROOT --edns-packet-max=65535 --listen-address=127.0.0.1 --bind-interfaces --pid-file= --quiet-tftp --log-facility=\$LOGS/dnsmasq.log --user=nobody|--tftp-max=20000|"
  "tftpd|6904|window,concurrent|tftpd|\$BIN/tftpd --root \$ROOT --listen 127.0.0.1:\$PORT --max-window-bytes 8388608 --session-log \$LOGS/tftpd-sessions.jsonl|--max-sessions \$TFTPD_MAX_SESSIONS --max-sessions-per-client 100000 --client-rate 0|"
  # tftpd in single-port mode (dnsmasq's --tftp-single-port): every transfer on the listener,
  # read with recvmmsg and answered with sendmmsg (issue 15's batching lever). Concurrency
  # rows only.
  "tftpd-sp|6911|concurrent,nothroughput|tftpd|\$BIN/tftpd --root \$ROOT --listen 127.0.0.1:\$PORT --single-port --max-window-bytes 8388608|--max-sessions \$TFTPD_MAX_SESSIONS --max-sessions-per-client 100000 --client-rate 0|"
  # The blocking server with tftpd's number of event loops (tftpd --threads 1, its default;
  # the framework's own default is one a CPU): the same engine and configuration, so the
  # column compares the handlers. With two loops it competes with the load client for this
  # 2-vCPU machine's other CPU: x1.16 CPU per MB and x0.86 sessions/s of one loop's at 1,000
  # clients from 250 addresses (results/2026-12-04-blocking-loops.txt).
  "tftpd-blocking|6905|window,concurrent|tftp-blocking --example serve_dir|\$BIN/examples/serve_dir --root \$ROOT --listen 127.0.0.1:\$PORT --workers 1|--max-sessions \$TFTPD_MAX_SESSIONS|--default-limits"
  # The kernel floor (benches/src/bin/tftp-floor.rs, built with the load tools): one transfer
  # at a time, blocking recv_from/send_to, nothing else. Lock-step rows only.
  "floor|6907|||\$BIN/tftp-floor --root \$ROOT --listen 127.0.0.1:\$PORT||"
  # The concurrency rows' floor: every transfer on one epoll thread, a port per transfer
  # connected to its peer (as tftpd's), one recvfrom and one sendmsg a packet, nothing else.
  # Concurrency rows only (nothroughput).
  "floor-epoll|6908|concurrent,nothroughput||\$BIN/tftp-floor --concurrent --connected --root \$ROOT --listen 127.0.0.1:\$PORT||"
  # The same floor on io_uring: multishot receives, one io_uring_enter for many transfers'
  # receives and sends (issue 15's io_uring lever, measured before building an engine on it).
  "floor-uring|6909|concurrent,nothroughput||\$BIN/tftp-floor --concurrent --connected --uring --root \$ROOT --listen 127.0.0.1:\$PORT||"
  # The floor of a single-port server: every transfer on the listening socket, one recvmmsg
  # for many clients' ACKs and one sendmmsg for their DATA (tftpd-sp's floor).
  "floor-single|6910|concurrent,nothroughput||\$BIN/tftp-floor --concurrent --single-port --root \$ROOT --listen 127.0.0.1:\$PORT||"
)
BASELINE=tftpd-hpa

usage() {
  cat <<'EOF'
usage: benches/e2e/run.sh [options]
  --quick              small files, one repetition, fewer clients (smoke test)
  --reps N             repetitions of each throughput and ceiling measurement (default 3)
  --conc-reps N        repetitions of each concurrency measurement (default 1; the servers
                       run in reverse order on even repetitions)
  --big-size BYTES     the throughput file (default 67108864 = 64 MiB; 256 MiB takes an hour)
  --small-size BYTES   the concurrency file (default 1048576 = 1 MiB)
  --min-secs S         a throughput measurement transfers the big file again until the
                       transfers took S seconds in all, at most 64 times (default 1; --quick: 0,
                       one transfer)
  --blksizes "LIST"    default "512 1468 8192 65464"
  --windows "LIST"     windowsizes > 1 to test on servers that support it (default "8 64")
  --clients "LIST"     concurrency runs: N (all at once) or N@SECS (started evenly over SECS)
                       (default "1000 10000 10000@10")
  --multi-clients "L"  concurrency runs from many client addresses, servers at their default
                       limits: N or N@SECS (default "1000 10000")
  --sources N          client addresses of those runs, 127.0.1.1 onwards (default 250)
  --conc-unpinned      concurrency rows with the scheduler placing servers and load client
                       (default: the servers on CPU 1, the load client on CPU 0, as issue 15
                       measured them; see results/2026-12-06-apart.txt)
  --servers "LIST"     subset of server names (default: all in the table)
  --skip SECTIONS      comma list of: throughput,concurrency,concurrency-multi,ceiling,lossy,origin
                       (concurrency also skips concurrency-multi)
  --origin-clients N   the origin storm: N clients through tftpd --http-origin (nginx) (default 1000)
  --origin-size BYTES  the origin storm's file (default 8388608 = 8 MiB)
  --origin-compare BIN also run the storm through this tftpd binary without a cache (say, a
                       build from before coalescing), as the column "tftpd-compare"
  --lossy-only         only the lossy section (same as --skip throughput,concurrency,ceiling)
  --lossy-losses "L"   loss probabilities each way for the lossy section (default "0.01")
  --lossy-seeds N      repetitions (proxy seeds 1..N) of each lossy measurement (default 5)
  --lossy-servers "L"  servers measured in the lossy section (default "tftpd tftpd-hpa")
  --lossy-deadline S   each lossy transfer is killed after S seconds (default 300)
  --no-pinned          only the unpinned throughput runs
  --no-install         do not apt-get anything (fail if missing)
  --out DIR            results directory (default bench-results/<timestamp>)
EOF
}

QUICK=0 REPS=3 CONC_REPS=1 BIG=$((64 << 20)) SMALL=$((1 << 20)) MIN_SECS=1 MAX_XFERS=64
BLKSIZES="512 1468 8192 65464" WINDOWS="8 64" CLIENTS="1000 10000 10000@10"
MULTI_CLIENTS="1000 10000" SOURCES=250
ONLY_SERVERS="" SKIP="" PINNED_MODES="unpinned pinned" INSTALL=1 OUT="" INNER=0 CONC_MODE=apart
ORIGIN_CLIENTS=1000 ORIGIN_SIZE=$((8 << 20)) ORIGIN_COMPARE=""
LOSSY_LOSSES="0.01" LOSSY_SEEDS=5 LOSSY_SERVERS="tftpd tftpd-hpa" LOSSY_ONLY=0 LOSSY_DEADLINE_ARG=""
ARGS=("$@")
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --reps) REPS=$2; shift ;;
    --conc-reps) CONC_REPS=$2; shift ;;
    --big-size) BIG=$2; shift ;;
    --small-size) SMALL=$2; shift ;;
    --min-secs) MIN_SECS=$2; shift ;;
    --blksizes) BLKSIZES=$2; shift ;;
    --windows) WINDOWS=$2; shift ;;
    --clients) CLIENTS=$2; shift ;;
    --multi-clients) MULTI_CLIENTS=$2; shift ;;
    --sources) SOURCES=$2; shift ;;
    --servers) ONLY_SERVERS=$2; shift ;;
    --skip) SKIP=$2; shift ;;
    --lossy-only) LOSSY_ONLY=1 ;;
    --origin-clients) ORIGIN_CLIENTS=$2; shift ;;
    --origin-size) ORIGIN_SIZE=$2; shift ;;
    --origin-compare) ORIGIN_COMPARE=$(realpath "$2"); shift ;;
    --lossy-losses) LOSSY_LOSSES=$2; shift ;;
    --lossy-seeds) LOSSY_SEEDS=$2; shift ;;
    --lossy-servers) LOSSY_SERVERS=$2; shift ;;
    --lossy-deadline) LOSSY_DEADLINE_ARG=$2; shift ;;
    --no-pinned) PINNED_MODES="unpinned" ;;
    --conc-unpinned) CONC_MODE=unpinned ;;
    --no-install) INSTALL=0 ;;
    --out) OUT=$2; shift ;;
    --inner) INNER=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
# One CPU (or CPUs 0 and 1 not both ours): nothing to keep apart.
if [[ $CONC_MODE == apart ]] && ! { taskset -c 0 true && taskset -c 1 true; } 2>/dev/null; then
  CONC_MODE=unpinned
fi
if [[ $QUICK == 1 ]]; then
  # Explicit options given after --quick still win (they were parsed in order, so re-apply).
  BIG=$((8 << 20)) SMALL=$((64 << 10)) REPS=1 CONC_REPS=1 CLIENTS="100 1000 1000@1" LOSSY_SEEDS=1
  MIN_SECS=0
  MULTI_CLIENTS="1000"
  ORIGIN_CLIENTS=200 ORIGIN_SIZE=$((1 << 20))
  set -- "${ARGS[@]}"
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --lossy-seeds) LOSSY_SEEDS=$2; shift ;;
      --reps) REPS=$2; shift ;; --conc-reps) CONC_REPS=$2; shift ;;
      --big-size) BIG=$2; shift ;; --small-size) SMALL=$2; shift ;;
      --min-secs) MIN_SECS=$2; shift ;;
      --clients) CLIENTS=$2; shift ;;
      --multi-clients) MULTI_CLIENTS=$2; shift ;;
      --origin-clients) ORIGIN_CLIENTS=$2; shift ;; --origin-size) ORIGIN_SIZE=$2; shift ;;
    esac
    shift
  done
fi

[[ $MIN_SECS =~ ^[0-9]+([.][0-9]+)?$ ]] || { echo "--min-secs: seconds, e.g. 1 or 0.5" >&2; exit 2; }
if [[ $LOSSY_ONLY == 1 ]]; then SKIP="throughput,concurrency,concurrency-multi,ceiling,origin"; fi
[[ $SOURCES =~ ^[0-9]+$ && $SOURCES -ge 1 && $SOURCES -le 65536 ]] || {
  echo "--sources: 1 to 65536 addresses" >&2; exit 2; }
# The multi-address rows' clients: SOURCES addresses from 127.0.1.1 on (all of 127.0.0.0/8 is
# local on Linux, so binding them needs no configuration; 127.0.0.1 is left out).
ip4() { echo "$(($1 >> 24 & 255)).$(($1 >> 16 & 255)).$(($1 >> 8 & 255)).$(($1 & 255))"; }
MULTI_FROM="127.0.1.1-$(ip4 $(((127 << 24) + (1 << 8) + SOURCES)))"

# atftp (the client) keeps the default socket receive buffer (net.core.rmem_default, about
# 208 KiB): a window that does not fit is lost at every turn and each loss costs its 5 s
# timeout. Windows above this many payload bytes are measured with loadgen only.
ATFTP_MAX_WINDOW_BYTES=131072

# The loadgen's retransmission floor in the concurrency runs. tftp-proto's own default is
# 50 ms (adaptive, RFC 6298 estimator); against an overloaded server that multiplies the
# load (10,000 clients ramped over 10 s against tftpd-hpa: 3.3 million retransmitted ACKs,
# 95% of sessions failed). PXE firmware waits seconds, so the runs use RFC 6298's 1 s floor.
CONC_MIN_TIMEOUT_MS=1000

# Time bounds: every client run is killed after these many seconds.
XFER_DEADLINE=120     # one big-file transfer
CONC_DEADLINE=120     # one concurrency run (plus its ramp)
CEIL_DEADLINE=60      # one udp-ceiling run
LOSSY_DEADLINE=${LOSSY_DEADLINE_ARG:-300}  # one curl transfer through tftp-netem (tftpd-hpa: ~100 s at 1%)

# The lossy section: curl fetching a file of this size at this blksize through tftp-netem.
LOSSY_SIZE=$((1 << 20))
LOSSY_BLKSIZE=1468

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO"
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
skipped() { [[ ",$SKIP," == *",$1,"* ]]; }

# ---------------------------------------------------------------------------------------------
# Outer phase: install, build, then re-run this script inside a new network namespace.
# ---------------------------------------------------------------------------------------------
SCRATCH=${TFTP_E2E_SCRATCH:-/tmp/tftp-e2e}
if [[ $INNER == 0 ]]; then
  [[ $(id -u) == 0 ]] || die "run as root (network namespace, cgroups, packages)"
  mkdir -p "$SCRATCH"
  need_pkgs=()
  command -v in.tftpd >/dev/null || need_pkgs+=(tftpd-hpa)
  # dnsmasq-base has the binary without the system service of the dnsmasq package.
  command -v dnsmasq >/dev/null || need_pkgs+=(dnsmasq-base)
  command -v atftp >/dev/null || need_pkgs+=(atftp)
  command -v curl >/dev/null || need_pkgs+=(curl)
  command -v jq >/dev/null || need_pkgs+=(jq)
  command -v taskset >/dev/null || need_pkgs+=(util-linux)
  command -v ip >/dev/null || need_pkgs+=(iproute2)
  # The origin of the origin storm (its access log counts what reached it).
  if [[ ",$SKIP," != *",origin,"* ]] && ! command -v nginx >/dev/null && [[ ! -x /usr/sbin/nginx ]]; then
    need_pkgs+=(nginx-light)
  fi
  ATFTPD=$SCRATCH/atftpd-root/usr/sbin/atftpd
  [[ -x $ATFTPD ]] || ATFTPD=""
  if [[ ${#need_pkgs[@]} -gt 0 || -z $ATFTPD ]]; then
    [[ $INSTALL == 1 ]] || die "missing: ${need_pkgs[*]} ${ATFTPD:-atftpd}; rerun without --no-install"
    log "installing: ${need_pkgs[*]} ${ATFTPD:-atftpd (unpacked only)} (policy-rc.d exits 101: no daemon starts)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    policy=/usr/sbin/policy-rc.d
    policy_backup=""
    if [[ -e $policy ]]; then policy_backup=$(mktemp); cp -p "$policy" "$policy_backup"; fi
    printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod 755 "$policy"
    restore_policy() {
      if [[ -n $policy_backup ]]; then mv "$policy_backup" "$policy"; else rm -f "$policy"; fi
    }
    trap restore_policy EXIT
    if [[ ${#need_pkgs[@]} -gt 0 ]]; then
      apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
    fi
    if [[ -z $ATFTPD ]]; then
      # atftpd conflicts with tftpd-hpa: unpack it beside, never install it.
      (cd "$SCRATCH" && rm -f atftpd_*.deb && apt-get download -qq atftpd 2>/dev/null \
        && dpkg -x atftpd_*.deb atftpd-root)
      ATFTPD=$SCRATCH/atftpd-root/usr/sbin/atftpd
    fi
    restore_policy
    trap - EXIT
  fi
  [[ -x $ATFTPD ]] || die "atftpd not found under $SCRATCH/atftpd-root"

  log "building the load tools (cargo build --release -p tftp-benches)"
  cargo build --release -q -p tftp-benches --bins
  for entry in "${SERVERS[@]}"; do
    IFS='|' read -r name _ _ pkg _ _ _ <<<"$entry"
    if [[ -n $pkg && ( -z $ONLY_SERVERS || " $ONLY_SERVERS " == *" $name "* ) ]]; then
      log "building $name (cargo build --release -p $pkg)"
      # shellcheck disable=SC2086 # "PACKAGE [--example NAME]"
      cargo build --release -q -p $pkg
    fi
  done
  if [[ ",$SKIP," != *",origin,"* ]]; then
    log "building tftpd for the origin storm (cargo build --release -p tftpd)"
    cargo build --release -q -p tftpd
  fi
  TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
  export TFTP_E2E_BIN="$TARGET_DIR/release" TFTP_E2E_ATFTPD="$ATFTPD"
  if [[ -z $OUT ]]; then
    OUT="$REPO/bench-results/$(date -u +%Y%m%dT%H%M%SZ)"
    if [[ $QUICK == 1 ]]; then OUT+=-quick; fi
  fi
  mkdir -p "$OUT"
  log "results in $OUT"
  # Everything from here on runs in a fresh network namespace with only lo: nothing can
  # leave the machine, and dnsmasq can have port 69.
  exec unshare --net -- bash "${BASH_SOURCE[0]}" "${ARGS[@]}" --inner --out "$OUT"
fi

# ---------------------------------------------------------------------------------------------
# Inner phase: inside the namespace.
# ---------------------------------------------------------------------------------------------
BIN=$TFTP_E2E_BIN
ATFTPD=$TFTP_E2E_ATFTPD
LOADGEN=$BIN/tftp-loadgen
CEILING=$BIN/udp-ceiling
PROCTREE=$BIN/proc-tree
REPORT=$BIN/e2e-report
NETEM=$BIN/tftp-netem
for b in "$LOADGEN" "$CEILING" "$PROCTREE" "$REPORT" "$NETEM"; do [[ -x $b ]] || die "missing $b"; done
ip link set lo up
# glibc's getaddrinfo(AI_ADDRCONFIG) ignores 127.0.0.1, so with lo alone in.tftpd cannot
# resolve its own --address; a second loopback address makes IPv4 count as configured.
ip addr add 127.0.0.2/8 dev lo
ulimit -Hn 65536 2>/dev/null || true
ulimit -n "$(ulimit -Hn)"
# tftpd's lifted --max-sessions (see SERVERS): twice the most clients of any row, but no more
# sessions than can each have a second descriptor (a catcher), and never fewer than that row.
MOST_CLIENTS=0
for c in $CLIENTS $MULTI_CLIENTS; do
  if ((${c%@*} > MOST_CLIENTS)); then MOST_CLIENTS=${c%@*}; fi
done
FD_ROOM=$((($(ulimit -n) - 128) / 2))
TFTPD_MAX_SESSIONS=$((2 * MOST_CLIENTS < FD_ROOM ? 2 * MOST_CLIENTS : FD_ROOM))
if ((TFTPD_MAX_SESSIONS < MOST_CLIENTS)); then TFTPD_MAX_SESSIONS=$MOST_CLIENTS; fi

RESULTS=$OUT/results.jsonl
RAW=$OUT/raw
LOGS=$OUT/logs
ROOT=$SCRATCH/root
mkdir -p "$RAW" "$LOGS" "$ROOT"
rm -rf "$SCRATCH/bin" # the servers' copies of their programs (start_server), made afresh
: > "$RESULTS"
START_TS=$(date +%s)

# Files: random bytes, world-readable (tftpd-hpa and dnsmasq serve only those).
make_file() { # name size
  local f=$ROOT/$1
  if [[ ! -f $f || $(stat -c %s "$f") != "$2" ]]; then
    head -c "$2" /dev/urandom > "$f.tmp" && mv "$f.tmp" "$f"
  fi
  chmod 644 "$f"
}
BIG_NAME=big-$BIG.bin
SMALL_NAME=small-$SMALL.bin
LOSSY_NAME=lossy-$LOSSY_SIZE.bin
make_file "$BIG_NAME" "$BIG"
make_file "$SMALL_NAME" "$SMALL"
make_file "$LOSSY_NAME" "$LOSSY_SIZE"
chmod 755 "$SCRATCH" "$ROOT"
cat "$ROOT/$BIG_NAME" "$ROOT/$SMALL_NAME" > /dev/null  # warm the page cache

{
  echo "date: $(date -u)"; echo "kernel: $(uname -r)"; echo "cpus: $(nproc)"
  echo "tftpd-hpa: $(in.tftpd -V 2>&1 | head -n1)"
  echo "dnsmasq: $(dnsmasq --version | head -n1)"
  echo "atftpd: $("$ATFTPD" --version 2>&1 | head -n1)"
  echo "atftp: $(atftp --version 2>&1 | head -n1)"
  echo "curl: $(curl --version | head -n1)"
  echo "big file: $BIG bytes; small file: $SMALL bytes; reps: $REPS; conc reps: $CONC_REPS"
  echo "throughput: transfers repeated until they took $MIN_SECS s (at most $MAX_XFERS)"
  echo "blksizes: $BLKSIZES; windows: $WINDOWS; clients: $CLIENTS"
  echo "multi-address clients: $MULTI_CLIENTS from $SOURCES addresses ($MULTI_FROM), servers at default limits"
  echo "concurrency placement: $CONC_MODE$([[ $CONC_MODE == apart ]] && echo " (servers on CPU 1, the load client on CPU 0)")"
  echo "loadgen retransmission floor in concurrency runs: $CONC_MIN_TIMEOUT_MS ms"
  echo "descriptor limit: $(ulimit -n); tftpd's lifted --max-sessions: $TFTPD_MAX_SESSIONS"
  echo "origin storm: $ORIGIN_CLIENTS clients, $ORIGIN_SIZE bytes; $(nginx -v 2>&1 | head -n1)"
  echo "lossy: curl, $LOSSY_SIZE bytes at blksize $LOSSY_BLKSIZE through tftp-netem; losses: $LOSSY_LOSSES; seeds 1..$LOSSY_SEEDS; servers: $LOSSY_SERVERS"
} > "$OUT/env.txt"

# The servers selected.
declare -a S_NAME S_PORT S_FEAT S_CMD S_LIFTED S_DEFAULT
for entry in "${SERVERS[@]}"; do
  IFS='|' read -r name port feat _ cmd lifted default <<<"$entry"
  if [[ -n $ONLY_SERVERS && " $ONLY_SERVERS " != *" $name "* ]]; then continue; fi
  S_NAME+=("$name"); S_PORT+=("$port"); S_FEAT+=("$feat"); S_CMD+=("$cmd")
  S_LIFTED+=("$lifted"); S_DEFAULT+=("$default")
done
has() { [[ ",${S_FEAT[$1]}," == *",$2,"* ]]; } # index feature
# The indices given, in their order for odd repetitions and reversed for even ones: whichever
# server runs right after another pays for what the first left behind (sockets in teardown,
# a loaded page cache, a client that failed and is still retransmitting), and a fixed order
# hands that cost to the same server every time (ab.sh, which alternates, measured a fixed
# order's second server of a pair ×1.03–1.07 behind).
in_turn() { # rep index...
  local rep=$1 k
  shift
  if (( rep % 2 == 1 )); then
    printf '%s\n' "$@"
  else
    for ((k = $#; k >= 1; k--)); do echo "${!k}"; done
  fi
}
[[ ${#S_NAME[@]} -gt 0 ]] || die "no server selected"

# cgroups, so the servers' CPU time includes children the kernel reaped for them (tftpd-hpa
# ignores SIGCHLD). cgroup v2, else v1 cpuacct, else the v2 hierarchy of a hybrid setup.
CG_BASE=""
if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then CG_BASE=/sys/fs/cgroup/tftp-e2e.$$
elif [[ -f /sys/fs/cgroup/cpuacct/cpuacct.usage ]]; then CG_BASE=/sys/fs/cgroup/cpuacct/tftp-e2e.$$
elif [[ -f /sys/fs/cgroup/unified/cgroup.procs ]]; then CG_BASE=/sys/fs/cgroup/unified/tftp-e2e.$$
fi
if [[ -n $CG_BASE ]] && ! mkdir -p "$CG_BASE" 2>/dev/null; then CG_BASE=""; fi
[[ -n $CG_BASE ]] || log "warning: no cgroup; tftpd-hpa's CPU time will be undercounted"

declare -A PID CG LIMITS
start_server() { # index pinned|unpinned|apart [lifted|default]
  local i=$1 mode=$2 limits=${3:-lifted} name=${S_NAME[$1]} PORT=${S_PORT[$1]} cmd pin=""
  [[ $mode == pinned ]] && pin="taskset -c 0"
  # apart: the server on CPU 1, its load client on CPU 0 (concurrency_run's --cpus 0).
  [[ $mode == apart ]] && pin="taskset -c 1"
  cmd=$(eval "echo \"${S_CMD[$i]}\"")
  if [[ $limits == default ]]; then cmd+=" ${S_DEFAULT[$i]}"
  else cmd+=" $(eval "echo \"${S_LIFTED[$i]}\"")"; fi
  LIMITS[$name]=$limits
  # Each of our servers runs from a copy of its program of its own: servers started from one
  # file (tftpd and tftpd-sp, the floors) share its code pages, which PSS (the memory rows)
  # divides between them, so that each would weigh less than it does alone (tftpd at 1,000
  # clients: 6.8 MiB peak alone, 4.9 beside tftpd-sp; results/2026-12-06-warm-text.txt).
  local prog=${cmd%% *}
  if [[ $prog == "$BIN"/* && -f $prog ]]; then
    mkdir -p "$SCRATCH/bin"
    [[ -f $SCRATCH/bin/$name ]] || cp "$prog" "$SCRATCH/bin/$name"
    cmd="$SCRATCH/bin/$name ${cmd#* }"
  fi
  # And every server starts from its program read in afresh, as after a boot: the kernel maps
  # code and data in 64 KiB windows around a fault, but only the pages of a window in the
  # page cache, so that a program's PSS grows with how much of its file happens to be cached
  # (a copy just made is, in whole or in part: two copies of one tftpd, one read in whole
  # and one in part, differed by 0.23-0.32 MiB at 1,000 clients; ab.sh does the same).
  local exe
  exe=$(command -v "${cmd%% *}" || true)
  [[ -z $exe ]] || { sync "$exe" && dd if="$exe" iflag=nocache count=0 status=none; } || true
  echo "$pin $cmd" >> "$LOGS/servers.txt"
  # shellcheck disable=SC2086
  ( exec $pin $cmd >>"$LOGS/$name.log" 2>&1 ) &
  PID[$name]=$!
  CG[$name]=""
  if [[ -n $CG_BASE ]]; then
    local cg=$CG_BASE/$name
    if mkdir -p "$cg" 2>/dev/null && echo "${PID[$name]}" > "$cg/cgroup.procs" 2>/dev/null; then
      CG[$name]=$cg
    fi
  fi
  sleep 0.3
  kill -0 "${PID[$name]}" 2>/dev/null || { log "$name did not start: see $LOGS/$name.log"; return 1; }
}
stop_server() { # index
  local name=${S_NAME[$1]} pid=${PID[${S_NAME[$1]}]:-}
  [[ -n $pid ]] || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  # Leftover transfer processes (tftpd-hpa's children) are in the server's cgroup.
  if [[ -n ${CG[$name]:-} && -f ${CG[$name]}/cgroup.procs ]]; then
    while read -r p; do kill -9 "$p" 2>/dev/null || true; done < "${CG[$name]}/cgroup.procs"
    sleep 0.2
    rmdir "${CG[$name]}" 2>/dev/null || true
  fi
  PID[$name]=""
}
start_all() { # pinned|unpinned|apart [lifted|default [feature]]: the servers (with that feature)
  for i in "${!S_NAME[@]}"; do
    if [[ -z ${3:-} ]] && has "$i" nothroughput; then continue; fi
    if [[ -z ${3:-} ]] || has "$i" "$3"; then start_server "$i" "$1" "${2:-lifted}" || true; fi
  done
}
stop_all() { for i in "${!S_NAME[@]}"; do stop_server "$i"; done; }
ensure_up() { # index mode: restart a server that died (atftpd past fd 1024, for example)
  local name=${S_NAME[$1]}
  if ! kill -0 "${PID[$name]:-0}" 2>/dev/null; then
    log "$name is not running: restarting it"
    echo "{\"event\":\"restart\",\"server\":\"$name\",\"at\":$(date +%s)}" >> "$LOGS/events.jsonl"
    stop_server "$1"; start_server "$1" "$2" "${LIMITS[$name]:-lifted}" || return 1
  fi
}
cleanup() {
  stop_all
  if [[ -n $CG_BASE && -d $CG_BASE ]]; then
    for d in "$CG_BASE"/*/; do rmdir "$d" 2>/dev/null || true; done
    rmdir "$CG_BASE" 2>/dev/null || true
  fi
}
trap cleanup EXIT

cg_arg() { [[ -n ${CG[$1]:-} ]] && echo "--cgroup ${CG[$1]}"; return 0; }
server_cpu() { # name -> CPU seconds of the server tree so far
  # shellcheck disable=SC2046
  "$PROCTREE" "${PID[$1]}" $(cg_arg "$1") 2>/dev/null | jq -r .cpu_secs || echo null
}
record() { # test config server rep ref_config metrics-json
  jq -cn --arg t "$1" --arg c "$2" --arg s "$3" --argjson r "$4" --arg rc "$5" --argjson m "$6" \
    '{test:$t,config:$c,server:$s,rep:$r,metrics:($m | to_entries | map([.key, .value]))} + (if $rc == "" then {} else {ref_config:$rc} end)' \
    >> "$RESULTS"
}
calc() { awk "BEGIN { printf \"%.6f\", $1 }"; }
num_or_null() { [[ $1 =~ ^[0-9.eE+-]+$ ]] && echo "$1" || echo null; }

# One transfer of the big file by `client` (curl, atftp or loadgen), `k`-th of its measurement.
# Sets XFER_SECS to the transfer's own time (curl's time_total and the load client's wall time:
# from its first request to the last block, without the client program's start-up; atftp,
# which reports none, its process's wall time) and XFER_ERR to what went wrong, if anything.
one_transfer() { # client port blksize window pin tag k
  local client=$1 port=$2 bs=$3 ws=$4 pin=$5 tag=$6 k=$7 out t0 t1
  XFER_SECS="" XFER_ERR=""
  case $client in
    curl)
      out=$($pin curl -sS -o /dev/null --max-time "$XFER_DEADLINE" --tftp-blksize "$bs" \
              -w '%{size_download} %{time_total}' "tftp://127.0.0.1:$port/$BIG_NAME" \
              2>>"$LOGS/$tag.err") || XFER_ERR="curl exit $?"
      if [[ -z $XFER_ERR && ${out% *} != "$BIG" ]]; then
        XFER_ERR="curl got ${out% *} bytes"
      fi
      XFER_SECS=${out#* }
      ;;
    atftp)
      t0=$(date +%s.%N)
      $pin timeout "$XFER_DEADLINE" atftp --option "blksize $bs" --option "windowsize $ws" \
        --option "tsize 0" -g -r "$BIG_NAME" -l /dev/null 127.0.0.1 "$port" \
        >>"$LOGS/$tag.err" 2>&1 || XFER_ERR="atftp exit $?"
      t1=$(date +%s.%N)
      XFER_SECS=$(calc "$t1 - $t0")
      ;;
    loadgen)
      local wsarg=() cpus=() json="$RAW/$tag.json"
      [[ $k != 1 ]] && json="$RAW/$tag-x$k.json"
      [[ $ws != 1 ]] && wsarg=(--windowsize "$ws")
      [[ -n $pin ]] && cpus=(--cpus 0)
      "$LOADGEN" --server "127.0.0.1:$port" --file "$BIG_NAME" --blksize "$bs" "${wsarg[@]}" \
        --expect-size "$BIG" --deadline "$XFER_DEADLINE" --rcvbuf $((32 << 20)) "${cpus[@]}" \
        --label "$tag" --output "$json" >/dev/null 2>>"$LOGS/$tag.err" || XFER_ERR="loadgen exit $?"
      if [[ -z $XFER_ERR ]]; then
        [[ $(jq -r .failures "$json") == 0 ]] || XFER_ERR=$(jq -c .failure_reasons "$json")
        XFER_SECS=$(jq -r .wall_secs "$json")
      fi
      ;;
  esac
  if [[ -z $XFER_ERR ]] && ! awk -v t="$XFER_SECS" \
      'BEGIN { exit !(t ~ /^[0-9]*[.]?[0-9]+([eE][-+]?[0-9]+)?$/ && t + 0 > 0) }'; then
    XFER_ERR="no transfer time (${XFER_SECS:-none})"
  fi
  return 0
}

# One throughput measurement: the big file transferred again and again, one transfer after
# another, until the transfers' own times add up to MIN_SECS (at most MAX_XFERS of them), so a
# row at gigabytes a second (64 MiB in 25 ms) is not one sub-second transfer that swings from
# run to run. MB/s is all the bytes over the sum of those times; the server's CPU per MB is its
# CPU time over all of them; the test `transfers` says how many there were. Appends records.
throughput_run() { # index client blksize window mode rep
  local i=$1 client=$2 bs=$3 ws=$4 mode=$5 rep=$6
  has "$i" nothroughput && return 0
  local name=${S_NAME[$i]} port=${S_PORT[$i]} pin="" ref=""
  [[ $mode == pinned ]] && pin="taskset -c 0"
  local config="bs=$bs ws=$ws $client $mode"
  [[ $ws != 1 ]] && ref="bs=$bs ws=1 loadgen $mode"
  local tag="tput-$name-$client-bs$bs-ws$ws-$mode-r$rep" mb=null cpu=null err=""
  if ! ensure_up "$i" "$mode"; then
    record throughput "$config" "$name" "$rep" "$ref" '{"mb_per_sec":null,"failed":1}'
    return
  fi
  local cpu0 cpu1 n=0 secs=0
  cpu0=$(server_cpu "$name")
  while ((n < MAX_XFERS)); do
    one_transfer "$client" "$port" "$bs" "$ws" "$pin" "$tag" $((n + 1))
    if [[ -n $XFER_ERR ]]; then
      err="transfer $((n + 1)): $XFER_ERR"
      break
    fi
    n=$((n + 1))
    secs=$(calc "$secs + $XFER_SECS")
    awk "BEGIN { exit !($secs >= $MIN_SECS) }" && break
  done
  sleep 0.2  # let the transfer process or thread finish before reading the server's CPU
  cpu1=$(server_cpu "$name")
  if [[ -z $err ]]; then
    mb=$(calc "$n * $BIG / $secs / 1000000")
    if [[ $cpu0 != null && $cpu1 != null ]]; then
      cpu=$(calc "($cpu1 - $cpu0) * 1000 / ($n * $BIG / 1000000)")
    fi
  else
    mb=null
    log "  $tag failed: $err"
    echo "{\"tag\":\"$tag\",\"error\":$(jq -Rn --arg e "$err" '$e')}" >> "$LOGS/failures.jsonl"
  fi
  mb=$(num_or_null "$mb"); cpu=$(num_or_null "$cpu")
  record throughput "$config" "$name" "$rep" "$ref" "{\"mb_per_sec\":$mb,\"failed\":$([[ -z $err ]] && echo 0 || echo 1)}"
  record server-cpu-per-mb "$config" "$name" "$rep" "$ref" "{\"cpu_ms_per_mb\":$cpu}"
  record transfers "$config" "$name" "$rep" "$ref" "{\"transfers\":$n}"
}

concurrency_run() { # index clients[@ramp] rep [multi]
  local i=$1 n=${2%@*} ramp=0 rep=$3 multi=${4:-} name=${S_NAME[$1]} port=${S_PORT[$1]}
  [[ $2 == *@* ]] && ramp=${2#*@}
  local tag="conc-$name-c$n-ramp$ramp-r$rep" cgarg=() fromarg=() config="clients=$n" cpus=()
  [[ $CONC_MODE == apart ]] && cpus=(--cpus 0)
  [[ $ramp != 0 ]] && config="clients=$n ramp=${ramp}s"
  if [[ -n $multi ]]; then
    # Many client addresses, the server at its default limits.
    tag="conc-$name-c$n-ramp$ramp-src$SOURCES-r$rep"
    config+=" from $SOURCES addrs, default limits"
    fromarg=(--bind-from "$MULTI_FROM")
  fi
  if ! ensure_up "$i" "$CONC_MODE"; then
    record concurrency "$config" "$name" "$rep" "" '{"failures":null}'
    return
  fi
  [[ -n ${CG[$name]:-} ]] && cgarg=(--server-cgroup "${CG[$name]}")
  if ! "$LOADGEN" --server "127.0.0.1:$port" "${fromarg[@]}" --file "$SMALL_NAME" --clients "$n" --ramp "$ramp" --threads 1 "${cpus[@]}" \
      --blksize 1468 --expect-size "$SMALL" --deadline "$((CONC_DEADLINE + ${ramp%.*}))" \
      --min-timeout-ms "$CONC_MIN_TIMEOUT_MS" \
      --server-pid "${PID[$name]}" "${cgarg[@]}" --pss --label "$tag" \
      --output "$RAW/$tag.json" >/dev/null 2>>"$LOGS/$tag.err"; then
    log "  $tag: loadgen failed (see $LOGS/$tag.err)"
    record concurrency "$config" "$name" "$rep" "" '{"failures":null}'
    return
  fi
  local m
  m=$(jq -c 'def ms: if . == null then null else . * 1000 end; {
      sessions_per_sec: .sessions_per_sec,
      p50_ms: (.session_secs.p50 | ms),
      p99_ms: (.session_secs.p99 | ms),
      max_ms: (.session_secs.max | ms),
      failures: .failures,
      retransmissions: .retransmissions,
      wall_secs: .wall_secs,
      server_cpu_secs: .server_usage.cpu_secs,
      server_cpu_ms_per_mb: (if .bytes > 0 then .server_usage.cpu_secs * 1000 / (.bytes / 1e6) else null end),
      server_peak_rss_mib: (.server_usage.peak_rss_kib / 1024),
      server_peak_pss_mib: (if .server_usage.peak_pss_kib == null then null else .server_usage.peak_pss_kib / 1024 end),
      server_peak_procs_or_threads: ([.server_usage.peak_procs, .server_usage.peak_threads] | max),
      client_cpu_secs: .client_cpu_secs
    }' "$RAW/$tag.json")
  record concurrency "$config" "$name" "$rep" "" "$m"
  local fails
  fails=$(jq -r .failures "$RAW/$tag.json")
  [[ $fails == 0 ]] || log "  $tag: $fails failures: $(jq -c .failure_reasons "$RAW/$tag.json")"
  # Let the server drop what is left of this run before the next one.
  sleep 1
}

# One curl transfer through tftp-netem at loss L each way with seed S. Records the time, the
# datagrams each side sent beyond the minimum as the proxy saw them (the server: OACK and one
# DATA per block; curl: RRQ, ACK 0 and one ACK per block), what the proxy dropped and, for
# tftpd, the retransmissions of its session log.
lossy_run() { # index loss seed
  local i=$1 loss=$2 seed=$3 name=${S_NAME[$1]} port=${S_PORT[$1]}
  local pct config tag pport stats err="" secs=null out t0 t1 npid lines0=0
  pct=$(awk "BEGIN { printf \"%g\", $loss * 100 }")
  config="loss=${pct}% bs=$LOSSY_BLKSIZE curl"
  tag="lossy-$name-loss$loss-s$seed"
  pport=$((7000 + i))
  stats=$RAW/$tag.netem.json
  if ! ensure_up "$i" unpinned; then
    record lossy "$config" "$name" "$seed" "" '{"secs":null,"failed":1}'
    return
  fi
  local slog=$LOGS/tftpd-sessions.jsonl
  [[ $name == tftpd && -f $slog ]] && lines0=$(wc -l < "$slog")
  "$NETEM" --listen "127.0.0.1:$pport" --server "127.0.0.1:$port" --loss "$loss" --seed "$seed" \
    --stats "$stats" >/dev/null 2>>"$LOGS/$tag.err" &
  npid=$!
  sleep 0.2
  t0=$(date +%s.%N)
  out=$(curl -sS -o /dev/null --max-time "$LOSSY_DEADLINE" --tftp-blksize "$LOSSY_BLKSIZE" \
          -w '%{size_download}' "tftp://127.0.0.1:$pport/$LOSSY_NAME" 2>>"$LOGS/$tag.err") || err="curl exit $?"
  t1=$(date +%s.%N)
  [[ -z $err && $out != "$LOSSY_SIZE" ]] && err="curl got $out bytes"
  kill "$npid" 2>/dev/null || true
  wait "$npid" 2>/dev/null || true
  local blocks=$((LOSSY_SIZE / LOSSY_BLKSIZE + 1)) m
  m=$(jq -c --argjson b "$blocks" '{
      server_retransmissions: (.to_client.received - $b - 1),
      client_retransmissions: (.to_server.received - $b - 2),
      dropped: (.to_client.dropped + .to_server.dropped)
    }' "$stats" 2>/dev/null || echo '{}')
  if [[ -z $err ]]; then
    secs=$(calc "$t1 - $t0")
  else
    log "  $tag failed: $err"
    echo "{\"tag\":\"$tag\",\"error\":$(jq -Rn --arg e "$err" '$e')}" >> "$LOGS/failures.jsonl"
  fi
  if [[ $name == tftpd ]]; then
    # The session ends with curl's final ACK, or (if that was lost) after tftpd's retries.
    local rx=null
    for _ in $(seq 150); do
      if [[ -f $slog && $(wc -l < "$slog") -gt $lines0 ]]; then
        rx=$(sed -n "$((lines0 + 1))p" "$slog" | jq .retransmissions); break
      fi
      sleep 0.1
    done
    m=$(jq -c --argjson r "$rx" '. + {log_retransmissions: $r}' <<<"$m")
  fi
  m=$(jq -c --argjson s "$secs" --argjson f "$([[ -z $err ]] && echo 0 || echo 1)" \
        '{secs: $s} + . + {failed: $f}' <<<"$m")
  log "  lossy $name loss=$loss seed=$seed: $m"
  record lossy "$config" "$name" "$seed" "" "$m"
}

# ---------------------------------------------------------------------------------------------
if ! skipped throughput; then
  for mode in $PINNED_MODES; do
    log "throughput ($mode): starting servers"
    start_all "$mode"
    for rep in $(seq "$REPS"); do
      log "throughput ($mode) repetition $rep/$REPS"
      for bs in $BLKSIZES; do
        for client in curl loadgen; do
          for i in "${!S_NAME[@]}"; do throughput_run "$i" "$client" "$bs" 1 "$mode" "$rep"; done
        done
        for ws in $WINDOWS; do
          for client in atftp loadgen; do
            if [[ $client == atftp && $((ws * (bs + 4))) -gt $ATFTP_MAX_WINDOW_BYTES ]]; then continue; fi
            for i in "${!S_NAME[@]}"; do
              if has "$i" window; then throughput_run "$i" "$client" "$bs" "$ws" "$mode" "$rep"; fi
            done
          done
        done
      done
    done
    stop_all
  done
fi

if ! skipped concurrency; then
  log "concurrency: starting servers"
  start_all "$CONC_MODE" lifted concurrent
  for n in $CLIENTS; do
    for rep in $(seq "$CONC_REPS"); do
      for i in $(in_turn "$rep" "${!S_NAME[@]}"); do
        has "$i" concurrent || continue
        log "concurrency: ${S_NAME[$i]}, $n clients, repetition $rep/$CONC_REPS"
        concurrency_run "$i" "$n" "$rep"
      done
    done
  done
  stop_all
fi

if ! skipped concurrency && ! skipped concurrency-multi; then
  # The same loads from SOURCES client addresses, every server at its default limits (the
  # last column of SERVERS): what a network of many machines gets out of the box.
  log "concurrency from $SOURCES addresses ($MULTI_FROM), default limits: starting servers"
  start_all "$CONC_MODE" default concurrent
  for n in $MULTI_CLIENTS; do
    for rep in $(seq "$CONC_REPS"); do
      for i in $(in_turn "$rep" "${!S_NAME[@]}"); do
        has "$i" concurrent || continue
        log "concurrency: ${S_NAME[$i]}, $n clients from $SOURCES addresses, default limits, repetition $rep/$CONC_REPS"
        concurrency_run "$i" "$n" "$rep" multi
      done
    done
  done
  stop_all
fi

if ! skipped ceiling; then
  log "raw UDP ceiling"
  for rep in $(seq "$REPS"); do
    for bs in $BLKSIZES; do
      for ws in 1 $WINDOWS; do
        for mode in $PINNED_MODES; do
          cpus=()
          [[ $mode == pinned ]] && cpus=(--cpus 0)
          tag="ceil-bs$bs-ws$ws-$mode-r$rep"
          if "$CEILING" --size $((bs + 4)) --window "$ws" --bytes "$BIG" --deadline "$CEIL_DEADLINE" \
              "${cpus[@]}" --label "$tag" --output "$RAW/$tag.json" >/dev/null 2>>"$LOGS/$tag.err"; then
            m=$(jq -c '{mb_per_sec: .mb_per_sec, datagrams_per_sec: .datagrams_per_sec, resends: .resends}' "$RAW/$tag.json")
          else
            m='{"mb_per_sec":null}'
          fi
          record udp-ceiling "bs=$bs ws=$ws $mode" udp "$rep" "" "$m"
        done
      done
    done
  done
fi

if ! skipped lossy; then
  # curl through tftp-netem (the impairment proxy of tftp-conformance): seeded loss each way,
  # the same seeds for every server, servers alternating within each seed.
  declare -a LOSSY_IDX=()
  for i in "${!S_NAME[@]}"; do
    # Servers of one transfer at a time (the floor) are left out.
    if [[ " $LOSSY_SERVERS " == *" ${S_NAME[$i]} "* ]] && has "$i" concurrent; then LOSSY_IDX+=("$i"); fi
  done
  if [[ ${#LOSSY_IDX[@]} -eq 0 ]]; then
    log "lossy: none of \"$LOSSY_SERVERS\" is selected: skipped"
  else
    log "lossy: curl through tftp-netem, losses $LOSSY_LOSSES, seeds 1..$LOSSY_SEEDS"
    for i in "${LOSSY_IDX[@]}"; do start_server "$i" unpinned || true; done
    for loss in $LOSSY_LOSSES; do
      for seed in $(seq "$LOSSY_SEEDS"); do
        for i in $(in_turn "$seed" "${LOSSY_IDX[@]}"); do lossy_run "$i" "$loss" "$seed"; done
      done
    done
    for i in "${LOSSY_IDX[@]}"; do stop_server "$i"; done
  fi
fi

if ! skipped origin; then
  # A boot storm through the HTTP origin: ORIGIN_CLIENTS loadgen sessions of one file that
  # only nginx has, against tftpd --http-origin without a cache (concurrent sessions still
  # share one fetch), with a cold --origin-cache, then warm (tftpd restarted on the cache the
  # cold run left). nginx's access log counts the requests and body bytes that reached it.
  NGINX=$(command -v nginx || echo /usr/sbin/nginx)
  ORIGIN_DIR=$SCRATCH/origin
  ORIGIN_PORT=6980
  rm -rf "$ORIGIN_DIR"
  mkdir -p "$ORIGIN_DIR/www" "$ORIGIN_DIR/cache"
  ORIGIN_NAME=initrd-$ORIGIN_SIZE.img
  head -c "$ORIGIN_SIZE" /dev/urandom > "$ORIGIN_DIR/www/$ORIGIN_NAME"
  printf '%s\n' \
    "daemon off;" "master_process off;" "worker_processes 1;" \
    "pid $ORIGIN_DIR/nginx.pid;" "error_log $LOGS/nginx-error.log;" \
    "events { worker_connections 4096; }" \
    "http {" \
    "  log_format oracle '\$request_method \$uri \$status \$body_bytes_sent';" \
    "  access_log $ORIGIN_DIR/access.log oracle;" \
    "  client_body_temp_path $ORIGIN_DIR/tmp;" \
    "  etag on;" \
    "  server {" \
    "    listen 127.0.0.1:$ORIGIN_PORT;" \
    "    root $ORIGIN_DIR/www;" \
    "    add_header Cache-Control \"max-age=3600\";" \
    "  }" \
    "}" > "$ORIGIN_DIR/nginx.conf"
  "$NGINX" -p "$ORIGIN_DIR" -c "$ORIGIN_DIR/nginx.conf" -e "$LOGS/nginx-error.log" >>"$LOGS/nginx.log" 2>&1 &
  NGINX_PID=$!
  sleep 0.5
  log "origin storm: $ORIGIN_CLIENTS clients, $ORIGIN_SIZE bytes, nginx at 127.0.0.1:$ORIGIN_PORT"
  modes="off cold warm"
  [[ -n $ORIGIN_COMPARE ]] && modes="compare $modes"
  for mode in $modes; do
    args=(--http-origin "http://127.0.0.1:$ORIGIN_PORT/")
    [[ $mode == cold || $mode == warm ]] && args+=(--origin-cache "$ORIGIN_DIR/cache" --origin-cache-size $((4 * ORIGIN_SIZE)))
    tftpd=$BIN/tftpd column="tftpd cache=$mode"
    [[ $mode == compare ]] && tftpd=$ORIGIN_COMPARE column=tftpd-compare
    tag="origin-$mode-c$ORIGIN_CLIENTS"
    echo "$tftpd ${args[*]} --listen 127.0.0.1:6906 --max-sessions 100000 --max-sessions-per-client 100000 --client-rate 0" >> "$LOGS/servers.txt"
    "$tftpd" "${args[@]}" --listen 127.0.0.1:6906 --max-sessions 100000 \
      --max-sessions-per-client 100000 --client-rate 0 >>"$LOGS/tftpd-origin-$mode.log" 2>&1 &
    tpid=$!
    sleep 0.5
    : > "$ORIGIN_DIR/access.log"
    m='{"failures":null}'
    if "$LOADGEN" --server 127.0.0.1:6906 --file "$ORIGIN_NAME" --clients "$ORIGIN_CLIENTS" --threads 1 \
        --blksize 65464 --windowsize 4 --rcvbuf $((1 << 20)) --expect-size "$ORIGIN_SIZE" \
        --min-timeout-ms "$CONC_MIN_TIMEOUT_MS" --deadline "$CONC_DEADLINE" --server-pid "$tpid" \
        --label "$tag" --output "$RAW/$tag.json" >/dev/null 2>>"$LOGS/$tag.err"; then
      gets=$(grep -c '^GET ' "$ORIGIN_DIR/access.log" || true)
      origin_bytes=$(awk '{ s += $4 } END { printf "%.0f\n", s }' "$ORIGIN_DIR/access.log")
      m=$(jq -c --argjson gets "$gets" --argjson ob "$origin_bytes" '{
          origin_gets: $gets,
          origin_mib: ($ob / 1048576),
          served_mib: (.bytes / 1048576),
          wall_secs: .wall_secs,
          p99_ms: (if .session_secs == null then null else .session_secs.p99 * 1000 end),
          failures: .failures,
          server_cpu_secs: .server_usage.cpu_secs
        }' "$RAW/$tag.json")
      cp "$ORIGIN_DIR/access.log" "$LOGS/$tag-access.log"
    else
      log "  $tag: loadgen failed (see $LOGS/$tag.err)"
    fi
    record origin-storm "clients=$ORIGIN_CLIENTS size=$ORIGIN_SIZE" "$column" 1 "" "$m"
    log "  $tag: $m"
    kill "$tpid" 2>/dev/null || true
    wait "$tpid" 2>/dev/null || true
  done
  kill "$NGINX_PID" 2>/dev/null || true
  wait "$NGINX_PID" 2>/dev/null || true
fi

log "done in $(( $(date +%s) - START_TS )) s"
"$REPORT" "$RESULTS" "$OUT"
echo
echo "results: $OUT"
