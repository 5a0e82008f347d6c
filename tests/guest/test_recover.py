"""Recovering protected files after an intrusion: the scenario of issue 17
(docs/recovery.md), end to end.

lxbsm-auditd protects ``/srv/site`` (a tmpfs mounted for the test).  Over
ssh (tests/guest/sshlogin.py), a trusted user's session from 127.0.0.1 edits
``app.conf`` in place, appends to a log and to a file at the end of a
1000-byte path, and creates a file whose name is not UTF-8; an untrusted
user's session from 127.0.0.2 appends a backdoor line to ``app.conf``,
overwrites 20000 bytes in the middle of a binary with ``pwrite``, truncates a
file whose name holds a newline, deletes one with a non-UTF-8 name, renames
one with a 255-byte name and writes through a shared ``mmap``; then the
trusted user changes another line of ``app.conf`` the way editors save:
a new file renamed over the old one (so it carries the backdoor along).

The test builds every expected state itself from what each step does, checks
the live tree against it after each phase (so the model is the truth), and
then, from the daemon's journal alone:

- ``restore --at`` gives the exact tree at five moments (before the trusted
  session, after it, halfway through the untrusted one, after it, after the
  editor's save);
- ``restore --without-terminal 127.0.0.2`` gives the trusted state: every
  trusted change kept, every untrusted one gone (also in place);
- ``log`` names both users, their sessions (the sessions the trail's login
  records name) and their terminals, and each change.

Files are compared whole: content, mode, owner and group.
"""

from __future__ import annotations

import datetime
import itertools
import json
import os
import random
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lxbsm_tools.recover.journal import Damage, Kind
from lxbsm_tools.recover.main import main as recover_main
from lxbsm_tools.recover.main import show_path
from lxbsm_tools.recover.store import Store

from .audit import aue
from .conftest import load_module, run
from .sshlogin import OTHER, OTHER_UID, USER, USER_UID, Env, Sshd, append_line, ssh
from .test_auditd import Auditd, all_records, audit_user, control_file  # noqa: F401 (a fixture)

MOUNT = Path("/srv")
SITE = MOUNT / "site"
SITE_B = os.fsencode(SITE) + b"/"
SITE_GROUP, SITE_GID = "lxsite", 2198
TRUSTED, UNTRUSTED = "127.0.0.1", "127.0.0.2"
RECOVER = (sys.executable, "-m", "lxbsm_tools.recover.main")
MODE = 0o664  # every file here: the scripts' umask is 002

# The files, relative to SITE.
APP = b"app.conf"
LOG = b"logs/access.log"
DEEP = b"/".join(bytes([c]) * 200 for c in b"defgh") + b"/notes.txt"  # a 1000-byte path
BIN = b"bin/tool.bin"
CACHE = b"data/cache\n.db"  # a newline in the name
OLD = b"data/old-\xff\xfe.txt"  # not UTF-8
LONG_A = b"data/" + b"r" * 251 + b".txt"  # 255-byte names
LONG_B = b"data/" + b"s" * 250 + b"\xe9.txt"
MAPPED = b"data/mapped.dat"
NEW = b"data/caf\xe9-\xa0.txt"  # made by the trusted session
EDIT_TMP = b".app.conf.swp"  # the editor's new file

APP_TEXT = (
    b"# site configuration\nlisten = 8080\nworkers = 4\nlog_level = info\n"
    b"cache_dir = /var/cache/site\nadmin = alice\ntimeout = 30\n"
)
BACKDOOR = b"include /tmp/.x/evil.conf\n"
LOG_LINE = b"127.0.0.1 - alice [trusted] GET /index.html 200\n"
DEEP_LINE = b"note from the trusted session\n"
NEW_TEXT = b"made by the trusted session\n\xff\x00binary tail\n"
PATCH_AT, CACHE_LEN, MAP_AT = 10000, 1000, 1000

Files = dict[bytes, bytes]  # path below SITE: content


