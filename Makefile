# modelplane: build, run, test, lint, bench. See README.md.
export GOTOOLCHAIN := go1.27.3
export CGO_CFLAGS := -Wno-deprecated-declarations

GO            ?= go
BIN           := bin/modelplane
WORKFLOWCHECK := go.temporal.io/sdk/contrib/tools/workflowcheck@v0.6.0

.PHONY: build run test test-cluster deploy-check lint bench histories conformance fuzz

build:
	$(GO) build -o $(BIN) ./cmd/modelplane

# The whole stack on its embedded defaults.
run: build
	./$(BIN) dev

test: deploy-check
	$(GO) test -count=1 -timeout 14m ./...

# The cluster test (cluster/, build tag "cluster"): modelplane as separate processes (two
# APIs, gateways and workers, three agents) on the official Temporal server, a PostgreSQL and
# SeaweedFS of its own, with processes killed under load; it prints its summary at the end.
# The first run builds the Temporal server and SeaweedFS into the user's cache (minutes).
test-cluster:
	$(GO) test -tags cluster -count=1 -timeout 25m -v -run '^TestCluster$$' ./cluster

# The deployment artifacts under deploy/ (Compose file, Helm chart, systemd units), checked by
# docker compose itself and the libraries helm is built on. A module of its own (deploy/check),
# so that their dependencies stay out of modelplane's.
deploy-check:
	cd deploy/check && $(GO) test -count=1 -timeout 10m ./...

# The management API against Baseten's OpenAPI spec (e2e/testdata/baseten-openapi.json); the
# summary line and the differences are at the end of the output.
conformance:
	$(GO) test -count=1 -timeout 10m -v -run '^TestConformance' ./e2e

lint:
	$(GO) vet ./...
	cd deploy/check && $(GO) vet ./...
	$(GO) vet -tags cluster ./cluster
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	$(GO) run $(WORKFLOWCHECK) ./workflows/...

bench:
	bench/run

# Each fuzz target for FUZZTIME (go test -fuzz takes one target at a time). What a target
# finds is written under its package's testdata/fuzz/, where `make test` runs it again.
FUZZTIME ?= 30s
FUZZ_TARGETS := \
	./modelpkg:FuzzParseConfig \
	./modelpkg:FuzzConfigFromJSON \
	./modelpkg:FuzzExtract \
	./modelpkg:FuzzExtractEntries \
	./patch:FuzzNextApply \
	./patch:FuzzApplyFileSet \
	./patch:FuzzPointValidate \
	./api:FuzzReadBody \
	./api:FuzzReadPayload \
	./gateway:FuzzForwardAnswer \
	./gateway:FuzzWebsocketHandshake

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t#*:}; \
		echo "== $$name ($$pkg)"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

# The e2e tests that record the workflow histories workflows/replay_test.go replays, one
# file each: see "Workflow changes and replay" in docs/decisions.md.
HISTORY_TESTS := \
	TestLifecycle_PushActivateDeactivateDelete \
	TestAutoscaling_ScaleToZeroThenWakeOnRequest \
	TestPromotion_ToProductionThenStaging \
	TestPromotion_FromDevelopmentMakesANewDeployment \
	TestCanary_CancelAtHalfPutsAllTrafficBack \
	TestRolling_CancelHalfWayRestoresThePreviousDeployment \
	TestAsync_RequestToADeploymentAtZeroWakesItRetriesAndDeliversASignedWebhook \
	TestCleanup_TheScheduleRunsCleanupToTheEnd \
	TestRequirements_InstalledWhileBuildingReusedAndFailuresAreBuildFailed
empty :=
space := $(empty) $(empty)

# Re-records those histories from the current code, overwriting the files of the same names.
histories:
	MODELPLANE_RECORD_HISTORIES=$(CURDIR)/workflows/testdata/histories \
		$(GO) test -count=1 -timeout 14m -v -run '^($(subst $(space),|,$(strip $(HISTORY_TESTS))))$$' ./e2e
