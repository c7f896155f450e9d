# banditstream — every target works on a fresh clone; tools the targets need
# are installed into .local/ (ignored by git) at pinned versions.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

LOCAL      := $(CURDIR)/.local
TOOLS      := $(LOCAL)/bin
STACK      := deploy/local/stack.sh
GO         ?= go
PKGS       := ./...

GOLANGCI_LINT_VERSION := v2.15.0
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_DEB_VERSION    := 3.21.12-3+deb12u1
BENCHSTAT_VERSION     := v0.0.0-20260908200009-22c9c6c9d4da
HELM_VERSION          := v4.3.2
# The Prometheus Operator release whose ServiceMonitor CRD the chart's
# ServiceMonitors are validated against.
PROMETHEUS_OPERATOR_VERSION := v0.85.0

GOLANGCI_LINT := $(TOOLS)/golangci-lint-$(GOLANGCI_LINT_VERSION)
PROTOC_GEN_GO := $(TOOLS)/protoc-gen-go-$(PROTOC_GEN_GO_VERSION)
BENCHSTAT     := $(TOOLS)/benchstat-$(BENCHSTAT_VERSION)
HELM          := $(TOOLS)/helm-$(HELM_VERSION)
CRDS          := $(LOCAL)/crds/servicemonitors-$(PROMETHEUS_OPERATOR_VERSION).yaml

TEST_TIMEOUT ?= 25m
FUZZTIME     ?= 10s
BENCHCOUNT   ?= 6

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# ------------------------------------------------------------------ stack --

.PHONY: up down status logs
up: ## install, start and health-check Kafka, Cassandra and Redis on loopback
	@$(STACK) up

down: ## stop the local stack (only the processes it started)
	@$(STACK) down

status: ## one line per local service
	@$(STACK) status

logs: ## tail of each server log (S=kafka to choose one)
	@$(STACK) logs $(S)

# ------------------------------------------------------------------- demo --

.PHONY: demo
DEMO_SECONDS ?= 60
DEMO_KEEP    ?= 0
# DEMO_SCENARIO=drift or new-items runs the pipeline twice on a changing
# catalogue (without and with decay; with the global and the per-context
# prior) and compares their regret in the picture.
DEMO_SCENARIO  ?= steady
DEMO_HALF_LIFE ?= 10s
# deploy/local/demo.sh builds the binaries, starts bandit-ingest (with its
# sweeper) and bandit-score on this run's own topics, runs bandit-sim for
# DEMO_SECONDS, prints the summary and the picture's path, and stops what it
# started (DEMO_KEEP=1 leaves them running).
demo: up ## the whole pipeline with simulated users: live status, summary, picture
	@echo
	@echo "== end-to-end health (Kafka produce+fetch, Redis write, CQL query) =="
	@$(GO) build -o $(LOCAL)/bin/ ./cmd/bandit-stack
	@env $$($(STACK) env) $(LOCAL)/bin/bandit-stack check all
	@echo
	@DEMO_SECONDS=$(DEMO_SECONDS) DEMO_KEEP=$(DEMO_KEEP) DEMO_SCENARIO=$(DEMO_SCENARIO) DEMO_HALF_LIFE=$(DEMO_HALF_LIFE) GO=$(GO) deploy/local/demo.sh

# ------------------------------------------------------------------- test --

.PHONY: chaos
# The fault scenarios of deploy/local/chaos at full size (make test runs
# them small): a table per scenario of events sent, counted, lost and
# counted twice, and requests sent and answered; also in .local/chaos.md,
# the full log in .local/chaos.log.
chaos: up ## fault scenarios at full size on the local stack, with a table of what was lost or counted twice
	@set -a; eval "$$($(STACK) env)"; set +a; \
	  BANDITSTREAM_CHAOS=full BANDITSTREAM_FAULT_TESTS=1 BANDITSTREAM_CHAOS_REPORT=$(LOCAL)/chaos.md \
	  $(GO) test -count=1 -v -timeout 60m -run '^TestFaultChaos' ./deploy/local/chaos/ 2>&1 | tee $(LOCAL)/chaos.log | \
	  { grep --line-buffered -E '^(--- |ok|FAIL|panic:|\|)|^\s+\S+_test\.go:[0-9]+: .' || true; }

