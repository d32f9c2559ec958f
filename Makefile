SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

GO ?= go
BIN_DIR := _output/bin
# honnef.co/go/tools release that supports Go 1.26.
STATICCHECK_VERSION ?= v0.8.2
# Packages whose tests start a containerd daemon; excluded from `make unit`.
INTEGRATION_PKGS := /integration /internal/testctrd

.DEFAULT_GOAL := build
.PHONY: build image containerd docker-cli node-deps kubelet e2e-deps test e2e unit race lint demo bench bench-go clean

## containerd: build the pinned containerd into _output/bin (skipped when present)
containerd:
	hack/install-containerd.sh

## docker-cli: a docker CLI for the tests of `imgprune serve` into _output/bin
## (the one on PATH, else the client out of Debian's package)
docker-cli:
	hack/install-docker-cli.sh

## node-deps: runc, containerd's runc shim, crictl and a registry for the
## Kubernetes-node tests (containerd with CRI) into _output/e2e/bin (kept
## once built)
node-deps:
	hack/install-node.sh

## kubelet: a kubelet (k8s.io/kubernetes from the module proxy, in a
## throwaway module) into _output/kubelet for the node tests (kept once built)
kubelet:
	hack/install-kubelet.sh

## e2e-deps: node-deps and dockerd for `make e2e` into _output/e2e/bin
## (kept once built; dockerd takes minutes)
e2e-deps:
	hack/install-e2e.sh

## build: build imgprune and the demo's helpers into _output/bin
build:
	$(GO) build -o $(BIN_DIR)/imgprune ./cmd/imgprune
	$(GO) build -o $(BIN_DIR)/genimages ./hack/genimages
	$(GO) build -o $(BIN_DIR)/mkcontainer ./hack/mkcontainer

## image: imgprune's container image, an OCI archive of a static binary
## (no Docker needed), into _output/imgprune-image.tar; IMAGE names it
IMAGE ?= ghcr.io/imgprune/imgprune:latest
image:
	CGO_ENABLED=0 $(GO) build -trimpath -o _output/image/imgprune ./cmd/imgprune
	$(GO) run ./hack/mkimage -binary _output/image/imgprune -name $(IMAGE) \
		-version "$$(git describe --always --dirty 2>/dev/null || echo unknown)" -o _output/imgprune-image.tar

## test: all tests, including those against a private containerd (needs root).
## -p 1: packages that start daemons run one at a time (2-core machines).
## The integration tests run on the native snapshotter, then on overlayfs,
## then with containerd's own collection schedule (the test daemon's
## collects by itself at most every ~5 s otherwise).
test: containerd docker-cli
	$(GO) test -p 1 -count=1 ./...
	IMGPRUNE_TEST_SNAPSHOTTER=overlayfs $(GO) test -count=1 ./integration/
	IMGPRUNE_GC=default $(GO) test -count=1 ./integration/

## e2e: the docker CLI against a real Docker Engine (containerd image store,
## private containerd), straight and through `imgprune serve --upstream`;
## then a Kubernetes node (containerd with its CRI plugin, crictl, a local
## registry, a standalone kubelet) pruned as the kubelet keeps images (needs
## root)
e2e: containerd docker-cli e2e-deps kubelet
	$(GO) test -p 1 -tags e2e -count=1 ./e2e/...

## unit: fast tests of the packages that need no containerd daemon; no
## examples (daemon/server's harness starts one)
unit:
	pkgs="$$($(GO) list ./... | { grep -v $(foreach p,$(INTEGRATION_PKGS),-e '$(p)\(/\|$$\)') || true; })"; \
	if [[ -n "$$pkgs" ]]; then $(GO) test -short -count=1 -run '^(Test|Fuzz)' $$pkgs; fi

## race: the unit packages, and the integration tests that run writers
## side by side (prunes, loads, removals, the lock), under the race detector
RACE_INTEGRATION := TestLoadsBesidePrunes|TestTwoPrunesStartedTogether|TestPruneInterruptedWithDeletionsInFlight|TestPruneLooksAgainBeforeContentGoes|TestRemoveWhilePruneRuns|TestServeStopsAPruneCleanly|TestPruneRefusesConcurrentPrune|TestPruneLockIsSharedBetweenServices
race: containerd
	pkgs="$$($(GO) list ./... | { grep -v $(foreach p,$(INTEGRATION_PKGS),-e '$(p)\(/\|$$\)') || true; })"; \
	if [[ -n "$$pkgs" ]]; then $(GO) test -race -short -count=1 -run '^(Test|Fuzz)' $$pkgs; fi
	$(GO) test -race -count=1 -run '^($(RACE_INTEGRATION))$$' ./integration/

## lint: gofmt, go vet and staticcheck
lint:
	@unformatted="$$(git ls-files -z --cached --others --exclude-standard -- '*.go' | xargs -0 -r gofmt -l)"; \
	if [[ -n "$$unformatted" ]]; then \
		echo "gofmt needed for:"; echo "$$unformatted"; exit 1; \
	fi
	$(GO) vet -tags e2e ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) -tags e2e ./...

## demo: run hack/demo.sh against a private containerd
demo: containerd build
	bash hack/demo.sh

## bench: seed stores into a private containerd and time imgprune against
## the floor and the per-name pattern, on a Kubernetes node's store against
## crictl rmi --prune, and on a Docker Engine's store (kind docker: dockerd of
## e2e-deps, the docker CLI) against docker image prune -a; writes
## bench/RESULTS.md (needs root). The Engine's store is measured at 1,000
## images; BENCH_FLAGS='-names 1000,3000 -kinds docker' adds 3,000 (its seeding
## and docker's prune take minutes) and rewrites only the file's Engine section.
## BENCH_FLAGS=-huge adds the 100,000-name dry run.
BENCH_FLAGS ?=
bench: containerd node-deps e2e-deps docker-cli build
	$(GO) run ./bench $(BENCH_FLAGS)

## bench-go: the Go benchmarks of the packages
bench-go: containerd
	$(GO) test -p 1 -run '^$$' -bench . ./...

clean:
	rm -rf _output
