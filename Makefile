# corral: build, install, test and benchmark.
# Everything that runs sandboxes needs root.

GO       ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
# Static (netgo, osusergo, static libc and libseccomp): the binary is also the
# init of every sandbox, bound into roots that may have no libc at all.
TAGS     := seccomp netgo osusergo
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
# -s -w: no symbol table or DWARF (panics still name functions, from the
# pclntab). Every sandbox start execs this binary two or three times
# (the CLI, libcontainer's init, corral-runc's commands); the smaller file
# starts about 0.3 ms sooner each time. STRIP= keeps them, for perf.
STRIP    ?= -s -w
LDFLAGS  := $(STRIP) -X main.version=$(VERSION) -linkmode external -extldflags -static
PREFIX   ?= /usr/local
BIN      := bin/corral

# Debian/Ubuntu packages: cgo and libseccomp for the build, busybox for the
# tests' directory rootfs, gcc's static libc for the 32-bit syscall probe,
# python3 for the tests' HTTP, TCP and sd_notify services, docker-registry
# (the CNCF distribution registry) for the image pull tests, umoci for the
# test that checks an image's root against `umoci unpack` (and the bench),
# containerd (with ctr and its runc shim) for the tests that have it drive
# corral-runc, runc as the reference the runtime-tools suite compares it with;
# supervisor and s6 for the test that runs the bench's cold and restart parts.
DEPS     := gcc libc6-dev pkg-config libseccomp-dev busybox-static python3 docker-registry umoci containerd runc supervisor s6
# crictl (Kubernetes' CRI client) for the CRI test: built from the Go
# module proxy into .cache/bin, where the test looks for it.
CRICTL_VERSION := v1.37.0
CRICTL   := .cache/bin/crictl
# What else `make bench` compares corral against.
BENCH_DEPS := crun skopeo

.PHONY: all deps crictl build install demo example-image up down test unit integration test-cgroup2 bench bench-deps clean

all: build

# apt only when a package is missing: `make up` stays quick and offline
# once the machine has them.
deps:
	@missing=$$(for p in $(DEPS); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "build and test packages present: $(DEPS)"; fi
	@$(MAKE) --no-print-directory crictl

crictl:
	@[ -x $(CRICTL) ] || { echo "building crictl $(CRICTL_VERSION) into $(dir $(CRICTL))"; \
		GOBIN=$(CURDIR)/$(dir $(CRICTL)) $(GO) install sigs.k8s.io/cri-tools/cmd/crictl@$(CRICTL_VERSION); }

build:
	CGO_ENABLED=1 $(GO) build -tags '$(TAGS)' -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/corral

# corral-runc is corral as an OCI runtime (runc's command line), for
# containerd's runc shim: a link, so that both are always one version.
install: deps build
	install -m 0755 $(BIN) $(PREFIX)/bin/corral
	ln -sf corral $(PREFIX)/bin/corral-runc
	$(PREFIX)/bin/corral setup

# A first sandbox on the built-in root: no image needed.
demo:
	$(PREFIX)/bin/corral run --name demo --memory 64M --cpus 0.5 --pids 64 -- \
		/bin/sh -c 'echo "hello from $$(hostname), PID $$$$, uid $$(id -u)"; grep -E "^(CapEff|NoNewPrivs|Seccomp):" /proc/self/status; touch /x || true'

# The example image, made offline from the host's busybox-static (no
# registry), imported into the store; examples/images.yaml runs it.
example-image: install
	@layout=$$(mktemp -d); trap 'rm -rf "$$layout"' EXIT; \
	$(CURDIR)/examples/images/busybox-oci.sh "$$layout/busybox-web" && \
	$(PREFIX)/bin/corral image import "$$layout/busybox-web"

# The daemon on the example service file, in the background; `make down`
# stops it (every service, dependents first) and it leaves nothing behind.
STATE_DIR ?= /run/corral
up: install
	mkdir -p /var/log/corral
	@if $(PREFIX)/bin/corral --state-dir $(STATE_DIR) ps >/dev/null 2>&1; then \
		echo "corral daemon already running"; \
	else \
		setsid $(PREFIX)/bin/corral --state-dir $(STATE_DIR) daemon --config $(CURDIR)/examples/corral.yaml \
			>>/var/log/corral/daemon.log 2>&1 </dev/null & \
		for i in $$(seq 100); do $(PREFIX)/bin/corral --state-dir $(STATE_DIR) ps >/dev/null 2>&1 && break; sleep 0.1; done; \
		sleep 1; \
	fi
	$(PREFIX)/bin/corral --state-dir $(STATE_DIR) ps

down:
	@if [ -f $(STATE_DIR)/daemon/pid ]; then \
		pid=$$(cat $(STATE_DIR)/daemon/pid); kill -TERM $$pid; \
		while kill -0 $$pid 2>/dev/null; do sleep 0.1; done; echo "corral daemon stopped"; \
	else echo "no corral daemon running on $(STATE_DIR)"; fi

# The whole suite: unit tests, then real sandboxes driven through the
# binary, on this host (a line per test as it goes) and then on a pure
# cgroup v2 kernel in a VM. Both parts run whatever the first gave, and
# the last line says how each went.
test: build
	@host=0; vm=0; \
	$(GO) test -tags '$(TAGS)' -count=1 $$($(GO) list ./... | grep -v '/integration$$') || host=1; \
	$(BIN) setup || host=1; \
	CORRAL_BIN=$(CURDIR)/$(BIN) $(GO) test -tags '$(TAGS)' -count=1 -v ./integration/ || host=1; \
	$(MAKE) --no-print-directory test-cgroup2 || vm=1; \
	word() { [ $$1 = 0 ] && echo passed || echo FAILED; }; \
	echo "make test: host part $$(word $$host), cgroup v2 VM part $$(word $$vm)"; \
	[ $$host = 0 ] && [ $$vm = 0 ]

# Unit tests: every package but ./integration itself, whose tests drive
# the built binary (the bench's packages under it are unit-tested here).
unit:
	$(GO) test -tags '$(TAGS)' -count=1 $$($(GO) list ./... | grep -v '/integration$$')

integration: build
	CORRAL_BIN=$(CURDIR)/$(BIN) $(GO) test -tags '$(TAGS)' -count=1 -v ./integration/

# The integration tests on a pure cgroup v2 kernel: Debian's cloud kernel
# under qemu (software emulation, no /dev/kvm needed), booted from an
# initramfs holding busybox, bin/corral and the test binary. Installs
# qemu-system-x86 with apt if missing and keeps the kernel in .cache/.
# Root; about two minutes. See integration/cgroup2vm/run.sh.
test-cgroup2: build
	GO='$(GO)' TAGS='$(TAGS)' LDFLAGS='$(LDFLAGS)' CORRAL_BIN=$(CURDIR)/$(BIN) integration/cgroup2vm/run.sh

bench-deps:
	@$(MAKE) --no-print-directory deps DEPS='$(DEPS) $(BENCH_DEPS)'

# Cold start-to-exit of /bin/true, corral beside runc in interleaved rounds;
# and the rest of the parts (see cmd/corral-bench), the OCI runtime's
# run beside runc's and crun's and its runtime-tools counts among them.
bench: build bench-deps
	$(GO) build -tags '$(TAGS)' -o bin/corral-bench ./cmd/corral-bench
	bin/corral-bench --corral $(BIN) --rounds $(or $(ROUNDS),200) --go $(GO)

clean:
	rm -rf bin
