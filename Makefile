# weft's build. Every target runs with nothing but Go and the kernel; the root-only tests
# create network namespaces and skip themselves when run without root.

GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/weftnet/weft/internal/version.Version=$(VERSION)
BIN     := bin

# Packages whose tests need root: they name nstest.RequireRoot or make namespaces.
ROOT_PKGS = $(shell grep -rlE --include='*_test.go' 'nstest\.(RequireRoot|New)|e2e\.Require' . \
	| xargs -r -n1 dirname | sort -u)

.PHONY: help build test test-unit test-root lint demo clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

build: ## build weftd and weftctl into bin/, static, without cgo
	CGO_ENABLED=0 $(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

test: lint test-unit test-root ## unit tests, then the root-only netns tests

test-unit: ## tests that need no root (a real etcd in process, no namespaces)
	$(GO) test -short -count=1 ./...

test-root: ## the netns tests; run as root
	@if [ "$$(id -u)" != 0 ]; then echo "test-root: not root, netns tests skipped"; exit 0; fi; \
	if [ -n "$(strip $(ROOT_PKGS))" ]; then \
		$(GO) test -count=1 -p 1 -timeout 15m $(ROOT_PKGS); \
	fi

lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then \
		echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

demo: build ## 3 hosts, VXLAN VNI 2000, pods on each, ping matrix, leases; cleans up
	@if [ "$$(id -u)" != 0 ]; then \
		echo "make demo: needs root, for network namespaces; run: sudo make demo" >&2; exit 1; fi
	$(BIN)/weftctl demo

clean: ## remove build output
	rm -rf $(BIN)
