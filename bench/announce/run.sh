#!/bin/bash
# Withdrawal latency, side by side in one run: the time from "this VIP must
# go" to the ToR's RIB losing it (a gobgpd ToR on 127.0.N.x, watched through
# its gRPC event stream).
#   announce: edge/announce's speaker, SetReady(false)
#   bird:     BIRD 2 announcing the VIP from a static protocol, withdrawn the
#             way a health script does it: `birdc disable` (process spawn
#             included, as the script pays it)
# Prints p50/p90 of both and the ratios bird/announce (higher = we are
# faster).
#
# Usage: bench/announce/run.sh [iterations]   (default 200)
set -euo pipefail
cd "$(dirname "$0")/../.."
n="${1:-200}"
for b in go gobgpd bird birdc; do
	command -v "$b" >/dev/null || [ -x "/usr/sbin/$b" ] || { echo "bench/announce: $b is not installed" >&2; exit 1; }
done
out=$(V6POD_REQUIRE_SERVICES=1 go test -run XXX -bench 'WithdrawLatency' -benchtime "${n}x" -count 1 ./edge/announce)
echo "$out" | grep -E '^Benchmark' >&2
awk '
/^BenchmarkWithdrawLatency\/announce/ { for (i = 1; i <= NF; i++) { if ($(i+1) == "withdraw-p50-ms") a50 = $i; if ($(i+1) == "withdraw-p90-ms") a90 = $i } }
/^BenchmarkWithdrawLatency\/bird/     { for (i = 1; i <= NF; i++) { if ($(i+1) == "withdraw-p50-ms") b50 = $i; if ($(i+1) == "withdraw-p90-ms") b90 = $i } }
END {
	if (a50 == "" || b50 == "") { print "bench/announce: missing results" > "/dev/stderr"; exit 1 }
	printf "%-34s %10s %10s\n", "withdrawal latency (ms)", "p50", "p90"
	printf "%-34s %10.3f %10.3f\n", "v6pod announce (SetReady)", a50, a90
	printf "%-34s %10.3f %10.3f\n", "BIRD 2 (birdc disable static)", b50, b90
	printf "%-34s %10.1fx %9.1fx\n", "ratio bird/announce", b50 / a50, b90 / a90
}' <<<"$out"
