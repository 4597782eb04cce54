# v6pod: `make run` starts a small pod on loopback; `make test` sets up the
# machine (scripts/deps.sh) and runs every test with the real services.

GO        ?= go
FUZZTIME  ?= 5s
BINARIES  := $(notdir $(wildcard cmd/*))
export PATH := $(PATH):$(HOME)/.cache/v6pod/bin

.PHONY: all build deps test unit vet fuzz bench run lab-up lab-down lab-test clean

all: build

build:
	@mkdir -p bin
	$(GO) build -trimpath -o bin/ ./cmd/... ./lab/appserver

deps:
	./scripts/deps.sh

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: the files above need formatting"; exit 1; }

# Every test, with the real Redis, Consul, BIRD/gobgpd, kdig/dig. Tests that
# need root (namespaces, TUN) skip without it; CI runs as root.
test: deps vet
	$(GO) test -count=1 -timeout 25m ./...

# Unit tests only: no set-up, services skipped when missing.
unit:
	$(GO) test -short ./...

# Each fuzz target for FUZZTIME.
fuzz:
	./scripts/fuzz.sh $(FUZZTIME)

# Each component against the peer a user would pick instead (not in CI).
bench: deps build
	./scripts/bench.sh

run: build
	./scripts/deps.sh --packages-only
	./scripts/run.sh

# The namespace lab (root): a whole pod on one machine.
lab-up: deps build
	$(GO) run ./lab/cmd/lab up

lab-down:
	$(GO) run ./lab/cmd/lab down

lab-test: deps build
	$(GO) test -tags lab -count=1 -v -timeout 12m ./lab

clean:
	rm -rf bin
