# Real PostgreSQL and Redis servers for the ledger and limiter tests. The tests start their own
# throwaway instances on 127.0.0.1; this only makes sure the binaries are installed.

PG_BINDIR ?= $(firstword $(wildcard /usr/lib/postgresql/*/bin))

.PHONY: services
services: ## make sure PostgreSQL and Redis are installed (for the tests)
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  echo "installing PostgreSQL from Debian's packages"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	fi
	@if ! command -v redis-server >/dev/null 2>&1; then \
	  echo "installing Redis from Debian's packages"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	fi
	@ls /usr/lib/postgresql/*/bin/initdb && command -v redis-server

pytest: services
