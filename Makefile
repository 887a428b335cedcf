# Image URL to use all building/pushing image targets
IMG ?= ghcr.io/puqcloud/puq-user-operator:latest
YEAR ?= $(shell date +%Y)

# Setting SHELL to bash allows bash commands to be executed by recipes.
SHELL = /usr/bin/env bash -o pipefail
.SHELLFLAGS = -ec

CONTAINER_TOOL ?= docker

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Display this help.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: controller-gen ## Generate ClusterRole, CustomResourceDefinition and ValidatingWebhookConfiguration objects.
	"$(CONTROLLER_GEN)" rbac:roleName=manager-role crd webhook paths="./..." output:crd:artifacts:config=config/crd/bases

.PHONY: generate
generate: controller-gen ## Generate DeepCopy, DeepCopyInto and DeepCopyObject implementations.
	"$(CONTROLLER_GEN)" object:headerFile="hack/boilerplate.go.txt",year=$(YEAR) paths="./..."

.PHONY: fmt
fmt: ## Run go fmt against code.
	go fmt ./...

.PHONY: vet
vet: ## Run go vet against code.
	go vet ./...

.PHONY: test
test: manifests generate fmt vet control-plane test-deps chart-test-deps ## Run all tests against a real kube-apiserver, etcd and MariaDB.
	KUBEBUILDER_ASSETS="$(K8S_BIN)" go test ./... -count=1 -timeout 25m

.PHONY: test-faults
test-faults: manifests generate fmt vet control-plane test-deps ## The fault suite at full size (slow): kills, outages and restarts of the real parts; see docs/reliability.md.
	mkdir -p "$(LOCALBIN)"
	KUBEBUILDER_ASSETS="$(K8S_BIN)" go test ./test/faults -count=1 -timeout 90m -v -args -faults.full 2>&1 | \
		tee "$(LOCALBIN)/faults-full.log"

.PHONY: bench
bench: build control-plane test-deps ## Benchmarks against the real binary (BENCH_ARGS=-quick for small sizes); writes bin/bench/results.json.
	go run ./test/bench $(BENCH_ARGS)

.PHONY: lint
lint: golangci-lint ## Run golangci-lint.
	"$(GOLANGCI_LINT)" run

.PHONY: lint-fix
lint-fix: golangci-lint ## Run golangci-lint and apply its fixes.
	"$(GOLANGCI_LINT)" run --fix

##@ Build

.PHONY: build
build: manifests generate fmt vet ## Build the manager binary.
	go build -o bin/manager ./cmd
	go build -o bin/kubectl-puq ./cmd/kubectl-puq

.PHONY: dev
dev: build control-plane ## Run it all locally: apiserver, etcd, CRDs, the manager on an embedded SQLite panel, the samples.
	go run ./hack/dev

.PHONY: run
run: manifests generate fmt vet ## Run the manager from your host against the current kubeconfig (flags in ARGS).
	go run ./cmd $(ARGS)

.PHONY: docker-build
docker-build: ## Build the manager image.
	$(CONTAINER_TOOL) build -t ${IMG} .

.PHONY: docker-push
docker-push: ## Push the manager image.
	$(CONTAINER_TOOL) push ${IMG}

.PHONY: build-installer
build-installer: manifests generate kustomize ## Generate a consolidated YAML with CRDs and deployment.
	mkdir -p dist
	cd config/manager && "$(KUSTOMIZE)" edit set image controller=${IMG}
	"$(KUSTOMIZE)" build config/default > dist/install.yaml

.PHONY: helm-chart
helm-chart: manifests kubebuilder ## Regenerate the Helm chart dist/chart from config/default and hack/helm (never edit dist/chart).
	go run ./hack/helmchart -kubebuilder "$(KUBEBUILDER)" -out dist/chart

##@ Deployment

ifndef ignore-not-found
  ignore-not-found = false
endif

.PHONY: install
install: manifests kustomize ## Install the CRDs into the cluster of the current kubeconfig.
	"$(KUSTOMIZE)" build config/crd | "$(KUBECTL)" apply --server-side -f -

.PHONY: uninstall
uninstall: manifests kustomize ## Uninstall the CRDs. Call with ignore-not-found=true to ignore missing objects.
	"$(KUSTOMIZE)" build config/crd | "$(KUBECTL)" delete --ignore-not-found=$(ignore-not-found) -f -

## What deploy and undeploy build: config/default, or config/namespaced for a manager that watches
## only the namespaces listed in config/namespaced/namespaces.yaml.
DEPLOY_CONFIG ?= config/default

.PHONY: deploy
deploy: manifests kustomize ## Deploy the operator to the cluster of the current kubeconfig (DEPLOY_CONFIG=config/namespaced for --namespace).
	cd config/manager && "$(KUSTOMIZE)" edit set image controller=${IMG}
	"$(KUSTOMIZE)" build $(DEPLOY_CONFIG) | "$(KUBECTL)" apply --server-side -f -

