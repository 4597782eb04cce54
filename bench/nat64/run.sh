#!/usr/bin/env bash
# bench/nat64/run.sh: nat64 against TAYGA in one topology, one run.
#
#   client ns (IPv6 only) --veth-- translator ns --veth-- server ns (IPv4 only)
#
# The translator namespace runs nat64 (user space, stateful, multi-queue TUN,
# both cores; pool6 2001:db8:64::/96, pool4 198.51.100.0/28) and TAYGA
# (stateless, single-threaded, pinned to CPU 0; pool6 2001:db8:46::/96,
# dynamic pool 198.51.100.16/28) side by side on the same links. (TAYGA
# refuses the well-known prefix with documentation addresses, hence the
# network-specific prefixes.) Each test runs against nat64 then TAYGA,
# alternating, ROUNDS times; the best round of each is printed, so a burst
# of load from elsewhere on the machine hurts both alike.
# Tests: iperf3 TCP; iperf3 UDP with 64- and 1400-byte payloads at unlimited
# rate (packets/s received = sent - lost); a TCP connections-per-second loop
# (bench/nat64/connloop, 32 dialers). Kernel defaults otherwise (RPS as
# booted). Needs root, iproute2, iperf3, tayga, go. About 2 minutes.
set -euo pipefail
cd "$(dirname "$0")/../.."
DUR=${DUR:-4}
ROUNDS=${ROUNDS:-2}
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

measure() { # name dst -> lines "name key values"
	local name=$1 dst=$2 j
	j=$(ip netns exec $C iperf3 -c $dst -t "$DUR" -J)
	echo "$name tcp_gbps $(echo "$j" | python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.3f" % (d["end"]["sum_received"]["bits_per_second"]/1e9))')"
	for len in 64 1400; do
		j=$(ip netns exec $C iperf3 -c $dst -u -b 0 -l $len -t "$DUR" -J)
		echo "$name udp${len} $(echo "$j" | python3 -c '
import json,sys
d=json.load(sys.stdin)["end"]
s=d["sum"]
pk=s["packets"]-s.get("lost_packets",0)
print("%.0f %.3f" % (pk/s["seconds"], pk*'$len'*8/s["seconds"]/1e9))')"
	done
}
cps() {
	echo "$1 cps $(ip netns exec $C "$TMP/connloop" -dial "[$2]:8081" -c 32 -t "${DUR}s" | cut -d' ' -f1)"
}
NAT_DST=2001:db8:64::c000:202
TAYGA_DST=2001:db8:46::c000:202

# nat64, unpinned, one queue per CPU
cat > "$TMP/nat64.yaml" <<YAML
max_sessions_per_client: -1
syn_rate: -1
YAML
ip netns exec $T "$TMP/nat64" --tun nat64b --pool6 2001:db8:64::/96 --pool4 198.51.100.0/28 --config "$TMP/nat64.yaml" ${NAT64_ARGS:-} 2>"$TMP/nat64.log" &
PIDS+=($!)

# TAYGA (stateless), pinned to one core
mkdir -p "$TMP/tayga"
cat > "$TMP/tayga.conf" <<CONF
tun-device tayga0
ipv4-addr 198.51.100.100
prefix 2001:db8:46::/96
dynamic-pool 198.51.100.16/28
data-dir $TMP/tayga
CONF
ip netns exec $T tayga -c "$TMP/tayga.conf" --mktun >/dev/null
ip -n $T link set tayga0 up
ip -n $T route add 2001:db8:46::/96 dev tayga0
ip -n $T route add 198.51.100.16/28 dev tayga0
ip -n $T route add 198.51.100.100/32 dev tayga0
ip netns exec $T taskset -c 0 tayga -c "$TMP/tayga.conf" --nodetach >/dev/null 2>&1 &
PIDS+=($!)

for i in $(seq 50); do ip -n $T link show nat64b >/dev/null 2>&1 && break; sleep 0.1; done
sleep 0.5
for d in $NAT_DST $TAYGA_DST; do
	ip netns exec $C "$TMP/connloop" -dial "[$d]:8081" -c 1 -t 0.5s >/dev/null || { echo "bench/nat64: $d unreachable" >&2; exit 1; }
done

: > "$TMP/res"
for r in $(seq "$ROUNDS"); do
	measure nat64 $NAT_DST >> "$TMP/res"
	measure tayga $TAYGA_DST >> "$TMP/res"
done
for r in $(seq "$ROUNDS"); do
	cps nat64 $NAT_DST >> "$TMP/res"
	cps tayga $TAYGA_DST >> "$TMP/res"
done

python3 - "$TMP/res" "$ROUNDS" "$DUR" <<'PY'
import sys
r = {}
for line in open(sys.argv[1]):
    f = line.split()
    vals = [float(x) for x in f[2:]]
    k = (f[0], f[1])
    r[k] = [max(a, b) for a, b in zip(r[k], vals)] if k in r else vals
print(f"nat64 vs TAYGA, best of {sys.argv[2]} rounds of {sys.argv[3]} s each")
print(f"{'test':<22} {'nat64':>12} {'tayga':>12} {'unit':<8} {'ratio':>7}")
def row(label, key, i, unit, fmt):
    a, b = r[("nat64", key)][i], r[("tayga", key)][i]
    ratio = a / b if b else float("inf")
    print(f"{label:<22} {fmt.format(a):>12} {fmt.format(b):>12} {unit:<8} {ratio:6.2f}x")
row("iperf3 TCP", "tcp_gbps", 0, "Gbit/s", "{:.3f}")
row("iperf3 UDP 64 B", "udp64", 0, "pkt/s", "{:.0f}")
row("iperf3 UDP 64 B", "udp64", 1, "Gbit/s", "{:.3f}")
row("iperf3 UDP 1400 B", "udp1400", 0, "pkt/s", "{:.0f}")
row("iperf3 UDP 1400 B", "udp1400", 1, "Gbit/s", "{:.3f}")
row("TCP connections", "cps", 0, "conn/s", "{:.0f}")
PY
