"""Protected trees in the kernel (kmod/protect.c): every change to a file below one is a record.

The records (AUE_LXBSM_J*, docs/recovery.md) go into the ring whatever the masks select; each
says what the file holds after the change.  The changes are made by child processes: the test
process reads the ring, and the ring's reader is never captured.
"""

from __future__ import annotations

import errno
import fcntl
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from lxbsm_tools import uapi
from lxbsm_tools.bsm import Record
from lxbsm_tools.ring import Ring

from .audit import PROGS, Auditor, auditing, aue, paths
from .conftest import AS_NOBODY, load_module, module_loaded, run

JOURNAL = {
    aue(n)
    for n in (
        "AUE_LXBSM_JWRITE",
        "AUE_LXBSM_JTRUNCATE",
        "AUE_LXBSM_JCREATE",
        "AUE_LXBSM_JUNLINK",
        "AUE_LXBSM_JRENAME",
        "AUE_LXBSM_JLINK",
        "AUE_LXBSM_JMETA",
        "AUE_LXBSM_JLOST",
    )
}


def set_protect(ctl: int, trees: list[Path]) -> None:
    opened = [os.open(t, os.O_PATH | os.O_DIRECTORY) for t in trees]
    try:
        uapi.set_protect(ctl, opened)
    finally:
        for fd in opened:
            os.close(fd)


def protect_status(ctl: int) -> tuple[int, int, int, int]:
    st = uapi.protect_status(ctl)
    return st.nr_trees, st.records, st.bytes, st.lost


@contextmanager
def protecting(*trees: Path) -> Iterator[Auditor]:
    with auditing(flags="", naflags="", policy="cnt") as a:
        set_protect(a.ctl, list(trees))
        try:
            yield a
        finally:
            set_protect(a.ctl, [])


def child(a: Auditor, code: str, *, as_nobody: bool = False) -> int:
    """Run Python @code in a child, reading the ring meanwhile; its pid."""
    cmd = [*(AS_NOBODY if as_nobody else ()), sys.executable, "-c", code]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    while p.poll() is None:
        a.collect()
        time.sleep(0.02)
    out = p.stdout.read() if p.stdout else ""
    assert p.returncode == 0, out
    time.sleep(0.1)
    a.collect()
    return p.pid


def journal(a: Auditor, pid: int | None = None) -> list[Record]:
    a.collect()
    return [
        r
        for r in a.seen
        if r.event in JOURNAL and (pid is None or (r.subject is not None and r.subject.pid == pid))
    ]


def name(r: Record) -> str:
    return {aue(n): n for n in ("AUE_LXBSM_" + k for k in ("JWRITE", "JTRUNCATE", "JCREATE",
            "JUNLINK", "JRENAME", "JLINK", "JMETA", "JLOST"))}[r.event][10:]  # fmt: skip


def args(r: Record) -> dict[str, int]:
    return {t.text: t.value for t in r.all("arg64")}


def call(r: Record) -> str:
    return str(r.all("text")[-1].text)


def replay(records: list[Record], path: str) -> bytes | None:
    """The content of @path as the journal records say it is (None: not there)."""
    files: dict[str, bytearray] = {}
    for r in records:
        p = paths(r)
        kind = name(r)
        if kind == "JLOST":
            raise AssertionError(f"a change to {p} was lost: {call(r)}")
        if kind == "JCREATE":
            files[p[0]] = bytearray()
        elif kind in ("JWRITE", "JTRUNCATE"):
            a = args(r)
            data = files.setdefault(p[0], bytearray())
            if kind == "JWRITE":
                opaque = r.first("opaque")
                assert opaque is not None, "a JWRITE without its data"
                blob = opaque.data
                assert len(blob) == a["end"] - a["start"]
                if len(data) < a["start"]:
                    data += bytes(a["start"] - len(data))
                data[a["start"] : a["end"]] = blob
            del data[a["size"] :]
            data += bytes(a["size"] - len(data))
        elif kind == "JUNLINK":
            files.pop(p[0], None)
        elif kind == "JRENAME":
            moved = files.pop(p[0], None)
            files.pop(p[1], None)
            if moved is not None:
                files[p[1]] = moved
        elif kind == "JLINK" and p[0] in files:
            files[p[1]] = files[p[0]]  # one file, two names
    got = files.get(path)
    return None if got is None else bytes(got)


