# Benchmarks: `make bench` prints a table and writes bench-results/*.json; `make bench-smoke`
# runs every stage for a few seconds and is part of `make test`, so the harness never rots.

GHZ_VERSION := v0.120.0
GHZ := .tools/bin/ghz

$(GHZ):
	GOBIN=$(CURDIR)/.tools/bin GOFLAGS=-mod=mod go install github.com/bojand/ghz/cmd/ghz@$(GHZ_VERSION)

.PHONY: bench bench-smoke
bench: $(STAMP) $(GHZ) ## benchmarks: a table, and JSON in bench-results/ (BENCH_ARGS="...")
	$(PY) bench/run.py --ghz $(GHZ) $(BENCH_ARGS)

bench-smoke: $(STAMP) $(GHZ) ## every benchmark stage for a few seconds
	$(PY) bench/run.py --ghz $(GHZ) --smoke --out build/bench-smoke

TEST_TARGETS += bench-smoke
