# Benchmarks: `make bench` prints a table and writes bench-results/*.json; `make bench-smoke`
# runs every stage for a few seconds and is part of `make test`, so the harness never rots.

GHZ_VERSION := v0.120.0
GHZ := .tools/bin/ghz

$(GHZ):
	GOBIN=$(CURDIR)/.tools/bin GOFLAGS=-mod=mod go install github.com/bojand/ghz/cmd/ghz@$(GHZ_VERSION)

# The fake upstream and the load client (bench/go), rebuilt when their sources change.
BENCH_GO := .tools/bin/upstream .tools/bin/loadgen
BENCH_GO_SRC := $(shell find bench/go clients/go/switchboardv1 -name '*.go' 2>/dev/null) bench/go/go.mod bench/go/go.sum

$(BENCH_GO) &: $(BENCH_GO_SRC)
	mkdir -p .tools/bin
	cd bench/go && go build -o $(CURDIR)/.tools/bin/ ./cmd/upstream ./cmd/loadgen

.PHONY: bench bench-smoke
bench: $(STAMP) $(GHZ) $(BENCH_GO) ## benchmarks: a table, and JSON in bench-results/ (BENCH_ARGS="...")
	$(PY) bench/run.py --ghz $(GHZ) --tools .tools/bin $(BENCH_ARGS)

bench-smoke: $(STAMP) $(GHZ) $(BENCH_GO) ## every benchmark stage for a few seconds
	$(PY) bench/run.py --ghz $(GHZ) --tools .tools/bin --smoke --out build/bench-smoke

TEST_TARGETS += bench-smoke

# Other gateways, each in an environment of its own, measured against the same upstream by the
# same client (`make bench-peers`; not part of `make test`).
TENSORZERO_VERSION := 2026.6.0
LITELLM_VERSION := 1.108.7
TZ_ENV := .tools/tensorzero
LITELLM_ENV := .tools/litellm

$(TZ_ENV)/.installed:
	$(PYTHON) -m venv $(TZ_ENV)
	$(TZ_ENV)/bin/pip install --quiet 'tensorzero==$(TENSORZERO_VERSION)'
	touch $@

$(LITELLM_ENV)/.installed:
	$(PYTHON) -m venv $(LITELLM_ENV)
	$(LITELLM_ENV)/bin/pip install --quiet 'litellm[proxy]==$(LITELLM_VERSION)'
	touch $@

.PHONY: bench-peers
bench-peers: $(STAMP) $(BENCH_GO) $(TZ_ENV)/.installed $(LITELLM_ENV)/.installed ## the same load against TensorZero and LiteLLM, side by side
	$(PY) bench/peers.py --tools .tools/bin --tensorzero $(TZ_ENV)/bin/python --litellm $(LITELLM_ENV)/bin/litellm $(BENCH_ARGS)
