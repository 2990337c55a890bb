# hostnet: see README.md. Most targets need root (network namespaces).
SHELL     := /bin/bash
GO        ?= go
BIN       := bin
STATICCHECK_VERSION := v0.8.2
GOBIN     := $(shell $(GO) env GOPATH)/bin

.PHONY: all build run try man install install-cni chaos test check lint unit e2e bench bench-attach bench-program bench-datapath clean

# The version the binaries report (hostnet --version, hostnetd --version,
# GET /version's Build) and the man pages carry.
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION) -X github.com/hostnet/hostnet/internal/cli.buildVersion=$(VERSION)

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

# Build and run the daemon with its embedded defaults (as root): socket
# /run/hostnet/hostnet.sock, state in /var/lib/hostnet, default network "nat".
# This programs the real host; `make try` does not.
run: build
	$(BIN)/hostnetd

# Try hostnet without touching the host (as root): hostnetd in a throwaway
# network namespace with a fake outside, and a shell there; everything goes
# when the shell exits (scripts/try.sh).
try: build
	HOSTNET_TRY_BIN=$(abspath $(BIN)) scripts/try.sh

# The man pages, generated from the command tree: hostnet(1) and one page
# per subcommand, hostnetd(8).
MAN_OUT ?= docs/man
man:
	$(GO) run ./internal/mangen -version '$(VERSION)' -o $(MAN_OUT)

