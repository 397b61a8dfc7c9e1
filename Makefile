# Authority sender-constraint host. `make run` and `make test` are the two
# commands a newcomer needs; see README.md.
GO        ?= go
BIN       := bin
HOST_BIN  := $(BIN)/authority-host
CONFIG    ?= examples/authority.yaml
# Guest plugins: every directory under plugins/ and examples/plugins/ whose
# package is `main` when built for wasip1.
PLUGIN_DIRS = $(shell GOOS=wasip1 GOARCH=wasm $(GO) list -f '{{if eq .Name "main"}}{{.Dir}}{{end}}' ./plugins/... ./examples/plugins/... 2>/dev/null)
BENCH     ?= .
BENCHTIME ?= 1s
FUZZTIME  ?= 30s
# Guests build reproducibly (no checkout path, no VCS stamp): the same
# source and Go version give the same bytes, so examples/authority.yaml
# can pin a plugin's sha256 (`make pin` rewrites the pins).
GUEST_FLAGS := -trimpath -buildvcs=false

.PHONY: all build plugins pin run test test-short bench bench-e2e soak lint fuzz clean

all: build

build: plugins
	@test -x $(HOST_BIN) || echo "building $(HOST_BIN): the first build on a fresh machine downloads the Go modules and compiles them (gin pulls in quic-go and the mongo BSON packages): several minutes, up to ~10 on a loaded 2-core machine, each package named as it compiles; later builds take seconds"
	$(GO) build -v -o $(HOST_BIN) ./cmd/host

plugins:
	@mkdir -p $(BIN)/plugins
	@for d in $(PLUGIN_DIRS); do \
		name=$$(basename $$d); \
		echo "GOOS=wasip1 GOARCH=wasm $(GO) build $(GUEST_FLAGS) -buildmode=c-shared -o $(BIN)/plugins/$$name.wasm $$d"; \
		GOOS=wasip1 GOARCH=wasm $(GO) build $(GUEST_FLAGS) -buildmode=c-shared -o $(BIN)/plugins/$$name.wasm $$d || exit 1; \
	done

# Rewrite the plugin digests examples/authority.yaml pins (after a change
# to a plugin's source or to the Go toolchain).
pin:
	$(GO) test -count=1 ./cmd/host -run '^TestExamplePluginPins$$' -args -update-pins

run: build
	./$(HOST_BIN) serve --config $(CONFIG)

# Every test, against the real PostgreSQL and Redis of this machine
# (AUTHORITY_TEST_POSTGRES_DSN, AUTHORITY_TEST_REDIS_ADDR override them).
test: lint
	$(GO) test -count=1 ./...
	@if command -v promtool >/dev/null 2>&1 && [ -d deploy/prometheus ]; then \
		promtool test rules deploy/prometheus/tests/*.yaml; \
	else echo "promtool not installed or no rules yet: alert rule tests skipped (.ci/run installs it)"; fi

test-short:
	$(GO) test -count=1 -short ./...

bench:
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -benchtime $(BENCHTIME) ./...

# Ten simulated minutes of steady DPoP load on the memory replay cache and
# nonce store: compares the cost per proof of the first and last minute.
# End to end: live DPoP load against the server pinned to one core, per
# configuration, with server CPU per token (scripts/bench-e2e.sh; WRITE=1
# puts the dated table into docs/benchmarks.md).
bench-e2e:
	WRITE=1 bash scripts/bench-e2e.sh

soak:
	SOAK=1 $(GO) test -run '^$$' -bench 'Soak' -benchtime 1x -timeout 30m ./host/dpop/

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Short fuzz campaigns over every parser of attacker-controlled bytes.
# Minimizing each new input is capped at 5 s (the default, 60 s, spent
# whole campaigns of FuzzVerify minimizing its multi-kilobyte seeds).
fuzz:
	@for pkg in $$($(GO) list ./...); do \
		for fn in $$($(GO) test -list 'Fuzz.*' $$pkg 2>/dev/null | grep '^Fuzz'); do \
			echo "== $$pkg $$fn"; \
			$(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 5s $$pkg || exit 1; \
		done; \
	done

clean:
	rm -rf $(BIN)
