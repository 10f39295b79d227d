#!/usr/bin/env bash
# netbed.sh up|down|status: a test bed of network namespaces for tftpd, a small model of a
# provisioning network. Nothing here touches the host's own interfaces, addresses or routes:
# every link lives in a namespace this script creates, joined by a bridge in a namespace too.
# Addresses come from the benchmarking ranges only (RFC 2544 198.18.0.0/15, and the
# documentation prefix 2001:db8::/32 of RFC 3849). Every link has MTU 1500.
#
#   tb-sw      the switch: bridge br0 and one port per attached namespace
#   tb-srv     the server: eth0 with a primary and a secondary ("service", a VIP) address per
#              family: 198.18.0.1/16, 198.18.0.2/16, 2001:db8::1/64, 2001:db8::2/64
#   tb-cli     the clients: eth0 with 198.18.1.1 ... 198.18.1.250/16 and
#              2001:db8::100 ... 2001:db8::10f/64
#   tb-nat     a NAT router: eth0 198.18.0.254/16 on the bridge, eth1 198.19.0.1/24 towards
#              tb-natcli; forwards, and masquerades 198.19.0.0/24 behind 198.18.0.254 (nftables)
#   tb-natcli  clients behind the NAT: 198.19.0.10 ... 198.19.0.20/24, default route via tb-nat
#
# What the NAT shows: masquerading a request 198.19.0.10:P -> 198.18.0.2:69 creates one
# conntrack entry, whose reply direction is 198.18.0.2:69 -> 198.18.0.254:P'. A TFTP server
# answering from a new port (RFC 1350 §4: the server's transfer ID) sends
# 198.18.0.2:T -> 198.18.0.254:P', which matches no entry: conntrack sees a new flow, no DNAT
# applies, and the router answers it with ICMP port unreachable. The transfer fails unless
# the server answers from port 69 (`tftpd --single-port`) or the router runs the TFTP
# conntrack helper, which this bed deliberately does not (kernels since 6.0 attach helpers
# only when a rule asks, and most home and cloud NATs have none).
#
# `up` is idempotent: it creates what is missing and leaves what exists (running servers keep
# their sockets). `down` deletes every namespace it created, and with them their links.
# `status` prints the bed and exits 0 when it is complete, 1 otherwise. Needs root, iproute2
# and nftables (scripts/test-deps.sh installs them).
set -euo pipefail

NAMESPACES=(tb-sw tb-srv tb-cli tb-nat tb-natcli)
MTU=1500
CLIENTS_V4=250
CLIENTS_V6=16

die() {
    echo "netbed: $*" >&2
    exit 1
}

need() {
    command -v "$1" >/dev/null || die "$1 is not installed: run scripts/test-deps.sh"
}

has_ns() {
    local list
    list=$(ip netns list)
    grep -qx "$1" <<<"$(awk '{print $1}' <<<"$list")"
}

has_link() { # namespace, link
    ip -n "$1" link show dev "$2" >/dev/null 2>&1
}

# A veth from the bridge's namespace (port name $1) to eth0 in namespace $2, on br0.
attach() {
    local port=$1 ns=$2
    if ! has_link tb-sw "$port"; then
        # A leftover half (the peer's namespace was deleted) would block the name: gone with
        # the pair. Created in tb-sw with its peer moved straight into $ns.
        ip -n tb-sw link add "$port" mtu "$MTU" type veth peer name eth0 mtu "$MTU" netns "$ns"
    fi
    ip -n tb-sw link set "$port" master br0 mtu "$MTU" up
    ip -n "$ns" link set eth0 mtu "$MTU" up
}

# `ip -batch` lines adding addresses ($2 ...) to eth0 of namespace $1; `replace` is idempotent.
addrs() {
    local ns=$1
    shift
    printf 'address replace %s\n' "$@" | ip -n "$ns" -batch -
}

