#!/usr/bin/env bash
# fuzz.sh runs every native Go fuzz target of the module for a bounded time
# each (default 5s), one after the other, and fails on the first crasher.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${1:-5s}
n=0
# Packages of the main module only (bench/ has modules of its own).
while IFS= read -r pkgdir; do
  for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$pkgdir"/*_test.go | sed 's/^func //' | sort -u); do
    echo "fuzz: ./$pkgdir $target ($fuzztime)"
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "./$pkgdir" >/tmp/v6pod-fuzz.log 2>&1 || {
      cat /tmp/v6pod-fuzz.log; echo "fuzz: $target in ./$pkgdir FAILED"; exit 1; }
    n=$((n+1))
  done
done < <(grep -rl --include='*_test.go' '^func Fuzz' . | grep -v '^./bench/' | xargs -n1 dirname | sed 's|^\./||' | sort -u)
echo "fuzz: $n targets passed"
