"""Loading and unloading 100 times under a fork+exec+open storm: nothing left behind."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

from lxbsm_tools import control, uapi
from lxbsm_tools.ring import Ring

from .conftest import load_module, module_loaded, run


def mem_available_kib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1])
    raise AssertionError("no MemAvailable in /proc/meminfo")


def lxbsm_vmalloc_areas() -> list[str]:
    return [ln for ln in Path("/proc/vmallocinfo").read_text().splitlines() if "[lxbsm]" in ln]


def storm(stop: threading.Event) -> None:
    while not stop.is_set():
        subprocess.run(
            ["/bin/sh", "-c", "for i in 1 2 3 4 5; do /bin/true </etc/hostname; done"],
            check=False,
        )


def test_hundred_reloads_under_a_storm_leave_nothing_behind() -> None:
    load_module()
    assert lxbsm_vmalloc_areas(), "the loaded module's ring should show in vmallocinfo"
    run("rmmod", "lxbsm")
    base = mem_available_kib()
    stop = threading.Event()
    workers = [threading.Thread(target=storm, args=(stop,)) for _ in range(2)]
    for w in workers:
        w.start()
    ko = os.environ["LXBSM_KO"]
    # Everything audited, so the hooks do real work while they are removed.
    cfg = control.kernel_config("all", "all", "cnt,argv")
    read = 0
    try:
        for _ in range(100):
            run("insmod", ko)
            assert Path("/dev/lxbsm").exists()
            fd = uapi.open_control()
            control.push(fd, cfg)
            os.close(fd)
            with Ring() as ring:
                time.sleep(0.05)
                read += sum(1 for _ in ring.records())
            run("rmmod", "lxbsm")
            assert not module_loaded()
            assert not Path("/dev/lxbsm").exists()
    finally:
        stop.set()
        for w in workers:
            w.join(60)
        if not module_loaded():
            load_module()
    assert not any(w.is_alive() for w in workers), "a storm process is stuck"
    assert read > 100, "the hooks recorded almost nothing during the storm"
    run("rmmod", "lxbsm")
    assert lxbsm_vmalloc_areas() == []
    # A leaked 16 MiB ring per cycle would cost 1.6 GiB; allow page-cache noise.
    assert base - mem_available_kib() < 32 * 1024
    load_module()
