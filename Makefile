# faultline — a newcomer needs two commands: `make bench` and `make test`.
SHELL := /bin/bash
GO ?= go
BIN := bin/faultline
PROVIDER ?= auto
RUNS := reports/runs
export PATH := /usr/local/go/bin:$(PATH)

.PHONY: all deps need-deps images need-images build lint test bench chaos gate baseline clean

all: build

# Install redis-server, PostgreSQL, busybox-static, chromium… (as root; prints
# the command otherwise).
deps:
	bash scripts/deps.sh

# Runs deps only when a server binary is missing.
need-deps:
	@if ! command -v redis-server >/dev/null || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || \
		! /usr/bin/python3 -c 'import redis, psycopg2' >/dev/null 2>&1; then \
		$(MAKE) deps; fi

# Registry-free docker images built from the host's binaries.
images:
	bash scripts/build-images.sh

# Builds the images when a docker engine answers (once: the script is a fast
# no-op while the host binaries are unchanged), so `--provider auto` runs on
# testcontainers and the docker-provider tests run; without an engine the
# local-process provider is the fallback and this prints why.
need-images:
	@if docker info >/dev/null 2>&1; then bash scripts/build-images.sh; \
	else echo "images: no docker engine answers; runs use local processes (docker-provider tests skip)"; fi

build:
	$(GO) build -o $(BIN) ./cmd/faultline

# go vet, a macOS build and a Windows build and vet (Linux-only and
# Unix-only calls stay behind build tags; on Windows the local provider and
# exec: holder pauses are refused) and
# staticcheck (a pinned version, fetched through the Go module
# proxy and cached: about 1-2 min the first time, seconds after).
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
lint:
	$(GO) vet ./...
	GOOS=darwin $(GO) build ./...
	GOOS=windows $(GO) build ./... && GOOS=windows $(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

test: need-deps need-images lint
	$(GO) test -count=1 -timeout 18m ./...

# The default scenario matrix (about 90 s): every lock implementation on the
# counter workload, then unfenced vs fenced under a holder pause longer than
# the lease. Each run writes reports/runs/<run-id>/{results.json,history.jsonl,report.html}.
bench: need-deps need-images build
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

# CI regression gate on a short fixed scenario: seeded, counter workload,
# redis-setnx and redis-fenced, 5 s each (1 s warm-up) = 10 s of load, local
# servers (no docker timing in the figures), direct path. Every run
# calibrates on the same Redis node (Go client PING and redis-benchmark,
# before each phase and after the last); `faultline gate` then compares
# latency ÷ PING p50 and throughput × PING p50 against bench/baseline.json,
# so a machine that is uniformly slower or faster than the one that made the
# baseline does not fail it, and violations are judged by chaos/expected.md.
#
# Tolerances (GATE_TOL), measured on the shared 2-core dev machine at load
# average 6-9 (other builds running): across 8 runs of this scenario the
# normalised cycle p99 moved up to +55% (redis-setnx) and +102% (redis-fenced,
# once) from the baseline, normalised throughput down to -32%. Single-client
# PING p50 does not follow CPU contention (it even drops when the machine is
# busier), so normalisation removes the machine's speed, not the neighbours'
# noise. Hence: p99 may grow 90% and throughput drop 45%, so that a 2x p99
# or a halved throughput still fails; and a failed gate re-measures once
# before failing (a real regression fails both runs, a noise spike rarely
# twice). Exit 2 (bad input) is never retried. Only the headline kind
# (cycle) is gated: the sub-operations' p99 (one round trip, ~0.5 ms) tripled
# between identical runs at load 13 — one scheduler time slice; a regression
# in any of them shows in the cycle, which contains them all. pg-lease is left out: its
# p99 varied 12-39 ms (x3) between identical runs. On a quiet dedicated
# runner tighten GATE_TOL (the CLI default is p99=+25%,throughput=-15%).
GATE_RUN  := $(RUNS)/gate
GATE_TOL  ?= p99=+90%,throughput=-45%
GATE_ARGS := --provider local --path direct --workload counter --impl redis-setnx,redis-fenced \
	--clients 4 --keys 4 --ttl 500ms --duration 5s --warmup 1s --seed 1
GATE_CMD   = $(BIN) gate --baseline bench/baseline.json --tolerance '$(GATE_TOL)' --ops cycle $(GATE_RUN)/results.json
gate: need-deps build
	$(BIN) run $(GATE_ARGS) --out $(GATE_RUN)
	@$(GATE_CMD); rc=$$?; \
	if [ $$rc = 1 ]; then \
		echo "gate: failed once; re-measuring to tell a regression from machine noise"; \
		$(BIN) run $(GATE_ARGS) --out $(GATE_RUN) && $(GATE_CMD); rc=$$?; \
	fi; exit $$rc

# Refreshes the committed baseline (note the machine's load average in the
# commit message: uptime).
baseline: need-deps build
	uptime
	$(BIN) run $(GATE_ARGS) --out $(RUNS)/baseline
	cp $(RUNS)/baseline/results.json bench/baseline.json

# The README's Benchmarks ratio table, measured now (PERF_ROUNDS rounds of
# about 2.5 minutes, default 3, each figure the median of the rounds with
# their range; not part of make test): locks against redsync and redislock and in PINGs, transactions
# against single-db, faultline's raw PING/SET throughput against
# redis-benchmark at 1 and 50 clients. Prints the table and rewrites the
# README block between the perf markers (commit it with `uptime` in the
# message, as for make baseline).
perf: need-deps build
	@command -v jq >/dev/null || $(MAKE) deps
	bash scripts/perf.sh $(BIN) $(RUNS)/perf README.md

clean:
	rm -rf bin $(RUNS)
	-$(GO) run ./cmd/faultline gc
