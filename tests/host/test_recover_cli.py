"""lxbsm-recover on a real directory: baseline, journal, log, restore.

The journal's entries are written here as the daemon will write them; the
files on disk are left as the changes left them.  Expected contents are
spelled out, not computed by the code under test.
"""

from __future__ import annotations

import datetime
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from lxbsm_tools.recover import journal
from lxbsm_tools.recover import main as recover
from lxbsm_tools.recover.journal import Damage, Entry, Kind
from lxbsm_tools.recover.store import Store

TRUSTED: dict[str, Any] = {"auid": 1000, "asid": 11, "terminal": "192.0.2.10 port 40000"}
INTRUDER: dict[str, Any] = {"auid": 1001, "asid": 66, "terminal": "198.51.100.66 port 50000"}
CONF_0 = b"listen 80\nroot /srv/site\nworkers 4\n"
CONF_1 = b"listen 8080\nroot /srv/site\nworkers 4\n"
BACKDOOR = b"include /tmp/.x/evil.conf\n"
CONF_3 = b"listen 8080\nroot /srv/site\nworkers 16\n" + BACKDOOR
CONF_TRUSTED = b"listen 8080\nroot /srv/site\nworkers 16\n"
BIN_0 = bytes(range(256)) * 4
EVIL = b"\xcc" * 16
BIN_1 = BIN_0[:100] + EVIL + BIN_0[116:]
T0 = (int(time.time()) - 3600) * 1_000_000_000  # whole seconds
S = 1_000_000_000


def iso(ns: int) -> str:
    return datetime.datetime.fromtimestamp(ns / S).isoformat()


class Site:
    def __init__(self, tmp: Path) -> None:
        self.tree = tmp / "site"
        self.tree.mkdir()
        (self.tree / "sub").mkdir()
        (self.tree / "app.conf").write_bytes(CONF_0)
        (self.tree / "app.bin").write_bytes(BIN_0)
        (self.tree / "sub" / "gone.txt").write_bytes(b"deleted later\n")
        self.store = Store(tmp / "journal")
        self.store.create()
        self.store.take_baseline([os.fsencode(self.tree)], T0)
        self.seq = 0
        self.entries: list[Entry] = []

    def p(self, name: str) -> bytes:
        return os.fsencode(self.tree / name)

    def fid(self, name: str) -> int:
        from lxbsm_tools.recover.store import file_id

        st = os.lstat(self.tree / name)
        return file_id(st.st_dev, st.st_ino)

    def add(self, t: int, who: dict[str, Any], kind: Kind, name: str, **kw: Any) -> None:
        self.seq += 1
        self.entries.append(
            Entry(
                seq=self.seq,
                time_ns=t,
                kind=kind,
                fid=kw.pop("fid", 0) or self.fid(name),
                path=self.p(name),
                **who,
                **kw,
            )
        )

    def write(
        self, t: int, who: dict[str, Any], name: str, start: int, data: bytes, size: int, **kw: Any
    ) -> None:
        """A write of @data at @start that leaves the file @size bytes long."""
        kw.setdefault("event", "AUE_WRITE")
        end = start + len(data)
        self.add(t, who, Kind.WRITE, name, start=start, end=end, data=data, size=size, **kw)

    def history(self) -> None:
        """What the sessions did, to the journal and to the files."""
        conf, binf = self.fid("app.conf"), self.fid("app.bin")
        evil = CONF_1 + BACKDOOR
        self.write(T0 + 10 * S, TRUSTED, "app.conf", 0, CONF_1, len(CONF_1), fid=conf)
        self.write(T0 + 20 * S, INTRUDER, "app.conf", len(CONF_1), BACKDOOR, len(evil), fid=conf)
        self.add(T0 + 21 * S, INTRUDER, Kind.UNLINK, "sub/gone.txt", event="AUE_UNLINK")
        self.write(
            T0 + 22 * S, INTRUDER, "app.bin", 100, EVIL, len(BIN_0), fid=binf, event="AUE_PWRITE"
        )
        self.add(T0 + 30 * S, TRUSTED, Kind.CREATE, ".app.conf.swp", fid=999, mode=0o100644)
        self.write(T0 + 31 * S, TRUSTED, ".app.conf.swp", 0, CONF_3, len(CONF_3), fid=999)
        self.add(
            T0 + 32 * S,
            TRUSTED,
            Kind.RENAME,
            ".app.conf.swp",
            fid=999,
            path2=self.p("app.conf"),
            event="AUE_RENAME",
        )
        self.store.append(self.entries)
        (self.tree / "app.conf").write_bytes(CONF_3)
        (self.tree / "app.bin").write_bytes(BIN_1)
        (self.tree / "sub" / "gone.txt").unlink()

    def run(self, *args: str) -> int:
        return recover.main(["--journal", str(self.store.root), *args])


