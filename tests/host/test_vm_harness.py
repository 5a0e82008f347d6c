"""The harness itself: a module that warns at load, or that overflows a heap
buffer, must fail the run.

Each test boots a real guest (60-100 s under TCG): they are the proof that a
splat, or a memory error that does not oops, in any guest run of `make check`
turns it red.  The guests are single-threaded TCG and independent, so the
module's fixture builds and boots all the selected ones at once, and each test
checks its own run: the three take the wall time of about one and a half
instead of three.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
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
    # Captured (the runs are concurrent): a failure shows the build's output.
    build = subprocess.run(
        [str(REPO / "scripts" / "build-module.sh"), kernel],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, f"the broken module did not build:\n{build.stdout}{build.stderr}"
    return tmp_path / "out" / "lxbsm.ko"


@dataclass
class GuestRun:
    """One broken module's guest run: its directory and lxbsm-vm's result."""

    tmp_path: Path
    proc: subprocess.CompletedProcess[str]


def warn_at_load(tmp_path: Path) -> GuestRun:
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
    return GuestRun(tmp_path, proc)


def heap_overflow(tmp_path: Path, kernel: str) -> GuestRun:
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
    return GuestRun(tmp_path, proc)


@pytest.fixture(scope="module")
def guest_runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Future[GuestRun]]]:
    """The guest runs of the tests of this module that were selected, started
    together (each in its own directory); a test waits for its own."""
    selected = {item.name for item in request.session.items if item.path == request.path}
    runs: dict[str, Future[GuestRun]] = {}
    with ThreadPoolExecutor(max_workers=len(selected) or 1) as pool:
        for name in sorted(selected):
            tmp = tmp_path_factory.mktemp(re.sub(r"\W", "_", name))
            if name == "test_warn_at_load_fails_the_run":
                runs[name] = pool.submit(warn_at_load, tmp)
            else:
                m = re.fullmatch(r"test_heap_overflow_fails_the_run_with_memcheck\[(.+)\]", name)
                assert m, f"{name}: no guest run for this test"
                runs[name] = pool.submit(heap_overflow, tmp, m[1])
        yield runs


def test_warn_at_load_fails_the_run(
    request: pytest.FixtureRequest, guest_runs: dict[str, Future[GuestRun]]
) -> None:
    run = guest_runs[request.node.name].result()
    tmp_path, proc = run.tmp_path, run.proc
    kernel = newest_supported_kernel()
    share = tmp_path / "share"
    # The command itself succeeded, its output came back and so did the file
    # it wrote in the shared folder; the WARN_ON in the kernel log fails the run.
    assert (tmp_path / "run" / "rc").read_text().strip() == "0"
    assert "guest-output" in proc.stdout
    assert (share / "kernel").read_text().strip() == kernel
    assert proc.returncode == vm.EXIT_SPLAT, proc.stderr
    assert "FAIL: the guest kernel log has" in proc.stderr
    assert "WARNING:" in proc.stderr


@pytest.mark.parametrize("kernel", memcheck_kernels())
def test_heap_overflow_fails_the_run_with_memcheck(
    request: pytest.FixtureRequest, guest_runs: dict[str, Future[GuestRun]], kernel: str
) -> None:
    """One byte written past a kmalloc buffer does not oops; --memcheck must see it."""
    run = guest_runs[request.node.name].result()
    tmp_path, proc = run.tmp_path, run.proc
    # The module loaded and the command passed; only the kernel's report fails it.
    assert (tmp_path / "run" / "rc").read_text().strip() == "0"
    assert "loaded" in proc.stdout
    assert "slub_debug=FZP " in (tmp_path / "run" / "console.log").read_text(errors="replace")
    assert proc.returncode == vm.EXIT_SPLAT, proc.stderr
    report = re.compile(r"Redzone overwritten|KFENCE: (memory corruption|out-of-bounds)")
    assert report.search(proc.stderr), proc.stderr
