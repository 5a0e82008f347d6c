"""Guest suite: runs inside an lxbsm-vm guest with the module loaded.

Outside such a guest every test here fails (never skips): the harness
(`make check`, or `lxbsm-vm --kernel K --load -- python3 -m pytest tests/guest`)
is the only way to run them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .sshlogin import Env, make_env

REPO = Path(__file__).resolve().parents[2]
DEVICE = "/dev/lxbsm"


def run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


# A command prefix that runs as nobody, with no supplementary groups.
AS_NOBODY = ("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups")


def python_as_nobody(code: str) -> subprocess.CompletedProcess[str]:
    """Run Python @code as nobody; its status and output, whatever they are."""
    return run(*AS_NOBODY, "python3", "-c", code, check=False)


def module_loaded() -> bool:
    modules = Path("/proc/modules").read_text().splitlines()
    return any(line.split()[0] == "lxbsm" for line in modules)


_loaded_params: tuple[str, ...] = ()


def load_module(*params: str) -> None:
    """(Re)load the module under test with the given parameters."""
    global _loaded_params
    if module_loaded():
        run("rmmod", "lxbsm")
    run("insmod", os.environ["LXBSM_KO"], *params)
    _loaded_params = params


@pytest.fixture(autouse=True)
def guest_with_module() -> Iterator[None]:
    assert os.environ.get("LXBSM_IN_GUEST") == "1", (
        "guest tests run only inside an lxbsm-vm guest: use make check or "
        "lxbsm-vm --kernel <version> --load -- python3 -m pytest tests/guest"
    )
    assert os.environ.get("LXBSM_KO"), "lxbsm-vm did not load a module (use --load)"
    if not module_loaded():
        load_module()
    yield
    # Whatever a test did, the next one starts with the module as loaded by default.
    if not module_loaded() or _loaded_params:
        load_module()


@pytest.fixture
def reference_records() -> list[bytes]:
    """OpenBSM's reference records (whole records, header to trailer)."""
    ref = REPO / "tests" / "data" / "bsm-samples" / "openbsm-reference"
    files = sorted(ref.glob("*_record*"))
    assert files, f"no reference records under {ref}"
    return [f.read_bytes() for f in files]


@pytest.fixture(scope="session")
def ssh_env() -> Iterator[Env]:
    """The ssh test users, their key and sshd's host key (tests/guest/sshlogin.py):
    made once, since /etc/passwd keeps naming their homes."""
    env = make_env()
    yield env
    shutil.rmtree(env.dir, ignore_errors=True)
