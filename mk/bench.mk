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
bench: $(STAMP) $(GHZ) $(BENCH_GO)
	$(PY) bench/run.py --ghz $(GHZ) --tools .tools/bin $(BENCH_ARGS)

bench-smoke: $(STAMP) $(GHZ) $(BENCH_GO)
	$(PY) bench/run.py --ghz $(GHZ) --tools .tools/bin --smoke --out build/bench-smoke

TEST_TARGETS += bench-smoke
