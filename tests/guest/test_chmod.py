"""chmod, fchmod, fchmodat: the first table-driven events (kmod/events.h, ev_sys.c)."""

from __future__ import annotations

import ctypes
import errno
import os
import tempfile
import threading
from pathlib import Path

import pytest

from .audit import assert_return, assert_subject, auditing, failed, paths
from .conftest import python_as_nobody

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
NR_FCHMODAT2 = 452  # x86-64, 6.6 on


def args_of(rec) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return {t.text: t.value for t in rec.all("arg32")}


def names(rec) -> list[str]:  # type: ignore[no-untyped-def]
    return [t.name for t in rec.tokens]


def test_chmod_records_mode_path_attr_in_freebsd_order(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_text("x")
    target.chmod(0o600)
    ino = target.stat().st_ino
    with auditing() as a:
        os.chmod(target, 0o640)
        rec = a.one("AUE_CHMOD", os.getpid(), where=lambda r: paths(r) == [str(target)])
    assert args_of(rec) == {"new file mode": 0o640}
    attr = rec.first("attr32")
    # The file as the call found it: before the change.
    assert (attr.nodeid, attr.mode) == (ino, 0o600)
    assert_subject(rec, os.getpid())
    assert_return(rec, value=0)
    assert names(rec) == ["header32", "arg32", "path", "attr32", "subject32", "return32", "trailer"]


def test_fchmod_records_fd_and_the_files_own_path_and_ebadf(tmp_path: Path) -> None:
    target = tmp_path / "g"
    target.write_text("x")
    fd = os.open(target, os.O_RDONLY)
    try:
        with auditing() as a:
            os.fchmod(fd, 0o604)
            ok = a.one("AUE_FCHMOD", os.getpid(), where=lambda r: not failed(r))
            with pytest.raises(OSError):
                os.fchmod(9999, 0o600)
            bad = a.one("AUE_FCHMOD", os.getpid(), where=failed)
    finally:
        os.close(fd)
    assert args_of(ok) == {"new file mode": 0o604, "fd": fd}
    assert paths(ok) == [str(target)]
    assert ok.first("attr32").nodeid == target.stat().st_ino
    assert names(ok)[1:5] == ["arg32", "arg32", "path", "attr32"]
    assert args_of(bad) == {"new file mode": 0o600, "non-file: fd": 9999}
    assert paths(bad) == [] and bad.first("attr32") is None
    assert_return(bad, errno=errno.EBADF)


def test_fchmodat_and_fchmodat2_relative_to_a_directory_fd(tmp_path: Path) -> None:
    (tmp_path / "h").write_text("x")
    dfd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with auditing() as a:
            os.chmod("h", 0o611, dir_fd=dfd)
            rec = a.one("AUE_FCHMODAT", os.getpid(), where=lambda r: not failed(r))
            two = libc.syscall(NR_FCHMODAT2, dfd, b"h", 0o622, 0)
            err = ctypes.get_errno()
            recs2 = a.records("AUE_FCHMODAT", os.getpid())
    finally:
        os.close(dfd)
    assert args_of(rec) == {"at fd 1": dfd, "new file mode": 0o611}
    assert paths(rec) == [str(tmp_path / "h")]
    assert names(rec)[1:5] == ["arg32", "arg32", "path", "attr32"]
    if two == 0:  # a kernel with fchmodat2 (6.6 on): the same event
        assert len(recs2) == 2 and args_of(recs2[1])["new file mode"] == 0o622
    else:
        assert err == errno.ENOSYS and len(recs2) == 1


def test_failures_name_what_was_asked_or_what_was_found() -> None:
    # a directory nobody may search (pytest's own are root's alone)
    top = Path(tempfile.mkdtemp(dir="/tmp"))
    top.chmod(0o755)
    missing = top / "missing"
    owned = top / "owned"
    owned.write_text("x")
    code = (
        "import os\n"
        f"for p in ({str(missing)!r}, {str(owned)!r}):\n"
        "    try:\n        os.chmod(p, 0o777)\n    except OSError as e:\n        print(e.errno)\n"
    )
    with auditing() as a:
        os.chdir(top)
        with pytest.raises(FileNotFoundError):
            os.chmod("missing", 0o600)
        gone = a.one("AUE_CHMOD", os.getpid(), where=failed)
        out = python_as_nobody(code)
        theirs = [r for r in a.records("AUE_CHMOD") if failed(r) and r.subject.ruid != 0]
    # A lookup that failed: the name as given, made absolute; no file, no attr32.
    assert paths(gone) == [str(missing)] and gone.first("attr32") is None
    assert_return(gone, errno=errno.ENOENT)
    # nobody: ENOENT, then EPERM on a file the lookup found (its path and attr32).
    assert out.stdout.split() == [str(errno.ENOENT), str(errno.EPERM)], out
    by_path = {paths(r)[0]: r for r in theirs}
    assert set(by_path) == {str(missing), str(owned)}
    assert by_path[str(owned)].first("attr32").nodeid == owned.stat().st_ino
    assert_return(by_path[str(owned)], errno=errno.EPERM)


def test_chmod_is_not_recorded_unless_fm_is_selected(tmp_path: Path) -> None:
    target = tmp_path / "n"
    target.write_text("x")
    with auditing(flags="fr,pc", naflags="fr,pc") as a:
        os.chmod(target, 0o644)
        os.open(target, os.O_RDONLY)
        assert a.records("AUE_OPENAT_R", os.getpid(), where=lambda r: paths(r) == [str(target)])
        assert a.records("AUE_CHMOD") == []


def test_a_name_rewritten_during_the_call_cannot_mislabel_the_file(tmp_path: Path) -> None:
    """Attack: a thread flips the name between two files while chmod runs.

    The record's path is the one the kernel resolved, never the buffer read again:
    every record's path and attr32 name the same file.
    """
    a_file, b_file = tmp_path / "aaaa", tmp_path / "bbbb"
    for f in (a_file, b_file):
        f.write_text("x")
    ino = {str(a_file): a_file.stat().st_ino, str(b_file): b_file.stat().st_ino}
    buf = ctypes.create_string_buffer(bytes(a_file) + b"\0")
    names_ = [bytes(a_file), bytes(b_file)]
    stop = threading.Event()

    def flip() -> None:
        i = 0
        while not stop.is_set():
            ctypes.memmove(buf, names_[i & 1], len(names_[0]))
            i += 1

    t = threading.Thread(target=flip)
    with auditing() as a:
        t.start()
        try:
            for _ in range(2000):
                libc.chmod(buf, 0o640)
        finally:
            stop.set()
            t.join()
        recs = a.records("AUE_CHMOD", os.getpid())
    assert len(recs) == 2000
    seen = {p for r in recs for p in paths(r)}
    assert seen == set(ino), seen  # the flipping reached the calls
    for r in recs:
        assert r.first("attr32").nodeid == ino[paths(r)[0]], paths(r)
