"""open, openat, openat2, creat (and io_uring), close: events by flags, paths, errors."""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path

import pytest

from lxbsm_tools.bsm import errno_to_bsm

from .audit import PROGS, assert_return, assert_subject, auditing, failed, paths, spawn

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

NR_OPEN, NR_CREAT, NR_OPENAT2 = 2, 85, 437
KERNEL_O_LARGEFILE = 0o100000  # added by the kernel on 64-bit; glibc's O_LARGEFILE is 0


class OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def sys_open(path: bytes, flags: int, mode: int = 0) -> int:
    return int(libc.syscall(NR_OPEN, path, flags, mode))


def args_of(rec) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return {t.text: t.value for t in rec.all("arg32")}


def mine(rec) -> bool:  # type: ignore[no-untyped-def]
    return rec.subject is not None and rec.subject.pid == os.getpid()


@pytest.mark.parametrize(
    ("flags", "event"),
    [
        (os.O_RDONLY, "AUE_OPENAT_R"),
        (os.O_WRONLY, "AUE_OPENAT_W"),
        (os.O_RDWR, "AUE_OPENAT_RW"),
        (os.O_WRONLY | os.O_CREAT, "AUE_OPENAT_WC"),
        (os.O_WRONLY | os.O_TRUNC, "AUE_OPENAT_WT"),
        (os.O_RDWR | os.O_CREAT | os.O_TRUNC, "AUE_OPENAT_RWTC"),
        (os.O_PATH, "AUE_OPENAT"),
    ],
)
def test_openat_event_follows_flags(tmp_path: Path, flags: int, event: str) -> None:
    target = tmp_path / "f"
    target.write_text("x")
    with auditing() as a:
        fd = os.open(target, flags, 0o640)
        os.close(fd)
        rec = a.one(event, os.getpid(), where=lambda r: paths(r) == [str(target)])
    args = args_of(rec)
    # What the kernel saw: Python adds O_CLOEXEC, the kernel O_LARGEFILE.
    assert args["flags"] & ~(os.O_CLOEXEC | KERNEL_O_LARGEFILE) == flags
    assert ("mode" in args) == bool(flags & os.O_CREAT)
    assert args["at fd 1"] == 0xFFFFFF9C  # AT_FDCWD
    st = os.stat(target)
    attr = rec.first("attr32")
    assert (attr.nodeid, attr.mode) == (st.st_ino, st.st_mode & 0o7777)
    assert_subject(rec, os.getpid())
    assert_return(rec, value=fd)
    # FreeBSD's order: [mode], flags, at fd, path, attr32, subject, return.
    names = [t.name for t in rec.tokens]
    assert names[-5:] == ["path", "attr32", "subject32", "return32", "trailer"]


def test_open_creat_openat2_and_relative_names(tmp_path: Path) -> None:
    os.chdir(tmp_path)
    with auditing() as a:
        fd1 = sys_open(b"plain", os.O_WRONLY | os.O_CREAT, 0o600)
        fd2 = int(libc.syscall(NR_CREAT, b"made", 0o644))
        how = OpenHow(flags=os.O_RDONLY)
        fd3 = int(libc.syscall(NR_OPENAT2, -100, b"made", ctypes.byref(how), ctypes.sizeof(how)))
        assert min(fd1, fd2, fd3) >= 0
        for fd in (fd1, fd2, fd3):
            os.close(fd)
        r1 = a.one("AUE_OPEN_WC", os.getpid())
        r2 = a.one("AUE_CREAT", os.getpid())
        r3 = a.one(
            "AUE_OPENAT_R", os.getpid(), where=lambda r: paths(r) == [str(tmp_path / "made")]
        )
    assert paths(r1) == [str(tmp_path / "plain")]
    assert args_of(r1)["mode"] == 0o600
    assert "at fd 1" not in args_of(r1)
    assert paths(r2) == [str(tmp_path / "made")]
    assert_return(r3, value=fd3)


def test_failed_opens_record_errno_and_absolute_name(tmp_path: Path) -> None:
    os.chdir(tmp_path)
    locked = tmp_path / "locked"
    locked.write_text("")
    locked.chmod(0)
    with auditing() as a:
        assert sys_open(b"missing/file", os.O_RDONLY) == -1
        assert ctypes.get_errno() == errno.ENOENT
        assert sys_open(ctypes.cast(1, ctypes.c_char_p), os.O_RDONLY) == -1  # type: ignore[arg-type]
        assert ctypes.get_errno() == errno.EFAULT
        code = (
            f"import os\ntry:\n os.open({str(locked)!r}, os.O_RDONLY)\n"
            "except OSError as e:\n print(e.errno)"
        )
        pid, _, out = spawn(
            "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "python3", "-c", code
        )
        assert out.split() == [str(errno.EACCES)]
        fails = {r.return_token.status: r for r in a.records("AUE_OPEN_R", os.getpid(), failed)}
        eacces = a.one("AUE_OPENAT_R", pid, where=lambda r: paths(r) == [str(locked)])
    enoent = fails.pop(errno_to_bsm(errno.ENOENT))
    assert paths(enoent) == [str(tmp_path / "missing/file")]
    assert enoent.first("attr32") is None
    assert_return(enoent, errno=errno.ENOENT)
    assert list(fails) == [errno_to_bsm(errno.EFAULT)]
    assert_return(eacces, errno=errno.EACCES)
    assert_subject(eacces, pid, uid=65534, gid=65534)


def test_io_uring_openat_is_recorded(tmp_path: Path) -> None:
    target = tmp_path / "ring-file"
    target.write_text("x")
    with auditing() as a:
        pid, rc, out = spawn(PROGS / "sysprobe", "uring-openat", str(target))
        assert rc == 0 and int(out.split()[0]) >= 0, out
        rec = a.one("AUE_OPENAT_R", where=lambda r: paths(r) == [str(target)])
        p2, _, out2 = spawn(PROGS / "sysprobe", "uring-openat", str(tmp_path / "absent"))
        assert out2.split()[1] == str(errno.ENOENT)
        bad = a.one("AUE_OPENAT_R", where=lambda r: paths(r) == [str(tmp_path / "absent")])
    assert rec.first("text").text == "io_uring"
    assert rec.subject.pid == pid
    assert_return(rec, value=0)
    assert_return(bad, errno=errno.ENOENT)
    assert bad.subject.pid == p2


def test_close_records_fd_path_attr_and_ebadf(tmp_path: Path) -> None:
    target = tmp_path / "c"
    target.write_text("x")
    fd = os.open(target, os.O_RDONLY)
    with auditing() as a:
        os.close(fd)
        with pytest.raises(OSError):
            os.close(fd)
        ok = a.one("AUE_CLOSE", os.getpid(), where=lambda r: paths(r) == [str(target)])
        bad = a.one("AUE_CLOSE", os.getpid(), where=failed)
    assert args_of(ok)["fd"] == fd
    assert ok.first("attr32").nodeid == os.stat(target).st_ino
    assert_return(ok, value=0)
    assert args_of(bad)["fd"] == fd
    assert paths(bad) == []
    assert_return(bad, errno=errno.EBADF)
