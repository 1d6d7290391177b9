# pg_keeper_go: the C shim (PGXS, built per PostgreSQL major), the Go core
# library (built once, loaded by every major) and the SQL scripts.
#
#   make                 build pg_keeper_go.so, pg_keeper_go_core.so and the
#                        command bin/pg_keeper_go
#   make install         install them, the control file and the SQL scripts
#                        (the command into PostgreSQL's bindir, or PREFIX/bin
#                        with PREFIX=/usr/local; make install-cli: only it)
#   make demo            the demo cluster in Docker (make demo-local: without)
#   make test            the README's test command (make test-matrix: every major)
#   make bench           the failover benchmark in Docker, every major
#   make bench-peers     pg_keeper_go next to Patroni, pg_auto_failover and
#                        repmgr in Docker (hours: results/peers.md)
#
# PG_CONFIG=/usr/lib/postgresql/NN/bin/pg_config selects another major (for
# the Docker targets too, or PG_MAJOR=NN alone); GO=/path/to/go another Go.

# Install the dependencies first for the goals a fresh machine starts with
# (the checks below would stop the build otherwise).
ifneq ($(filter test deps demo test-matrix bench bench-peers images image-% peer-images deb deb-%,$(MAKECMDGOALS)),)
$(shell ./scripts/install-deps.sh >&2)
endif

PG_CONFIG ?= $(firstword $(wildcard /usr/lib/postgresql/15/bin/pg_config) pg_config)
GO ?= $(firstword $(shell command -v go 2>/dev/null) $(wildcard /usr/local/go/bin/go))