def test_writes_become_records_of_what_the_file_holds(tmp_path: Path) -> None:
    tree = tmp_path / "site"
    tree.mkdir()
    f = tree / "app.conf"
    f.write_bytes(b"")
    code = f"""
import os
p = {str(f)!r}
fd = os.open(p, os.O_WRONLY)
os.write(fd, b"hello world\\n")
os.pwrite(fd, b"HELLO", 0)
os.writev(fd, [b"ab", b"cd"])
os.close(fd)
fd = os.open(p, os.O_WRONLY | os.O_APPEND)
os.write(fd, b"appended\\n")
os.ftruncate(fd, 20)
os.close(fd)
os.truncate(p, 25)
fd = os.open(p, os.O_RDWR)
os.posix_fallocate(fd, 0, 40)
os.pwrite(fd, b"X" * 40000, 100)
os.close(fd)
"""
    with protecting(tree) as a:
        pid = child(a, code)
        recs = journal(a, pid)
        nr, records, _nbytes, lost = protect_status(a.ctl)
    assert nr == 1 and lost == 0
    assert records >= len(recs) > 0
    assert replay(recs, str(f)) == f.read_bytes()
    calls = [call(r) for r in recs]
    for c in ("write", "pwrite64", "writev", "ftruncate", "truncate", "fallocate"):
        assert c in calls, calls
    # a 40000-byte write arrives in pieces of at most 16 KiB, each whole in itself
    # one record per change, also on overlayfs (the guest's /tmp), whose upper file is not
    # counted again
    assert [name(r) for r in recs].count("JTRUNCATE") == 3
    big = [r for r in recs if name(r) == "JWRITE" and args(r)["start"] >= 100]
    assert len(big) == 3 and all(args(r)["end"] - args(r)["start"] <= 16384 for r in big)
    r = recs[0]
    assert [t.name for t in r.tokens][1:4] == ["arg64", "arg64", "arg64"]
    attr = r.first("attr32")
    assert attr is not None and attr.nodeid == f.stat().st_ino
    assert r.subject is not None and r.subject.pid == pid


def test_o_trunc_create_unlink_rename_link_chmod(tmp_path: Path) -> None:
    tree = tmp_path / "t"
    out = tmp_path / "outside"
    tree.mkdir()
    out.mkdir()
    (tree / "old").write_bytes(b"0123456789")
    (tree / "gone").write_bytes(b"x")
    (out / "incoming").write_bytes(b"from outside")
    code = f"""
import os
t, o = {str(tree)!r}, {str(out)!r}
with open(t + "/old", "wb") as f:   # O_TRUNC
    f.write(b"new")
with open(t + "/made", "xb") as f:
    pass
os.unlink(t + "/gone")
os.rename(t + "/old", t + "/renamed")
os.rename(o + "/incoming", t + "/in")
os.rename(t + "/made", o + "/out")
os.link(t + "/renamed", t + "/hard")
os.chmod(t + "/renamed", 0o600)
try:
    os.unlink(t + "/nonexistent")
except FileNotFoundError:
    pass
"""
    with protecting(tree) as a:
        pid = child(a, code)
        recs = journal(a, pid)
    got = [(name(r), paths(r)) for r in recs if name(r) != "JWRITE"]
    t = str(tree)
    assert ("JTRUNCATE", [f"{t}/old"]) in got
    assert ("JCREATE", [f"{t}/made"]) in got
    assert ("JUNLINK", [f"{t}/gone"]) in got
    assert ("JRENAME", [f"{t}/old", f"{t}/renamed"]) in got
    assert ("JCREATE", [f"{t}/in"]) in got  # into the tree: a new file, read whole
    assert ("JUNLINK", [f"{t}/made"]) in got  # out of the tree
    assert ("JLINK", [f"{t}/renamed", f"{t}/hard"]) in got
    meta = [r for r in recs if name(r) == "JMETA"]
    attr = meta[0].first("attr32") if len(meta) == 1 else None
    assert attr is not None and attr.mode == 0o600
    assert not any(p == [f"{t}/nonexistent"] for _, p in got)  # a failed unlink is no change
    assert replay(recs, f"{t}/in") == b"from outside"
    assert all(not p[0].startswith(str(out)) for _, p in got if p)