.PHONY: clients
# Clients of other ecosystems that tests drive (confluent-kafka's
# serializers, kubernetes-validate), pinned in
# deploy/local/python-requirements.txt.
clients: $(HELM) $(CRDS) ## install the test clients: the Python ones into .local/python, helm and the ServiceMonitor CRD into .local
	@deploy/local/python.sh

.PHONY: chart
# The Helm chart's checks alone (make test runs them): helm lint, helm
# template with the default values and with deploy/helm/banditstream/ci/*,
# each rendering validated against the Kubernetes API's schemas and the
# ServiceMonitor CRD, and its Deployments against the binaries' flags.
chart: clients ## lint, render and validate the Helm chart in deploy/helm
	$(GO) test -count=1 -run 'Helm' ./cmd/internal/deploytest/ ./cmd/bandit-ingest/ ./cmd/bandit-score/

.PHONY: test test-unit build vet fuzz
# deploy/local/run-tests.sh runs the fault tests (TestFault*: they stop
# shared services) first, one package at a time, then every other test with
# the race detector (the sampler's statistical tests without it), and ends
# with "N passed, N failed".
test: up clients lint vet ## the whole suite: lint, unit, integration and fault tests on the real stack
	@TEST_TIMEOUT=$(TEST_TIMEOUT) GO=$(GO) deploy/local/run-tests.sh

test-unit: ## tests that need no running service (integration tests skip)
	$(GO) test -count=1 -short $(PKGS)

vet:
	$(GO) vet $(PKGS)

build: ## build every binary into bin/
	$(GO) build -o bin/ ./cmd/...

fuzz: ## run every fuzz target for FUZZTIME each
	@for pkg in $$($(GO) list $(PKGS)); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "== $$pkg $$f"; \
	    $(GO) test $$pkg -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME); \
	  done; \
	done

# ------------------------------------------------------------- benchmarks --

.PHONY: bench bench-micro
# make bench: the micro-benchmarks, then the end-to-end load runs of ingest
# and scoring on the local stack, then deploy/local/bench-report.sh puts
# them together in .local/bench/report.md (with the charts and the CPU and
# allocation profiles next to it) and prints the headline figures.
bench: bench-micro bench-ingest bench-score ## micro-benchmarks and load runs: a report with charts and profiles in .local/bench/
	@deploy/local/bench-report.sh $(LOCAL)/bench

# Each pass runs every benchmark once, BENCHCOUNT passes in a row: on a
# shared machine whose speed drifts, a baseline and its contender are then
# measured in the same stretches of time.
bench-micro: $(BENCHSTAT) ## micro-benchmarks against their baselines, summarised by benchstat
	@mkdir -p $(LOCAL)/bench
	@$(GO) test -c -o $(LOCAL)/bench/sampler.test ./sampler/
	@$(GO) test -c -o $(LOCAL)/bench/consumers.test ./consumers/
	@rm -f $(LOCAL)/bench/sampler.txt $(LOCAL)/bench/scorer.txt
	@for i in $$(seq $(BENCHCOUNT)); do \
	  (cd sampler && $(LOCAL)/bench/sampler.test -test.run '^$$' -test.bench . -test.benchmem) >> $(LOCAL)/bench/sampler.txt; \
	  (cd consumers && $(LOCAL)/bench/consumers.test -test.run '^$$' -test.bench 'BenchmarkScoreCore' -test.benchmem) >> $(LOCAL)/bench/scorer.txt; \
	done
	$(BENCHSTAT) -col /impl $(LOCAL)/bench/sampler.txt | tee $(LOCAL)/bench/sampler.stat
	$(BENCHSTAT) -col /impl $(LOCAL)/bench/scorer.txt | tee $(LOCAL)/bench/scorer.stat

LOAD_EVENTS ?= 1000000
# The previous release, built from its commit (git worktree into .local) and
# measured by make bench-ingest in the same run as this build.
BASELINE     ?= c08f229
BASELINE_BIN := $(LOCAL)/baseline/$(BASELINE)

