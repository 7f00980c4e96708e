# The chaos suite: two replicas on a throwaway PostgreSQL and Redis under a bounded Generate load,
# then kill -9 of a replica and of a worker, SIGSTOP past the lease, Redis and PostgreSQL restarts
# and provider faults; the invariants are checked after each and printed as a table (ops/chaos.py).
# `make chaos` is the full run; `make chaos-smoke` (about a minute) is part of `make test`.

.PHONY: chaos chaos-smoke ops-lint
chaos: $(STAMP) services ## the chaos suite: two replicas under load through kills, pauses and backend restarts
	$(PY) ops/chaos.py --out build/chaos $(CHAOS_ARGS)

chaos-smoke: $(STAMP) services ## a short chaos run (in make test)
	$(PY) ops/chaos.py --smoke --out build/chaos-smoke

# The harness in ops/ is linted and type-checked (strict) like the server.
ops-lint: $(STAMP)
	$(VENV)/bin/ruff check ops
	MYPYPATH=server:ops $(VENV)/bin/mypy --strict --explicit-package-bases ops

lint: ops-lint

TEST_TARGETS += chaos-smoke
