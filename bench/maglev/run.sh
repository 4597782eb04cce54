#!/bin/sh
# Compares v6pod's internal/maglev table builds with Cilium v1.10.0's
# pkg/maglev, side by side in one run, and prints the ratio.
# Usage: bench/maglev/run.sh [benchtime]   (default 2s)
set -eu
cd "$(dirname "$0")"
bt="${1:-2s}"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
go test -run '^$' -bench 'V6pod|Cilium' -benchtime "$bt" -count 1 . | tee "$out" >&2
awk '
/^Benchmark(V6pod|Cilium)\// {
	split($1, p, "/"); impl = p[1]; sub(/^Benchmark/, "", impl)
	key = p[2] "/" p[3]; sub(/-[0-9]+$/, "", key)
	ns[impl, key] = $3
	if (!(key in seen)) { seen[key] = 1; order[++n] = key }
}
END {
	printf "\n%-16s %14s %14s %8s\n", "table", "v6pod ns/op", "cilium ns/op", "ratio"
	for (i = 1; i <= n; i++) {
		k = order[i]; a = ns["V6pod", k]; c = ns["Cilium", k]
		r = (a > 0) ? c / a : 0
		printf "%-16s %14.0f %14.0f %7.1fx\n", k, a, c, r
	}
	print "ratio = cilium / v6pod (higher is better for v6pod); target >= 2x at M=65537, N=100 and 1000"
}' "$out"
