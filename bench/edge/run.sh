#!/bin/bash
# Compares the edge proxy with HAProxy and nginx, side by side in one run:
# the same 4 upstreams (one nginx serving a small static answer), on IPv6
# loopback, each proxy pinned to one core (taskset -c $PROXY_CPU) and wrk
# plus the upstreams on the other ($LOAD_CPU). Prints req/s, p50, p99 and
# the ratios edge/peer.
#
# Usage: bench/edge/run.sh [duration] [connections]   (default 10s, 64)
# Env:   PROXY_CPU (1), LOAD_CPU (0), PROFILE=1 writes a CPU profile of the
#        edge run to $OUT/edge.cpu.pprof (go tool pprof -top ...),
#        ROUNDS (1): the four proxies are measured in turn ROUNDS times and
#        each figure is the median, which tames a shared machine's noise.
set -euo pipefail
cd "$(dirname "$0")/../.."
dur="${1:-10s}"
conns="${2:-64}"
PROXY_CPU="${PROXY_CPU:-1}"
LOAD_CPU="${LOAD_CPU:-0}"
for b in wrk haproxy nginx taskset go; do
	command -v "$b" >/dev/null || { echo "bench/edge: $b is not installed" >&2; exit 1; }
done

OUT="${OUT:-$(mktemp -d /tmp/edge-bench.XXXXXX)}"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT

# Free loopback ports: 4 upstreams and 3 proxies.
base=$((20000 + RANDOM % 20000))
up_ports=($base $((base + 1)) $((base + 2)) $((base + 3)))
edge_port=$((base + 10)) haproxy_port=$((base + 11)) nginx_port=$((base + 12))
metrics_port=$((base + 13)) edge_std_port=$((base + 14))

echo "bench/edge: building the edge" >&2
go build -o "$OUT/edge" ./cmd/edge

# --- upstreams: one nginx worker, four ports, a 2-byte answer ----------------
mkdir -p "$OUT/up" "$OUT/ngx"
{
	echo "worker_processes 1; pid $OUT/up/nginx.pid; error_log $OUT/up/error.log warn; daemon off;"
	echo "events { worker_connections 4096; }"
	echo "http { access_log off; keepalive_requests 1000000;"
	for p in "${up_ports[@]}"; do
		echo "  server { listen [::1]:$p; location / { return 200 'ok'; } }"
	done
	echo "}"
} >"$OUT/up/nginx.conf"
taskset -c "$LOAD_CPU" nginx -p "$OUT/up" -c "$OUT/up/nginx.conf" &
pids+=($!)

# --- edge -----------------------------------------------------------------------
{
	echo "version: 1"
	echo "hosts: {bench.test: bench}"
	printf 'apps:\n  bench: ['
	sep=""
	for p in "${up_ports[@]}"; do printf '%s"[::1]:%s"' "$sep" "$p"; sep=", "; done
	echo "]"
} >"$OUT/pods.yaml"
cat >"$OUT/edge.yaml" <<EOF
listen: [{addr: "[::1]:$edge_port"}]
source: file://$OUT/pods.yaml
metrics: "[::1]:$metrics_port"
node: bench
pprof: true
EOF
taskset -c "$PROXY_CPU" "$OUT/edge" --config "$OUT/edge.yaml" --log-level warn 2>"$OUT/edge.log" &
pids+=($!)
pid_edge=$!
# The same edge with every request through net/http.Transport, for the
# record of what edge/h1 buys.
cat >"$OUT/edge-std.yaml" <<EOF
listen: [{addr: "[::1]:$edge_std_port"}]
source: file://$OUT/pods.yaml
node: bench-std
upstream: {stdlib_only: true}
EOF
taskset -c "$PROXY_CPU" "$OUT/edge" --config "$OUT/edge-std.yaml" --log-level warn 2>"$OUT/edge-std.log" &
pids+=($!)
pid_edge_std=$!

# --- HAProxy: one thread, random(2) = power of two choices, keep-alive -------
cat >"$OUT/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 4000
  log stdout format raw local0 err
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  option forwardfor
  http-reuse always
frontend fe
  bind [::1]:$haproxy_port
  default_backend be
backend be
  balance random(2)
$(i=0; for p in "${up_ports[@]}"; do echo "  server u$i [::1]:$p"; i=$((i + 1)); done)
EOF
taskset -c "$PROXY_CPU" haproxy -f "$OUT/haproxy.cfg" -db >"$OUT/haproxy.log" 2>&1 &
pids+=($!)
pid_haproxy=$!

# --- nginx as proxy: one worker, upstream keep-alive ----------------------------
cat >"$OUT/ngx/nginx.conf" <<EOF
worker_processes 1; pid $OUT/ngx/nginx.pid; error_log $OUT/ngx/error.log warn; daemon off;
events { worker_connections 4096; }
http {
  access_log off; keepalive_requests 1000000;
  upstream be {
$(for p in "${up_ports[@]}"; do echo "    server [::1]:$p;"; done)
    keepalive 256;
  }
  server {
    listen [::1]:$nginx_port;
    location / {
      proxy_pass http://be;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$remote_addr;
    }
  }
}
EOF
taskset -c "$PROXY_CPU" nginx -p "$OUT/ngx" -c "$OUT/ngx/nginx.conf" &
pids+=($!)
pid_nginx=$!

