# lxbsm: BSM audit records from the Linux kernel.  See README.md.
#
#   make demo      set up, build, boot a guest, load the module, show it working
#   make check     lint, host tests, and the guest suite on every supported kernel
#
SHELL := /bin/bash
KVER ?= $(shell uname -r)
VENV := .venv
PY := $(VENV)/bin/python
PYSRC := lxbsm_tools tests bench scripts/eventtable.py scripts/console-scripts.py

.PHONY: all deps module modules progs test-packages lint checkpatch test-host test-guest check demo bench bench-probes bench-tools bench-execctl install deb clean

all: module

# Everything a fresh Debian 12 machine lacks (idempotent).  LXBSM_DEPS_DONE=1:
# already done by the make that runs this one (make check's steps).
deps:
	@[ -n "$(LXBSM_DEPS_DONE)" ] || scripts/deps.sh

# kmod/lxbsm.ko for KVER (default: the running kernel), W=1, warnings fail.
module: deps
	@scripts/build-module.sh $(KVER)

# The module for every supported kernel (build/<version>/lxbsm.ko); a supported
# kernel that is missing or fails to build fails it.
modules: deps
	@scripts/build-modules.sh

# Helper programs the guest tests run (one of them 32-bit, for the ia32 ABI).
PROGS := build/progs/sysprobe build/progs/sysprobe32 build/progs/lat_exec build/progs/lat_sys \
	build/progs/hello build/progs/xc_marker build/progs/xc_interp build/progs/uselib32
progs: deps $(PROGS)

build/progs/sysprobe: tests/guest/progs/sysprobe.c
	@mkdir -p $(@D)
	$(CC) -O2 -Wall -Wextra -Werror -DWITH_URING -o $@ $< -luring -lpthread

build/progs/sysprobe32: tests/guest/progs/sysprobe.c
	@mkdir -p $(@D)
	$(CC) -m32 -static -O2 -Wall -Wextra -Werror -o $@ $<

build/progs/lat_exec: bench/lat_exec.c
	@mkdir -p $(@D)
	$(CC) -O2 -Wall -Wextra -Werror -o $@ $<

build/progs/lat_sys: bench/lat_sys.c
	@mkdir -p $(@D)
	$(CC) -O2 -Wall -Wextra -Werror -o $@ $<

# Static, as LMBench's hello: what lat_sys exec and sh run.
build/progs/hello: bench/hello.c
	@mkdir -p $(@D)
	$(CC) -static -O2 -Wall -Wextra -Werror -o $@ $<

# Exec control of ELF interpreters: a static-pie program without libc, and a
# program whose PT_INTERP names where the test puts a copy of it.
build/progs/xc_marker: tests/guest/progs/xc_marker.c
	@mkdir -p $(@D)
	$(CC) -static-pie -nostdlib -fPIE -O2 -Wall -Wextra -Werror -o $@ $<

build/progs/xc_interp: tests/guest/progs/xc_interp.c
	@mkdir -p $(@D)
	$(CC) -O2 -Wall -Wextra -Werror -Wl,--dynamic-linker=/tmp/lxbsm-xc-interp -o $@ $<

build/progs/uselib32: tests/guest/progs/uselib.c
	@mkdir -p $(@D)
	$(CC) -m32 -static -O2 -Wall -Wextra -Werror -o $@ $<

lint: deps
	$(VENV)/bin/ruff check $(PYSRC)
	$(VENV)/bin/ruff format --check $(PYSRC)
	$(VENV)/bin/mypy lxbsm_tools scripts/eventtable.py scripts/console-scripts.py
	@scripts/checkpatch.sh

checkpatch: deps
	@scripts/checkpatch.sh

test-host: deps
	$(PY) -m pytest -q tests/host

# The guest suite, once per supported kernel, in a QEMU guest each.
test-guest: modules progs
	@scripts/guest-suite.sh

