#!/usr/bin/env bash
# bench/razor/run.sh: razor against Knot DNS serving the same zone, in one
# run. dnsperf is pinned to core 0, the server under test to core 1. For
# route queries (razor: a route over one pool of 16 A + 16 AAAA, 16
# answers; Knot: the same name as 16 A + 16 AAAA records) and for ordinary
# names (positive answers and an NXDOMAIN), it prints queries per second,
# the server's CPU share, qps per busy server core (qps / share), p99
# latency at a fixed ~50k qps, and razor/Knot ratios.
#
# Env: DUR (seconds per throughput run, default 10), RUNS (throughput runs
# per server and set, the best qps/core kept; default 2), P99_QPS (50000),
# P99_DUR (5), CLIENTS (4), OUTSTANDING (500).
set -euo pipefail
cd "$(dirname "$0")/../.."
DUR=${DUR:-10}
RUNS=${RUNS:-2}
P99_QPS=${P99_QPS:-50000}
P99_DUR=${P99_DUR:-5}
CLIENTS=${CLIENTS:-4}
OUTSTANDING=${OUTSTANDING:-500}

for bin in dnsperf knotd kdig taskset go; do
  command -v "$bin" >/dev/null || [ -x "/usr/sbin/$bin" ] || { echo "razor bench: $bin not found (scripts/deps.sh)"; exit 1; }
done
KNOTD=$(command -v knotd || echo /usr/sbin/knotd)
if [ "$(nproc)" -lt 2 ]; then echo "razor bench: needs 2 cores"; exit 1; fi