ifeq ($(shell command -v $(PG_CONFIG) 2>/dev/null),)
$(error pg_config not found ("$(PG_CONFIG)"): install the Debian package postgresql-server-dev-15, or set PG_CONFIG=/path/to/pg_config)
endif
# The major of PG_CONFIG; also the default major of the Docker targets.
PG_MAJOR ?= $(shell $(PG_CONFIG) --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
ifeq ($(wildcard $(shell $(PG_CONFIG) --includedir-server)/postgres.h),)
$(error PostgreSQL $(PG_MAJOR) server headers not found: install the Debian package postgresql-server-dev-$(PG_MAJOR))
endif
# What else the server headers include (gssapi: libkrb5-dev; openssl:
# libssl-dev) and Go are named before anything compiles, all at once.
COMPILE_GOALS = $(filter-out clean distclean deps demo demo-stop images image-% deb deb-% regress test-matrix bench bench-peers peer-images,$(or $(MAKECMDGOALS),all))
ifneq ($(COMPILE_GOALS),)
MISSING_BUILD_DEPS := $(shell ./scripts/check-build-deps.sh $(PG_CONFIG) "$(shell $(PG_CONFIG) --cc)")
ifneq ($(MISSING_BUILD_DEPS),)
$(error $(MISSING_BUILD_DEPS))
endif
ifeq ($(NO_GO)$(GO),)
$(error Go toolchain not found: install Go 1.26 into /usr/local/go (Debian's golang-go is too old), or set GO=/path/to/go)
endif
endif

EXTENSION  = pg_keeper_go
MODULE_big = pg_keeper_go
OBJS       = extension/init.o extension/guard.o extension/host.o extension/worker.o extension/sql.o extension/pause.o extension/switchover.o
DATA       = sql/pg_keeper_go--1.0.sql sql/pg_keeper_go--1.1.sql \
             sql/pg_keeper_go--1.0--1.1.sql sql/pg_keeper_go--1.1--1.2.sql \
             sql/pg_keeper_go--1.2--1.3.sql sql/pg_state.sql \
             sql/pg_keeper_witness.sql
PGFILEDESC = "pg_keeper_go - automatic failover for a primary/standby pair"
PG_CPPFLAGS = -I$(srcdir)/extension -DPGK_VERSION='"1.3"'
PG_CFLAGS  = -Wall -Werror
SHLIB_LINK = -ldl

CORE_LIB   = pg_keeper_go_core.so
GO_SOURCES = $(shell find gosrc sql -name '*.go' -not -name '*_test.go') sql/pg_keeper_witness.sql \
             extension/pg_keeper_go_host.h go.mod go.sum
# Go's asynchronous preemption would unblock SIGURG, which the server uses
# for latch wake-ups; GODEBUG cannot reach Go inside a backend
# (docs/design.md, "The C/Go boundary").
GO_LDFLAGS = -X=runtime.godebugDefault=asyncpreemptoff=1
CLI        = bin/pg_keeper_go
EXTRA_CLEAN = $(CORE_LIB) pg_keeper_go_core.h tests/regress/out bin

# make installcheck: pg_regress against a running server that preloads the
# library (docker/regress.sh sets one up inside each major's image).
REGRESS      = pg_keeper_go
REGRESS_OPTS = --inputdir=tests/regress --outputdir=tests/regress/out

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)
# PGXS does not track headers: every object depends on all three.
$(OBJS): extension/pg_keeper_go.h extension/pg_keeper_go_host.h extension/compat.h
# "make clean" removes pg_regress's output (tests/regress/out, above), not
# results/: PGXS would delete that folder, which holds the committed
# benchmark and scenario results.
pg_regress_clean_files = regression.diffs regression.out tmp_check/ tmp_check_iso/ log/ output_iso/

# NO_GO=1 builds the C shim only and installs it and the SQL scripts with a
# pg_keeper_go_core.so and a bin/pg_keeper_go built elsewhere (the Docker
# images build them once).
ifndef NO_GO
all: $(CORE_LIB) $(CLI)

$(CORE_LIB): $(GO_SOURCES)
	@test -n "$(GO)" || { echo "error: Go toolchain not found: install Go 1.26 (/usr/local/go) or set GO=/path/to/go" >&2; exit 1; }
	CGO_ENABLED=1 $(GO) build -buildmode=c-shared -trimpath -ldflags '$(GO_LDFLAGS)' -o $@ ./gosrc/core

# The command-line tool is a static binary: it runs on any host, the
# application's too.
$(CLI): $(GO_SOURCES)
	@test -n "$(GO)" || { echo "error: Go toolchain not found: install Go 1.26 (/usr/local/go) or set GO=/path/to/go" >&2; exit 1; }
	CGO_ENABLED=0 $(GO) build -trimpath -o $@ ./gosrc/cmd/pg_keeper_go
endif

install: install-core install-cli

# Where make install puts the command: PostgreSQL's bindir, or PREFIX/bin.
CLI_DIR = $(if $(PREFIX),$(PREFIX)/bin,$(bindir))

.PHONY: install-core install-cli
install-core: $(CORE_LIB)
	$(INSTALL_SHLIB) $(CORE_LIB) '$(DESTDIR)$(pkglibdir)/$(CORE_LIB)'

install-cli: $(CLI)
	$(MKDIR_P) '$(DESTDIR)$(CLI_DIR)'
	$(INSTALL_PROGRAM) $(CLI) '$(DESTDIR)$(CLI_DIR)/pg_keeper_go'

.PHONY: deps test test-unit test-integration vet bench bench-local bench-lease bench-lossy bench-operate demo demo-stop

# Installs what the build and the tests need on Debian (as root).
deps:
	./scripts/install-deps.sh

vet:
	@test -z "$$(gofmt -l gosrc tests)" || { gofmt -l gosrc tests; echo "error: gofmt needed" >&2; exit 1; }
	$(GO) vet ./...

test-unit:
	$(GO) test -count=1 ./gosrc/...

# Integration tests start real PostgreSQL pairs with the installed extension.
test-integration: install
	$(GO) test -count=1 -p 1 -timeout 20m -v ./tests/integration/...

# The README's test command: unit and integration tests, then, for the
# default major in Docker, the regress suite and the failure scenarios.
# One package at a time: the tests time failovers on two cores.
test: vet all install image-$(PG_MAJOR) deb-$(PG_MAJOR)
	$(MAKE) --no-print-directory regress PG_MAJOR=$(PG_MAJOR)
	PG_MAJOR=$(PG_MAJOR) PGK_REQUIRE_PROMTOOL=1 $(GO) test -count=1 -p 1 -timeout 40m ./...

# The failover benchmark in Docker, per major: results/bench.md and
# results/bench.png (BENCH_RUNS failovers per fault and major).
BENCH_RUNS   ?= 5
BENCH_MAJORS ?= $(MAJORS)
bench: $(addprefix image-,$(BENCH_MAJORS))
	for m in $(BENCH_MAJORS); do \
	  PG_MAJOR=$$m $(GO) test -count=1 -timeout 60m -run '^TestBench$$' ./tests/docker -args -bench.runs=$(BENCH_RUNS) || exit 1; \
	done

# pg_keeper_go next to Patroni, pg_auto_failover and repmgr on PostgreSQL
# 15 (tests/docker/peers_test.go): results/peers.md and results/peers.png.
# PEERS_RUNS runs per tool, setting and fault; PEERS_TOOLS, PEERS_SETTINGS
# and PEERS_FAULTS narrow it (comma-separated); PEERS_LOSS and PEERS_IDLE
# are the packet-loss and idle windows (0 skips them).  Runs add to
# results/peers/*.json: remove them to start over.
PEERS_RUNS     ?= 3
PEERS_TOOLS    ?= pg_keeper_go,patroni,pgaf,repmgr
PEERS_SETTINGS ?= defaults,tuned
PEERS_FAULTS   ?= crash,kill,hang,vanish,isolate
PEERS_LOSS     ?= 3m
PEERS_IDLE     ?= 1m
.PHONY: bench-peers peer-images
bench-peers: image-15 peer-images
	$(GO) test -v -count=1 -timeout 24h -run '^TestPeers$$' ./tests/docker -args -peers.runs=$(PEERS_RUNS) \
	  -peers.tools=$(PEERS_TOOLS) -peers.settings=$(PEERS_SETTINGS) -peers.faults=$(PEERS_FAULTS) \
	  -peers.loss=$(PEERS_LOSS) -peers.idle=$(PEERS_IDLE)

# The peers' images, from Debian bookworm's packages (docker/peers/*/):
# built only by bench-peers.
peer-images:
	@docker/base-image.sh bookworm
	docker build -q --force-rm --target etcd -t pg_keeper_go-peer-patroni:etcd -f docker/peers/patroni/Dockerfile docker/peers/patroni >/dev/null
	docker build -q --force-rm --target node -t pg_keeper_go-peer-patroni:node -f docker/peers/patroni/Dockerfile docker/peers/patroni >/dev/null
	docker build -q --force-rm --target node -t pg_keeper_go-peer-pgaf:node -f docker/peers/pgaf/Dockerfile docker/peers/pgaf >/dev/null
	docker build -q --force-rm --target node -t pg_keeper_go-peer-repmgr:node -f docker/peers/repmgr/Dockerfile docker/peers/repmgr >/dev/null

# The same measurement on local PostgreSQL 15 pairs, with nftables for the
# vanished host: results/failover.md.
bench-local: install
	$(GO) test -v -count=1 -timeout 60m ./tests/bench -args -bench.runs=$(BENCH_RUNS) -bench.out=$(CURDIR)/results/failover.md

# What checking the lease at every commit costs, with pgbench on a local
# pair: results/lease-cost.md.
bench-lease: install
	$(GO) test -v -count=1 -timeout 30m -run '^TestLeaseCost$$' ./tests/bench -args -bench.lease.rounds=6 -bench.lease.duration=10s -bench.lease.out=$(CURDIR)/results/lease-cost.md

# 20 % packet loss between a local standby and its primary for
# LOSSY_DURATION: no false failover, and how close the keeper came:
# results/lossy.md.
LOSSY_DURATION ?= 5m
bench-lossy: install
	$(GO) test -v -count=1 -timeout 60m -run '^TestLossyLink$$' ./tests/bench -args -bench.lossy.duration=$(LOSSY_DURATION) -bench.lossy.out=$(CURDIR)/results/lossy.md

# How long a switchover refuses writes and a rejoin by pg_rewind takes, on
# local PostgreSQL 15 pairs: results/operate.md (OPERATE_RUNS runs).
OPERATE_RUNS ?= 5
bench-operate: install
	$(GO) test -v -count=1 -timeout 60m -run '^TestOperateTimes$$' ./tests/bench -args -bench.operate.runs=$(OPERATE_RUNS) -bench.operate.out=$(CURDIR)/results/operate.md

# The demo: node1, node2 and app in Docker (docker-compose.yml).
demo: image-$(PG_MAJOR)
	PG_MAJOR=$(PG_MAJOR) ./docker/demo.sh

demo-stop:
	docker-compose down -v

# The same pair without Docker, on this machine (root; servers run as postgres).
demo-local: all install
	./scripts/demo.sh start

# ---------------------------------------------------------------------
# Docker: images per major, the demo, regress and failure scenarios.
# No registry here: base images are made from Debian's packages when
# missing (docker/base-image.sh); with a registry they are pulled.
# ---------------------------------------------------------------------
MAJORS      = 13 15 17 18
suite_13    = bullseye
suite_15    = bookworm
suite_17    = trixie
suite_18    = sid
# sid's Release files are valid for a week only; a mirror that lags behind
# (as the one these machines reach does) would make apt refuse them.
apt_opts_18 = -o Acquire::Check-Valid-Until=false
GO_IMAGE    = golang:1.26-bullseye
CORE_IMAGE  = pg_keeper_go-core:latest
GOPROXY    ?= $(shell $(GO) env GOPROXY 2>/dev/null)

.PHONY: images image-core image-golang $(addprefix image-,$(MAJORS)) regress test-matrix demo-local

image-golang:
	@docker/base-image.sh bullseye
	@docker image inspect $(GO_IMAGE) >/dev/null 2>&1 || { \
	  echo "== building $(GO_IMAGE) from debian:bullseye and $$(dirname $$(dirname $$(readlink -f $(GO))))"; \
	  tar -C $$(dirname $$(dirname $$(dirname $$(readlink -f $(GO))))) -c go -C $(CURDIR)/docker golang.Dockerfile \
	    -C /etc/ssl/certs ca-certificates.crt \
	    | docker build -q --force-rm -t $(GO_IMAGE) -f golang.Dockerfile - >/dev/null; }

image-core: image-golang
	docker build -q --force-rm -t $(CORE_IMAGE) -f docker/core.Dockerfile --build-arg GOPROXY=$(GOPROXY) . >/dev/null

# Two images per major: pg_keeper_go-build:pgNN (headers, pg_regress: the
# regress suite) and pg_keeper_go:pgNN (what the demo and scenarios run).
image_args = -f docker/Dockerfile --build-arg DEBIAN_SUITE=$(suite_$*) --build-arg PG_MAJOR=$* \
	--build-arg CORE_IMAGE=$(CORE_IMAGE) --build-arg APT_OPTS="$(apt_opts_$*)"
$(addprefix image-,$(MAJORS)): image-%: image-core
	@docker/base-image.sh $(suite_$*)
	docker build -q --force-rm --target build -t pg_keeper_go-build:pg$* $(image_args) . >/dev/null
	docker build -q --force-rm --target node -t pg_keeper_go:pg$* $(image_args) . >/dev/null

images: $(addprefix image-,$(MAJORS))

# Debian packages per major, built in the major's image from what it
# compiled (scripts/build-deb.sh): dist/postgresql-NN-pg-keeper-go_*.deb
# and dist/pg-keeper-go_*.deb (the command; the same for every major).
DEB_VERSION ?= 1.3-1
DEB_MAJORS  ?= $(PG_MAJOR)
.PHONY: deb $(addprefix deb-,$(MAJORS))
deb: $(addprefix deb-,$(DEB_MAJORS))
$(addprefix deb-,$(MAJORS)): deb-%: image-%
	docker build -q --force-rm --target deb -t pg_keeper_go-deb:pg$* $(image_args) --build-arg DEB_VERSION=$(DEB_VERSION) . >/dev/null
	mkdir -p dist
	docker run --rm -v $(CURDIR)/dist:/out pg_keeper_go-deb:pg$* sh -c 'cp /deb/*.deb /out/'
	@ls dist/postgresql-$*-pg-keeper-go_$(DEB_VERSION)_*.deb dist/pg-keeper-go_$(DEB_VERSION)_*.deb

# Regress suite and failure scenarios on every major (MATRIX_MAJORS).
MATRIX_MAJORS ?= $(MAJORS)
test-matrix: $(addprefix image-,$(MATRIX_MAJORS)) $(addprefix deb-,$(MATRIX_MAJORS))
	for m in $(MATRIX_MAJORS); do \
	  echo "== PostgreSQL $$m"; \
	  $(MAKE) --no-print-directory regress PG_MAJOR=$$m || exit 1; \
	  PG_MAJOR=$$m $(GO) test -count=1 -timeout 40m ./tests/docker || exit 1; \
	done

# The regress suite inside the image of one major (PG_MAJOR=15 by default).
regress: image-$(PG_MAJOR)
	docker run --rm pg_keeper_go-build:pg$(PG_MAJOR) docker/regress.sh
