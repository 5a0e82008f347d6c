"""Loading and unloading: 100 cycles, nothing left behind."""

from __future__ import annotations

import os
from pathlib import Path

from .conftest import load_module, module_loaded, run


def mem_available_kib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1])
    raise AssertionError("no MemAvailable in /proc/meminfo")


def lxbsm_vmalloc_areas() -> list[str]:
    return [ln for ln in Path("/proc/vmallocinfo").read_text().splitlines() if "[lxbsm]" in ln]


def test_hundred_load_unload_cycles_leave_nothing_behind() -> None:
    load_module()
    assert lxbsm_vmalloc_areas(), "the loaded module's ring should show in vmallocinfo"
    run("rmmod", "lxbsm")
    base = mem_available_kib()
    for _ in range(100):
        run("insmod", os.environ["LXBSM_KO"])
        assert Path("/dev/lxbsm").exists()
        run("rmmod", "lxbsm")
        assert not module_loaded()
        assert not Path("/dev/lxbsm").exists()
    assert lxbsm_vmalloc_areas() == []
    # A leaked 16 MiB ring per cycle would cost 1.6 GiB; allow page-cache noise.
    assert base - mem_available_kib() < 32 * 1024
    load_module()