# The steps before the guest suite share the machine's cores: lint is one
# core's work, the host tests mostly wait for their three single-threaded
# guests, and the module builds take what is left; each step's output is shown
# whole when it ends (--output-sync).  Any failure fails make check, after the
# steps already running have ended; the guest suite (every core busy) comes last
# (test-guest's, with the modules and programs just built).
# The last line says how the time split (CI has 45 minutes).
CHECK_JOBS ?= $(shell nproc)
check:
	@t0=$$(date +%s) && scripts/deps.sh && t1=$$(date +%s) && \
	$(MAKE) --no-print-directory -j$(CHECK_JOBS) --output-sync=target LXBSM_DEPS_DONE=1 \
		lint test-host modules progs && t2=$$(date +%s) && \
	scripts/guest-suite.sh && t3=$$(date +%s) && \
	echo "make check: all passed in $$((t3 - t0)) s (deps $$((t1 - t0)) s;" \
		"lint, host tests, modules $$((t2 - t1)) s; guest suite $$((t3 - t2)) s)"

demo: modules
	@scripts/demo.sh

# The paper's latency tables and a storm, lxbsm beside Linux auditd: one guest
# boot per kernel (no --load: the bench loads the module itself), then
# build/bench/results.json, table.md, table.json, overhead.png (docs/bench.md).
LXBSM_BENCH_ROUNDS ?= 5
LXBSM_BENCH_SCALE ?= 1.0
LXBSM_BENCH_STORM ?= 6
# The kernels (ids of scripts/kernels.sh) the benchmarks run on.
LXBSM_BENCH_KERNELS ?= 6.1 6.12
# 1: guest time counts instructions (lxbsm-vm --icount, one vCPU): figures
# that do not drift with the host's load; 0: wall-clock TCG, two vCPUs.
LXBSM_BENCH_ICOUNT ?= 1
BENCH_VM_OPTS = $(if $(filter 1,$(LXBSM_BENCH_ICOUNT)),--icount)
BENCH_CLOCK = $(if $(filter 1,$(LXBSM_BENCH_ICOUNT)),icount,wall)
BENCH_VERSIONS = $$(scripts/kernels.sh | awk -v ids=" $(LXBSM_BENCH_KERNELS) " 'index(ids, " " $$1 " ") {print $$2}')
bench: modules progs
	@rm -rf build/bench/vm-*; mkdir -p build/bench; start=$$(date +%s); \
	for k in $(BENCH_VERSIONS); do \
		.venv/bin/lxbsm-vm --kernel "$$k" --no-build $(BENCH_VM_OPTS) --timeout 3000 \
			--rundir build/bench/vm-$$k -- env LXBSM_BENCH_CLOCK=$(BENCH_CLOCK) \
			LXBSM_BENCH_ROUNDS=$(LXBSM_BENCH_ROUNDS) LXBSM_BENCH_SCALE=$(LXBSM_BENCH_SCALE) \
			LXBSM_BENCH_STORM=$(LXBSM_BENCH_STORM) python3 bench/lxbsm_bench.py \
			--ko build/$$k/lxbsm.ko --out build/bench/vm-$$k/raw.json || exit 1; done; \
	$(PY) bench/report.py build/bench build/bench/vm-*/raw.json && \
	echo "make bench: $$(( $$(date +%s) - start )) s wall" | tee build/bench/wall.txt

# What entering lxbsm's hooks costs with empty handlers, as kprobes/kretprobes
# and as fprobes (bench/probe_cost.py; docs/bench.md, "Fifth instruction-counted run"):
# one guest boot per kernel.
bench-probes: deps progs
	@for k in $(BENCH_VERSIONS); do bench/probecost/build.sh "$$k" || exit 1; \
		.venv/bin/lxbsm-vm --kernel "$$k" --no-build $(BENCH_VM_OPTS) --timeout 1800 \
			--rundir build/bench/probes-$$k -- env LXBSM_BENCH_CLOCK=$(BENCH_CLOCK) \
			python3 bench/probe_cost.py --out build/bench/probes-$$k/probe_cost.json \
			|| exit 1; done

