# Client stubs for Python, Go, TypeScript and Java, all generated from protos/ with pinned tools.
# `make clients` regenerates the checked-in stubs; `make test` fails when they are out of date and
# runs each language's end-to-end test against a live server.

PROTOC_GEN_GO_VERSION := v1.36.11
PROTOC_GEN_GO_GRPC_VERSION := v1.5.1
TOOLS_BIN := $(CURDIR)/.tools/bin
GO_PLUGINS := .tools/bin/protoc-gen-go .tools/bin/protoc-gen-go-grpc
TS_DIR := clients/typescript
TS_STAMP := $(TS_DIR)/node_modules/.installed
SWITCHBOARD_BIN := $(CURDIR)/$(VENV)/bin/switchboard

.tools/bin/protoc-gen-go:
	GOBIN=$(TOOLS_BIN) go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)

.tools/bin/protoc-gen-go-grpc:
	GOBIN=$(TOOLS_BIN) go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

$(TS_STAMP): $(TS_DIR)/package-lock.json
	cd $(TS_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

.PHONY: clients clients-tools check-clients clients-test buf-breaking
clients-tools: $(STAMP) $(GO_PLUGINS) $(TS_STAMP) ## the pinned code generators the clients need

clients: clients-tools protos ## regenerate the Go, TypeScript, Java and Python client stubs
	$(PY) clients/generate.py

check-clients: clients-tools
	$(PY) clients/generate.py --check

clients-test: clients-tools ## each client's end-to-end test against a live server
	cd clients/go && SWITCHBOARD_BIN=$(SWITCHBOARD_BIN) go test ./...
	cd $(TS_DIR) && SWITCHBOARD_BIN=$(SWITCHBOARD_BIN) npm test --silent
	cd clients/java && mvn -B --no-transfer-progress test -Dswitchboard.bin=$(SWITCHBOARD_BIN) | grep -E "Tests run:|BUILD|ERROR"; test $${PIPESTATUS[0]} -eq 0

# Breaking-change check of the contract: against main from another branch; on main, against the
# previous commit (each change to main is checked as it lands).
buf-breaking: $(STAMP)
	@branch=$$(git rev-parse --abbrev-ref HEAD 2>/dev/null); \
	if [ "$$branch" != "main" ] && git rev-parse --verify -q main >/dev/null; then against=main; \
	elif git rev-parse --verify -q HEAD~1 >/dev/null; then against=HEAD~1; \
	else echo "buf breaking: no earlier commit to compare with; skipped"; exit 0; fi; \
	echo "buf breaking --against .git#ref=$$against"; \
	$(VENV)/bin/buf breaking --against ".git#ref=$$against"

TEST_TARGETS += check-clients clients-test buf-breaking

# grpcurl, for trying the API from a shell (server reflection is on, so no proto files are needed).
GRPCURL_VERSION := v1.9.3
.tools/bin/grpcurl:
	GOBIN=$(TOOLS_BIN) go install github.com/fullstorydev/grpcurl/cmd/grpcurl@$(GRPCURL_VERSION)

.PHONY: grpcurl
grpcurl: .tools/bin/grpcurl ## install grpcurl into .tools/bin