def files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_restore_at_a_moment_into_a_copy(tmp_path: Path) -> None:
    s = Site(tmp_path)
    s.history()
    out = tmp_path / "out"
    assert s.run("restore", "--at", iso(T0 + 20 * S), "--to", str(out)) == 0
    got = files(out / str(s.tree).lstrip("/"))
    assert got == {
        "app.conf": CONF_1 + BACKDOOR,
        "app.bin": BIN_0,
        "sub/gone.txt": b"deleted later\n",
    }
    # The tree itself is untouched by a restore --to.
    assert files(s.tree) == {"app.conf": CONF_3, "app.bin": BIN_1}


def test_restore_without_the_intruders_terminal_in_place_keeps_what_it_replaced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = Site(tmp_path)
    s.history()
    assert s.run("restore", "--without-terminal", "198.51.100.66", "--dry-run") == 0
    diff = capsys.readouterr().out
    assert "-include /tmp/.x/evil.conf\n" in diff
    assert f"Binary file {s.tree}/app.bin changed" in diff
    assert f"+++ b{s.tree}/sub/gone.txt" in diff
    assert files(s.tree) == {"app.conf": CONF_3, "app.bin": BIN_1}  # a dry run writes nothing
    assert s.run("restore", "--without-terminal", "198.51.100.66") == 0
    assert files(s.tree) == {
        "app.conf": CONF_TRUSTED,
        "app.bin": BIN_0,
        "sub/gone.txt": b"deleted later\n",
    }
    (aside,) = (s.store.root / "aside").iterdir()
    kept = files(aside)
    base = str(s.tree).lstrip("/")
    assert kept[f"{base}/app.conf"] == CONF_3 and kept[f"{base}/app.bin"] == BIN_1
    assert (aside / "made").read_bytes() == s.p("sub/gone.txt")
    # The restore can be undone, and so can the undo.
    (s.tree / "app.bin").chmod(0o600)
    os.chmod(aside / base / "app.bin", 0o640)
    assert s.run("undo") == 0
    assert files(s.tree) == {"app.conf": CONF_3, "app.bin": BIN_1}
    assert (s.tree / "app.bin").stat().st_mode & 0o777 == 0o640
    assert sorted(d.name.endswith(".undone") for d in (s.store.root / "aside").iterdir()) == [
        False,
        True,
    ]
    assert s.run("undo") == 0
    assert files(s.tree) == {
        "app.conf": CONF_TRUSTED,
        "app.bin": BIN_0,
        "sub/gone.txt": b"deleted later\n",
    }


def test_log_names_both_sessions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s = Site(tmp_path)
    s.history()
    assert s.run("log", "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["auid"], r["session"], r["terminal"].split()[0], r["change"]) for r in rows] == [
        (1000, 11, "192.0.2.10", "write"),
        (1001, 66, "198.51.100.66", "write"),
        (1001, 66, "198.51.100.66", "unlink"),
        (1001, 66, "198.51.100.66", "write"),
        (1000, 11, "192.0.2.10", "create"),
        (1000, 11, "192.0.2.10", "write"),
        (1000, 11, "192.0.2.10", "rename"),
    ]
    assert rows[1]["start"] == len(CONF_1) and rows[1]["end"] == len(CONF_1) + len(BACKDOOR)
    assert s.run("log", "--json", "--session", "66", str(s.tree / "app.bin")) == 0
    (only,) = json.loads(capsys.readouterr().out)
    assert only["event"] == "AUE_PWRITE" and only["path"] == f"{s.tree}/app.bin"


def test_a_symbolic_link_planted_in_the_tree_is_not_followed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = Site(tmp_path)
    s.history()
    outside = tmp_path / "outside"
    outside.mkdir()
    (s.tree / "sub").rmdir()
    (s.tree / "sub").symlink_to(outside)
    assert s.run("restore", "--at", iso(T0)) == 2
    msg = capsys.readouterr().err
    assert f"cannot write {s.tree}/sub/gone.txt: a directory on its way is a symbolic link" in msg
    assert list(outside.iterdir()) == []


