#!/usr/bin/env bash
# bench/nat64/run.sh: nat64 against TAYGA in one topology, one run.
#
#   client ns (IPv6 only) --veth-- translator ns --veth-- server ns (IPv4 only)
#
# The translator namespace runs nat64 (user space, multi-queue TUN, both
# cores) and then TAYGA (stateless, single-threaded, pinned to CPU 0) on the
# same links, prefix and pool. Tests: iperf3 TCP, iperf3 UDP with 64- and
# 1400-byte payloads (unlimited rate, packets/s received), and a TCP
# connections-per-second loop. Both use pool6 2001:db8:64::/96 (TAYGA refuses
# the well-known prefix with documentation addresses). Kernel defaults otherwise (RPS as booted).
# Needs root, iproute2, iperf3, tayga, go. Takes about a minute.
set -euo pipefail
cd "$(dirname "$0")/../.."
DUR=${DUR:-5}
ID=$$
C=n64bc$ID T=n64bt$ID S=n64bs$ID
TMP=$(mktemp -d)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	sleep 0.3
	for ns in $C $T $S; do ip netns del "$ns" 2>/dev/null || true; done
	rm -rf "$TMP"
}
trap cleanup EXIT

[ "$(id -u)" = 0 ] || { echo "bench/nat64: needs root" >&2; exit 1; }
for b in iperf3 tayga ip python3; do command -v $b >/dev/null || { echo "bench/nat64: needs $b" >&2; exit 1; }; done

go build -o "$TMP/nat64" ./cmd/nat64
go build -o "$TMP/connloop" ./bench/nat64/connloop

for ns in $C $T $S; do ip netns add $ns; ip -n $ns link set lo up; done
ip link add c0 netns $C type veth peer name t0 netns $T
ip link add t1 netns $T type veth peer name s0 netns $S
ip netns exec $C sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
ip netns exec $T sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
ip -n $C addr add 2001:db8:1::2/64 dev c0 nodad
ip -n $T addr add 2001:db8:1::1/64 dev t0 nodad
ip -n $T addr add 192.0.2.1/24 dev t1
ip -n $S addr add 192.0.2.2/24 dev s0
for x in "$C c0" "$T t0" "$T t1" "$S s0"; do set -- $x; ip -n $1 link set $2 up; done
ip -n $C -6 route add default via 2001:db8:1::1
ip -n $S route add default via 192.0.2.1

ip netns exec $S iperf3 -s -B 192.0.2.2 -D --pidfile "$TMP/iperf3.pid"
sleep 0.3; PIDS+=("$(cat "$TMP/iperf3.pid")")
ip netns exec $S "$TMP/connloop" -serve 192.0.2.2:8081 & PIDS+=($!)
DST=2001:db8:64::c000:202

measure() { # name -> lines "key value"
	local name=$1 j
	j=$(ip netns exec $C iperf3 -c $DST -t "$DUR" -J)
	echo "$name tcp_gbps $(echo "$j" | python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.3f" % (d["end"]["sum_received"]["bits_per_second"]/1e9))')"
	for len in 64 1400; do
		j=$(ip netns exec $C iperf3 -c $DST -u -b 0 -l $len -t "$DUR" -J)
		echo "$name udp${len} $(echo "$j" | python3 -c '
import json,sys
d=json.load(sys.stdin)["end"]
s=d.get("sum_received") or d["sum"]
sent=d["sum"]
pk=sent["packets"]-sent.get("lost_packets",0)
secs=s["seconds"]
print("%.0f %.3f" % (pk/secs, pk*'$len'*8/secs/1e9))')"
	done
	echo "$name cps $(ip netns exec $C "$TMP/connloop" -dial "[$DST]:8081" -c 32 -t "${DUR}s" | cut -d' ' -f1)"
}

# nat64
cat > "$TMP/nat64.yaml" <<YAML
max_sessions_per_client: -1
syn_rate: -1
YAML
ip netns exec $T "$TMP/nat64" --tun nat64b --pool6 2001:db8:64::/96 --pool4 198.51.100.0/28 --config "$TMP/nat64.yaml" 2>"$TMP/nat64.log" &
NATPID=$!; PIDS+=($NATPID)
for i in $(seq 50); do ip -n $T link show nat64b >/dev/null 2>&1 && break; sleep 0.1; done
sleep 0.5
ip netns exec $C ping -6 -c1 -W2 $DST >/dev/null 2>&1 || true
measure nat64 > "$TMP/res"
kill $NATPID; wait $NATPID 2>/dev/null || true
sleep 0.5

# TAYGA (stateless), pinned to one core
mkdir -p "$TMP/tayga"
cat > "$TMP/tayga.conf" <<CONF
tun-device tayga0
ipv4-addr 198.51.100.100
prefix 2001:db8:64::/96
dynamic-pool 198.51.100.0/28
data-dir $TMP/tayga
CONF
ip netns exec $T tayga -c "$TMP/tayga.conf" --mktun >/dev/null
ip -n $T link set tayga0 up
ip -n $T route add 2001:db8:64::/96 dev tayga0
ip -n $T route add 198.51.100.0/28 dev tayga0
ip -n $T route add 198.51.100.100/32 dev tayga0
ip netns exec $T taskset -c 0 tayga -c "$TMP/tayga.conf" --nodetach >/dev/null 2>&1 &
PIDS+=($!)
sleep 0.5
measure tayga >> "$TMP/res"

python3 - "$TMP/res" <<'PY'
import sys
r = {}
for line in open(sys.argv[1]):
    f = line.split()
    r[(f[0], f[1])] = [float(x) for x in f[2:]]
def row(label, key, i, unit, fmt):
    a, b = r[("nat64", key)][i], r[("tayga", key)][i]
    ratio = a / b if b else float("inf")
    print(f"{label:<26} {fmt.format(a):>12} {fmt.format(b):>12} {unit:<8} {ratio:6.2f}x")
print(f"{'test':<26} {'nat64':>12} {'tayga':>12} {'unit':<8} {'ratio':>7}")
row("iperf3 TCP", "tcp_gbps", 0, "Gbit/s", "{:.3f}")
row("iperf3 UDP 64 B", "udp64", 0, "pkt/s", "{:.0f}")
row("iperf3 UDP 64 B", "udp64", 1, "Gbit/s", "{:.3f}")
row("iperf3 UDP 1400 B", "udp1400", 0, "pkt/s", "{:.0f}")
row("iperf3 UDP 1400 B", "udp1400", 1, "Gbit/s", "{:.3f}")
row("TCP connections", "cps", 0, "conn/s", "{:.0f}")
PY