@dataclass
class Payloads:
    """The bytes the steps write that the test chose at random."""

    binary: bytes  # tool.bin at first
    patch: bytes  # what the untrusted session pwrites into it
    mapped: bytes  # mapped.dat at first
    map_data: bytes  # what it writes through mmap


def initial(p: Payloads) -> Files:
    return {
        APP: APP_TEXT,
        LOG: b"".join(b"192.0.2.%d - - [old] GET / 200\n" % i for i in range(40)),
        DEEP: b"deep notes\n",
        BIN: p.binary,
        CACHE: b"".join(b"key%04d = value\n" % i for i in range(200)),
        OLD: b"an old file\nwith two lines\n",
        LONG_A: b"a report\n" * 30,
        MAPPED: p.mapped,
    }


def trusted_edits(f: Files) -> Files:
    f = dict(f)
    f[APP] = f[APP].replace(b"workers = 4", b"workers = 8", 1)
    f[LOG] += LOG_LINE
    f[DEEP] += DEEP_LINE
    f[NEW] = NEW_TEXT
    return f


def intrusion_first_half(f: Files, p: Payloads) -> Files:
    f = dict(f)
    f[APP] += BACKDOOR
    b = f[BIN]
    f[BIN] = b[:PATCH_AT] + p.patch + b[PATCH_AT + len(p.patch) :]
    f[CACHE] = f[CACHE][:CACHE_LEN]
    return f


def intrusion_second_half(f: Files, p: Payloads) -> Files:
    f = dict(f)
    del f[OLD]
    f[LONG_B] = f.pop(LONG_A)
    m = f[MAPPED]
    f[MAPPED] = m[:MAP_AT] + p.map_data + m[MAP_AT + len(p.map_data) :]
    return f


def editor_save(f: Files) -> Files:
    f = dict(f)
    f[APP] = f[APP].replace(b"log_level = info\n", b"log_level = debug\n", 1)
    return f


# The sessions' programs.  Each is run as `python3 FILE` over ssh; paths and
# payloads are written into them as literals.
TRUSTED_SCRIPT = """
import os
os.umask(0o002)
fd = os.open(SITE + APP, os.O_RDWR)
text = os.read(fd, 1 << 20)
os.pwrite(fd, b"workers = 8", text.index(b"workers = 4"))
os.close(fd)
for name, line in ((LOG, LOG_LINE), (DEEP, DEEP_LINE)):
    with open(SITE + name, "ab") as f:
        f.write(line)
fd = os.open(SITE + NEW, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o664)
os.write(fd, NEW_TEXT)
os.close(fd)
"""
UNTRUSTED_SCRIPT = """
import mmap, os, time
os.umask(0o002)
with open(SITE + APP, "ab") as f:
    f.write(BACKDOOR)
fd = os.open(SITE + BIN, os.O_WRONLY)
assert os.pwrite(fd, PATCH, PATCH_AT) == len(PATCH)
os.close(fd)
os.truncate(SITE + CACHE, CACHE_LEN)
time.sleep(0.6)
print(time.time_ns(), flush=True)  # a moment between the halves
time.sleep(0.6)
os.unlink(SITE + OLD)
os.rename(SITE + LONG_A, SITE + LONG_B)
fd = os.open(SITE + MAPPED, os.O_RDWR)
m = mmap.mmap(fd, 0, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
m[MAP_AT : MAP_AT + len(MAP_DATA)] = MAP_DATA
m.flush()
m.close()
os.close(fd)
"""
EDITOR_SCRIPT = """
import os
os.umask(0o002)
with open(SITE + APP, "rb") as f:
    text = f.read()
fd = os.open(SITE + EDIT_TMP, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o664)
os.write(fd, text.replace(b"log_level = info\\n", b"log_level = debug\\n", 1))
os.fsync(fd)
os.close(fd)
os.rename(SITE + EDIT_TMP, SITE + APP)
"""


