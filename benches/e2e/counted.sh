# The frame benches/e2e/misses.sh and benches/e2e/syscalls.sh share, sourced by both: their
# common options, the load tools, a network namespace of their own with the file to fetch,
# each server's name, port and command, its stop, and what to print for a server that gave
# no counts.
#
# A script sets CLIENTS and SIZE_KIB (its defaults) and defines `extra_option NAME VALUE`
# for its own options (nonzero for one it does not know), then calls
#   counted_parse "$@"
#   counted_enter TOOL "HOW TO INSTALL IT" "$@"   # outside: re-runs the script in a namespace
# and, for each of SERVERS, counted_server "$s" PORT (sets NAME, LISTEN and CMD), runs it
# under its tool with the load on it (the load client's JSON report in $DIR/NAME.json),
# counted_stop PID SECONDS, and counted_report NAME COUNTS with its parser of the tool's
# counts on stdin. Inside, DIR holds root/file (and the run's files, deleted at the end),
# FROM the load client's --bind-from, and LOADGEN the load client.

# Parse the options both scripts take (--clients N, --size KiB, --bind-from RANGE) and the
# servers (NAME[:PORT]=CMD, into SERVERS); any other option goes to `extra_option`.
counted_parse() {
  BIND_FROM=""
  SERVERS=()
  while [[ $# -gt 0 ]]; do
    case $1 in
      --clients) CLIENTS=$2; shift ;;
      --size) SIZE_KIB=$2; shift ;;
      --bind-from) BIND_FROM=$2; shift ;;
      *=*) SERVERS+=("$1") ;;
      *)
        if [[ $# -lt 2 ]] || ! extra_option "$1" "$2"; then
          echo "unknown argument: $1" >&2
          exit 64
        fi
        shift
        ;;
    esac
    shift
  done
  [[ ${#SERVERS[@]} -gt 0 ]] || { echo "no servers (NAME=CMD)" >&2; exit 64; }
}

# Outside the namespace: check for TOOL ($1, installed as $2 says) and the load client, make
# the file to fetch, and run the script again with its arguments ($3...) in a network
# namespace of its own; then exit. Inside: loopback up, the descriptor limit raised, and
# DIR, FROM set.
counted_enter() {
  local tool=$1 install=$2
  shift 2
  command -v "$tool" >/dev/null || { echo "needs $tool ($install)" >&2; exit 69; }
  local here
  here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  LOADGEN=${LOADGEN:-$here/target/release/tftp-loadgen}
  [[ -x $LOADGEN ]] || { echo "missing $LOADGEN (cargo build --release -p tftp-benches)" >&2; exit 69; }
  if [[ ${COUNTED_INNER:-} != 1 ]]; then
    [[ $(id -u) == 0 ]] || { echo "run as root (network namespace)" >&2; exit 64; }
    DIR=$(mktemp -d "/tmp/tftp-$(basename "$0" .sh).XXXXXX")
    chmod 755 "$DIR"
    trap 'rm -rf "$DIR"' EXIT
    # Readable by a server that drops its privileges (in.tftpd --secure).
    mkdir -m 755 "$DIR/root"
    head -c $((SIZE_KIB << 10)) /dev/urandom > "$DIR/root/file"
    chmod 644 "$DIR/root/file"
    COUNTED_INNER=1 COUNTED_DIR=$DIR unshare --net -- bash "$0" "$@"
    exit
  fi
  ip link set lo up
  # As run.sh: with lo's 127.0.0.1 alone glibc's getaddrinfo(AI_ADDRCONFIG) counts IPv4 as not
  # configured, and in.tftpd cannot resolve its own --address.
  ip addr add 127.0.0.2/8 dev lo
  DIR=$COUNTED_DIR
  ulimit -n "$(ulimit -Hn)"
  FROM=()
  if [[ -n $BIND_FROM ]]; then
    FROM=(--bind-from "$BIND_FROM")
  fi
}

# Server $1 (NAME[:N]=CMD) on port $2: NAME, LISTEN (N if given: the server listens there
# whatever its command says, as dnsmasq on 69; else the port) and CMD with the words ROOT
# and PORT replaced.
counted_server() {
  NAME=${1%%=*} CMD=${1#*=} LISTEN=$2
  if [[ $NAME == *:* ]]; then
    LISTEN=${NAME#*:} NAME=${NAME%%:*}
  fi
  CMD=${CMD//ROOT/$DIR/root}
  CMD=${CMD//PORT/$2}
}

# Stop server process $1: SIGINT for a clean exit (tftpd), then after up to $2 seconds SIGTERM
# (servers that ignore it). The caller waits for the process it started.
counted_stop() {
  local pid=$1 tenths=$(($2 * 10))
  kill -INT "$pid" 2>/dev/null || true
  for _ in $(seq "$tenths"); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -TERM "$pid" 2>/dev/null || true
}

# Print server $1's counts: the Python parser on stdin runs with `name`, `r` (the load client's
# report, $DIR/$1.json: {} if it wrote none), `data` (the DATA packets its clients received, 0
# if unknown) and `lines` (those of the tool's counts file $2: none if it wrote none) defined,
# and exits nonzero when they hold no counts; counted_failed then says so.
counted_report() {
  local prelude='
import json, sys
name, report, counts = sys.argv[1:]
try:
    r = json.load(open(report))
except (OSError, ValueError):
    r = {}
data = r.get("packets_received") or 0
try:
    lines = open(counts).readlines()
except OSError:
    lines = []
'
  python3 -c "$prelude$(cat)" "$1" "$DIR/$1.json" "$2" || counted_failed "$1"
}

# Server $1 gave no counts: say so, with the ends of its log and of the load client's errors.
counted_failed() {
  printf "%-14s no counts; the server's log and the load client's errors end with:\n" "$1"
  local path
  for path in "$DIR/$1.log" "$DIR/$1.err"; do
    [[ -r $path ]] && tail -n 3 "$path" | sed 's/^/    /'
  done
  return 0
}
