# modelplane: build, run, test, lint, bench. See README.md.
export GOTOOLCHAIN := go1.27.3
export CGO_CFLAGS := -Wno-deprecated-declarations

GO            ?= go
BIN           := bin/modelplane
WORKFLOWCHECK := go.temporal.io/sdk/contrib/tools/workflowcheck@v0.6.0

.PHONY: build run test lint bench

build:
	$(GO) build -o $(BIN) ./cmd/modelplane

# The whole stack on its embedded defaults.
run: build
	./$(BIN) dev

test:
	$(GO) test -count=1 -timeout 14m ./...

lint:
	$(GO) vet ./...
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	$(GO) run $(WORKFLOWCHECK) ./workflows/...

bench:
	bench/run