def script(d: Path, name: str, body: str, p: Payloads) -> str:
    """@body with its names bound, in a file both users can read; the
    command that runs it."""
    names: dict[str, object] = {
        "SITE": SITE_B, "APP": APP, "LOG": LOG, "DEEP": DEEP, "BIN": BIN, "CACHE": CACHE,
        "OLD": OLD, "LONG_A": LONG_A, "LONG_B": LONG_B, "MAPPED": MAPPED, "NEW": NEW,
        "EDIT_TMP": EDIT_TMP, "BACKDOOR": BACKDOOR, "LOG_LINE": LOG_LINE,
        "DEEP_LINE": DEEP_LINE, "NEW_TEXT": NEW_TEXT, "PATCH_AT": PATCH_AT,
        "CACHE_LEN": CACHE_LEN, "MAP_AT": MAP_AT, "PATCH": p.patch, "MAP_DATA": p.map_data,
    }  # fmt: skip
    head = "".join(f"{k} = {v!r}\n" for k, v in names.items())
    path = d / name
    path.write_text(head + body)
    path.chmod(0o644)
    return f"python3 {path}"


State = dict[bytes, tuple[bytes, int, int, int]]  # path below the top: content, mode, uid, gid


def tree(top: Path) -> State:
    """Every regular file below @top (symbolic links not followed)."""
    out: State = {}
    t = os.fsencode(top)
    for d, _, names in os.walk(t):
        for n in names:
            p = os.path.join(d, n)
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    out[p[len(t) + 1 :]] = (
                        f.read(),
                        stat.S_IMODE(st.st_mode),
                        st.st_uid,
                        st.st_gid,
                    )
    return out


def expect(f: Files) -> State:
    return {p: (c, MODE, USER_UID, SITE_GID) for p, c in f.items()}


def differences(got: State, want: State) -> list[str]:
    out = []
    for p in sorted(set(got) | set(want)):
        name = show_path(p)
        if p not in got:
            out.append(f"{name}: missing")
        elif p not in want:
            out.append(f"{name}: should not be there")
        elif got[p][0] != want[p][0]:
            g, w = got[p][0], want[p][0]
            at = next((i for i, (x, y) in enumerate(zip(g, w, strict=False)) if x != y), None)
            at = min(len(g), len(w)) if at is None else at
            out.append(f"{name}: {len(g)} bytes, want {len(w)}; first difference at byte {at}")
        elif got[p][1:] != want[p][1:]:
            out.append(f"{name}: mode, uid, gid {got[p][1:]}, want {want[p][1:]}")
    return out


def assert_tree(top: Path, want: Files, what: str) -> None:
    diff = differences(tree(top), expect(want))
    assert not diff, f"{what}:\n  " + "\n  ".join(diff)


def iso(ns: int) -> str:
    """A moment as lxbsm-recover reads it (ISO 8601, local time, microseconds)."""
    return datetime.datetime.fromtimestamp(ns / 1e9).isoformat(timespec="microseconds")


def moment() -> int:
    """A moment well apart from the changes before and after it (the ring's
    records carry milliseconds)."""
    time.sleep(0.6)
    t = time.time_ns()
    time.sleep(0.6)
    return t


@dataclass
class Scenario:
    work: Path
    journal: Path
    moments: list[int]  # the five moments
    states: list[Files]  # the tree at each
    trusted: Files  # the tree as if the untrusted session had never run
    logins: set[tuple[int, int, str]]  # the trail's successful ssh logins: auid, session, address
    payloads: Payloads

    def recover(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [*RECOVER, "--journal", str(self.journal), *args], capture_output=True, timeout=600
        )


