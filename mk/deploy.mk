# Packaging (deploy/): the container image, the Helm chart and the HAProxy config. `make test` runs
# tests/test_deploy.py, which cross-checks them against `switchboard serve --help` using the
# committed rendering deploy/helm/rendered.yaml. helm builds from source (a Go module: 16 minutes
# measured on a busy 2-core machine), so `helm lint` and the check that the rendering is current are a separate
# target, `make helm-check`; `make helm-render` rewrites the rendering after a chart change.

HELM_VERSION := v3.19.5
HELM := .tools/bin/helm
CHART := deploy/helm/switchboard
# The rendering the tests read: the seed catalog as the ConfigMap's config.
HELM_TEMPLATE = $(HELM) template sb $(CHART) --set-file config=server/switchboard/config/default.yaml

$(HELM):
	GOBIN=$(CURDIR)/.tools/bin GOFLAGS=-mod=mod go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

.PHONY: helm-render helm-check
helm-render: $(HELM) ## rewrite deploy/helm/rendered.yaml from the chart
	$(HELM_TEMPLATE) > deploy/helm/rendered.yaml

helm-check: $(HELM) ## helm lint the chart and check the rendering is current (builds helm)
	$(HELM) lint --strict $(CHART) --set-file config=server/switchboard/config/default.yaml
	@$(HELM_TEMPLATE) | diff -u deploy/helm/rendered.yaml - \
	  || { echo "deploy/helm/rendered.yaml is stale; run 'make helm-render'"; exit 1; }
	@echo "chart lints and deploy/helm/rendered.yaml is current"

# The deploy test runs haproxy -c on the balancer's config.
pytest: haproxy