# Throughput and peak memory of lxbsm-praudit and lxbsm-auditreduce on a generated
# 10^6-record trail (docs/praudit.md); e.g. LXBSM_BENCH_TOOLS_ARGS="--tree ../main"
# times another checkout's tools on the same trail, "--records 100000" a smaller one.
bench-tools: deps
	$(PY) bench/tools_bench.py $(LXBSM_BENCH_TOOLS_ARGS)

# Exec latency without and with 1000 exec control rules, one guest boot per kernel.
bench-execctl: modules progs
	@for k in $(BENCH_VERSIONS); do \
		.venv/bin/lxbsm-vm --kernel "$$k" --load --no-build --rundir build/bench/execctl-$$k -- \
			python3 bench/execctl_bench.py || exit 1; done

# Debian packages (build/deb/): lxbsm-dkms_<v>_all.deb, the module's source
# that DKMS builds for each kernel (again after a kernel upgrade), and
# lxbsm-tools_<v>_all.deb, the tools as a Debian Python package, the systemd
# unit, the audit user and the /etc/security defaults; <v> is VERSION's.
# Lintian errors fail it.  Install: apt-get install ./build/deb/lxbsm-*.deb
deb: deps
	@scripts/build-deb.sh

# The packages installed, used and purged in a 6.1 and a 6.12 guest
# (tests/guest/test_packages.py; DKMS compiles the module in the guest, which
# under TCG takes 18-40 minutes: not part of make check).
test-packages: deb
	@for k in 6.1 6.12-bpo; do \
		.venv/bin/lxbsm-vm --kernel $$k --timeout 3600 --rundir build/vm/deb-$$k -- \
			python3 -m pytest -p no:cacheprovider -q tests/guest/test_packages.py || exit 1; done

# Install on a real host, for the running kernel (or KVER=...): the module
# (modprobe lxbsm), the tools in their own venv under /opt/lxbsm with links
# in /usr/local/bin, the systemd unit, the audit user, and /etc/security/
# audit_control unless one exists.  DESTDIR= stages the files elsewhere to
# inspect them (a venv works only where it was made: that one is not for use).
install: module
	install -D -m 0644 kmod/lxbsm.ko $(DESTDIR)/lib/modules/$(KVER)/extra/lxbsm.ko
	if [ -z "$(DESTDIR)" ]; then depmod -a $(KVER); fi
	python3 -m venv $(DESTDIR)/opt/lxbsm
	$(DESTDIR)/opt/lxbsm/bin/pip install -q .
	install -d $(DESTDIR)/usr/local/bin
	for t in $$(python3 scripts/console-scripts.py | sed "s/:[^ ]*//g"); do \
		ln -sf /opt/lxbsm/bin/$$t $(DESTDIR)/usr/local/bin/$$t; done
	install -D -m 0644 dist/lxbsm-auditd.service $(DESTDIR)/etc/systemd/system/lxbsm-auditd.service
	install -D -m 0644 dist/lxbsm-forward.service $(DESTDIR)/etc/systemd/system/lxbsm-forward.service
	install -D -m 0644 -t $(DESTDIR)/usr/local/share/doc/lxbsm docs/*.md README.md
	install -d -m 0755 $(DESTDIR)/etc/security
	[ -e $(DESTDIR)/etc/security/audit_control ] || \
		install -m 0640 audit_control $(DESTDIR)/etc/security/audit_control
	if [ -z "$(DESTDIR)" ]; then \
		getent group audit >/dev/null || groupadd --system audit; \
		getent passwd audit >/dev/null || useradd --system --gid audit --no-create-home \
			--home-dir /var/audit --shell /usr/sbin/nologin audit; \
		systemctl daemon-reload 2>/dev/null || true; \
	fi
	@echo "installed; start with: systemctl enable --now lxbsm-auditd"

clean:
	rm -rf build kmod/*.o kmod/*.ko kmod/*.mod kmod/*.mod.c kmod/.*.cmd kmod/modules.order \
		Module.symvers modules.order .*.cmd .module-common.o