def wait_until(what: str, done: Callable[[], bool], daemon: Auditd, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert daemon.proc is not None
        if daemon.proc.poll() is not None:
            raise AssertionError(f"lxbsm-auditd exited: {daemon.log.read_text()}")
        assert time.monotonic() < deadline, f"{what} after {timeout} s:\n{daemon.log.read_text()}"
        time.sleep(0.3)


def filed(journal: Path, last: Callable[[Any], bool]) -> bool:
    """The journal holds an entry @last matches."""
    if not (journal / "journal").is_dir():
        return False
    damages: list[Damage] = []
    return any(last(e) for e in Store(journal).entries(damages))


@pytest.fixture(scope="module")
def site_group() -> None:
    if f"\n{SITE_GROUP}:" not in Path("/etc/group").read_text():
        append_line("/etc/group", f"{SITE_GROUP}:x:{SITE_GID}:{USER},{OTHER}\n")


def make_site(files: Files) -> None:
    """The tree at first: directories root:lxsite 2775, files lxtest:lxsite 0664."""
    run("mount", "-t", "tmpfs", "-o", "mode=0755", "lxbsm-site", str(MOUNT))
    for rel, content in files.items():
        p = SITE_B + rel
        d = os.path.dirname(p)
        os.makedirs(d, exist_ok=True)
        with open(p, "wb") as f:
            f.write(content)
        os.chown(p, USER_UID, SITE_GID)
        os.chmod(p, MODE)
    for d, _, _ in os.walk(SITE_B):
        os.chown(d, 0, SITE_GID)
        os.chmod(d, 0o2775)


@pytest.fixture(scope="module")
def scenario(ssh_env: Env, site_group: None) -> Iterator[Scenario]:
    work = Path(tempfile.mkdtemp(prefix="lxbsm-recover-", dir="/tmp"))
    work.chmod(0o755)
    journal = work / "journal"
    p = Payloads(os.urandom(65536), os.urandom(20000), os.urandom(8192), os.urandom(5000))
    states = [initial(p)]
    make_site(states[0])
    sshd = Sshd(ssh_env, pam=True)
    cf = control_file(work, f"protect:{SITE}", f"protect-journal:{journal}", flags="lo")
    daemon = Auditd(work, cf)
    try:
        daemon.start()
        # In force once the daemon has taken the baseline (it pushes the
        # trees to the module first: docs/recovery.md).
        wait_until(
            "no baseline in the journal",
            lambda: any((journal / "baselines").glob("*.base")),
            daemon,
            120,
        )
        moments = [moment()]

        def session(user: str, source: str, command: str) -> str:
            out = ssh(sshd, ssh_env.key, "127.0.0.1", command, user=user, source=source)
            assert out.returncode == 0, f"ssh: {out.stderr}\nsshd: {sshd.log.read_text()}"
            return out.stdout

        session(USER, TRUSTED, script(work, "trusted.py", TRUSTED_SCRIPT, p))
        states.append(trusted_edits(states[-1]))
        assert_tree(SITE, states[-1], "after the trusted session (the test's model is wrong)")
        moments.append(moment())

        out = session(OTHER, UNTRUSTED, script(work, "untrusted.py", UNTRUSTED_SCRIPT, p))
        moments.append(int(out.split()[0]))
        states.append(intrusion_first_half(states[-1], p))
        states.append(intrusion_second_half(states[-1], p))
        assert_tree(SITE, states[-1], "after the untrusted session (the test's model is wrong)")
        moments.append(moment())

        session(USER, TRUSTED, script(work, "editor.py", EDITOR_SCRIPT, p))
        states.append(editor_save(states[-1]))
        assert_tree(SITE, states[-1], "after the editor's save (the test's model is wrong)")
        moments.append(moment())
        assert sorted(moments) == moments and len(moments) == len(states) == 5

        wait_until(
            "the editor's rename is not in the journal",
            lambda: filed(journal, lambda e: e.kind == Kind.RENAME and e.path2 == SITE_B + APP),
            daemon,
            120,
        )
        daemon.terminate()
        logins = {
            (r.subject.auid, r.subject.sid, str(r.subject.address))
            for r in all_records(work / "trails")
            if r.event == aue("AUE_openssh") and r.success and r.subject is not None
        }
        yield Scenario(
            work,
            journal,
            moments,
            states,
            editor_save(trusted_edits(initial(p))),
            logins,
            p,
        )
    finally:
        daemon.close()
        sshd.stop()
        load_module()  # the module lets go of the protected tree
        run("umount", str(MOUNT), check=False)
        shutil.rmtree(work, ignore_errors=True)


def test_restore_at_each_of_five_moments(scenario: Scenario) -> None:
    for i, (t, want) in enumerate(zip(scenario.moments, scenario.states, strict=True)):
        to = scenario.work / f"at{i}"
        r = scenario.recover("restore", "--at", iso(t), "--to", str(to))
        assert r.returncode == 0, r.stderr.decode(errors="replace")
        assert_tree(to / "srv" / "site", want, f"restore --at moment {i} ({iso(t)})")


def restore_at(journal: Path, t: int, to: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*RECOVER, "--journal", str(journal), "restore", "--at", iso(t), "--to", str(to)],
        capture_output=True,
        timeout=600,
    )


