"""hxprobe (tests/guest/progs/hxprobe.c) and tiny static programs, compiled in the guest."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .conftest import REPO

EXIT_X = 42  # what the program X exits with when it runs


def build(d: Path) -> Path:
    """In @d (readable by everyone): hxprobe, and X, Y, Y2 of one size.

    X exits EXIT_X, Y and Y2 exit 0; Y and Y2 differ only in their padding.
    """
    d.chmod(0o755)
    src = REPO / "tests" / "guest" / "progs" / "hxprobe.c"
    subprocess.run(["cc", "-O2", "-Wall", "-Werror", "-o", d / "hxprobe", src], check=True)
    for name, code in (("x", EXIT_X), ("y", 0)):
        c = d / f"{name}.c"
        c.write_text(
            "void _start(void)\n{\n"
            f'\tasm volatile("mov $60, %eax\\n\\tmov ${code}, %edi\\n\\tsyscall");\n'
            "}\n"
        )
        subprocess.run(
            ["cc", "-O2", "-static", "-nostdlib", "-Wl,--build-id=none", "-o", d / name, c],
            check=True,
        )
    size = max((d / n).stat().st_size for n in ("x", "y")) + 64
    for name, src_name, pad in (("X", "x", b"\0"), ("Y", "y", b"a"), ("Y2", "y", b"b")):
        data = (d / src_name).read_bytes()
        (d / name).write_bytes(data + pad * (size - len(data)))
        (d / name).chmod(0o755)
    return d / "hxprobe"


def _run(*cmd: str, check: bool = True) -> str:
    return subprocess.run(cmd, check=check, capture_output=True, text=True).stdout


@contextmanager
def dm_ext4(name: str, delay_ms: int = 0) -> Iterator[Path]:
    """A mounted ext4 on a device-mapper device over a loop file, readable by
    everyone: dm-delay with every read delayed @delay_ms, or dm-linear (0),
    which suspend() can make hang."""
    work = Path(tempfile.mkdtemp(prefix=f"{name}-", dir="/tmp"))
    work.chmod(0o755)
    img, mnt = work / "img", work / "mnt"
    mnt.mkdir()
    _run("truncate", "-s", "64M", str(img))
    _run("mkfs.ext4", "-q", str(img))
    _run("modprobe", "loop", check=False)
    _run("modprobe", "dm-delay" if delay_ms else "dm-mod", check=False)
    loop = _run("losetup", "--find", "--show", str(img)).strip()
    sectors = _run("blockdev", "--getsz", loop).strip()
    if delay_ms:
        table = f"0 {sectors} delay {loop} 0 {delay_ms} {loop} 0 0"
    else:
        table = f"0 {sectors} linear {loop} 0"
    try:
        _run("dmsetup", "create", name, "--noudevsync", "--table", table)
        _run("dmsetup", "mknodes", name)
        try:
            _run("mount", f"/dev/mapper/{name}", str(mnt))
            try:
                mnt.chmod(0o755)
                yield mnt
            finally:
                _run("dmsetup", "resume", name, check=False)
                _run("umount", str(mnt), check=False)
        finally:
            _run("dmsetup", "remove", "--noudevsync", name, check=False)
    finally:
        _run("losetup", "-d", loop, check=False)
        shutil.rmtree(work, ignore_errors=True)


def suspend(name: str) -> None:
    """From now on every I/O to dm device @name waits (until resume())."""
    _run("dmsetup", "suspend", "--noflush", "--nolockfs", name)


def resume(name: str) -> None:
    _run("dmsetup", "resume", name)