W=$(mktemp -d /tmp/razor-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT

freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
RPORT=$(freeport)
KPORT=$(freeport)

echo "razor bench: building razor"
go build -o "$W/razor" ./cmd/razor

# The zone: razor's example zone, for Knot with the route as records.
cp razor/testdata/v6pod.test.zone "$W/razor.zone"
cp razor/testdata/v6pod.test.zone "$W/knot.zone"
v4s=() v6s=()
for i in $(seq 1 16); do
  v4s+=("203.0.113.$i"); v6s+=("\"2001:db8:1::$i\"")
  printf 'route 30 IN A 203.0.113.%d\nroute 30 IN AAAA 2001:db8:1::%d\n' "$i" "$i" >> "$W/knot.zone"
done
cat > "$W/pods.yaml" <<YAML
version: 1
pools:
  - name: edge-bench
    edge: bench
    weight: 100
    state: active
    v4: [$(IFS=,; echo "${v4s[*]}")]
    v6: [$(IFS=,; echo "${v6s[*]}")]
routes:
  - name: route.v6pod.test.
    pools: [edge-bench]
    answers: 16
    ttl: 30
YAML

mkdir -p "$W/knot/run" "$W/knot/db"
cat > "$W/knot.conf" <<CONF
server:
    rundir: "$W/knot/run"
    listen: 127.0.0.1@$KPORT
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
control:
    listen: "$W/knot/run/knot.sock"
database:
    storage: "$W/knot/db"
log:
  - target: stderr
    any: warning
template:
  - id: default
    storage: "$W/knot"
    zonefile-sync: -1
    journal-content: none
zone:
  - domain: v6pod.test
    file: "$W/knot.zone"
CONF

printf 'route.v6pod.test A\nroute.v6pod.test AAAA\n' > "$W/q-route.txt"
printf '%s\n' 'ns1.v6pod.test A' 'ns1.v6pod.test AAAA' 'mail.v6pod.test AAAA' 'v6pod.test MX' \
  'v6pod.test TXT' 'sip.v6pod.test AAAA' 'nope.v6pod.test A' 'x.wild.v6pod.test A' > "$W/q-names.txt"

taskset -c 1 "$KNOTD" -c "$W/knot.conf" 2>"$W/knot.log" &
pids+=($!); KPID=$!
taskset -c 1 "$W/razor" --listen "127.0.0.1:$RPORT" --zone "v6pod.test=$W/razor.zone" \
  --store "$W/pods.yaml" --log-level warn >"$W/razor.out" 2>"$W/razor.log" &
pids+=($!); RPID=$!

ready() { for _ in $(seq 100); do kdig -p "$1" @127.0.0.1 +short +timeout=1 +retry=0 ns1.v6pod.test A 2>/dev/null | grep -q 127.0.0.1 && return 0; sleep 0.1; done; return 1; }
ready "$RPORT" || { echo "razor did not start:"; cat "$W/razor.log"; exit 1; }
ready "$KPORT" || { echo "knotd did not start:"; cat "$W/knot.log"; exit 1; }
for p in "$RPORT" "$KPORT"; do
  n=$(kdig -p "$p" @127.0.0.1 +short route.v6pod.test AAAA | wc -l)
  [ "$n" = 16 ] || { echo "port $p: route answers $n AAAA, want 16"; exit 1; }
done

TCK=$(getconf CLK_TCK)
cputicks() { awk '{print $14+$15}' "/proc/$1/stat"; }

# throughput PID PORT QFILE -> "qps share"
throughput() {
  local pid=$1 port=$2 q=$3 c0 c1 t0 t1 out qps
  c0=$(cputicks "$pid"); t0=$(date +%s.%N)
  out=$(taskset -c 0 dnsperf -s 127.0.0.1 -p "$port" -d "$q" -e -l "$DUR" -c "$CLIENTS" -q "$OUTSTANDING" 2>&1)
  c1=$(cputicks "$pid"); t1=$(date +%s.%N)
  qps=$(awk '/Queries per second/{print $4}' <<<"$out")
  lost=$(awk '/Queries lost/{print $4}' <<<"$out")
  awk -v q="$qps" -v c0="$c0" -v c1="$c1" -v t0="$t0" -v t1="$t1" -v tck="$TCK" -v lost="$lost" \
    'BEGIN{share=(c1-c0)/tck/(t1-t0); printf "%.0f %.3f %s\n", q, share, lost}'
}

# p99 PID PORT QFILE -> "p99_us cpu_us_per_query" at P99_QPS: the p99
# latency, and the server CPU time per answered query at that fixed load
# (a per-core comparison at equal load, where neither server is saturated).
p99() {
  local pid=$1 c0 c1 lat n
  c0=$(cputicks "$pid")
  taskset -c 0 dnsperf -s 127.0.0.1 -p "$2" -d "$3" -e -l "$P99_DUR" -Q "$P99_QPS" -c "$CLIENTS" -q "$OUTSTANDING" -v 2>/dev/null |
    awk '/^> /{print $NF}' | sort -g > "$W/lat.txt"
  c1=$(cputicks "$pid")
  n=$(wc -l < "$W/lat.txt")
  lat=$(awk '{a[NR]=$1} END{if(NR==0){print "n/a"; exit} i=int(NR*0.99); if(i<1)i=1; printf "%.0f\n", a[i]*1e6}' "$W/lat.txt")
  awk -v lat="$lat" -v n="$n" -v c0="$c0" -v c1="$c1" -v tck="$TCK" 'BEGIN{ printf "%s %.2f\n", lat, (n>0 ? (c1-c0)/tck/n*1e6 : 0) }'
}

declare -A R
for set in route names; do
  for srv in razor knot; do
    if [ $srv = razor ]; then pid=$RPID port=$RPORT; else pid=$KPID port=$KPORT; fi
    R[$srv,$set,core]=0
    for run in $(seq 1 "$RUNS"); do
      echo "razor bench: $srv, $set queries: throughput run $run ($DUR s) ..." >&2
      read -r qps share lost < <(throughput "$pid" "$port" "$W/q-$set.txt")
      core=$(awk -v q="$qps" -v s="$share" 'BEGIN{ if (s>0) printf "%.0f", q/s; else print 0 }')
      if [ "$core" -gt "${R[$srv,$set,core]}" ]; then
        R[$srv,$set,qps]=$qps; R[$srv,$set,share]=$share; R[$srv,$set,lost]=$lost; R[$srv,$set,core]=$core
      fi
    done
    echo "razor bench: $srv, $set queries: p99 at $P99_QPS qps ..." >&2
    read -r R[$srv,$set,p99] R[$srv,$set,cpuq] < <(p99 "$pid" "$port" "$W/q-$set.txt")
  done
done

echo
echo "razor vs Knot DNS $("$KNOTD" --version | awk '{print $NF}') — dnsperf on core 0, server on core 1, EDNS on; route = 16 A + 16 AAAA; best of $RUNS x ${DUR}s"
printf '%-7s %-6s %10s %8s %12s %10s %16s %8s\n' set server qps cpu qps/core p99_us cpu_us/q@fixed lost
for set in route names; do
  for srv in razor knot; do
    printf '%-7s %-6s %10s %8s %12s %10s %16s %8s\n' "$set" "$srv" "${R[$srv,$set,qps]}" "${R[$srv,$set,share]}" \
      "${R[$srv,$set,core]}" "${R[$srv,$set,p99]}" "${R[$srv,$set,cpuq]}" "${R[$srv,$set,lost]}"
  done
done
echo "(p99 and cpu_us/q at a fixed $P99_QPS qps)"
echo
for set in route names; do
  awk -v set="$set" -v rq="${R[razor,$set,core]}" -v kq="${R[knot,$set,core]}" -v rp="${R[razor,$set,p99]}" -v kp="${R[knot,$set,p99]}" \
    -v rc="${R[razor,$set,cpuq]}" -v kc="${R[knot,$set,cpuq]}" \
    'BEGIN{ printf "ratio %-6s razor/knot: qps per core %.2f   p99 %s   cpu per query at fixed load %s (below 1: razor cheaper)\n", set, (kq>0?rq/kq:0), (kp>0&&rp!="n/a"?sprintf("%.2f", rp/kp):"n/a"), (kc>0?sprintf("%.2f", rc/kc):"n/a") }'
done
