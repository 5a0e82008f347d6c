"""The harness itself: a module that warns at load must fail the run.

This boots a real guest (about 20 s): it is the proof that a splat in any
guest run of `make check` turns it red.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from lxbsm_tools import vm

REPO = Path(__file__).resolve().parents[2]


def newest_supported_kernel() -> str:
    out = subprocess.run(
        [str(REPO / "scripts" / "kernels.sh")], check=True, capture_output=True, text=True
    ).stdout.split()
    return out[-1]


def test_warn_at_load_fails_the_run(tmp_path: Path) -> None:
    kernel = newest_supported_kernel()
    src = tmp_path / "src"
    shutil.copytree(
        REPO / "kmod",
        src / "kmod",
        ignore=shutil.ignore_patterns("*.o", "*.ko", "*.cmd", "*.mod*", "*.order"),
    )
    shutil.copy(REPO / "Kbuild", src / "Kbuild")
    env = dict(
        os.environ,
        LXBSM_SRC=str(src),
        LXBSM_OUT=str(tmp_path / "out"),
        LXBSM_EXTRA_CFLAGS="-DLXBSM_FAULT_WARN_AT_LOAD",
    )
    subprocess.run([str(REPO / "scripts" / "build-module.sh"), kernel], env=env, check=True)
    broken = tmp_path / "out" / "lxbsm.ko"

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
