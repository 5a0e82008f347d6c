"""The daemon's side of protected trees (issue 17): journal records from the
ring filed in the journal, trees put in force at start and on reload,
baselines taken by the helper.  The records are built here exactly as
docs/recovery.md's interface says the module writes them, and the journal is
read back with lxbsm-recover."""

from __future__ import annotations

import datetime
import errno
import json
import os
import pwd
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from test_auditd import FakeRing

from lxbsm_tools import audit
from lxbsm_tools.auditd import config, daemon, privs, protect
from lxbsm_tools.bsm import encode_record, make_token
from lxbsm_tools.recover import main as recover
from lxbsm_tools.recover.journal import Kind
from lxbsm_tools.recover.store import Store, file_id

JWRITE, JTRUNCATE, JCREATE, JUNLINK, JRENAME, JLINK, JMETA, JLOST = range(33003, 33011)
TRUSTED = {"auid": 1000, "asid": 11, "port": 40000, "addr": "192.0.2.10"}
INTRUDER = {"auid": 1001, "asid": 66, "port": 50000, "addr": "198.51.100.66"}


def jrec(
    event: int,
    path: str,
    *,
    when: float,
    path2: str | None = None,
    start: int | None = None,
    end: int | None = None,
    size: int = 0,
    data: bytes | None = None,
    mode: int = 0o644,
    uid: int = 0,
    gid: int = 0,
    ids: tuple[int, int] = (0x803, 4242),
    call: str = "write",
    who: dict[str, Any] = TRUSTED,
    seq: int | None = None,
) -> bytes:
    """One journal record, token by token as docs/recovery.md's interface has it."""
    toks = []
    if event in (JWRITE, JLOST):
        toks.append(make_token("arg64", num=1, value=start or 0, text="start"))
        toks.append(make_token("arg64", num=2, value=end or 0, text="end"))
    toks.append(make_token("arg64", num=3, value=size, text="size"))
    toks.append(make_token("path", text=path))
    if path2 is not None:
        toks.append(make_token("path", text=path2))
    dev, ino = ids
    toks.append(make_token("attr32", mode=mode, uid=uid, gid=gid, fsid=dev, nodeid=ino, dev=0))
    if data is not None:
        toks.append(make_token("opaque", data=data))
    toks.append(make_token("text", text=call))
    toks.append(
        make_token(
            "subject32",
            auid=who["auid"],
            euid=0,
            egid=0,
            ruid=0,
            rgid=0,
            pid=1234,
            sid=who["asid"],
            port=who["port"],
            address=who["addr"],
        )
    )
    toks.append(make_token("return32", status=0, value=0))
    if seq is not None:
        toks.append(make_token("seq", seq=seq))
    sec = int(when)
    return encode_record(event, 0, toks, time=(sec, int((when - sec) * 1000)))


def iso(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, tz=datetime.UTC).isoformat()


def write_control(tmp: Path, *lines: str) -> Path:
    (tmp / "trails").mkdir(exist_ok=True)
    cf = tmp / "audit_control"
    body = [f"dir:{tmp}/trails", "flags:lo", "policy:cnt", f"protect-journal:{tmp}/journal"]
    cf.write_text("\n".join(body + list(lines)) + "\n")
    return cf


class Rig:
    """A daemon on a fake ring, with a real baseline helper (unprivileged)."""

    def __init__(self, tmp: Path, *lines: str, helper: bool = True) -> None:
        self.tmp = tmp
        self.cf = write_control(tmp, *lines)
        self.ring = FakeRing()
        self.logs: list[str] = []
        self.d = daemon.Daemon(
            config.load(self.cf),
            self.ring,  # type: ignore[arg-type]
            control_file=str(self.cf),
            sock=None,
            log=self.logs.append,
        )
        self.pid = 0
        if helper:
            self.pid, sock = protect.start_helper(str(tmp / "journal"))
            self.d.protect.attach_helper(self.pid, sock)

    def baseline_done(self) -> dict[str, Any]:
        deadline = time.monotonic() + 30
        while self.d.protect.baseline.get("state") == "running" or self.d.protect.baselines_queued:
            assert time.monotonic() < deadline, "baseline never finished"
            if self.d.protect.helper is None:
                break
            self.d.protect.readable() if _ready(self.d.protect.fileno()) else time.sleep(0.01)
        return self.d.protect.baseline

    def feed(self, *recs: bytes) -> None:
        for r in recs:
            self.ring.add(r)
        self.d.drain()

    def close(self) -> None:
        if self.d.trail.path is not None:
            self.d.shutdown()
        if self.d.protect.helper is not None:
            self.d.protect.helper.close()
        if self.pid:
            _, status = os.waitpid(self.pid, 0)
            self.status = status


