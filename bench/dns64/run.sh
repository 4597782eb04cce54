#!/usr/bin/env bash
# dns64 against Unbound's dns64 module, warm cache, same upstream.
#
# Both servers forward to one knotd (authoritative for bench.example) on
# loopback. dnsperf runs pinned to CPU 0, the server under test to CPU 1
# (so Go's GOMAXPROCS is 1, like Unbound's num-threads: 1). The figure is
# queries per second per server core: dnsperf's qps divided by the share of
# a core the server used, read from /proc/<pid>/stat before and after.
#
# Two measurements each: as fast as dnsperf can send (the servers then run
# at different loads), and at one fixed offered rate both sustain (RATE),
# which compares the CPU cost per query at equal load.
#
# The machine is shared and noisy: the runs alternate between the servers
# for ROUNDS rounds and the summary takes the median of each.
#
#   bench/dns64/run.sh      # DUR=6 s per run, ROUNDS=3, NAMES=1000, RATE=20000
#   PROFILE=1 bench/dns64/run.sh   # also perf-record dns64 in the fixed-rate run
set -euo pipefail
cd "$(dirname "$0")/../.."

DUR=${DUR:-6}
ROUNDS=${ROUNDS:-3}
RATE=${RATE:-20000}
NAMES=${NAMES:-1000}
CLIENT_CPU=${CLIENT_CPU:-0}
SERVER_CPU=${SERVER_CPU:-1}
base=$((20000 + RANDOM % 20000))
UP_PORT=${UP_PORT:-$base}
DNS64_PORT=${DNS64_PORT:-$((base + 1))}
UNBOUND_PORT=${UNBOUND_PORT:-$((base + 2))}

for b in knotd unbound dnsperf taskset go; do
	command -v "$b" >/dev/null || { echo "bench/dns64: $b not installed" >&2; exit 1; }
done

W=$(mktemp -d /tmp/bench-dns64.XXXXXX)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$W"
}
trap cleanup EXIT

echo "building dns64..."
go build -o "$W/dns64" ./cmd/dns64

# The upstream zone: v4-only names (synthesized) and dual-stack names.
{
	echo '$ORIGIN bench.example.'
	echo '$TTL 3600'
	echo '@ SOA ns admin 1 3600 600 86400 3600'
	echo '@ NS ns'
	echo 'ns A 45.0.0.53'
	for i in $(seq 1 "$NAMES"); do
		echo "v4-$i A 45.$((i / 256 % 256)).$((i % 256)).1"
		echo "dual-$i A 45.$((i / 256 % 256)).$((i % 256)).2"
		echo "dual-$i AAAA 2001:db8:$((i / 256 % 256)):$((i % 256))::2"
	done
} >"$W/bench.example.zone"
# 80% AAAA for v4-only names (DNS64 synthesis), 20% dual-stack.
for i in $(seq 1 "$NAMES"); do
	if ((i % 5 == 0)); then echo "dual-$i.bench.example AAAA"; else echo "v4-$i.bench.example AAAA"; fi
done >"$W/queries.txt"

cat >"$W/knot.conf" <<KNOT
server:
    listen: 127.0.0.1@$UP_PORT
    rundir: $W
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: $W/knotdb
log:
  - target: stderr
    any: error
zone:
  - domain: bench.example
    file: $W/bench.example.zone
    zonefile-sync: -1
    journal-content: none
KNOT

cat >"$W/unbound.conf" <<UNBOUND
server:
    interface: 127.0.0.1
    port: $UNBOUND_PORT
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "$W"
    pidfile: ""
    use-syslog: no
    logfile: ""
    verbosity: 0
    num-threads: 1
    module-config: "dns64 iterator"
    dns64-prefix: 64:ff9b::/96
    do-not-query-localhost: no
    access-control: 127.0.0.0/8 allow
    msg-cache-size: 64m
    rrset-cache-size: 128m
    qname-minimisation: no
    minimal-responses: yes
    prefetch: no
remote-control:
    control-enable: no
forward-zone:
    name: "."
    forward-addr: 127.0.0.1@$UP_PORT
UNBOUND
unbound-checkconf "$W/unbound.conf" >/dev/null

taskset -c "$CLIENT_CPU" knotd -c "$W/knot.conf" 2>"$W/knot.log" &
PIDS+=($!)
taskset -c "$SERVER_CPU" "$W/dns64" --listen "127.0.0.1:$DNS64_PORT" --upstream "127.0.0.1:$UP_PORT" \
	--prefix 64:ff9b::/96 --log-level warn 2>"$W/dns64.log" &
DNS64_PID=$!
PIDS+=($DNS64_PID)
taskset -c "$SERVER_CPU" unbound -d -c "$W/unbound.conf" 2>"$W/unbound.log" &
UNBOUND_PID=$!
PIDS+=($UNBOUND_PID)

