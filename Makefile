# faultline — a newcomer needs two commands: `make bench` and `make test`.
SHELL := /bin/bash
GO ?= go
BIN := bin/faultline
PROVIDER ?= auto
RUNS := reports/runs
export PATH := /usr/local/go/bin:$(PATH)

.PHONY: all deps need-deps images build test bench chaos gate baseline clean

all: build

# Install redis-server, PostgreSQL, busybox-static, chromium… (as root; prints
# the command otherwise).
deps:
	bash scripts/deps.sh

# Runs deps only when a server binary is missing.
need-deps:
	@if ! command -v redis-server >/dev/null || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then \
		$(MAKE) deps; fi

# Registry-free docker images built from the host's binaries.
images:
	bash scripts/build-images.sh

build:
	$(GO) build -o $(BIN) ./cmd/faultline

test: need-deps
	$(GO) vet ./...
	$(GO) test -timeout 18m ./...

# The default scenario matrix (about 90 s): every lock implementation on the
# counter workload, then unfenced vs fenced under a holder pause longer than
# the lease. Each run writes reports/runs/<run-id>/{results.json,history.jsonl,report.html}.
bench: need-deps build
	@if [ "$(PROVIDER)" = docker ]; then $(MAKE) images; fi
	$(BIN) run --provider $(PROVIDER) --workload counter \
		--impl redis-setnx,redis-fenced,redislock,redlock,redsync,pg-advisory,pg-lease \
		--clients 8 --keys 8 --ttl 500ms --duration 4s --warmup 1s
	$(BIN) run --provider $(PROVIDER) --workload fenced-counter \
		--impl redis-setnx,redis-fenced --clients 4 --keys 2 --ttl 500ms --duration 3s \
		--fault holder-pause:2xttl@1500ms
	@echo "reports: ls -dt $(RUNS)/*/report.html | head -2"; ls -dt $(RUNS)/*/report.html | head -2

# The Chaos suite: every (implementation, fault) pair against its expected verdict.
chaos: need-deps
	$(GO) test -run Chaos -count=1 -timeout 15m ./...

# CI regression gate on a short fixed scenario (reports/ fills in the details).
GATE_ARGS := --provider $(PROVIDER) --workload counter --impl redis-setnx,redis-fenced \
	--clients 4 --keys 4 --ttl 500ms --duration 4s --warmup 1s --seed 1
gate: need-deps build
	$(BIN) run $(GATE_ARGS) --out $(RUNS)/gate
	$(BIN) gate --baseline bench/baseline.json $(RUNS)/gate/results.json

baseline: need-deps build
	$(BIN) run $(GATE_ARGS) --out $(RUNS)/baseline
	cp $(RUNS)/baseline/results.json bench/baseline.json

clean:
	rm -rf bin $(RUNS)
	-$(GO) run ./cmd/faultline gc