def test_paths_outside_the_protected_trees_and_bad_times_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = Site(tmp_path)
    s.history()
    assert s.run("restore", "--at", iso(T0), str(tmp_path / "journal")) == 2
    assert "is not under a protected tree" in capsys.readouterr().err
    assert s.run("restore", "--at", "yesterday") == 2
    assert "bad time 'yesterday' (want YYYYMMDD[HH[MM[SS]]]" in capsys.readouterr().err
    assert s.run("restore", "--at", "20261332") == 2
    assert "month 13" in capsys.readouterr().err


def test_undo_with_nothing_to_undo_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = Site(tmp_path)
    assert s.run("undo") == 2
    assert f"no restore to undo in {s.store.root}/aside" in capsys.readouterr().err


def test_a_journal_directory_that_is_not_one_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert recover.main(["--journal", str(tmp_path), "log"]) == 2
    assert "not a journal directory (objects/ is missing)" in capsys.readouterr().err


def test_a_damaged_journal_is_reported_and_the_rest_restored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = Site(tmp_path)
    s.history()
    (jf,) = s.store.journal_dir.iterdir()
    with jf.open("ab") as f:
        f.write(b"LXJ1\xff\xff")  # a frame cut short
    out = tmp_path / "out"
    assert s.run("restore", "--at", iso(T0 + 40 * S), "--to", str(out)) == 1
    assert f"{jf}: offset {jf.stat().st_size - 6}: 6 bytes skipped" in capsys.readouterr().err
    assert files(out / str(s.tree).lstrip("/"))["app.conf"] == CONF_3


def test_compaction_keeps_every_restore_after_it_exact(tmp_path: Path) -> None:
    s = Site(tmp_path)
    s.history()
    assert s.run("compact", "--before", iso(T0 + 25 * S)) == 0
    assert len(s.store.baselines()) == 1
    after_intruder = {"app.conf": CONF_1 + BACKDOOR, "app.bin": BIN_1}
    want = {
        25: after_intruder,
        31: {**after_intruder, ".app.conf.swp": CONF_3},
        32: {**after_intruder, "app.conf": CONF_3},
        40: {**after_intruder, "app.conf": CONF_3},
    }
    for sec, files_then in want.items():
        out = tmp_path / f"out{sec}"
        assert s.run("restore", "--at", iso(T0 + sec * S), "--to", str(out)) == 0
        assert files(out / str(s.tree).lstrip("/")) == files_then, sec