def _ready(fd: int) -> bool:
    import select

    return bool(select.select([fd], [], [], 0.05)[0])


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    t = (tmp_path / "srv").resolve()
    (t / "sub").mkdir(parents=True)
    (t / "a.txt").write_bytes(b"hello\n")
    (t / "sub" / "big.bin").write_bytes(os.urandom(3 << 20))  # past STREAM_OVER
    os.symlink("/etc/passwd", t / "link")
    return t


@pytest.fixture
def rig(tmp_path: Path, tree: Path) -> Iterator[Rig]:
    r = Rig(tmp_path, f"protect:{tree}")
    yield r
    r.close()


def run_recover(
    capsys: pytest.CaptureFixture[str], journal: Path, *args: str
) -> tuple[int, str, str]:
    rc = recover.main(["--journal", str(journal), *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def restored(
    capsys: pytest.CaptureFixture[str], tmp: Path, at: float, name: str
) -> tuple[dict[str, bytes], int, str]:
    """restore --at into a directory: what each file below the tree holds."""
    out = tmp / name
    rc, _, err = run_recover(capsys, tmp / "journal", "restore", "--at", iso(at), "--to", str(out))
    files = {}
    if out.exists():
        for p in out.rglob("*"):
            if p.is_file():
                files["/" + str(p.relative_to(out))] = p.read_bytes()
    return files, rc, err


def test_records_are_filed_and_restores_give_every_state(
    rig: Rig, tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = rig.d
    rig.d.start([])
    assert rig.ring.protected == [str(tree)]  # pushed to the module
    b = rig.baseline_done()
    assert b["state"] == "done" and b["files"] == 2, b  # a.txt, big.bin; the link is not read
    big = (tree / "sub" / "big.bin").read_bytes()
    st = os.stat(tree / "a.txt")
    a_ids = (st.st_dev, st.st_ino)
    a, c, dd, e, bigp = (str(tree / n) for n in ("a.txt", "c.txt", "d.txt", "e.txt", "sub/big.bin"))
    t0 = time.time() + 1
    chunk1, chunk2 = os.urandom(16384), os.urandom(3616)
    rig.feed(
        jrec(JWRITE, a, when=t0, start=0, end=6, size=6, data=b"HELLO\n", ids=a_ids),
        jrec(JCREATE, c, when=t0 + 1, mode=0o640, uid=7, gid=8, call="create", ids=(0x803, 77)),
    )
    # One change in two records, each complete in itself; with the seq token.
    rig.feed(
        jrec(
            JWRITE, c, when=t0 + 1.2, start=0, end=16384, size=20000, data=chunk1, ids=(0x803, 77)
        ),
        jrec(
            JWRITE,
            c,
            when=t0 + 1.2,
            start=16384,
            end=20000,
            size=20000,
            data=chunk2,
            ids=(0x803, 77),
            seq=9,
        ),
        jrec(JRENAME, c, path2=dd, when=t0 + 2, size=20000, call="rename", ids=(0x803, 77)),
        jrec(JUNLINK, a, when=t0 + 3, size=6, call="unlink", ids=a_ids, who=INTRUDER),
        jrec(
            JLOST,
            bigp,
            when=t0 + 4,
            start=0,
            end=100,
            size=len(big),
            call="not captured: ring full",
            who=INTRUDER,
        ),
        jrec(JTRUNCATE, dd, when=t0 + 5, size=10, call="ftruncate", ids=(0x803, 77)),
        jrec(JMETA, dd, when=t0 + 5.5, size=10, mode=0o600, call="chmod", ids=(0x803, 77)),
        jrec(JLINK, dd, path2=e, when=t0 + 6, size=10, call="link", ids=(0x803, 77)),
    )
    assert d.protect.filer is not None
    assert d.protect.filer.counters["filed"] == 10 and d.protect.filer.counters["malformed"] == 0
    # Every record is in the trail too (after the daemon's startup record).
    assert d.counters["records"] == 11

    rc, out, err = run_recover(capsys, tmp_path / "journal", "log", "--json")
    rows = json.loads(out)
    assert [r["change"] for r in rows] == [
        "write", "create", "write", "write", "rename", "unlink", "lost", "truncate", "meta", "link"
    ]  # fmt: skip
    assert [r["seq"] for r in rows] == list(range(1, 11))  # the ring's order
    assert rows[0]["terminal"] == "192.0.2.10 port 40000" and rows[0]["auid"] == 1000
    assert rows[5]["session"] == 66 and rows[5]["event"] == "unlink"
    assert (rows[4]["path"], rows[4]["path2"]) == (c, dd)
    assert rows[6]["event"] == "not captured: ring full"
    assert f"{bigp}: a change at" in err and "cannot be restored exactly" in err

    files, rc, err = restored(capsys, tmp_path, t0 - 0.5, "r0")
    assert files == {a: b"hello\n", bigp: big} and rc == 0, err
    files, rc, _ = restored(capsys, tmp_path, t0 + 0.5, "r1")
    assert files[a] == b"HELLO\n" and c not in files
    files, _, _ = restored(capsys, tmp_path, t0 + 1.5, "r2")
    assert files[c] == chunk1 + chunk2
    files, _, _ = restored(capsys, tmp_path, t0 + 2.5, "r3")
    assert c not in files and files[dd] == chunk1 + chunk2
    files, rc, err = restored(capsys, tmp_path, t0 + 3.5, "r4")
    assert a not in files and rc == 0, err
    # Past the lost change the restore is not exact for that file: it says so.
    files, rc, err = restored(capsys, tmp_path, t0 + 4.5, "r5")
    assert files[bigp] == big and rc == 1
    assert f"{bigp}: a change at" in err and "[0, 100)" in err and "ring full" in err
    files, rc, _ = restored(capsys, tmp_path, t0 + 7, "r6")
    assert files[dd] == (chunk1 + chunk2)[:10] == files[e]
    assert stat.S_IMODE(os.stat(tmp_path / "r6" / dd.lstrip("/")).st_mode) == 0o600
    # Undoing the intruder's session brings a.txt back.
    rc, out, err = run_recover(
        capsys, tmp_path / "journal", "restore", "--without-session", "66", "--to",
        str(tmp_path / "u"),
    )  # fmt: skip
    assert (tmp_path / "u" / a.lstrip("/")).read_bytes() == b"HELLO\n"


def test_a_malformed_record_is_logged_with_its_trail_offset_and_filing_goes_on(
    rig: Rig, tree: Path, tmp_path: Path
) -> None:
    rig.d.start([])
    rig.baseline_done()
    a = str(tree / "a.txt")
    t = time.time() + 1
    good = jrec(JWRITE, a, when=t, start=0, end=2, size=6, data=b"HE")
    bad = jrec(JWRITE, a, when=t, start=0, end=5, size=6, data=b"HE")  # 2 bytes for 5
    other = encode_record(
        6153, 0, [make_token("text", text="x"), make_token("return32", status=0, value=0)],
        time=(int(t), 0),
    )  # fmt: skip
    rig.d.drain()  # the startup record
    before = rig.d.trail.size
    rig.feed(other, bad, good)
    f = rig.d.protect.filer
    assert f is not None
    assert f.counters["malformed"] == 1 and f.counters["filed"] == 1
    msg = [m for m in rig.logs if "journal record not filed" in m]
    assert msg == [
        f"{rig.d.trail.path}: offset {before + len(other)}: journal record not filed: "
        "opaque holds 2 bytes for the range [0, 5)"
    ]
    # The trail has all three (and the startup record), the journal the good one.
    assert rig.d.counters["records"] == 4
    damages: list[Any] = []
    got = Store(tmp_path / "journal").entries(damages)
    assert [(e.kind, e.data) for e in got] == [(Kind.WRITE, b"HE")] and not damages


def test_sequence_numbers_keep_rising_across_restarts(tmp_path: Path, tree: Path) -> None:
    a = str(tree / "a.txt")
    t = time.time() + 1
    for run in range(2):
        r = Rig(tmp_path, f"protect:{tree}")
        r.d.start([])
        r.baseline_done()
        r.feed(
            *(jrec(JWRITE, a, when=t + run, start=0, end=1, size=6, data=b"x") for _ in range(3))
        )
        r.close()
    got = Store(tmp_path / "journal").entries([])
    assert [e.seq for e in got] == [1, 2, 3, 4, 5, 6]
    assert [e.time_ns // 10**9 for e in got] == [int(t)] * 3 + [int(t + 1)] * 3


def test_protect_max_stops_filing_data_and_says_so(
    tmp_path: Path, tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    r = Rig(tmp_path, f"protect:{tree}")
    r.d.start([])
    r.baseline_done()
    f = r.d.protect.filer
    assert f is not None
    f.max_bytes = f.size + 20000
    a = str(tree / "a.txt")
    t = time.time() + 1
    r.feed(jrec(JWRITE, a, when=t, start=0, end=16384, size=16384, data=b"a" * 16384))
    r.feed(jrec(JWRITE, a, when=t + 1, start=0, end=16384, size=16384, data=b"b" * 16384))
    r.feed(jrec(JTRUNCATE, a, when=t + 2, size=3, call="truncate"))
    assert f.counters["over_max"] == 1 and f.counters["filed"] == 3
    assert any("protect-max is" in m and "filed as lost" in m for m in r.logs)
    st = r.d.status()["protect"]
    assert st["over_max"] == 1 and st["full"] is True
    rows = dict(audit.protect_rows(st))
    assert rows["lost: journal data over protect-max"] == "1"
    assert rows["protected trees"] == str(tree)
    files, rc, err = restored(capsys, tmp_path, t + 3, "r")
    assert files[a] == b"aaa" and rc == 1
    assert "not filed: protect-max reached (write)" in err
    r.close()


def test_config_errors_name_the_line_and_keep_the_trees_in_force(
    tmp_path: Path, tree: Path
) -> None:
    r = Rig(tmp_path, f"protect:{tree}")
    r.d.start([])
    r.baseline_done()
    kernel_before = len(r.ring.pushed)
    (tmp_path / "file").write_text("")
    os.symlink(tree, tmp_path / "alias")
    cases = [
        (f"{tmp_path}/missing", "No such file or directory"),
        (f"{tmp_path}/file", "not a directory"),
        (f"{tmp_path}/alias", "not a directory (or a symbolic link to one"),
    ]
    for bad, why in cases:
        write_control(tmp_path, f"protect:{tree}", f"protect:{bad}")
        reply = r.d.reload()
        assert reply["ok"] is False
        assert reply["error"] == f"{r.cf}:6: protect: {bad}: {why}" or (
            reply["error"].startswith(f"{r.cf}:6: protect: {bad}: ") and why in reply["error"]
        ), reply
        assert r.ring.protected == [str(tree)] and r.d.protect.trees == (str(tree),)
        assert r.d.cfg.control.protect == (str(tree),)
    # A component that is a link: the real path is asked for.
    os.symlink(tree.parent, tmp_path / "up")
    write_control(tmp_path, f"protect:{tmp_path}/up/srv")
    reply = r.d.reload()
    assert reply["error"].startswith(f"{r.cf}:5: protect: {tmp_path}/up/srv: it is reached")
    assert r.ring.protected == [str(tree)]
    # The module refusing: the old configuration is given back to it.
    r.ring.protect_refuse = OSError(errno.EINVAL, "Invalid argument")
    other = (tmp_path / "other").resolve()
    other.mkdir()
    write_control(tmp_path, f"protect:{tree},{other}")
    reply = r.d.reload()
    assert reply["error"] == f"{r.cf}:5: the module refused the protected trees: Invalid argument"
    assert r.ring.pushed[-1] == r.d.cfg.kernel and len(r.ring.pushed) > kernel_before
    r.ring.protect_refuse = None
    # A tree added: pushed with the others, and a baseline of all of them.
    (other / "o.txt").write_text("o")
    assert r.d.reload()["ok"]
    assert r.ring.protected == [str(tree), str(other)]
    b = r.baseline_done()
    assert b["state"] == "done" and b["files"] == 3
    # Protection off: no tree pushed.
    write_control(tmp_path)
    assert r.d.reload()["ok"]
    assert r.ring.protected == [] and r.d.status()["protect"]["trees"] == []
    r.close()


def test_a_bad_tree_at_start_stops_the_start_with_its_line(tmp_path: Path) -> None:
    r = Rig(tmp_path, "protect:/nonexistent/tree")
    with pytest.raises(config.ConfigError) as e:
        r.d.start([])
    assert str(e.value) == f"{r.cf}:5: protect: /nonexistent/tree: No such file or directory"
    r.close()


def test_new_trees_without_a_helper_need_a_restart(tmp_path: Path, tree: Path) -> None:
    r = Rig(tmp_path, helper=False)
    r.d.start([])
    assert r.ring.protected == []  # protection off: 0 trees pushed
    write_control(tmp_path, f"protect:{tree}")
    reply = r.d.reload()
    assert reply["ok"] is False and "needs lxbsm-auditd restarted" in reply["error"]
    assert reply["error"].startswith(f"{r.cf}:5: protect:")
    assert r.ring.protected == []


def test_journal_records_go_on_to_the_trail_when_protection_is_off(
    tmp_path: Path, tree: Path
) -> None:
    r = Rig(tmp_path, helper=False)
    r.d.start([])
    r.feed(jrec(JWRITE, str(tree / "a.txt"), when=time.time(), start=0, end=1, size=1, data=b"x"))
    assert r.d.counters["records"] == 2 and r.d.protect.unfiled == 1
    assert not (tmp_path / "journal").exists()


def test_the_helper_works_under_the_seccomp_filter(tmp_path: Path, tree: Path) -> None:
    r = Rig(tmp_path, f"protect:{tree}", helper=False)
    allowed = privs.ALLOWED + list(protect.HELPER_SYSCALLS)
    pid, sock = protect.start_helper(
        str(tmp_path / "journal"), seccomp=lambda: privs.install_seccomp(allowed)
    )
    r.d.protect.attach_helper(pid, sock)
    r.pid = pid
    r.d.start([])
    assert r.ring.protected == [str(tree)]
    b = r.baseline_done()
    assert b["state"] == "done" and b["files"] == 2, (b, r.logs)
    r.close()
    assert os.WIFEXITED(r.status) and os.WEXITSTATUS(r.status) == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping to another user needs root")
@pytest.mark.parametrize("keep", [True, False])
def test_the_helper_reads_what_the_audit_user_cannot_with_only_dac_read_search(
    keep: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    nobody = pwd.getpwnam("nobody")
    top = Path(tempfile.mkdtemp(prefix="lxbsm-protect-")).resolve()
    try:
        os.chmod(top, 0o755)
        t = top / "etc"
        t.mkdir(mode=0o700)
        (t / "shadow").write_bytes(b"root:secret\n")
        os.chmod(t / "shadow", 0o600)
        j = str(top / "journal")
        protect.prepare_journal(j, nobody.pw_uid, nobody.pw_gid)
        assert stat.S_IMODE(os.stat(j).st_mode) == 0o700 and os.stat(j).st_uid == nobody.pw_uid
        caps = (protect.CAP_DAC_READ_SEARCH,) if keep else ()
        allowed = privs.ALLOWED + list(protect.HELPER_SYSCALLS)
        pid, sock = protect.start_helper(
            j,
            drop=lambda: privs.drop_privileges(nobody.pw_uid, nobody.pw_gid, keep=caps),
            seccomp=lambda: privs.install_seccomp(allowed),
        )
        p = protect.Protection(lambda m: None)
        p.attach_helper(pid, sock)
        ring = FakeRing()
        (top / "trails").mkdir()
        cf = top / "audit_control"
        cf.write_text(f"dir:{top}/trails\nprotect-journal:{j}\nprotect:{t}\n")
        ac = config.load(cf).control
        p.apply(ac, ring)  # type: ignore[arg-type]
        assert ring.protected == [str(t)]
        deadline = time.monotonic() + 30
        while p.baseline["state"] == "running":
            assert time.monotonic() < deadline
            if _ready(p.fileno()):
                p.readable()
        if not keep:
            # The audit user alone cannot read the tree: the baseline says so.
            assert p.baseline["state"] == "done" and p.baseline["files"] == 0, p.baseline
            assert p.baseline["skipped"] == [[str(t), "Permission denied"]]
            sock.close()
            os.waitpid(pid, 0)
            return
        assert p.baseline["state"] == "done" and p.baseline["files"] == 1, p.baseline
        # Owned by the helper's user, and it holds the file only root can read.
        assert all(
            os.lstat(os.path.join(d, n)).st_uid == nobody.pw_uid
            for d, ds, ns in os.walk(j)
            for n in ds + ns
        )
        files, rc, err = restored(capsys, top, time.time() + 5, "r")
        assert files == {str(t / "shadow"): b"root:secret\n"} and rc == 0, err
        sock.close()
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    finally:
        shutil.rmtree(top)


def test_a_record_from_the_ring_becomes_the_entry_the_interface_says() -> None:
    from lxbsm_tools.bsm import decode_records

    raw = jrec(
        JRENAME, "/srv/x\udcff", path2="/srv/y", when=1_700_000_000.25, size=5,
        mode=0o4755, uid=3, gid=4, ids=(0x10302, 99), call="rename",
        who={"auid": 5, "asid": 6, "port": 0, "addr": "0.0.0.0"},
    )  # fmt: skip
    e = protect.entry_of(next(iter(decode_records(raw))), 42)
    assert (e.seq, e.kind, e.time_ns) == (42, Kind.RENAME, 1_700_000_000_250_000_000)
    assert (e.path, e.path2) == (b"/srv/x\xff", b"/srv/y")
    assert e.fid == file_id(0x10302, 99)
    assert (e.mode, e.uid, e.gid, e.size) == (stat.S_IFREG | 0o4755, 3, 4, 5)
    assert (e.auid, e.asid, e.terminal, e.event) == (5, 6, "", "rename")
    bad = jrec(JRENAME, "/srv/x", when=1.0)  # no new name
    with pytest.raises(protect.RecordError, match="1 path tokens where RENAME has 2"):
        protect.entry_of(next(iter(decode_records(bad))), 1)


SECCOMP_RUN = """
import os, sys, time
sys.path.insert(0, {tests!r})
from pathlib import Path
from test_auditd import FakeRing
from test_protect import JWRITE, jrec, _ready
from lxbsm_tools.auditd import config, daemon, privs, protect
tmp = Path({tmp!r})
cf = tmp / "audit_control"
ring = FakeRing()
d = daemon.Daemon(config.load(cf), ring, control_file=str(cf), sock=None, log=daemon.stderr_log)
pid, sock = protect.start_helper(str(tmp / "journal"))
d.protect.attach_helper(pid, sock)
wake = daemon.set_signals()
privs.install_seccomp()
d.start([])
while d.protect.baseline["state"] == "running":
    if _ready(d.protect.fileno()):
        d.protect.readable()
t = time.time() + 1
for i in range(5):
    ring.add(jrec(JWRITE, {a!r}, when=t + i, start=0, end=1, size=6, data=b"%d" % i))
d.drain()
assert d.reload()["ok"]
st = d.command("status")["status"]["protect"]
d.stopping = True
d.run(wake)
print("filed", st["filed"], d.protect.baseline["state"], flush=True)
"""


def test_the_daemon_files_and_reloads_under_its_seccomp_filter(tmp_path: Path, tree: Path) -> None:
    import subprocess

    write_control(tmp_path, f"protect:{tree}")
    prog = SECCOMP_RUN.format(
        tests=str(Path(__file__).parent), tmp=str(tmp_path), a=str(tree / "a.txt")
    )
    r = subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout == "filed 5 done\n", r.stderr


# -- the fast path (protect.parse_fast) against the general decoder ------------


def _general(raw: bytes, seq: int) -> bytes | str:
    """The frame the general decoder and entry_of() file, or why not."""
    from lxbsm_tools.bsm import BSMDecodeError, decode_records
    from lxbsm_tools.recover import journal

    try:
        return journal.encode(protect.entry_of(next(iter(decode_records(raw))), seq))
    except (BSMDecodeError, protect.RecordError, StopIteration) as e:
        return f"{type(e).__name__}: {e}"


def _fast(raw: bytes, seq: int) -> bytes | None:
    from lxbsm_tools.recover import journal

    f = protect.parse_fast(raw, 0, len(raw), memoryview(raw))
    return None if f is None else b"".join(journal.frame_parts(seq, *f))


def _random_jrec(rnd: Any, kernel_shaped: bool) -> bytes:
    """A journal record as the module writes it (@kernel_shaped), or one
    that breaks the interface somewhere: tokens missing, doubled, out of
    place or foreign, lengths that disagree, names that cannot be filed."""
    event = rnd.choice([JWRITE, JWRITE, JWRITE, JTRUNCATE, JCREATE, JUNLINK, JRENAME, JLINK,
                        JMETA, JLOST])  # fmt: skip

    def name() -> str:
        raw = bytes(rnd.choice(b"abc/\xff\xc3\xa9.") for _ in range(rnd.randint(1, 40)))
        return "/srv/" + raw.decode("utf-8", "surrogateescape")

    start = rnd.choice([0, 1, 4096, 1 << 40])
    n = rnd.choice([0, 1, 5, 100, 4096])
    data = rnd.randbytes(n)
    end = start + n
    size = end + rnd.choice([0, 0, 7])
    toks = []
    if event in (JWRITE, JLOST):
        toks.append(make_token("arg64", num=1, value=start, text="start"))
        toks.append(make_token("arg64", num=2, value=end, text="end"))
    toks.append(make_token("arg64", num=3, value=size, text="size"))
    toks.append(make_token("path", text=name()))
    if event in (JRENAME, JLINK):
        toks.append(make_token("path", text=name()))
    if event != JLOST or rnd.random() < 0.5:
        toks.append(make_token("attr32", mode=rnd.choice([0o644, 0o4755, 0o7777]),
                               uid=rnd.randrange(1 << 32), gid=rnd.randrange(1 << 32),
                               fsid=rnd.randrange(1 << 32), nodeid=rnd.randrange(1 << 64),
                               dev=0))  # fmt: skip
    if event == JWRITE:
        toks.append(make_token("opaque", data=data))
    toks.append(make_token("text", text=rnd.choice(["write", "mmap", "pwritev2", "x" * 300])))
    ids = dict(auid=rnd.choice([0, 1000, 0xFFFFFFFF]), euid=0, egid=0, ruid=0, rgid=0, pid=7,
               sid=rnd.choice([3, 0xFFFFFFFF]), port=rnd.choice([0, 0, 22, 40000]))  # fmt: skip
    kind = rnd.random()
    if kind < 0.4:
        addr = rnd.choice(["0.0.0.0", "192.0.2.10"])
        toks.append(make_token("subject32", **ids, address=addr))
    elif kind < 0.7:
        addr = rnd.choice(["::", "2001:db8::1", "::ffff:192.0.2.1"])
        toks.append(make_token("subject32_ex", **ids, addr_type=16, address=addr))
    else:
        addr = rnd.choice(["0.0.0.0", "198.51.100.66"])
        toks.append(make_token("subject32_ex", **ids, addr_type=4, address=addr))
    toks.append(make_token("return32", status=0, value=0))
    if rnd.random() < 0.5:
        toks.append(make_token("seq", seq=rnd.randrange(1 << 32)))
    if not kernel_shaped:
        r = rnd.random()
        i = rnd.randrange(len(toks) + 1)
        if r < 0.2 and len(toks) > 1:
            del toks[rnd.randrange(len(toks))]
        elif r < 0.4:
            toks.insert(i, toks[rnd.randrange(len(toks))])
        elif r < 0.5:
            toks.insert(i, make_token("arg64", num=rnd.choice([1, 2, 3, 4]),
                                      value=rnd.randrange(1 << 64), text=""))  # fmt: skip
        elif r < 0.6:
            toks.insert(i, make_token("path", text=rnd.choice(["", "/a\0b", "/" + "p" * 4100])))
        elif r < 0.7:
            toks.insert(i, make_token("text", text="\udcff"))
        elif r < 0.8:
            toks.insert(i, make_token("arg32", num=3, value=1, text="size"))
        elif r < 0.9:
            toks.insert(i, make_token("attr64", mode=0, uid=0, gid=0, fsid=0, nodeid=0, dev=0))
        else:
            toks.insert(i, make_token("subject64", **ids, address="192.0.2.9"))
    when = rnd.choice([0.0, 1.5, 1_700_000_000.999, 4_294_967_295.25])
    sec = int(when)
    return encode_record(event, 0, toks, time=(sec, round((when - sec) * 1000)))


def test_the_fast_path_files_what_the_general_decoder_files() -> None:
    import random

    rnd = random.Random(17)
    fast_taken = 0
    for i in range(3000):
        shaped = i % 3 != 0
        raw = _random_jrec(rnd, kernel_shaped=shaped)
        general, fast = _general(raw, i + 1), _fast(raw, i + 1)
        if fast is not None:
            assert fast == general, raw.hex()
            fast_taken += 1
        if shaped and isinstance(general, bytes):
            assert fast is not None, raw.hex()  # the module's layout takes the fast path
    assert fast_taken > 1500


def test_the_fast_path_leaves_damaged_records_to_the_general_decoder() -> None:
    import random

    rnd = random.Random(18)
    for _ in range(150):
        raw = _random_jrec(rnd, kernel_shaped=True)
        cases = []
        # Cut at every offset, the header's byte count said right (the ring's
        # walk trusts it) or left as it was.
        for cut in range(18, len(raw), max(1, len(raw) // 60)):
            short = bytearray(raw[:cut])
            cases.append(bytes(short))
            short[1:5] = cut.to_bytes(4, "big")
            cases.append(bytes(short))
        for _ in range(40):  # a byte changed anywhere but in the header's count
            b = bytearray(raw)
            at = rnd.choice([0, *range(5, len(b))])
            b[at] = rnd.randrange(256)
            cases.append(bytes(b))
        for c in cases:
            fast = _fast(c, 9)
            if fast is not None:
                assert fast == _general(c, 9), c.hex()


def test_a_record_the_fast_path_refuses_is_reported_as_before(rig: Rig, tree: Path) -> None:
    rig.d.start([])
    rig.baseline_done()
    t = time.time() + 1
    a = str(tree / "a.txt")
    good = jrec(JWRITE, a, when=t, start=0, end=2, size=2, data=b"HE")
    no_attr = bytearray(good)
    at = no_attr.index(bytes([0x3E]) + (0o644).to_bytes(4, "big"))
    del no_attr[at : at + 29]
    no_attr[1:5] = len(no_attr).to_bytes(4, "big")
    no_attr[-4:] = len(no_attr).to_bytes(4, "big")
    unicode = jrec(JWRITE, a, when=t, start=0, end=2, size=2, data=b"HE", call="\udcff")
    assert protect.parse_fast(good, 0, len(good)) is not None
    assert protect.parse_fast(bytes(no_attr), 0, len(no_attr)) is None
    assert protect.parse_fast(unicode, 0, len(unicode)) is None
    rig.d.drain()
    rig.feed(bytes(no_attr), unicode, good)
    f = rig.d.protect.filer
    assert f is not None
    assert (f.counters["malformed"], f.counters["filed"]) == (2, 1)
    msgs = [m.split(": ", 2)[2] for m in rig.logs if "journal record not filed" in m]
    assert msgs[0] == "journal record not filed: no attr32 token"
    assert msgs[1].startswith("journal record not filed: 'utf-8' codec can't encode")