def test_compaction_keeps_later_moments_exact_and_survives_kills(scenario: Scenario) -> None:
    """With the intruder's terminal marked untrusted, a compaction over the intrusion is refused;
    one over the trusted session before it folds that into a baseline, after which every later
    moment restores exactly and the intrusion can still be undone; then a compaction killed at 20
    random points leaves a journal that restores the last moment and undoes the intrusion."""
    base = scenario.work / "compacted"
    shutil.copytree(scenario.journal, base)
    mark = [*RECOVER, "--journal", str(base), "mark", "--terminal", UNTRUSTED]
    assert subprocess.run(mark, capture_output=True, timeout=120).returncode == 0
    # a period with the intruder's changes in it is refused: they must stay undoable
    r = subprocess.run(
        [*RECOVER, "--journal", str(base), "compact", "--before", iso(scenario.moments[3])],
        capture_output=True,
        timeout=600,
    )
    assert r.returncode == 2 and b"marked untrusted" in r.stderr, r.stderr
    cut = scenario.moments[1]  # after the trusted session, before the intrusion
    t0 = time.monotonic()
    r = subprocess.run(
        [*RECOVER, "--journal", str(base), "compact", "--before", iso(cut)],
        capture_output=True,
        timeout=600,
    )
    full = time.monotonic() - t0
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    for i in (1, 2, 3, 4):
        to = scenario.work / f"c-at{i}"
        r = restore_at(base, scenario.moments[i], to)
        assert r.returncode == 0, r.stderr.decode(errors="replace")
        assert_tree(to / "srv" / "site", scenario.states[i], f"after compaction, moment {i}")
    to = scenario.work / "c-trusted"
    r = subprocess.run(
        [*RECOVER, "--journal", str(base), "restore", "--without-terminal", UNTRUSTED,
         "--to", str(to)],
        capture_output=True,
        timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    assert_tree(to / "srv" / "site", scenario.trusted, "after compaction, without the intruder")

    # The kills: the journal copied with its mark; the check after each is lxbsm-recover run in
    # this process (its main()), which spares a Python start per check under emulation.
    marked = scenario.work / "marked"
    shutil.copytree(scenario.journal, marked)
    subprocess.run([*mark[:2], str(marked), *mark[3:]], capture_output=True, timeout=120)
    rng = random.Random(17)
    for k in range(20):
        killed = scenario.work / f"killed{k}"
        shutil.copytree(marked, killed)
        p = subprocess.Popen(
            [*RECOVER, "--journal", str(killed), "compact", "--before", iso(cut)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0, full))
        p.kill()
        p.wait()
        to = scenario.work / f"k-at{k}"
        args = ["--journal", str(killed), "restore", "--at", iso(scenario.moments[4])]
        assert recover_main([*args, "--to", str(to)]) == 0, f"kill {k}"
        assert_tree(to / "srv" / "site", scenario.states[4], f"compaction killed ({k})")
        to2 = scenario.work / f"k-trusted{k}"
        args = ["--journal", str(killed), "restore", "--without-terminal", UNTRUSTED]
        assert recover_main([*args, "--to", str(to2)]) == 0, f"kill {k}"
        assert_tree(to2 / "srv" / "site", scenario.trusted, f"compaction killed ({k}), undone")
        for d in (killed, to, to2):
            shutil.rmtree(d)


def test_log_names_both_sessions_and_each_change(scenario: Scenario) -> None:
    r = scenario.recover("log", "--json", "--until", iso(scenario.moments[-1]))
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    rows: list[dict[str, Any]] = json.loads(r.stdout)
    m = scenario.moments

    def whose(row: dict[str, Any]) -> tuple[int, int, str]:
        return (row["auid"], row["session"], row["terminal"].split(" ")[0])

    # Every change was made by one of the three ssh logins the trail records:
    # the trusted user's two from 127.0.0.1, the other user's one from 127.0.0.2.
    assert {(a, addr) for a, _, addr in scenario.logins} == {
        (USER_UID, TRUSTED),
        (OTHER_UID, UNTRUSTED),
    }
    assert len(scenario.logins) == 3, scenario.logins
    assert {whose(row) for row in rows} == scenario.logins, rows
    for row in rows:
        assert (
            row["user"]
            == {USER_UID: f"{USER} ({USER_UID})", OTHER_UID: f"{OTHER} ({OTHER_UID})"}[row["auid"]]
        ), row

    def changes(rows: list[dict[str, Any]]) -> set[tuple[str, str, str | None]]:
        return {(row["change"], row["path"], row["path2"]) for row in rows}

    def at(rel: bytes) -> str:
        return show_path(SITE_B + rel)

    untrusted = [row for row in rows if row["auid"] == OTHER_UID]
    assert changes(untrusted) == {
        ("write", at(APP), None),
        ("write", at(BIN), None),
        ("truncate", at(CACHE), None),
        ("unlink", at(OLD), None),
        ("rename", at(LONG_A), at(LONG_B)),
        ("write", at(MAPPED), None),
    }, untrusted
    assert {row["event"] for row in untrusted if row["path"] == at(MAPPED)} == {"mmap"}
    for row in untrusted:
        first_half = row["path"] in (at(APP), at(BIN), at(CACHE))
        lo, hi = (m[1], m[2]) if first_half else (m[2], m[3])
        assert lo < row["time_ns"] < hi, row
    # The pwrite: 20000 bytes at 10000, in whole records of at most 16384.
    patch = sorted((row["start"], row["end"]) for row in untrusted if row["path"] == at(BIN))
    assert patch[0][0] <= PATCH_AT and patch[-1][1] >= PATCH_AT + len(scenario.payloads.patch)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(patch)), patch

    trusted = [row for row in rows if row["auid"] == USER_UID]
    sessions = sorted(
        {row["session"] for row in trusted},
        key=lambda s: min(row["time_ns"] for row in trusted if row["session"] == s),
    )
    assert len(sessions) == 2, trusted
    first = [row for row in trusted if row["session"] == sessions[0]]
    editor = [row for row in trusted if row["session"] == sessions[1]]
    assert changes(first) == {
        ("write", at(APP), None),
        ("write", at(LOG), None),
        ("write", at(DEEP), None),
        ("create", at(NEW), None),
        ("write", at(NEW), None),
    }, first
    assert changes(editor) == {
        ("create", at(EDIT_TMP), None),
        ("write", at(EDIT_TMP), None),
        ("rename", at(EDIT_TMP), at(APP)),
    }, editor
    assert all(m[0] < row["time_ns"] < m[1] for row in first), first
    assert all(m[3] < row["time_ns"] < m[4] for row in editor), editor


def test_restore_without_the_untrusted_terminal(scenario: Scenario) -> None:
    """The trusted state, written elsewhere, then in place: the backdoor line
    is out of the editor's app.conf, every untrusted change is undone, every
    trusted one kept.  Run last: the in-place restore changes the tree."""
    to = scenario.work / "trusted"
    r = scenario.recover("restore", "--without-terminal", UNTRUSTED, "--to", str(to))
    assert r.returncode == 0, r.stderr.decode(errors="replace")  # 1: a conflict was reported
    assert_tree(to / "srv" / "site", scenario.trusted, "restore --without-terminal --to")

    assert_tree(SITE, scenario.states[-1], "the tree before the in-place restore")
    r = scenario.recover("restore", "--without-terminal", UNTRUSTED)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    assert_tree(SITE, scenario.trusted, "restore --without-terminal in place")