def test_restores_before_the_journal_starts_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = Site(tmp_path)
    s.history()
    assert s.run("compact", "--before", iso(T0 + 25 * S)) == 0
    assert s.run("restore", "--at", iso(T0 + 10 * S), "--to", str(tmp_path / "o")) == 2
    assert "it cannot restore an earlier moment" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_compaction_refuses_a_period_holding_an_untrusted_session(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = Site(tmp_path)
    s.history()
    assert s.run("mark", "--terminal", "198.51.100.66") == 0
    assert s.run("compact", "--before", iso(T0 + 25 * S)) == 2
    assert "is before that time and marked untrusted" in capsys.readouterr().err
    assert len(list(s.store.journal_dir.iterdir())) == 1 and len(s.store.baselines()) == 1
    assert s.run("compact", "--before", iso(T0 + 15 * S)) == 0
    # The intruder can still be undone after it.
    assert s.run("restore", "--without-terminal", "198.51.100.66") == 0
    assert files(s.tree) == {
        "app.conf": CONF_TRUSTED,
        "app.bin": BIN_0,
        "sub/gone.txt": b"deleted later\n",
    }


class Stop(BaseException):
    """A compaction cut short (what SIGKILL does, at a chosen point)."""


def test_a_compaction_stopped_after_any_file_operation_restores_exactly_or_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopped after each of its renames and unlinks in turn, a compaction leaves a
    journal whose restores are exact or refused, never wrong; run again, it finishes."""
    real_unlink, real_replace = Path.unlink, os.replace
    ops = 0
    stop_at = 0

    def count() -> None:
        nonlocal ops
        ops += 1
        if ops == stop_at:
            raise Stop

    def unlink(self: Path, missing_ok: bool = False) -> None:
        real_unlink(self, missing_ok)
        count()

    def replace(src: Any, dst: Any) -> None:
        real_replace(src, dst)
        count()

    def compact(s: Site) -> None:
        with monkeypatch.context() as m:
            m.setattr(Path, "unlink", unlink)
            m.setattr(os, "replace", replace)
            s.store.compact(T0 + 25 * S, lambda e: False)

    (tmp_path / "whole").mkdir()
    first = Site(tmp_path / "whole")
    first.history()
    want = {}
    for sec in (10, 20, 25, 40):
        out = tmp_path / f"want{sec}"
        assert first.run("restore", "--at", iso(T0 + sec * S), "--to", str(out)) == 0
        want[sec] = files(out / str(first.tree).lstrip("/"))
    compact(first)  # uncut: how many operations a compaction makes
    total = ops
    assert total >= 4, total  # a baseline, the old one, a journal file, the old one
    for stop_at in range(1, total):
        ops = 0
        (tmp_path / f"stop{stop_at}").mkdir()
        s = Site(tmp_path / f"stop{stop_at}")
        s.history()
        with pytest.raises(Stop):
            compact(s)
        for sec, files_then in want.items():
            out = tmp_path / f"got{stop_at}-{sec}"
            rc = s.run("restore", "--at", iso(T0 + sec * S), "--to", str(out))
            if sec < 25 and rc == 2:
                continue  # given up by the compaction: refused, not wrong
            assert rc == 0, (stop_at, sec)
            assert files(out / str(s.tree).lstrip("/")) == files_then, (stop_at, sec)
        assert s.run("compact", "--before", iso(T0 + 25 * S)) == 0
        assert len(s.store.baselines()) == 1


COMPACT = """
import sys
from pathlib import Path
from typing import Any
from lxbsm_tools.recover.store import Store
print("go", flush=True)
Store(Path(sys.argv[1])).compact(int(sys.argv[2]), lambda e: False)
"""


def test_a_compaction_killed_at_random_points_leaves_a_usable_journal(tmp_path: Path) -> None:
    """SIGKILL 20 times at random moments of a compaction of 3000 entries:
    every time, each restore at or after the compaction point is what the
    uncompacted journal gives, and one before it is exact or refused."""
    import random
    import shutil
    import subprocess
    import sys

    from lxbsm_tools.recover import history

    s = Site(tmp_path)
    conf = s.fid("app.conf")
    rng = random.Random(17)
    entries = []
    size = len(CONF_0)
    for i in range(3000):
        start = rng.randrange(0, 4096)
        data = rng.randbytes(rng.randrange(1, 2000))
        size = max(size, start + len(data))
        who = INTRUDER if i % 7 == 0 else TRUSTED
        entries.append(
            Entry(
                seq=i + 1,
                time_ns=T0 + (i + 1) * S // 100,
                kind=Kind.WRITE,
                fid=conf,
                path=s.p("app.conf"),
                start=start,
                end=start + len(data),
                data=data,
                size=size,
                **who,
            )
        )
    s.store.append(entries)
    pristine = tmp_path / "pristine"
    shutil.copytree(s.store.root, pristine)
    cut = T0 + 1500 * S // 100
    moments = [cut, T0 + 2000 * S // 100, T0 + 3000 * S // 100]

    def truth(t: int) -> bytes:
        return (
            history.replay(s.store.load_baseline(s.store.baselines()[0], []), entries, t)
            .view()[s.p("app.conf")]
            .data
        )

    want = {t: truth(t) for t in moments}
    early = T0 + 500 * S // 100
    want_early = truth(early)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}

    def launch() -> subprocess.Popen[str]:
        cmd = [sys.executable, "-c", COMPACT, str(s.store.root), str(cut)]
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
        assert p.stdout is not None and p.stdout.readline() == "go\n"
        return p

    runs = []
    for _ in range(3):  # the shortest of three: the kills below land inside it
        shutil.rmtree(s.store.root)
        shutil.copytree(pristine, s.store.root)
        p = launch()
        t0 = time.monotonic()
        assert p.wait() == 0
        runs.append(time.monotonic() - t0)  # the compaction itself, after the interpreter's start
    full = min(runs)
    kills = 0
    seen = set()
    for round_ in range(20):
        shutil.rmtree(s.store.root)
        shutil.copytree(pristine, s.store.root)
        p = launch()
        time.sleep(rng.uniform(0, 0.8 * full))
        p.kill()
        kills += p.wait() == -9
        seen.add((len(s.store.baselines()), len(list(s.store.journal_dir.iterdir()))))
        damages: list[Damage] = []
        got = s.store.entries(damages)
        assert damages == [], round_
        assert [e.seq for e in got] == sorted({e.seq for e in got}), round_
        for t in moments:
            out = tmp_path / f"r{round_}-{t}"
            assert s.run("restore", "--at", iso(t), "--to", str(out)) == 0, (round_, t)
            assert (out / str(s.tree).lstrip("/") / "app.conf").read_bytes() == want[t], (round_, t)
        out = tmp_path / f"r{round_}-early"
        rc = s.run("restore", "--at", iso(early), "--to", str(out))
        if rc == 0:
            assert (out / str(s.tree).lstrip("/") / "app.conf").read_bytes() == want_early
        else:
            assert rc == 2
        # And a compaction run again finishes the job.
        assert s.run("compact", "--before", iso(cut)) == 0
    assert kills >= 10, f"only {kills} of 20 compactions were killed before they ended"
    print(f"compaction {full:.2f} s; {kills} killed; (baselines, journal files) seen: {seen}")
    # Where in the compaction the kills land is chance (its file operations take a
    # small part of its time): test_a_compaction_stopped_after_any_file_operation_...
    # stops it after each of them in turn.


def test_a_conflict_is_reported_with_both_sessions_and_ranges_and_trusted_text_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = Site(tmp_path)
    conf = s.fid("app.conf")
    evil = CONF_0 + BACKDOOR
    fixed = CONF_0 + b"include /etc/app/ok.conf\n"  # the admin rewrote that very line
    s.write(T0 + S, INTRUDER, "app.conf", len(CONF_0), BACKDOOR, len(evil), fid=conf)
    s.write(T0 + 2 * S, TRUSTED, "app.conf", 0, fixed, len(fixed), fid=conf)
    s.store.append(s.entries)
    (s.tree / "app.conf").write_bytes(fixed)
    out = tmp_path / "out"
    assert s.run("restore", "--without-session", "66", "--to", str(out)) == 1
    assert capsys.readouterr().err == (
        f"lxbsm-recover: conflict in {s.tree}/app.conf: bytes [{len(CONF_0)}, {len(evil)}) "
        f"written by session(s) [66] were changed by session(s) [11] (now [{len(CONF_0)}, "
        f"{len(fixed)})): a trusted change rewrote what the undone change wrote; "
        "the trusted version is kept\n"
    )
    assert (out / str(s.tree).lstrip("/") / "app.conf").read_bytes() == fixed


def test_the_journal_goes_on_in_a_new_file_once_one_is_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lxbsm_tools.recover import store

    monkeypatch.setattr(store, "SEGMENT", 1000)
    s = Site(tmp_path)
    conf = s.fid("app.conf")
    for i in range(10):
        s.entries = []
        s.write(T0 + i * S, TRUSTED, "app.conf", 0, bytes([65 + i]) * 400, 400, fid=conf)
        s.store.append(s.entries)
    names = sorted(p.name for p in s.store.journal_dir.iterdir())
    # An entry is ~580 bytes: the second one fills a file.
    assert names == [f"{n:020d}.j" for n in (1, 3, 5, 7, 9)]
    assert [e.seq for e in s.store.entries([])] == list(range(1, 11))


def test_an_append_waits_while_a_compaction_holds_the_journal(tmp_path: Path) -> None:
    s = Site(tmp_path)
    s.write(T0 + S, TRUSTED, "app.conf", 0, CONF_1, len(CONF_1))
    with s.store.locked(exclusive=True):
        t = threading.Thread(target=s.store.append, args=(s.entries,))
        t.start()
        t.join(0.5)
        assert t.is_alive() and s.store.entries([]) == []
    t.join(10)
    assert [e.seq for e in s.store.entries([])] == [1]


def test_compactions_while_the_daemon_files_lose_no_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer appends as the daemon does (some entries late, with times
    before those already filed, as from a backlog in the ring) while
    compactions run one after another: every byte written is in the restored
    file (each entry writes a byte of its own, so order cannot hide a loss)."""
    from lxbsm_tools.recover import store

    monkeypatch.setattr(store, "SEGMENT", 3000)  # compactions rewrite and drop whole files
    s = Site(tmp_path)
    conf, n = s.fid("app.conf"), 600
    filed = [0]

    def daemon() -> None:
        i = 0
        while i < n:
            batch = []
            for _ in range(1 + i % 3):
                i += 1
                late = 30 if i % 7 == 0 else 0
                batch.append(
                    Entry(
                        seq=i,
                        time_ns=T0 + (100 + i - late) * S,
                        kind=Kind.WRITE,
                        fid=conf,
                        path=s.p("app.conf"),
                        start=i - 1,
                        end=i,
                        data=bytes([i % 251 + 1]),
                        size=n,
                        **TRUSTED,
                    )
                )
                if i == n:
                    break
            s.store.append(batch)
            filed[0] = i
            time.sleep(0.001)

    t = threading.Thread(target=daemon)
    t.start()
    compactions = 0
    try:
        while t.is_alive():
            if filed[0] > 60:
                assert s.run("compact", "--before", iso(T0 + (100 + filed[0] - 40) * S)) == 0
                compactions += 1
    finally:
        t.join(60)
    assert compactions >= 3
    out = tmp_path / "out"
    assert s.run("restore", "--at", iso(T0 + (100 + n + 1) * S), "--to", str(out)) == 0
    got = (out / str(s.tree).lstrip("/") / "app.conf").read_bytes()
    assert got == bytes(i % 251 + 1 for i in range(1, n + 1))


def test_a_compaction_after_one_cut_short_keeps_every_entry_of_both_files(tmp_path: Path) -> None:
    """A compaction cut short left its new file beside the old one, and the
    daemon appended to the new one; the next compaction's rewrite of each
    wants the same name: one file holds both, each entry once."""
    s = Site(tmp_path)
    conf = s.fid("app.conf")
    for i in range(1, 11):
        s.write(T0 + i * S, TRUSTED, "app.conf", i - 1, bytes([64 + i]), 12, fid=conf)
    s.store.append(s.entries)
    j = s.store.journal_dir
    # As the cut-short compaction (before T0 + 5 s) left it: 6..10 again in 6.j, whose
    # entries the daemon then went on from.
    (j / f"{6:020d}.j").write_bytes(
        b"".join(journal.encode(e) for e in s.entries[5:]) + b"".join(
            journal.encode(e)
            for e in [
                Entry(
                    seq=i, time_ns=T0 + i * S, kind=Kind.WRITE, fid=conf,
                    path=s.p("app.conf"), start=i - 1, end=i, data=bytes([64 + i]), size=12,
                    **TRUSTED,
                )
                for i in (11, 12)
            ]
        )
    )  # fmt: skip
    assert s.run("compact", "--before", iso(T0 + 7 * S)) == 0
    assert sorted(p.name for p in j.iterdir()) == [f"{8:020d}.j"]
    assert [e.seq for e in s.store.entries([])] == [8, 9, 10, 11, 12]
    out = tmp_path / "out"
    assert s.run("restore", "--at", iso(T0 + 13 * S), "--to", str(out)) == 0
    assert (out / str(s.tree).lstrip("/") / "app.conf").read_bytes() == b"ABCDEFGHIJKL"


def test_a_symbolic_link_in_place_of_the_lock_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The journal directory is the daemon user's: a link planted there must
    not make root (a compaction) create or lock a file elsewhere."""
    s = Site(tmp_path)
    s.history()
    (s.store.root / "lock").unlink()
    target = tmp_path / "elsewhere"
    (s.store.root / "lock").symlink_to(target)
    assert s.run("compact", "--before", iso(T0 + 25 * S)) == 2
    assert f"{s.store.root}/lock: cannot open the lock file" in capsys.readouterr().err
    assert not target.exists()


def test_compaction_names_each_change_it_folded_that_was_not_captured(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = Site(tmp_path)
    conf = s.fid("app.conf")
    s.write(T0 + S, TRUSTED, "app.conf", 0, CONF_1, len(CONF_1), fid=conf)
    s.add(T0 + 2 * S, TRUSTED, Kind.LOST, "app.conf", fid=conf, start=4, end=9, event="ring full")
    s.add(T0 + 9 * S, TRUSTED, Kind.LOST, "app.bin", start=0, end=1, event="after T")
    s.store.append(s.entries)
    assert s.run("compact", "--before", iso(T0 + 5 * S)) == 0
    err = capsys.readouterr().err
    assert f"{s.tree}/app.conf: a change at" in err and "(ring full)" in err
    assert "the new baseline holds what the journal knew of this file" in err
    assert "after T" not in err
