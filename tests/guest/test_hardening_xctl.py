"""Issue 13, exec control: the exemption, the digest cache and unloading, attacked.

Each test performs the attack as the unprivileged user ``nobody`` with the
helper ``hxprobe`` (tests/guest/progs/hxprobe.c, compiled here); root only
loads rules, prepares filesystems and runs rmmod.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from lxbsm_tools import audit, execctl, uapi

from . import hxprogs
from .conftest import REPO, run

NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
DF = "/usr/bin/df"
SYSFS = Path("/sys/class/misc/lxbsm/exec_control")
EXIT_X = hxprogs.EXIT_X  # the denied program's exit status: it ran
REFUSED = 100 + errno.EACCES  # hxprobe's status for an exec refused with EACCES


def counter(name: str) -> int:
    return int((SYSFS / name).read_text())


@pytest.fixture(scope="module")
def progs() -> Iterator[Path]:
    """hxprobe and the tiny programs X, Y, Y2 (hxprogs.build)."""
    d = Path(tempfile.mkdtemp(prefix="hxprogs-", dir="/tmp"))
    hxprogs.build(d)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def sha(path: Path | str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@contextmanager
def exec_rules(text: str) -> Iterator[None]:
    with tempfile.TemporaryDirectory() as t:
        f = Path(t) / "exec_control"
        f.write_text(text)
        xc = execctl.parse(f)
    ctl = uapi.open_control()
    try:
        uapi.set_exec_rules(ctl, xc.rules)
        yield
    finally:
        uapi.set_exec_rules(ctl, uapi.ExecRules("off", ()))
        os.close(ctl)


def as_nobody(*cmd: str | Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*NOBODY, *(str(c) for c in cmd)],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


@contextmanager
def nobody_dir(parent: Path) -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="hx-", dir=parent))
    os.chown(d, 65534, 65534)
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@contextmanager
def tmpfs() -> Iterator[Path]:
    mnt = Path(tempfile.mkdtemp(prefix="hxfs-", dir="/tmp"))
    run("mount", "-t", "tmpfs", "-o", "mode=1777", "hxtmpfs", str(mnt))
    try:
        yield mnt
    finally:
        run("umount", "-l", str(mnt), check=False)
        mnt.rmdir()


@contextmanager
def ext4_1s() -> Iterator[Path]:
    """ext4 with 128-byte inodes: timestamps in whole seconds (as old volumes have)."""
    work = Path(tempfile.mkdtemp(prefix="hxext-", dir="/tmp"))
    img, mnt = work / "img", work / "mnt"
    mnt.mkdir()
    run("truncate", "-s", "32M", str(img))
    run("mkfs.ext4", "-q", "-I", "128", str(img))
    run("mount", "-o", "loop", str(img), str(mnt))
    (mnt).chmod(0o1777)
    try:
        yield mnt
    finally:
        run("umount", str(mnt), check=False)
        shutil.rmtree(work, ignore_errors=True)


# ---- defect 3: the exemption belongs to the process that opened the ring ----

OLD_DAEMON = (
    "import os, sys\n"
    "from lxbsm_tools.ring import Ring\n"
    "r = Ring(); r.__enter__()\n"
    "if os.fork():\n"
    "    os._exit(0)\n"
    "print('up', flush=True)\n"
    "sys.stdin.read()\n"
)


def test_a_reused_pid_of_the_ring_opener_is_not_exempt(progs: Path) -> None:
    """The consumer opens the ring and forks, the opener exits (what lxbsm-auditd
    without --foreground did): nobody cycles pids until a process gets the
    opener's number, and that process runs a denied program."""
    holder = subprocess.Popen(
        [sys.executable, "-c", OLD_DAEMON],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "up\n"
        opener = holder.pid
        assert holder.wait(30) == 0  # the opener is gone and reaped: its pid is free
        ctl = uapi.open_control()
        try:
            assert uapi.get_status(ctl).consumer_open == 1
        finally:
            os.close(ctl)
        with exec_rules(f"deny {DF}\n"):
            hunt = as_nobody(progs / "hxprobe", "pidhunt", str(opener), DF, "/")
    finally:
        if holder.stdin is not None:
            holder.stdin.close()
    assert hunt.stdout.split()[:2] == ["hit", str(opener)], hunt
    status = int(hunt.stdout.split()[2])
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == REFUSED, hunt
    assert "Filesystem" not in hunt.stdout


def seccomp_library() -> str:
    """The library the daemon loads (dlopen) to confine itself, after it detached."""
    for d in ("/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu"):
        p = Path(d) / "libseccomp.so.2"
        if p.exists():
            return os.path.realpath(p)
    raise AssertionError("libseccomp.so.2 not found (make deps installs it)")


def test_the_background_daemon_is_the_exempt_process(progs: Path) -> None:
    """lxbsm-auditd without --foreground maps a library on the deny list after
    it has detached (libseccomp, to confine itself): it still starts, because
    the process that keeps running is the one that opened the ring."""
    lib = seccomp_library()
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "audit"],
        capture_output=True,
        check=False,
    )
    d = Path(tempfile.mkdtemp(prefix="hxauditd-", dir="/tmp"))
    d.chmod(0o755)
    (d / "trails").mkdir()
    (d / "exec_control").write_text(f"deny {lib}\n")
    cf = d / "audit_control"
    cf.write_text(f"dir:{d / 'trails'}\nflags:ex\nnaflags:ex\nexec_control:{d / 'exec_control'}\n")
    sock = str(d / "auditd.sock")
    load = f"import ctypes; ctypes.CDLL('{lib}')"
    try:
        with exec_rules(f"deny {lib}\n"):
            # The rule is in force: anyone else who maps the library is refused.
            other = as_nobody(sys.executable, "-c", load)
            launch = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "lxbsm_tools.auditd.main",
                    "--control",
                    str(cf),
                    "--socket",
                    sock,
                ],
                capture_output=True,
                text=True,
                check=False,
                cwd=REPO,
                timeout=300,
            )
            assert launch.returncode == 0, launch
            st = audit.daemon_request(sock, "status")
            assert st.get("ok"), st
            assert audit.daemon_request(sock, "terminate").get("ok")
    finally:
        for _ in range(300):
            ctl = uapi.open_control()
            try:
                if not uapi.get_status(ctl).consumer_open:
                    break
            finally:
                os.close(ctl)
            time.sleep(0.1)
        shutil.rmtree(d, ignore_errors=True)
    assert other.returncode != 0 and "Permission denied" in other.stderr, other
