# The Makefile of the DKMS source tree (/usr/src/lxbsm-<version>/Makefile,
# from the lxbsm-dkms package).  dkms.conf runs `make KDIR=<headers>` with
# KERNELRELEASE set: the kernel's headers are probed first, so the generated
# lxbsm_probes.h is the one for the kernel DKMS builds for, then kbuild
# builds kmod/lxbsm.ko.
KERNELRELEASE ?= $(shell uname -r)
KDIR ?= /lib/modules/$(KERNELRELEASE)/build
GEN := $(CURDIR)/gen

all:
	sh kmod/probe-features.sh $(KDIR) $(GEN)
	$(MAKE) -C $(KDIR) M=$(CURDIR) LXBSM_GEN=$(GEN) modules

clean:
	rm -rf $(GEN)
	rm -f kmod/*.o kmod/*.ko kmod/*.mod kmod/*.mod.c kmod/.*.cmd kmod/modules.order \
		Module.symvers modules.order .*.cmd .module-common.o

.PHONY: all clean