wait_up() { # port
	for _ in $(seq 1 100); do
		if dig +short +time=1 +tries=1 -p "$1" @127.0.0.1 AAAA v4-1.bench.example 2>/dev/null | grep -q '^64:ff9b::'; then
			return 0
		fi
		sleep 0.1
	done
	echo "bench/dns64: server on port $1 did not answer; logs:" >&2
	cat "$W"/*.log >&2
	exit 1
}
wait_up "$DNS64_PORT"
wait_up "$UNBOUND_PORT"

cpu_ticks() { # pid -> utime+stime in clock ticks
	awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}
TCK=$(getconf CLK_TCK)

# measure label name port pid [dnsperf args...]: one dnsperf run, prints
# qps, the server's CPU share and qps per server core, and appends the
# last figure to $W/<label>-<name>.perf.
measure() {
	local label=$1 name=$2 port=$3 pid=$4
	shift 4
	local t0 c0 t1 c1 out qps lost
	t0=$(date +%s.%N)
	c0=$(cpu_ticks "$pid")
	out=$(taskset -c "$CLIENT_CPU" dnsperf -s 127.0.0.1 -p "$port" -d "$W/queries.txt" -l "$DUR" -c 4 -q 200 -t 1 "$@" 2>&1)
	c1=$(cpu_ticks "$pid")
	t1=$(date +%s.%N)
	echo "$out" >"$W/$label-$name.dnsperf.txt"
	if [ -n "${VERBOSE:-}" ]; then echo "$out" | grep -v Timeout >&2; fi
	qps=$(awk '/Queries per second:/ { print $4 }' <<<"$out")
	lost=$(awk '/Queries lost:/ { print $3 }' <<<"$out")
	awk -v q="$qps" -v c0="$c0" -v c1="$c1" -v t0="$t0" -v t1="$t1" -v tck="$TCK" -v n="$name" -v l="$label" -v lost="$lost" 'BEGIN {
		share = (c1 - c0) / tck / (t1 - t0)
		printf "  %-8s qps %9.0f   server CPU %5.1f%% of a core   qps/core %9.0f   lost %s\n", n, q, share * 100, q / share, lost
		print q / share > "/dev/stderr"
	}' 2>>"$W/$label-$name.perf"
}

median() { # file of numbers
	sort -g "$1" | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

ratio() { # label description
	local a b
	a=$(median "$W/$1-dns64.perf")
	b=$(median "$W/$1-unbound.perf")
	awk -v a="$a" -v b="$b" -v d="$2" 'BEGIN {
		printf "%-34s dns64 %9.0f   unbound %9.0f   ratio %.2f\n", d, a, b, a / b
	}'
}

# warm: every name twice, so all answers are cached
for p in "$DNS64_PORT" "$UNBOUND_PORT"; do
	taskset -c "$CLIENT_CPU" dnsperf -s 127.0.0.1 -p "$p" -d "$W/queries.txt" -n 2 -q 50 >/dev/null 2>&1
done

echo "dnsperf: $DUR s per run, $ROUNDS rounds, $NAMES names (80% v4-only AAAA -> synthesized, 20% dual-stack AAAA), warm cache;"
echo "dnsperf on CPU $CLIENT_CPU, server on CPU $SERVER_CPU; load average now: $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq 1 "$ROUNDS"); do
	echo "round $round/$ROUNDS, as fast as dnsperf goes:"
	measure max dns64 "$DNS64_PORT" "$DNS64_PID"
	measure max unbound "$UNBOUND_PORT" "$UNBOUND_PID"
	echo "round $round/$ROUNDS, both offered $RATE queries/s:"
	if [ "$round" = 1 ] && [ -n "${PROFILE:-}" ] && command -v perf >/dev/null; then
		perf record -F 2000 -g -p "$DNS64_PID" -o "$W/perf.data" -- sleep "$DUR" >/dev/null 2>&1 &
		PERF_PID=$!
	fi
	measure rate dns64 "$DNS64_PORT" "$DNS64_PID" -Q "$RATE"
	if [ -n "${PERF_PID:-}" ]; then
		wait "$PERF_PID" || true
		PERF_PID=
		echo "  dns64 profile at $RATE q/s (PROFILE=1; sampling inflates the CPU share above), top symbols:"
		{ perf report -i "$W/perf.data" --no-children --sort symbol --stdio 2>/dev/null |
			grep -E '^ +[0-9.]+%' | head -15 | sed 's/^/   /'; } || true
	fi
	measure rate unbound "$UNBOUND_PORT" "$UNBOUND_PID" -Q "$RATE"
done
echo "median qps per server core over $ROUNDS rounds:"
ratio max "  as fast as dnsperf goes:"
ratio rate "  at $RATE queries/s offered:"