def test_nothing_outside_the_trees(tmp_path: Path) -> None:
    tree = tmp_path / "p"
    other = tmp_path / "pother"  # a sibling whose name starts like the tree's
    tree.mkdir()
    other.mkdir()
    code = f"open({str(other / 'f')!r}, 'w').write('x' * 100); open('/tmp/np', 'w').write('y')"
    with protecting(tree) as a:
        pid = child(a, code)
        assert journal(a, pid) == []


def test_shared_mapping_is_read_whole_when_its_last_reference_goes(tmp_path: Path) -> None:
    tree = tmp_path / "m"
    tree.mkdir()
    f = tree / "bin"
    f.write_bytes(bytes(range(256)) * 64)
    code = f"""
import mmap, os
fd = os.open({str(f)!r}, os.O_RDWR)
m = mmap.mmap(fd, 0)
m[1000:1006] = b"MAPPED"
m.close()
os.close(fd)
fd = os.open({str(f)!r}, os.O_RDWR)
m = mmap.mmap(fd, 0)
m[5:9] = b"EXIT"
os._exit(0)   # the mapping goes with the process
"""
    with protecting(tree) as a:
        pid = child(a, code)
        recs = journal(a, pid)
    mm = [r for r in recs if call(r) == "mmap"]
    assert len(mm) >= 2 and all(name(r) == "JWRITE" for r in mm)
    assert replay(recs, str(f)) == f.read_bytes()
    assert f.read_bytes()[1000:1006] == b"MAPPED"


def test_racing_writers_are_all_captured_or_named_lost(tmp_path: Path) -> None:
    """Many writers at once, as nobody: every file is what its records say, or a loss is named."""
    tree = Path(tempfile.mkdtemp(prefix="race", dir="/tmp"))
    tree.chmod(0o777)
    code = f"""
import os, sys, threading
errors = []
def w(i):
  try:
    p = {str(tree)!r} + "/f%d" % i
    fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o644)
    for k in range(100):
        os.pwrite(fd, bytes([65 + i]) * 97, k * 97)
        if k % 10 == 0:
            os.rename(p, p + ".x"); os.rename(p + ".x", p)
    os.close(fd)
  except Exception as e:
    errors.append(e)
ts = [threading.Thread(target=w, args=(i,)) for i in range(8)]
[t.start() for t in ts]; [t.join() for t in ts]
sys.exit(repr(errors) if errors else 0)
"""
    with protecting(tree) as a:
        pid = child(a, code, as_nobody=True)
        recs = journal(a, pid)
        _nr, _records, _bytes, lost = protect_status(a.ctl)
    assert lost == 0
    for i in range(8):
        p = tree / f"f{i}"
        assert replay(recs, str(p)) == p.read_bytes(), p


def test_long_paths_at_the_limit(tmp_path: Path) -> None:
    tree = tmp_path / "long"
    tree.mkdir()
    d = tree
    while len(str(d)) < 3800:
        d = d / ("d" * 200)
        d.mkdir()
    f = d / ("n" * (4090 - len(str(d)) - 1))
    assert len(str(f)) == 4090
    with protecting(tree) as a:
        pid = child(a, f"open({str(f)!r}, 'wb').write(b'z' * 10)")
        recs = journal(a, pid)
    assert [name(r) for r in recs][:1] == ["JCREATE"]
    assert replay(recs, str(f)) == b"z" * 10