# Install everything under DESTDIR and PREFIX (as root for the real thing):
# hostnet and hostnetd, the CNI plugin where runtimes look for it, the
# systemd unit, the man pages and the shell completions. Then:
#   systemctl daemon-reload && systemctl enable --now hostnetd
PREFIX           ?= /usr/local
BINDIR           ?= $(PREFIX)/bin
MANDIR           ?= $(PREFIX)/share/man
DATADIR          ?= $(PREFIX)/share
SYSTEMD_UNIT_DIR ?= $(PREFIX)/lib/systemd/system
CNI_BIN_DIR      ?= /opt/cni/bin
install: build
	$(MAKE) man MAN_OUT=$(BIN)/man
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(CNI_BIN_DIR) $(DESTDIR)$(SYSTEMD_UNIT_DIR) \
	  $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man8 \
	  $(DESTDIR)$(DATADIR)/bash-completion/completions $(DESTDIR)$(DATADIR)/zsh/site-functions \
	  $(DESTDIR)$(DATADIR)/fish/vendor_completions.d
	install -m 0755 $(BIN)/hostnet $(BIN)/hostnetd $(BIN)/hostnet-docker $(DESTDIR)$(BINDIR)/
	install -m 0755 $(BIN)/hostnet-cni $(DESTDIR)$(CNI_BIN_DIR)/
	sed 's|@BINDIR@|$(BINDIR)|g' packaging/hostnetd.service > $(DESTDIR)$(SYSTEMD_UNIT_DIR)/hostnetd.service
	chmod 0644 $(DESTDIR)$(SYSTEMD_UNIT_DIR)/hostnetd.service
	install -m 0644 $(BIN)/man/*.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 0644 $(BIN)/man/*.8 $(DESTDIR)$(MANDIR)/man8/
	$(BIN)/hostnet completion bash > $(DESTDIR)$(DATADIR)/bash-completion/completions/hostnet
	$(BIN)/hostnet completion zsh > $(DESTDIR)$(DATADIR)/zsh/site-functions/_hostnet
	$(BIN)/hostnet completion fish > $(DESTDIR)$(DATADIR)/fish/vendor_completions.d/hostnet.fish
	@echo "installed; start the daemon with: systemctl daemon-reload && systemctl enable --now hostnetd"

# Install the CNI plugin alone where container runtimes look for plugins.
install-cni:
	$(GO) build -o $(DESTDIR)$(CNI_BIN_DIR)/hostnet-cni ./cmd/hostnet-cni

# Everything CI runs: formatting, vet, staticcheck, the whole suite under the
# race detector (unit and end-to-end tests, which need root), then the leak
# check: no namespace, device, mount, nftables table or process of hostnet's is left
# that was not there before the suite started (a hostnetd of the host's own,
# leftovers of a crashed run are not the suite's). The suite's temporary
# files, namespaces included, live in a directory of its own, so that other
# runs going on at the same time are not judged either.
test: lint
	@set -e; run=$$(mktemp -d "$${TMPDIR:-/tmp}/hostnet-test.XXXXXX"); chmod 0755 "$$run"; \
	$(GO) run ./test/leakcheck -snapshot "$$run/before.json" -scope "$$run"; \
	status=0; TMPDIR="$$run" $(GO) test -race -count=1 ./... || status=$$?; \
	$(GO) run ./test/leakcheck -compare "$$run/before.json" -scope "$$run" || status=1; \
	if [ $$status = 0 ]; then rm -rf "$$run"; else echo "test files kept in $$run"; fi; \
	exit $$status

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@test -x $(GOBIN)/staticcheck || $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	$(GOBIN)/staticcheck ./...

unit:
	$(GO) test -count=1 $$($(GO) list ./... | grep -v /test/e2e)

e2e:
	$(GO) test -count=1 -v ./test/e2e/

# Every fuzz target (func FuzzX in a _test.go file), one after the other,
# each for FUZZTIME. A failing input is kept under the package's
# testdata/fuzz/FuzzX/ and fails the target; it then runs with the seeds.
# A bare "context deadline exceeded" with no failing input is Go's own race
# at the deadline (golang/go#75804, fixed in go1.27): that target runs again.
FUZZTIME ?= 10s
.PHONY: fuzz
fuzz:
	@set -e; for dir in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
	  list=$$($(GO) test -list '^Fuzz' $$dir); \
	  for t in $$(echo "$$list" | grep '^Fuzz'); do \
	    echo "fuzz $$dir $$t for $(FUZZTIME)"; \
	    for try in 1 2 3; do \
	      if out=$$($(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) $$dir 2>&1); then echo "$$out"; break; fi; \
	      echo "$$out"; \
	      if [ $$try != 3 ] && echo "$$out" | grep -q 'context deadline exceeded' && ! echo "$$out" | grep -q 'Failing input'; then \
	        echo "(no failing input: go1.26's coordinator race at the -fuzztime deadline, golang/go#75804; once more)"; continue; fi; \
	      exit 1; \
	    done; \
	  done; \
	done

# The black-box API fuzzer (test/fuzzapi): mutated HCN documents of every
# kind, interleaved with valid operations, against a daemon in throwaway
# namespaces that is restarted after every FUZZ_API_BATCH requests and then
# checked (starts without ERROR, in sync, a fresh endpoint reaches the
# outside, ports of deleted endpoints are free, no 5xx, nothing slow).
# Prints the counts and each poison found with the request that causes it;
# reproductions go to FUZZ_API_OUT. A short run by default; a long one:
#   make fuzz-api FUZZ_API_REQUESTS=20000 FUZZ_API_SEEDS=1,2,3,4
FUZZ_API_REQUESTS ?= 600
FUZZ_API_SEEDS    ?= 1
FUZZ_API_BATCH    ?= 150
.PHONY: fuzz-api
fuzz-api:
	FUZZ_API=1 FUZZ_API_REQUESTS=$(FUZZ_API_REQUESTS) FUZZ_API_SEEDS=$(FUZZ_API_SEEDS) FUZZ_API_BATCH=$(FUZZ_API_BATCH) \
	  $(GO) test -count=1 -timeout 0 -run '^TestFuzzAPI$$' -v ./test/fuzzapi/

# Create + attach latency against the kernel's floor (bare netlink), in
# throwaway namespaces: prints medians, p99 and ratios.
bench-attach:
	$(GO) run ./cmd/hostnet-bench attach -n 1000

# Programming 1,000 endpoints' policies and single changes at that scale
# (distinct ACLs, shared ACLs, and a tenth of the scale), against a full
# re-application.
bench-program:
	$(GO) run ./cmd/hostnet-bench program -n 1000

# Packets through a published port: request/response with 1 vs 10,000
# mappings, throughput through the port vs straight to the endpoint.
bench-datapath:
	$(GO) run ./cmd/hostnet-bench datapath -mappings 10000

# CNI ADD and DEL latency (200 containers one at a time) and 20 ADDs at once,
# hostnet-cni against the reference chain (bridge + host-local + portmap +
# firewall v1.10.0), in throwaway namespaces. The reference plugins shell out
# to iptables, which is installed here when missing.
.PHONY: bench-cni
bench-cni:
	command -v iptables >/dev/null || (apt-get update && apt-get install -y iptables)
	$(GO) run ./cmd/hostnet-bench cni -n 200 -concurrent 20

# The crash-safety chaos test, long: clients run random operations while
# hostnetd is killed with SIGKILL and restarted CHAOS_KILLS times; prints the
# counts of operations, kills and invariant violations.
CHAOS_KILLS ?= 300
chaos:
	set -o pipefail; HOSTNET_CHAOS_KILLS=$(CHAOS_KILLS) $(GO) test -count=1 -timeout 60m -run '^TestChaos$$' -v ./test/e2e/ | grep -E '^(chaos:|--- |ok|FAIL)|violation|after kill'

# The whole suite (see README "Performance"): one Markdown table of
# medians, spreads and ratios against baselines measured in the same run,
# the raw numbers in bench.json. Installs its peers when missing. QUICK=1
# for the everyday run (small counts, under two minutes).
BENCH_JSON ?= bench.json
bench:
	$(GO) run ./cmd/hostnet-bench all $(if $(QUICK),-quick) -json $(BENCH_JSON)

clean:
	rm -rf $(BIN)