up() {
    need ip
    need nft
    [ "$(id -u)" -eq 0 ] || die "needs root"
    for ns in "${NAMESPACES[@]}"; do
        has_ns "$ns" || ip netns add "$ns"
        ip -n "$ns" link set lo up
    done

    # The switch. No STP, no forwarding delay: ports forward as soon as they are up.
    if ! has_link tb-sw br0; then
        ip -n tb-sw link add br0 mtu "$MTU" type bridge stp_state 0 forward_delay 0
    fi
    ip -n tb-sw link set br0 up
    attach sw-srv tb-srv
    attach sw-cli tb-cli
    attach sw-nat tb-nat

    # IPv6 addresses with `nodad`: usable at once, not "tentative" for a second.
    addrs tb-srv "198.18.0.1/16 dev eth0" "198.18.0.2/16 dev eth0" \
        "2001:db8::1/64 dev eth0 nodad" "2001:db8::2/64 dev eth0 nodad"

    local lines=() i
    for i in $(seq 1 "$CLIENTS_V4"); do
        lines+=("198.18.1.$i/16 dev eth0")
    done
    for i in $(seq 0 $((CLIENTS_V6 - 1))); do
        lines+=("$(printf '2001:db8::1%02x/64 dev eth0 nodad' "$i")")
    done
    addrs tb-cli "${lines[@]}"

    # The router and the clients behind it.
    if ! has_link tb-nat eth1; then
        ip -n tb-nat link add eth1 mtu "$MTU" type veth peer name eth0 mtu "$MTU" netns tb-natcli
    fi
    ip -n tb-nat link set eth1 mtu "$MTU" up
    ip -n tb-natcli link set eth0 mtu "$MTU" up
    addrs tb-nat "198.18.0.254/16 dev eth0" "198.19.0.1/24 dev eth1"
    lines=()
    for i in $(seq 10 20); do
        lines+=("198.19.0.$i/24 dev eth0")
    done
    addrs tb-natcli "${lines[@]}"
    ip -n tb-natcli route replace default via 198.19.0.1 dev eth0
    ip netns exec tb-nat sysctl -qw net.ipv4.ip_forward=1
    # Masquerade only what comes from behind the router and leaves on the bridge side. The
    # table is replaced whole, so `up` twice leaves one copy of the rule.
    ip netns exec tb-nat nft -f - <<'EOF'
table ip netbed
delete table ip netbed
table ip netbed {
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr 198.19.0.0/24 oifname "eth0" masquerade
    }
}
EOF
}

down() {
    local ns
    for ns in "${NAMESPACES[@]}"; do
        if has_ns "$ns"; then
            ip netns delete "$ns"
        fi
    done
}

status() {
    local ok=0 ns
    for ns in "${NAMESPACES[@]}"; do
        if has_ns "$ns"; then
            echo "== $ns"
            ip -n "$ns" -brief address show | awk '{ n = NF - 2; printf "  %-12s %-6s %d address(es): %s%s\n", $1, $2, n, $3, (n > 1 ? " ..." : "") }'
        else
            echo "== $ns: missing"
            ok=1
        fi
    done
    if [ $ok -eq 0 ]; then
        # Complete: each end has its addresses and the NAT rule is in place. (Output is
        # captured before matching: `cmd | grep -q` fails under pipefail when grep exits
        # first and cmd gets SIGPIPE.)
        local out
        out=$(ip -n tb-srv address show dev eth0)
        [[ $out == *198.18.0.2/16* && $out == *2001:db8::2/64* ]] || ok=1
        out=$(ip -n tb-cli -4 -o address show dev eth0)
        [ "$(wc -l <<<"$out")" -eq "$CLIENTS_V4" ] || ok=1
        out=$(ip netns exec tb-nat nft list table ip netbed 2>/dev/null || true)
        [[ $out == *masquerade* ]] || ok=1
        out=$(ip -n tb-natcli route show default)
        [[ $out == *198.19.0.1* ]] || ok=1
    fi
    if [ $ok -eq 0 ]; then echo "netbed: up"; else echo "netbed: incomplete (run: $0 up)"; fi
    return $ok
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    *)
        echo "usage: $0 up|down|status" >&2
        exit 2
        ;;
esac