def test_set_protect_refuses_bad_input(tmp_path: Path) -> None:
    notdir = tmp_path / "file"
    notdir.write_text("x")
    with auditing(flags="", naflags="", policy="cnt") as a:
        with pytest.raises(OSError) as e:
            uapi.set_protect(a.ctl, [9999])
        assert e.value.errno == errno.EBADF
        fd = os.open(notdir, os.O_RDONLY)
        try:
            with pytest.raises(OSError) as e:
                uapi.set_protect(a.ctl, [fd])
            assert e.value.errno == errno.ENOTDIR
        finally:
            os.close(fd)
        # more trees than the module takes, past the wrapper's own check
        req = uapi.Protect(nr_trees=uapi.PROTECT_MAX + 1)
        with pytest.raises(OSError) as e:
            fcntl.ioctl(a.ctl, uapi.IOC_SET_PROTECT, bytes(req))
        assert e.value.errno == errno.EINVAL
        assert protect_status(a.ctl)[0] == 0


def test_a_link_out_of_the_tree_is_named_as_a_loss(tmp_path: Path) -> None:
    """The bypass: link a protected file outside the trees and write through that name."""
    tree = tmp_path / "lt"
    tree.mkdir()
    f = tree / "passwd"
    f.write_bytes(b"root:x:0:0\n")
    alias = tmp_path / "alias"
    code = f"""
import os
os.link({str(f)!r}, {str(alias)!r})
with open({str(alias)!r}, "ab") as w:
    w.write(b"evil::0:0\\n")
"""
    with protecting(tree) as a:
        pid = child(a, code)
        recs = journal(a, pid)
    lost = [r for r in recs if name(r) == "JLOST"]
    assert len(lost) == 1 and paths(lost[0]) == [str(f)], recs
    assert call(lost[0]) == f"not captured from here on: linked outside the trees as {alias}"
    assert not [r for r in recs if name(r) == "JWRITE"]  # the write itself went unseen


def test_writes_by_the_kernel_for_a_call_io_uring_sendfile_splice_copy_file_range(
    tmp_path: Path,
) -> None:
    tree = tmp_path / "k"
    tree.mkdir()
    f = tree / "data"
    f.write_bytes(b"")
    src = tmp_path / "src"
    src.write_bytes(b"SENDFILE" + b"COPYFILE")
    code = f"""
import os
f, s = {str(f)!r}, {str(src)!r}
fd, sfd = os.open(f, os.O_WRONLY), os.open(s, os.O_RDONLY)
os.pwrite(fd, b"." * 64, 0)  # the journal knows the file from here on
os.sendfile(fd, sfd, 0, 8)
os.copy_file_range(sfd, fd, 8, 8, 20)
r, w = os.pipe()
os.write(w, b"SPLICED")
os.lseek(fd, 40, 0)
os.splice(r, fd, 7)
"""
    with protecting(tree) as a:
        child(a, code)
        p = subprocess.run(
            [str(PROGS / "sysprobe"), "uring-write", str(f), "50", "URING"],
            capture_output=True,
            text=True,
        )
        assert p.returncode == 0 and p.stdout.split()[0] == "5", p.stdout + p.stderr
        time.sleep(0.2)
        recs = journal(a)  # both children's: nothing else writes below the tree
    content = f.read_bytes()
    assert content == b"SENDFILE" + b"." * 12 + b"COPYFILE" + b"." * 12 + b"SPLICED" + b"..." + (
        b"URING" + b"." * 9
    )
    assert replay(recs, str(f)) == content
    assert {call(r) for r in recs} >= {"sendfile", "copy_file_range", "splice", "io_uring"}


WAIT_PARAM = Path("/sys/module/lxbsm/parameters/protect_wait_ms")