.PHONY: bench-ingest
bench-ingest: up $(BASELINE_BIN)/bandit-ingest ## end-to-end ingest load run on the local stack, against the BASELINE build; report in .local/bench/ingest.md
	@mkdir -p $(LOCAL)/bench
	@rm -f $(LOCAL)/bench/ingest.* $(LOCAL)/bench/ingest-*
	@set -a; eval "$$($(STACK) env)"; set +a; \
	  BANDITSTREAM_LOAD_EVENTS=$(LOAD_EVENTS) BANDITSTREAM_LOAD_REPORT=$(LOCAL)/bench/ingest.md \
	  BANDITSTREAM_LOAD_BASELINE_INGEST=$(BASELINE_BIN)/bandit-ingest BANDITSTREAM_LOAD_BASELINE_NAME=$(BASELINE) \
	  $(GO) test -count=1 -run '^TestLoadIngestEndToEnd$$' -timeout 30m ./consumers/
	@cat $(LOCAL)/bench/ingest.md

LOAD_SCALE   ?= 1,2
SCALE_RATES  ?= 4000,8000,12000
SCALE_SECONDS ?= 15

.PHONY: bench-scale
# On both topologies, one after the other: the ingest load run, its backlog
# also consumed by LOAD_SCALE ingest processes, then the scoring load run at
# SCALE_RATES with one and with two bandit-score processes. Where the limit
# moves from one Redis to three masters, and from one scorer to two.
bench-scale: ## ingest with 1 and 2 processes and scoring with 1 and 2 processes, on one Redis and on the cluster; reports in .local/bench/scale-*.md
	@mkdir -p $(LOCAL)/bench
	@set -e; for topo in single cluster; do \
	  TOPOLOGY=$$topo $(STACK) up; \
	  ( set -a; eval "$$(TOPOLOGY=$$topo $(STACK) env)"; set +a; \
	    BANDITSTREAM_LOAD_EVENTS=$(LOAD_EVENTS) BANDITSTREAM_LOAD_SCALE=$(LOAD_SCALE) BANDITSTREAM_LOAD_REPORT=$(LOCAL)/bench/scale-$$topo.md \
	    $(GO) test -count=1 -run '^TestLoadIngestEndToEnd$$' -timeout 40m ./consumers/ >$(LOCAL)/bench/scale-$$topo.log 2>&1 ) || \
	    { tail -n 40 $(LOCAL)/bench/scale-$$topo.log; exit 1; }; \
	  echo "== $$topo"; cat $(LOCAL)/bench/scale-$$topo.md.headline; \
	  for n in 1 2; do \
	    ( set -a; eval "$$(TOPOLOGY=$$topo $(STACK) env)"; set +a; \
	      BANDITSTREAM_LOAD_RATES=$(SCALE_RATES) BANDITSTREAM_LOAD_SECONDS=$(SCALE_SECONDS) BANDITSTREAM_LOAD_SCORERS=$$n \
	      BANDITSTREAM_LOAD_REPORT=$(LOCAL)/bench/scale-score-$$topo-$$n.md \
	      $(GO) test -count=1 -run '^TestLoadScoreEndToEnd$$' -timeout 30m ./consumers/ >$(LOCAL)/bench/scale-score-$$topo-$$n.log 2>&1 ) || \
	      { tail -n 40 $(LOCAL)/bench/scale-score-$$topo-$$n.log; exit 1; }; \
	    cat $(LOCAL)/bench/scale-score-$$topo-$$n.md.headline; \
	  done; \
	done

# make bench-score offers these rates in turn and stops at the first one
# not answered in full: the report names the knee.
LOAD_RATES   ?= 2000,4000,6000,8000,10000,12000,16000,20000
LOAD_SECONDS ?= 20
LOAD_ARMS    ?= 1000000

