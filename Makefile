# lxbsm: BSM audit records from the Linux kernel.  See README.md.
#
#   make demo      set up, build, boot a guest, load the module, show it working
#   make check     lint, host tests, and the guest suite on every supported kernel
#
SHELL := /bin/bash
KVER ?= $(shell uname -r)
VENV := .venv
PY := $(VENV)/bin/python
PYSRC := lxbsm_tools tests bench

.PHONY: all deps module modules progs lint checkpatch test-host test-guest check demo bench-tools clean

all: module

# Everything a fresh Debian 12 machine lacks (idempotent).
deps:
	@scripts/deps.sh

# kmod/lxbsm.ko for KVER (default: the running kernel), W=1, warnings fail.
module: deps
	@scripts/build-module.sh $(KVER)

# The module for every supported kernel (build/<version>/lxbsm.ko).
modules: deps
	@for k in $$(scripts/kernels.sh); do scripts/build-module.sh "$$k" || exit 1; done

# Helper programs the guest tests run (one of them 32-bit, for the ia32 ABI).
PROGS := build/progs/sysprobe build/progs/sysprobe32
progs: deps $(PROGS)

build/progs/sysprobe: tests/guest/progs/sysprobe.c
	@mkdir -p $(@D)
	$(CC) -O2 -Wall -Wextra -Werror -DWITH_URING -o $@ $< -luring

build/progs/sysprobe32: tests/guest/progs/sysprobe.c
	@mkdir -p $(@D)
	$(CC) -m32 -static -O2 -Wall -Wextra -Werror -o $@ $<

lint: deps
	$(VENV)/bin/ruff check $(PYSRC)
	$(VENV)/bin/ruff format --check $(PYSRC)
	$(VENV)/bin/mypy lxbsm_tools
	@scripts/checkpatch.sh

checkpatch: deps
	@scripts/checkpatch.sh

test-host: deps
	$(PY) -m pytest -q tests/host

# The guest suite, once per supported kernel, in a QEMU guest each.
test-guest: modules progs
	@scripts/guest-suite.sh

check: lint test-host test-guest
	@echo "make check: all passed"

demo: modules
	@scripts/demo.sh

bench-tools: deps
	$(PY) bench/tools_bench.py

clean:
	rm -rf build kmod/*.o kmod/*.ko kmod/*.mod kmod/*.mod.c kmod/.*.cmd kmod/modules.order \
		Module.symvers modules.order .*.cmd .module-common.o
