#!/usr/bin/env bash
# bench.sh runs each component's benchmark against the peer a user would
# pick instead (bench/<component>/run.sh), in one run, and prints the
# figures and ratios each prints. BENCH=razor,edge limits the set.
set -uo pipefail
cd "$(dirname "$0")/.."
failed=()
for script in bench/*/run.sh; do
  name=$(basename "$(dirname "$script")")
  if [ -n "${BENCH:-}" ] && [[ ",$BENCH," != *",$name,"* ]]; then continue; fi
  echo "=================== bench: $name"
  if ! "$script"; then failed+=("$name"); fi
done
if [ ${#failed[@]} -gt 0 ]; then echo "bench: failed: ${failed[*]}"; exit 1; fi
