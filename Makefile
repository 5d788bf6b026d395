# Troupe — one binary, nothing else to install. `make help` lists the targets.
GO      ?= go
BIN     := bin/troupe
PKGS    := ./...
# protoc-gen-go is built from the module cache at the version go.mod pins.
PROTOC_GEN_GO := .bin/protoc-gen-go

.DEFAULT_GOAL := help

.PHONY: help build run test unit e2e bench bench-targets lint proto tidy clean prometheus promcheck

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z0-9-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build bin/troupe
	$(GO) build -o $(BIN) ./cmd/troupe

run: build ## start one node with dev defaults: ./troupe-data, API on 127.0.0.1:8080, example packs
	./$(BIN) agent --dev

test: lint promcheck ## vet, promtool checks of deploy/prometheus, then every test (race detector on), end-to-end tests included
	$(GO) test -race -count=1 -timeout 30m $(PKGS)

unit: ## every test except the end-to-end ones
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v /e2e)

e2e: ## only the end-to-end tests (they build and start real troupe processes)
	$(GO) test -count=1 -timeout 20m -v ./e2e/...

bench: build ## the standard benchmark suite: one node, 128 clients, 10s, 3 runs each with the machine's ceilings, and medians; JSON in bench-*.json
	for w in webhook-noop webhook-shell direct; do \
		./$(BIN) bench --workload $$w --nodes 1 --concurrency 128 --duration 10s --runs 3 --json bench-$$w.json || exit 1; \
	done

# One run per row of docs/performance.md's "Against the targets" table.
bench-targets: build ## every performance target of docs/performance.md, medians of 3 (~16 min); JSON in bench-targets-*.json
	set -e; b="./$(BIN) bench --runs 3"; \
	$$b --workload webhook-noop --json bench-targets-noop.json; \
	$$b --workload webhook-noop --duration 60s --json bench-targets-noop-60s.json; \
	$$b --workload webhook-noop --rate 5000 --concurrency 256 --json bench-targets-noop-5000.json; \
	$$b --workload webhook-shell --json bench-targets-shell.json; \
	$$b --workload webhook-python --json bench-targets-python.json; \
	$$b --workload webhook-noop --rate 10 --ceiling-duration 0 --json bench-targets-noop-light.json; \
	$$b --workload webhook-shell --rate 10 --ceiling-duration 0 --json bench-targets-shell-light.json; \
	$$b --workload webhook-noop --nodes 3 --ceiling-duration 0 --json bench-targets-3-nodes.json

lint: ## go vet
	$(GO) vet $(PKGS)

proto: $(PROTOC_GEN_GO) ## regenerate actors/protocol/*.pb.go and storage/internal/recordpb/*.pb.go (installs protoc from Debian when missing)
	@command -v protoc >/dev/null || (apt-get update -qq && apt-get install -y -qq protobuf-compiler)
	PATH="$(CURDIR)/.bin:$$PATH" protoc --go_out=. --go_opt=module=github.com/troupehq/troupe actors/protocol/*.proto storage/internal/recordpb/*.proto

$(PROTOC_GEN_GO): go.mod
	GOBIN="$(CURDIR)/.bin" $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go

# Debian's package starts its service where systemd runs; make installs the
# binaries only and leaves no Prometheus server running.
prometheus: ## install prometheus and promtool from Debian when missing (the e2e tests and promcheck use them)
	@if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus && \
		if [ -d /run/systemd/system ]; then systemctl stop prometheus || true; fi; \
	fi

promcheck: prometheus ## promtool: check deploy/prometheus's config and alert rules, and run the rules' unit tests
	promtool check config deploy/prometheus/prometheus.yml
	promtool check rules deploy/prometheus/alerts.yml
	promtool test rules deploy/prometheus/alerts_test.yml

tidy: ## go mod tidy
	$(GO) mod tidy

clean: ## remove build output and the dev data dir
	rm -rf bin .bin troupe-data
