# A loopback cluster: PostgreSQL, Redis, three replicas and HAProxy (deploy/haproxy/haproxy.cfg)
# as the L7 gRPC balancer, driven by ghz and a streaming client (ops/cluster.py). `make cluster`
# prints the table recorded in docs/cluster.md; `make cluster-smoke` is part of `make test`.

.PHONY: cluster cluster-smoke haproxy
haproxy:
	@if ! command -v haproxy >/dev/null 2>&1 && ! test -x /usr/sbin/haproxy; then \
	  echo "installing HAProxy from Debian's packages"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null; \
	fi

cluster: $(STAMP) services haproxy $(GHZ) ## three replicas behind HAProxy on loopback, driven by ghz
	$(PY) ops/cluster.py --ghz $(GHZ) --out build/cluster $(CLUSTER_ARGS)

cluster-smoke: $(STAMP) services haproxy $(GHZ) ## a short cluster run (in make test)
	$(PY) ops/cluster.py --ghz $(GHZ) --smoke --out build/cluster-smoke

TEST_TARGETS += cluster-smoke
