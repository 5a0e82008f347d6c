"""Issue 13, exec: what an unprivileged user tries against exec auditing and control.

- defect 1: a program at a path of 3600-3745 bytes (the sizes that overflowed
  the in-flight exec's buffer) while exec control has a path rule;
- defect 2: a denied program loaded as another program's ELF interpreter, or
  by uselib(2);
- defect 14: a program the kernel starts (the modprobe usermode helper that
  socket() of an unknown family triggers).

Every attack runs as nobody.  lxbsm-vm fails the run on any splat in dmesg.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lxbsm_tools.bsm import Record

from .audit import PROGS, assert_return, auditing, describe, failed, paths, run
from .test_execctl import exec_rules, texts

NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
TRUE = "/usr/bin/true"


@contextmanager
def public_dir(name: str) -> Iterator[Path]:
    """A directory under /tmp that nobody can enter (and write: sticky)."""
    d = Path("/tmp") / name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(mode=0o1777)
    d.chmod(0o1777)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def long_path(base: Path, length: int, leaf: str) -> Path:
    """A path of exactly @length bytes under @base: directories, then @leaf."""
    path = str(base)
    while True:
        room = length - len(path) - 1 - len(leaf) - 1  # "/<dir>" then "/<leaf>"
        if room <= 0:
            break
        path += "/" + "d" * min(200, room)
        os.makedirs(path, mode=0o755, exist_ok=True)
    full = f"{path}/{leaf}"
    # Pad the leaf to reach the length exactly.
    full += "x" * (length - len(full))
    assert len(full) == length, (len(full), length)
    return Path(full)


# Around the end of the path an exec keeps in its kretprobe instance (255
# bytes; longer ones go to a buffer of their own), and around the instance's
# old size, where the old module overflowed.
LENGTHS = (250, 255, 256, 257, 300, 3500, 3599, 3600, 3608, 3640, 3700, 3743, 3745, 4000, 4090)
# 40 execs where the old module overflowed (3608-3743 bytes), 8 elsewhere.
RUNS = {n: 40 if 3608 <= n <= 3743 else 8 for n in LENGTHS}


def test_exec_at_long_paths_is_recorded_whole_and_still_controlled(tmp_path: Path) -> None:
    """Defect 1: execs at 250-4090-byte paths, with a path rule active."""
    with public_dir("lxbsm-longexec") as base:
        targets = {n: long_path(base / f"t{n}", n, "true") for n in LENGTHS}
        denied = {n: long_path(base / f"dn{n}", n, "denied") for n in (3640, 3743)}
        for p in targets.values():
            shutil.copy2(TRUE, p)
        for p in denied.values():
            shutil.copy2(TRUE, p)
        # A path rule (the module then makes the path of every exec) plus
        # rules naming the long denied files (matched by inode: longer than
        # a rule's path can be).
        rules = "deny /usr/bin/df\n" + "".join(f"deny {p}\n" for p in denied.values())
        loop = 'for i in $(seq "$2"); do "$1" || exit 9; done'
        ran: dict[int, list[Record]] = {}
        with auditing(flags="ex", naflags="ex") as a, exec_rules(tmp_path, rules):
            for n, p in targets.items():
                r = run(*NOBODY, "/bin/sh", "-c", loop, "sh", p, str(RUNS[n]), check=False)
                assert r.returncode == 0, (n, r.stdout, r.stderr)
                ran[n] = a.records("AUE_EXECVE", where=lambda rec, p=p: paths(rec)[:1] == [str(p)])
            refused = {}
            for n, p in denied.items():
                r = run(*NOBODY, str(p), check=False)
                refused[n] = r
            denials = a.records("AUE_EXECVE", where=lambda rec: failed(rec) and bool(texts(rec)))
    for n in LENGTHS:
        # Every exec recorded, with its whole path (no truncation at these sizes).
        got = [r for r in ran[n] if r.success]
        assert len(got) == RUNS[n], (n, len(got))
    for n, p in denied.items():
        r = refused[n]
        assert r.returncode != 0, (n, r)
        (rec,) = [d for d in denials if paths(d)[:1] == [str(p)]]
        assert_return(rec, errno=errno.EACCES)
        assert texts(rec)[0].startswith("exec_control: denied by line "), texts(rec)


INTERP = Path("/tmp/lxbsm-xc-interp")  # PT_INTERP of build/progs/xc_interp
RAN = Path("/tmp/lxbsm-xc-ran")  # what xc_marker creates

EXEC_ERRNO = (
    "import os, sys\n"
    "try:\n"
    "    os.execv(sys.argv[1], [sys.argv[1]])\n"
    "except OSError as e:\n"
    "    print('errno', e.errno)\n"
)


def as_nobody_py(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run(*NOBODY, sys.executable, "-c", code, *args, check=False)


def test_denied_program_as_elf_interpreter_or_uselib_is_refused(tmp_path: Path) -> None:
    """Defect 2: PT_INTERP and uselib(2) open a file for execution without bprm_check."""
    with public_dir("lxbsm-interp") as d:
        prog = d / "xc_interp"
        shutil.copy2(PROGS / "xc_interp", prog)
        shutil.copy2(PROGS / "xc_marker", INTERP)
        other = d / "allowed_marker"
        shutil.copy2(PROGS / "xc_marker", other)
        # uselib(2) exists for 32-bit processes only (ia32 system call 86).
        uselib32 = d / "uselib32"
        shutil.copy2(PROGS / "uselib32", uselib32)
        try:
            RAN.unlink(missing_ok=True)
            # Without a rule the attack works: the interpreter is what runs.
            free = run(*NOBODY, str(prog), check=False)
            assert free.returncode == 0 and RAN.exists(), free
            RAN.unlink()
            free_uselib = run(*NOBODY, str(uselib32), str(INTERP), check=False)
            with auditing(flags="ex", naflags="ex") as a, exec_rules(tmp_path, f"deny {INTERP}\n"):
                direct = as_nobody_py(EXEC_ERRNO, str(INTERP))
                via_interp = as_nobody_py(EXEC_ERRNO, str(prog))
                via_interp_sh = run(*NOBODY, str(prog), check=False)
                uselib = run(*NOBODY, str(uselib32), str(INTERP), check=False)
                uselib_other = run(*NOBODY, str(uselib32), str(other), check=False)
                execs = a.records("AUE_EXECVE", where=lambda r: failed(r) and bool(texts(r)))
                mmaps = a.records("AUE_MMAP")
            ran = RAN.exists()
        finally:
            INTERP.unlink(missing_ok=True)
            RAN.unlink(missing_ok=True)
    text = f"exec_control: denied by line 1 (deny {INTERP})"
    assert direct.stdout.split() == ["errno", str(errno.EACCES)], direct
    assert via_interp.stdout.split() == ["errno", str(errno.EACCES)], via_interp
    assert via_interp_sh.returncode != 0, via_interp_sh
    assert not ran, "the denied interpreter ran"
    # The exec of the program names the program, and the rule that refused
    # its interpreter.
    by_path: dict[str, list[Record]] = {}
    for r in execs:
        by_path.setdefault(paths(r)[0], []).append(r)
    assert len(by_path.get(str(INTERP), [])) == 1, by_path.keys()
    assert len(by_path.get(str(prog), [])) == 2, by_path.keys()
    for r in by_path[str(prog)] + by_path[str(INTERP)]:
        assert_return(r, errno=errno.EACCES)
        assert texts(r) == [text]
    # uselib(2): without a rule the kernel refuses a static-pie file as a
    # library (ENOEXEC); with the rule, exec control refuses it first.  A
    # kernel without uselib (it is gone from 7.x; CONFIG_USELIB=n before) refuses
    # every call with ENOSYS: no file is opened, so there is nothing to refuse.
    # The refusal of uselib is the mapping's (mappings made by an exec, the
    # interpreter's, are checked at its open): the one AUE_MMAP record.
    interp_mmaps = [r for r in mmaps if paths(r) == [str(INTERP)]]
    if free_uselib.stdout.split() == ["-1", str(errno.ENOSYS)]:
        for p in (uselib, uselib_other):
            assert p.stdout.split() == ["-1", str(errno.ENOSYS)], p
        assert interp_mmaps == [], [describe(r) for r in interp_mmaps]
    else:
        assert free_uselib.stdout.split() == ["-1", str(errno.ENOEXEC)], free_uselib
        assert uselib.stdout.split() == ["-1", str(errno.EACCES)], uselib
        assert uselib_other.stdout.split() == ["-1", str(errno.ENOEXEC)], uselib_other
        (mm,) = interp_mmaps
        assert_return(mm, errno=errno.EACCES)
        assert texts(mm) == [text]


MODPROBE = Path("/proc/sys/kernel/modprobe")
SOCKET = (
    "import socket\n"
    "try:\n"
    "    socket.socket(27, socket.SOCK_STREAM)\n"
    "except OSError as e:\n"
    "    print('errno', e.errno)\n"
)


@contextmanager
def fake_modprobe(name: str) -> Iterator[tuple[Path, Path]]:
    """modprobe_path set to a script that writes its arguments to a mark file,
    in a public directory @name, for the block: (script, mark)."""
    saved = MODPROBE.read_text().strip()
    with public_dir(name) as d:
        helper = d / "fake-modprobe"
        mark = d / "helper-ran"
        helper.write_text(f'#!/bin/sh\necho "$@" > {mark}\n')
        helper.chmod(0o755)
        try:
            MODPROBE.write_text(str(helper))
            yield helper, mark
        finally:
            MODPROBE.write_text(saved)


def test_usermode_helper_exec_is_recorded(tmp_path: Path) -> None:
    """Defect 14: socket() of an unknown family makes the kernel run modprobe_path."""
    with fake_modprobe("lxbsm-umh") as (helper, mark):
        missing = helper.parent / "no-such-modprobe"
        with auditing(flags="ex", naflags="ex") as a:
            r = as_nobody_py(SOCKET)
            recs = a.records("AUE_EXECVE", where=lambda rec: paths(rec)[:1] == [str(helper)])
            # A helper that cannot run: its failed exec is recorded too.
            MODPROBE.write_text(str(missing))
            r2 = as_nobody_py(SOCKET)
            gone = a.records("AUE_EXECVE", where=lambda rec: paths(rec)[:1] == [str(missing)])
        helper_args = mark.read_text().split() if mark.exists() else []
    assert r.stdout.split() == ["errno", str(errno.EAFNOSUPPORT)], r
    assert helper_args == ["-q", "--", "net-pf-27"], helper_args
    (rec,) = recs
    assert_return(rec, value=0)
    assert rec.first("exec_args").args == ["/bin/sh", str(helper), "-q", "--", "net-pf-27"]
    assert paths(rec) == [str(helper), "/usr/bin/dash"]
    assert texts(rec) == ["usermode helper: started by the kernel (kernel_execve)"]
    subj = rec.subject
    assert subj is not None and subj.euid == 0 and subj.pid != os.getpid()
    assert r2.stdout.split() == ["errno", str(errno.EAFNOSUPPORT)], r2
    (fail,) = gone
    assert_return(fail, errno=errno.ENOENT)
    assert texts(fail) == ["usermode helper: started by the kernel (kernel_execve)"]


def test_usermode_helper_is_under_exec_control(tmp_path: Path) -> None:
    """A denied program the kernel starts for nobody (modprobe_path) is refused.
    On 5.10 a usermode helper is a kernel thread until its exec succeeds, and
    kernel threads are exempt: the helper ran, unrecorded."""
    with fake_modprobe("lxbsm-umh-xc") as (helper, mark):
        with auditing(flags="ex", naflags="ex") as a, exec_rules(tmp_path, f"deny {helper}\n"):
            r = as_nobody_py(SOCKET)
            recs = a.records("AUE_EXECVE", where=lambda rec: paths(rec)[:1] == [str(helper)])
        ran = mark.exists()
    assert r.stdout.split() == ["errno", str(errno.EAFNOSUPPORT)], r
    assert not ran, "the denied usermode helper ran"
    (rec,) = recs
    assert_return(rec, errno=errno.EACCES)
    assert texts(rec) == [
        f"exec_control: denied by line 1 (deny {helper})",
        "usermode helper: started by the kernel (kernel_execve)",
    ]


RACE_SECONDS = 8
NOBODY_UID = 65534
DEPTH = 24  # directories between the renamed one and the files: a longer walk
RENAMER = (
    "import os, sys, time\n"
    "d, end, n = sys.argv[1], time.monotonic() + float(sys.argv[2]), 0\n"
    "while time.monotonic() < end:\n"
    "    os.rename(d + '/a', d + '/b')\n"
    "    os.rename(d + '/b', d + '/a')\n"
    "    n += 2\n"
    "print(n)\n"
)
OPENER = (
    "import os, sys, time\n"
    "d, sub, end, n = sys.argv[1], sys.argv[3], time.monotonic() + float(sys.argv[2]), 0\n"
    "while time.monotonic() < end:\n"
    "    for top in ('a', 'b'):\n"
    "        try:\n"
    "            os.close(os.open(f'{d}/{top}/{sub}/f', os.O_RDONLY))\n"
    "            n += 1\n"
    "        except OSError:\n"
    "            pass\n"
    "print(n)\n"
)
EXECER = (
    "import os, sys, time\n"
    "d, sub, end, n = sys.argv[1], sys.argv[3], time.monotonic() + float(sys.argv[2]), 0\n"
    "while time.monotonic() < end:\n"
    "    for top in ('a', 'b'):\n"
    "        p = f'{d}/{top}/{sub}/true'\n"
    "        try:\n"
    "            pid = os.posix_spawn(p, [p], {})\n"
    "        except OSError:\n"
    "            continue\n"
    "        os.waitpid(pid, 0)\n"
    "        n += 1\n"
    "print(n)\n"
)


def test_renames_racing_path_walks_neither_splat_nor_garble_paths(tmp_path: Path) -> None:
    """nobody renames a directory in a loop while opening and running files
    deep below it.  Every open and exec makes its file's path in a handler,
    with preemption disabled; d_path() would take rename_lock when a rename
    overlaps its walk, a sleeping lock on PREEMPT_RT ("BUG: scheduling while
    atomic", which fails the run).  Every path recorded is one the file had:
    under a or under b, or none (a walk that kept overlapping renames)."""
    sub = "/".join(["d"] * DEPTH)
    with public_dir("lxbsm-rename-race") as base:
        leaf = base / "a" / sub
        leaf.mkdir(parents=True)
        (leaf / "f").write_text("x")
        shutil.copy2(TRUE, leaf / "true")
        for p in [base / "a", *(base / "a").rglob("*")]:
            os.chown(p, NOBODY_UID, NOBODY_UID)  # the sticky base: renamed by its owner
        want = {f"{base}/{top}/{sub}/{name}" for top in "ab" for name in ("f", "true")}
        # A path rule: exec control makes every exec's path too.
        rules = "deny /usr/bin/df\n"
        with auditing(flags="ex,fr", naflags="ex,fr") as a, exec_rules(tmp_path, rules):
            procs = [
                subprocess.Popen(
                    [*NOBODY, sys.executable, "-c", code, str(base), str(RACE_SECONDS), sub],
                    stdout=subprocess.PIPE,
                    text=True,
                )
                for code in (RENAMER, OPENER, OPENER, EXECER)
            ]
            while any(p.poll() is None for p in procs):
                a.collect()  # keep the ring drained
                time.sleep(0.2)
            counts = [int(p.communicate()[0]) for p in procs]
            mine = a.records(
                where=lambda r: (
                    r.success
                    and r.subject is not None
                    and r.subject.ruid == NOBODY_UID
                    and bool(paths(r))
                    and paths(r)[0].startswith(f"{base}/")
                )
            )
    renames, opens, execs = counts[0], counts[1] + counts[2], counts[3]
    assert renames > 100 and opens > 100 and execs > 0, counts
    got = Counter(paths(r)[0] for r in mine)
    assert set(got) <= want, sorted(set(got) - want)[:5]
    named = {
        what: sum(n for p, n in got.items() if p.endswith("/" + what)) for what in ("f", "true")
    }
    # Nearly every successful call's record names its file: only a walk
    # that renames kept overlapping has none (so is not counted here).
    assert named["f"] >= opens * 9 // 10, (named, opens)
    assert named["true"] >= execs * 9 // 10, (named, execs)
    print(f"{renames} renames, {opens} opens, {execs} execs: paths recorded {named}")
