# tandem's build and test entry points. `make test` is the whole suite (what .ci/run runs).
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo none)
DATE    ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
OUT     ?= bin/tandem
GO      ?= go
# The release build: static, reproducible paths, version stamped. The Dockerfile runs this target.
LDFLAGS  = -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.date=$(DATE)

.PHONY: build release test test-short lint bench
build:
	$(GO) build -o $(OUT) .

release:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(OUT) .

# Every test: the root module with the race detector, then the manifest checks in deploy/.
test:
	$(GO) test -race -count=1 -timeout 20m ./...
	@if [ -f deploy/go.mod ]; then cd deploy && $(GO) test -count=1 ./...; fi

test-short:
	$(GO) test -short -count=1 ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi
	$(GO) vet ./...
	staticcheck ./...

# Every benchmark in order (figures printed, nothing asserted); BENCH="http jobs" picks some.
bench:
	bash bench/run.sh $(BENCH)