# Wait until all three answer.
for port in $edge_port $edge_std_port $haproxy_port $nginx_port; do
	for i in $(seq 100); do
		if curl -sf -o /dev/null -H 'Host: bench.test' "http://[::1]:$port/"; then break; fi
		sleep 0.1
		[ "$i" = 100 ] && { echo "bench/edge: port $port never answered" >&2; tail "$OUT"/*.log >&2; exit 1; }
	done
done

# CPU time (clock ticks, user + system) of a process and its children
# threads/processes: the machine may be shared, so besides req/s the
# bench reports CPU microseconds per request, which contention barely moves.
ticks() {
	local t=0 p
	for p in "$@" $(pgrep -P "$1" 2>/dev/null); do
		[ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
	done
	echo "$t"
}
hz=$(getconf CLK_TCK)

run() { # name port pid -> "name req/s p50 p99 non2xx cpu_us_per_req"
	local name=$1 port=$2 pid=$3
	# Warm up connections, then measure.
	taskset -c "$LOAD_CPU" wrk -t1 -c"$conns" -d2s -H 'Host: bench.test' "http://[::1]:$port/" >/dev/null
	if [ "$name" = edge ] && [ "${PROFILE:-}" = 1 ]; then
		(sleep 1; curl -s -o "$OUT/edge.cpu.pprof" "http://[::1]:$metrics_port/debug/pprof/profile?seconds=5") &
	fi
	local t0 t1
	t0=$(ticks "$pid")
	taskset -c "$LOAD_CPU" wrk -t1 -c"$conns" -d"$dur" --latency -H 'Host: bench.test' "http://[::1]:$port/" >"$OUT/wrk.$name.txt"
	t1=$(ticks "$pid")
	awk -v name="$name" -v cpu=$((t1 - t0)) -v hz="$hz" '
	function ms(v) {
		if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 }
		if (v ~ /ms$/) { sub(/ms$/, "", v); return v + 0 }
		if (v ~ /s$/)  { sub(/s$/, "", v);  return v * 1000 }
		return v
	}
	/^ +50%/ { p50 = ms($2) } /^ +99%/ { p99 = ms($2) } /^Requests\/sec:/ { rps = $2 }
	/Non-2xx/ { bad = $NF } /requests in/ { n = $1 }
	END { printf "%s %.0f %.3f %.3f %s %.1f\n", name, rps, p50, p99, bad + 0, (n > 0) ? cpu / hz * 1e6 / n : 0 }' "$OUT/wrk.$name.txt"
}

echo "bench/edge: wrk -c$conns -d$dur, proxy on CPU $PROXY_CPU, wrk and upstreams on CPU $LOAD_CPU" >&2
res=$(for r in $(seq "${ROUNDS:-1}"); do
	run edge $edge_port $pid_edge; run haproxy $haproxy_port $pid_haproxy
	run nginx $nginx_port $pid_nginx; run edge-std $edge_std_port $pid_edge_std
done)
echo "$res" >"$OUT/rounds.txt"
# Median of each column per proxy.
med=$(for name in edge haproxy nginx edge-std; do
	line="$name"
	for col in 2 3 4 5 6; do
		line="$line $(awk -v n="$name" -v c="$col" '$1 == n { print $c }' "$OUT/rounds.txt" | sort -g |
			awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')"
	done
	echo "$line"
done)
echo "$med" | awk -v rounds="${ROUNDS:-1}" '
{ rps[$1] = $2; p50[$1] = $3; p99[$1] = $4; bad[$1] = $5; cpu[$1] = $6; order[++n] = $1 }
END {
	if (rounds > 1) printf "\nmedians of %d rounds (each round: the four proxies in turn)\n", rounds
	printf "\n%-9s %10s %9s %9s %8s %12s %14s\n", "proxy", "req/s", "p50 ms", "p99 ms", "non-2xx", "CPU us/req", "req/s per core"
	for (i = 1; i <= n; i++) { k = order[i]; printf "%-9s %10.0f %9.3f %9.3f %8d %12.1f %14.0f\n", k, rps[k], p50[k], p99[k], bad[k], cpu[k], (cpu[k] > 0) ? 1e6 / cpu[k] : 0 }
	printf "\nedge/haproxy: req/s %.2fx, p99 %.2fx, CPU per request %.2fx\n", rps["edge"] / rps["haproxy"], p99["edge"] / p99["haproxy"], cpu["edge"] / cpu["haproxy"]
	printf "edge/nginx:   req/s %.2fx, p99 %.2fx, CPU per request %.2fx\n", rps["edge"] / rps["nginx"], p99["edge"] / p99["nginx"], cpu["edge"] / cpu["nginx"]
	printf "edge/edge-std (net/http.Transport only): req/s %.2fx, CPU per request %.2fx\n", rps["edge"] / rps["edge-std"], cpu["edge"] / cpu["edge-std"]
	print "(req/s: higher is better for edge; p99 and CPU per request: lower is better; target: req/s >= 1x HAProxy at no worse p99."
	print " On a shared machine req/s follows the load of others; CPU us/req, the proxy process CPU time over the requests served, does not.)"
}'
echo "bench/edge: raw wrk output and logs in $OUT" >&2
