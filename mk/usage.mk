# GetUsage on an account with a million ledger entries: `make bench-usage` prints the time per
# grouping (BENCH_USAGE_ARGS="--postgres DSN" measures PostgreSQL instead of SQLite).

BENCH_USAGE_ARGS ?=

.PHONY: bench-usage
bench-usage: $(RUN_STAMP) ## time usage reports on an account with a million ledger entries
	$(PY) bench/usage.py $(BENCH_USAGE_ARGS)

# `make bench` measures usage reports too (after its own stages' prerequisites; about 80 s, most
# of it filling the ledger).
bench: bench-usage
