# Switchboard's commands. `make run` serves; `make test` installs what the tests need and runs them.
# Parts owned by one area (clients, services, bench) live in mk/*.mk and add themselves to
# TEST_TARGETS, so this file stays short.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# Two install stamps: what serving needs (`make run`), and that plus the development tools and the
# Python client (`make test`, `make lint`, `make protos`, `make venv`).
RUN_STAMP := $(VENV)/.installed-run
STAMP := $(VENV)/.installed
PROTO_FILES := $(wildcard protos/switchboard/v1/*.proto)
STUB_DIR := server/switchboard/v1

# Extra targets `make test` runs after the Python suite; fragments in mk/ append to it.
TEST_TARGETS :=

.PHONY: run test venv protos check-protos lint pytest help
.DEFAULT_GOAL := help

# Every target a user needs carries a `## what it does` comment on its rule line, here or in
# mk/*.mk; `make help` lists them in file order.
help: ## list the targets
	@grep -hE '^[a-zA-Z_.-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([^:]+):.*## (.*)$$/make \1\t\2/' \
	  | awk -F '\t' '{ printf "%-18s %s\n", $$1, $$2 }'

$(RUN_STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --disable-pip-version-check -e .
	touch $@

$(STAMP): $(RUN_STAMP) pyproject.toml clients/python/pyproject.toml
	$(PIP) install --quiet --disable-pip-version-check -e '.[dev]' -e clients/python
	touch $@

venv: $(STAMP) ## create .venv with the development tools and the Python client

run: $(RUN_STAMP) ## install what serving needs and serve on 127.0.0.1:50051 (flags: ARGS="...")
	$(VENV)/bin/switchboard serve --auto-create-accounts $(ARGS)

protos: $(STAMP) ## regenerate the Python stubs from protos/
	$(PY) -m grpc_tools.protoc -I protos --python_out=server --grpc_python_out=server $(PROTO_FILES)

# Fails when the checked-in stubs differ from what the protos generate.
check-protos: $(STAMP) ## fail when the checked-in Python stubs differ from protos/
	@tmp=$$(mktemp -d); \
	$(PY) -m grpc_tools.protoc -I protos --python_out=$$tmp --grpc_python_out=$$tmp $(PROTO_FILES); \
	for f in $$tmp/switchboard/v1/*; do \
	  cmp -s $$f $(STUB_DIR)/$$(basename $$f) || { echo "stale stub: $(STUB_DIR)/$$(basename $$f); run 'make protos'"; rm -rf $$tmp; exit 1; }; \
	done; rm -rf $$tmp; echo "python stubs match protos/"

lint: $(STAMP) ## buf lint, ruff and mypy
	$(VENV)/bin/buf lint
	$(VENV)/bin/ruff check server tests bench clients
	$(VENV)/bin/mypy

pytest: $(STAMP) ## the Python tests only (PYTEST_ARGS="...")
	$(VENV)/bin/pytest $(PYTEST_ARGS)

-include mk/*.mk

test: $(STAMP) check-protos lint pytest $(TEST_TARGETS) ## install everything the tests need and run every test
	@echo "make test: all green"
