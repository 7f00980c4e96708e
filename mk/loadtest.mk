# Load-testing a running deployment with ghz: `make loadtest TARGET=HOST:PORT`. Each ghz worker
# sends as its own account (load-<worker id>), so one account's concurrency limit does not refuse
# the run; the server must create accounts at first use (--auto-create-accounts) or be given
# LOADTEST_ARGS="--create-accounts PLAN --api-key KEY". bench/loadtest.py --help lists the options.

TARGET ?= 127.0.0.1:50051
LOADTEST_ARGS ?=

.PHONY: loadtest
loadtest: $(RUN_STAMP) $(GHZ) ## load-test a running server with ghz (TARGET=HOST:PORT)
	$(PY) bench/loadtest.py --ghz $(GHZ) --target $(TARGET) $(LOADTEST_ARGS)

# tests/test_loadtest.py and tests/test_readme.py run ghz, grpcurl and the TypeScript example.
pytest: $(GHZ) .tools/bin/grpcurl $(TS_STAMP)