def test_a_full_ring_makes_writers_wait_then_names_what_it_lost(tmp_path: Path) -> None:
    """Nobody reads the ring while 24 MiB are written below a tree (the ring holds 16 MiB)."""
    tree = tmp_path / "full"
    tree.mkdir()
    f = tree / "big"
    old = WAIT_PARAM.read_text().strip()
    WAIT_PARAM.write_text("100")
    code = f"""
import os
fd = os.open({str(f)!r}, os.O_WRONLY | os.O_CREAT, 0o644)
for i in range(24):
    os.write(fd, bytes([65 + i]) * (1 << 20))
"""
    try:
        with protecting(tree) as a:
            t0 = time.monotonic()
            p = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=600)
            took = time.monotonic() - t0
            assert p.returncode == 0, p.stderr
            lost = protect_status(a.ctl)[3]
            a.collect()
            # a record after the gap carries the notice of what found no room at all
            child(a, f"open({str(f)!r}, 'r+b').write(b'x')")
            recs = journal(a)
            notices = [r for r in a.seen if r.event == aue("AUE_LXBSM_LOST")]
    finally:
        WAIT_PARAM.write_text(old)
    assert lost > 0
    # each loss is named, if late: kept until there was room again
    named = [r for r in recs if name(r) == "JLOST" and paths(r) == [str(f)]]
    assert named, f"a change was lost without naming the file ({len(notices)} loss notices)"
    assert all(r.subject is not None and r.subject.pid != os.getpid() for r in named)
    # the writer waited for room, but not without end: 100 ms, then its loss is named
    assert took < 120
    with pytest.raises(AssertionError, match="was lost"):
        replay(recs, str(f))


UNLOAD_WRITER = """
import mmap, os, sys, time
top = sys.argv[1]
p, q = top + "/w", top + "/w2"
while not os.path.exists(top + "/stop"):
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
    os.pwrite(fd, b"x" * 70000, 0)
    os.ftruncate(fd, 1000)
    m = mmap.mmap(fd, 1000)
    m[0:4] = b"MMAP"
    m.close()
    os.close(fd)
    os.rename(p, q)
    os.link(q, p)
    os.unlink(q)
    time.sleep(0.01)
"""


def test_unload_while_protected_files_change() -> None:
    """Writers below a tree all along (each pausing 10 ms a round) while the module is loaded,
    protects it, loses its reader (the tree still protected) and is unloaded: every rmmod
    returns (a refusal or done), and no writer is left waiting for room a reader would have
    made.  (Writers in a tight loop can keep rmmod refused: each capture on its way holds the
    module; docs/recovery.md.)"""
    from .test_lifecycle import rmmod_retrying

    tree = Path(tempfile.mkdtemp(prefix="unload", dir="/tmp"))
    tree.chmod(0o777)
    tops = [tree / n for n in "abc"]
    for d in tops:
        d.mkdir()
        d.chmod(0o777)
    writers = [
        subprocess.Popen([*AS_NOBODY, sys.executable, "-c", UNLOAD_WRITER, str(d)]) for d in tops
    ]
    times: list[float] = []
    try:
        for _ in range(2):
            if not module_loaded():
                run("insmod", os.environ["LXBSM_KO"])
            ctl = uapi.open_control()
            try:
                with Ring() as ring:
                    a = Auditor(ring, ctl)
                    a.configure(flags="", naflags="", policy="cnt")
                    set_protect(ctl, [tree])
                    deadline = time.monotonic() + 60
                    while not journal(a) and time.monotonic() < deadline:
                        time.sleep(0.2)
                    assert journal(a), "nothing captured while the writers ran"
            finally:
                os.close(ctl)
            # the tree stays protected, the reader is gone: no writer waits for room
            time.sleep(1)
            rmmod_retrying(times)
            assert not module_loaded()
            assert all(w.poll() is None for w in writers), "a writer died"
    finally:
        for d in tops:
            (d / "stop").touch()
        for w in writers:
            w.wait(60)
        if module_loaded():  # failed midway: no tree left protected for the tests after
            ctl = uapi.open_control()
            try:
                uapi.set_protect(ctl, [])
            finally:
                os.close(ctl)
        load_module()
    assert max(times) < 60, times
