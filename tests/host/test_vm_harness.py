"""The harness itself: a module that warns at load, or that overflows a heap
buffer, must fail the run.

Each test boots a real guest (20-60 s): they are the proof that a splat, or a
memory error that does not oops, in any guest run of `make check` turns it red.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lxbsm_tools import vm

REPO = Path(__file__).resolve().parents[2]


def newest_supported_kernel() -> str:
    out = subprocess.run(
        [str(REPO / "scripts" / "kernels.sh"), "--versions"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return out[-1]


def memcheck_kernels() -> list[str]:
    """The kernels that run the full suite in make check (scripts/kernels.sh
    role "full", the oldest and the newest): each must show that a heap overflow
    fails a run (the others boot with the same parameters)."""
    lines = subprocess.run(
        [str(REPO / "scripts" / "kernels.sh")], check=True, capture_output=True, text=True
    ).stdout.splitlines()
    return [f[1] for f in map(str.split, lines) if f[2] == "full"]


def build_broken(tmp_path: Path, kernel: str, cflags: str) -> Path:
    """lxbsm.ko for @kernel built from a copy of kmod/ with @cflags."""
    src = tmp_path / "src"
    shutil.copytree(
        REPO / "kmod",
        src / "kmod",
        ignore=shutil.ignore_patterns("*.o", "*.ko", "*.cmd", "*.mod*", "*.order"),
    )
    shutil.copy(REPO / "Kbuild", src / "Kbuild")
    shutil.copy(REPO / "VERSION", src / "VERSION")
    env = dict(
        os.environ,
        LXBSM_SRC=str(src),
        LXBSM_OUT=str(tmp_path / "out"),
        LXBSM_EXTRA_CFLAGS=cflags,
    )
    subprocess.run([str(REPO / "scripts" / "build-module.sh"), kernel], env=env, check=True)
    return tmp_path / "out" / "lxbsm.ko"


def test_warn_at_load_fails_the_run(tmp_path: Path) -> None:
    kernel = newest_supported_kernel()
    broken = build_broken(tmp_path, kernel, "-DLXBSM_FAULT_WARN_AT_LOAD")

    share = tmp_path / "share"
    command = ["sh", "-c", 'uname -r > "$LXBSM_SHARE/kernel"; echo guest-output']
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lxbsm_tools.vm",
            "--kernel",
            kernel,
            "--ko",
            str(broken),
            "--rundir",
            str(tmp_path / "run"),
            "--share",
            str(share),
            "--",
            *command,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    # The command itself succeeded, its output came back and so did the file
    # it wrote in the shared folder; the WARN_ON in the kernel log fails the run.
    assert (tmp_path / "run" / "rc").read_text().strip() == "0"
    assert "guest-output" in proc.stdout
    assert (share / "kernel").read_text().strip() == kernel
    assert proc.returncode == vm.EXIT_SPLAT, proc.stderr
    assert "FAIL: the guest kernel log has" in proc.stderr
    assert "WARNING:" in proc.stderr


@pytest.mark.parametrize("kernel", memcheck_kernels())
def test_heap_overflow_fails_the_run_with_memcheck(tmp_path: Path, kernel: str) -> None:
    """One byte written past a kmalloc buffer does not oops; --memcheck must see it."""
    broken = build_broken(tmp_path, kernel, "-DLXBSM_DEBUG_FAULTS")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lxbsm_tools.vm",
            "--kernel",
            kernel,
            "--memcheck",
            "--ko",
            str(broken),
            "--param",
            "debug_overflow=1",
            "--rundir",
            str(tmp_path / "run"),
            "--",
            "sh",
            "-c",
            "grep -q '^lxbsm ' /proc/modules && echo loaded",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    # The module loaded and the command passed; only the kernel's report fails it.
    assert (tmp_path / "run" / "rc").read_text().strip() == "0"
    assert "loaded" in proc.stdout
    assert "slub_debug=FZPU" in (tmp_path / "run" / "console.log").read_text(errors="replace")
    assert proc.returncode == vm.EXIT_SPLAT, proc.stderr
    report = re.compile(r"Redzone overwritten|KFENCE: (memory corruption|out-of-bounds)")
    assert report.search(proc.stderr), proc.stderr
