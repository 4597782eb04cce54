#!/usr/bin/env bash
# deps.sh sets up a fresh Debian 12 machine (as root) for v6pod's tests,
# benchmarks and lab. It is idempotent: a second run installs nothing new.
#
# - Debian packages, installed behind a policy-rc.d that keeps their daemons
#   from starting (knot, nsd, unbound, nginx, haproxy, redis, bird would
#   otherwise fight over ports; tests start what they need themselves).
#   --packages-only stops there (what `make run` needs).
# - The Consul binary, built from the Go module proxy into a cache folder
#   outside the repository (V6POD_CACHE, default ~/.cache/v6pod) and reused.
set -euo pipefail

say() { printf 'deps: %s\n' "$*" >&2; }
die() { say "FAILED: $*"; exit 1; }

PACKAGES=(
  redis-server bird2 gobgpd
  knot-dnsutils bind9-dnsutils dnsperf
  wrk nghttp2-client iproute2 iperf3
  knot unbound haproxy nginx-light tayga
  curl ca-certificates procps psmisc util-linux
)
CONSUL_VERSION=1.20.2
CACHE=${V6POD_CACHE:-$HOME/.cache/v6pod}
CONSUL_BIN=$CACHE/bin/consul

install_packages() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    say "debian packages: all ${#PACKAGES[@]} present"
    return
  fi
  [ "$(id -u)" -eq 0 ] || die "installing ${missing[*]} needs root"
  say "debian packages: installing ${missing[*]}"
  # Keep daemons from starting on install; restore whatever was there before.
  local rc=/usr/sbin/policy-rc.d saved=""
  if [ -e "$rc" ]; then saved=$(mktemp); cp -p "$rc" "$saved"; fi
  printf '#!/bin/sh\nexit 101\n' >"$rc"
  chmod 755 "$rc"
  local ok=0
  export DEBIAN_FRONTEND=noninteractive
  if apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then ok=1; fi
  if [ -n "$saved" ]; then mv "$saved" "$rc"; else rm -f "$rc"; fi
  [ $ok -eq 1 ] || die "apt-get install ${missing[*]}"
  # Some packages start their daemon anyway through systemd-less fallbacks;
  # stop any that did, so tests own every port.
  for d in redis-server bird gobgpd knotd unbound haproxy nginx tayga; do
    pkill -x "$d" 2>/dev/null || true
  done
  say "debian packages: installed ${missing[*]}"
}

build_consul() {
  # Read the whole output first: `consul version | grep -q` under pipefail
  # fails whenever grep exits before consul has written everything.
  local have=""
  [ -x "$CONSUL_BIN" ] && have=$("$CONSUL_BIN" version 2>/dev/null || true)
  if [[ $have == *"Consul v$CONSUL_VERSION"* ]]; then
    say "consul: cached at $CONSUL_BIN"
    return
  fi
  command -v go >/dev/null || die "consul: go is not on PATH"
  say "consul: building v$CONSUL_VERSION from the Go module proxy (a few minutes)"
  local tmp
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  mkdir -p "$CACHE/bin"
  (
    cd "$tmp"
    export GONOSUMDB=github.com/hashicorp/consul GOFLAGS=-mod=mod
    go mod init consulbuild >/dev/null 2>&1
    go get "github.com/hashicorp/consul@v$CONSUL_VERSION" >/dev/null 2>&1 || go get "github.com/hashicorp/consul@v$CONSUL_VERSION"
    go build -trimpath -o "$CONSUL_BIN.tmp" github.com/hashicorp/consul
  ) || die "consul: build failed"
  mv "$CONSUL_BIN.tmp" "$CONSUL_BIN"
  have=$("$CONSUL_BIN" version) || die "consul: the built binary does not run"
  say "consul: ${have%%$'\n'*}"
  say "consul: built into $CONSUL_BIN"
}

packages_only=0
for arg in "$@"; do
  case $arg in
    --packages-only) packages_only=1 ;;
    *) die "unknown argument $arg (want --packages-only)" ;;
  esac
done

install_packages
[ $packages_only -eq 1 ] && { say "done (packages only)"; exit 0; }
build_consul
# Tests find consul through V6POD_CONSUL or PATH; make both work.
if [ "$(id -u)" -eq 0 ] && [ ! -e /usr/local/bin/consul ]; then
  ln -sf "$CONSUL_BIN" /usr/local/bin/consul
fi
say "done"