.PHONY: undeploy
undeploy: kustomize ## Undeploy the operator. Call with ignore-not-found=true to ignore missing objects.
	"$(KUSTOMIZE)" build $(DEPLOY_CONFIG) | "$(KUBECTL)" delete --ignore-not-found=$(ignore-not-found) -f -

##@ Dependencies

LOCALBIN ?= $(shell pwd)/bin
$(LOCALBIN):
	mkdir -p "$(LOCALBIN)"

## The local control plane (kube-apiserver, etcd, kubectl), built from source; versions in hack/control-plane.env.
K8S_VERSION := $(shell sed -n 's/^KUBERNETES_VERSION=//p' hack/control-plane.env)
K8S_BIN ?= $(LOCALBIN)/k8s/$(K8S_VERSION)
KUBECTL ?= $(K8S_BIN)/kubectl

KUSTOMIZE ?= $(LOCALBIN)/kustomize
CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen
GOLANGCI_LINT = $(LOCALBIN)/golangci-lint
HELM ?= $(LOCALBIN)/helm
KUBEBUILDER ?= $(LOCALBIN)/kubebuilder
## The CRDs of cert-manager and prometheus-operator that the chart's tests dry-run against.
CHART_CRDS ?= $(LOCALBIN)/chart-crds

KUSTOMIZE_VERSION ?= v5.8.1
CONTROLLER_TOOLS_VERSION ?= v0.22.0
GOLANGCI_LINT_VERSION ?= v2.13.1
HELM_VERSION ?= v3.22.0
KUBEBUILDER_VERSION ?= v4.16.0
CERT_MANAGER_VERSION ?= v1.21.2
PROMETHEUS_OPERATOR_VERSION ?= v0.85.0

.PHONY: control-plane
control-plane: ## Build (or reuse) kube-apiserver, etcd and kubectl under bin/k8s/<version>.
	@hack/build-control-plane.sh "$(K8S_BIN)" >/dev/null

.PHONY: test-deps
test-deps: ## Check (and as root, install) MariaDB, php-cli and oathtool for the tests.
	@hack/test-deps.sh

.PHONY: chart-test-deps
chart-test-deps: helm kubebuilder ## Helm, kubebuilder and the pinned cert-manager and prometheus-operator CRDs for test/deploy.
	@hack/chart-crds.sh "$(CHART_CRDS)" "$(CERT_MANAGER_VERSION)" "$(PROMETHEUS_OPERATOR_VERSION)"

.PHONY: helm
helm: $(HELM) ## Download helm locally if necessary.
$(HELM): $(LOCALBIN)
	$(call go-install-tool,$(HELM),helm.sh/helm/v3/cmd/helm,$(HELM_VERSION))

.PHONY: kubebuilder
kubebuilder: $(KUBEBUILDER) ## Download kubebuilder locally if necessary (it generates the Helm chart).
$(KUBEBUILDER): $(LOCALBIN)
	$(call go-install-tool,$(KUBEBUILDER),sigs.k8s.io/kubebuilder/v4,$(KUBEBUILDER_VERSION))

.PHONY: kustomize
kustomize: $(KUSTOMIZE) ## Download kustomize locally if necessary.
$(KUSTOMIZE): $(LOCALBIN)
	$(call go-install-tool,$(KUSTOMIZE),sigs.k8s.io/kustomize/kustomize/v5,$(KUSTOMIZE_VERSION))

.PHONY: controller-gen
controller-gen: $(CONTROLLER_GEN) ## Download controller-gen locally if necessary.
$(CONTROLLER_GEN): $(LOCALBIN)
	$(call go-install-tool,$(CONTROLLER_GEN),sigs.k8s.io/controller-tools/cmd/controller-gen,$(CONTROLLER_TOOLS_VERSION))

.PHONY: golangci-lint
golangci-lint: $(GOLANGCI_LINT) ## Download golangci-lint locally if necessary.
$(GOLANGCI_LINT): $(LOCALBIN)
	$(call go-install-tool,$(GOLANGCI_LINT),github.com/golangci/golangci-lint/v2/cmd/golangci-lint,$(GOLANGCI_LINT_VERSION))

# go-install-tool will 'go install' any package with custom target and name of binary, if it doesn't exist
# $1 - target path with name of binary
# $2 - package url which can be installed
# $3 - specific version of package
define go-install-tool
@[ -f "$(1)-$(3)" ] && [ "$$(readlink -- "$(1)" 2>/dev/null)" = "$(1)-$(3)" ] || { \
set -e; \
package=$(2)@$(3) ;\
echo "Downloading $${package}" ;\
rm -f "$(1)" ;\
GOBIN="$(LOCALBIN)" go install $${package} ;\
mv "$(LOCALBIN)/$$(basename "$(1)")" "$(1)-$(3)" ;\
} ;\
ln -sf "$$(realpath "$(1)-$(3)")" "$(1)"
endef