.PHONY: bench-score
bench-score: up $(BASELINE_BIN)/bandit-ingest ## end-to-end scoring load run on the local stack up to its knee, against the BASELINE build; report in .local/bench/score.md
	@mkdir -p $(LOCAL)/bench
	@rm -f $(LOCAL)/bench/score.* $(LOCAL)/bench/score-*
	@set -a; eval "$$($(STACK) env)"; set +a; \
	  BANDITSTREAM_LOAD_RATES=$(LOAD_RATES) BANDITSTREAM_LOAD_SECONDS=$(LOAD_SECONDS) BANDITSTREAM_LOAD_ARMS=$(LOAD_ARMS) \
	  BANDITSTREAM_LOAD_UNTIL_SATURATED=1 BANDITSTREAM_LOAD_REPORT=$(LOCAL)/bench/score.md \
	  BANDITSTREAM_LOAD_BASELINE_SCORE=$(BASELINE_BIN)/bandit-score BANDITSTREAM_LOAD_BASELINE_NAME=$(BASELINE) \
	  $(GO) test -count=1 -run '^TestLoadScoreEndToEnd$$' -timeout 30m ./consumers/
	@cat $(LOCAL)/bench/score.md

# ------------------------------------------------------------- code style --

.PHONY: fmt lint
fmt: ## gofmt every file
	gofmt -s -w $$(git ls-files '*.go')

lint: $(GOLANGCI_LINT) ## golangci-lint with the linters in .golangci.yml
	$(GOLANGCI_LINT) run $(PKGS)

# ---------------------------------------------------------- generated code --

.PHONY: generate
generate: $(PROTOC_GEN_GO) ## regenerate schemas/pb from the .proto files
	@if ! protoc --version 2>/dev/null | grep -q 'libprotoc 3.21.12'; then \
	  echo "installing protoc $(PROTOC_DEB_VERSION) from Debian's packages"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    protobuf-compiler=$(PROTOC_DEB_VERSION) >/dev/null; \
	fi
	ln -sf $(PROTOC_GEN_GO) $(TOOLS)/protoc-gen-go
	PATH=$(TOOLS):$$PATH protoc -I schemas/proto --go_out=. \
	  --go_opt=module=github.com/banditstream/banditstream \
	  schemas/proto/banditstream/v1/banditstream.proto

# ------------------------------------------------------------------ tools --

$(GOLANGCI_LINT):
	@mkdir -p $(TOOLS)
	@echo "installing golangci-lint $(GOLANGCI_LINT_VERSION)"
	GOBIN=$(TOOLS) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	mv $(TOOLS)/golangci-lint $@

$(PROTOC_GEN_GO):
	@mkdir -p $(TOOLS)
	GOBIN=$(TOOLS) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	mv $(TOOLS)/protoc-gen-go $@

# The baseline's binaries: its commit checked out into a worktree under
# .local, built, and the worktree removed.
$(BASELINE_BIN)/bandit-ingest:
	@mkdir -p $(BASELINE_BIN)
	@rm -rf $(BASELINE_BIN)/src && git worktree prune
	git worktree add --detach $(BASELINE_BIN)/src $(BASELINE)
	cd $(BASELINE_BIN)/src && $(GO) build -o $(BASELINE_BIN)/ ./cmd/bandit-ingest ./cmd/bandit-score
	git worktree remove --force $(BASELINE_BIN)/src

$(HELM):
	@mkdir -p $(TOOLS)
	@echo "installing helm $(HELM_VERSION)"
	GOBIN=$(TOOLS) $(GO) install helm.sh/helm/v4/cmd/helm@$(HELM_VERSION)
	mv $(TOOLS)/helm $@

$(CRDS):
	@mkdir -p $(dir $@)
	@dir=$$(cd / && $(GO) mod download -json github.com/prometheus-operator/prometheus-operator@$(PROMETHEUS_OPERATOR_VERSION) | \
	  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p'); \
	  cp "$$dir/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml" $@.tmp && chmod 644 $@.tmp && mv $@.tmp $@

$(BENCHSTAT):
	@mkdir -p $(TOOLS)
	GOBIN=$(TOOLS) $(GO) install golang.org/x/perf/cmd/benchstat@$(BENCHSTAT_VERSION)
	mv $(TOOLS)/benchstat $@
