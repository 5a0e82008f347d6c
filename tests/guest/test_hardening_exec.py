"""Issue 13, exec: what an unprivileged user tries against exec auditing and control.

- defect 1: a program at a path of 3600-3745 bytes (the sizes that overflowed
  the in-flight exec's buffer) while exec control has a path rule;

Every attack runs as nobody.  lxbsm-vm fails the run on any splat in dmesg.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lxbsm_tools.bsm import Record

from .audit import assert_return, auditing, failed, paths, run
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


LENGTHS = (3500, 3599, 3600, 3608, 3640, 3700, 3743, 3745, 4000, 4090)
RUNS = 40


def test_exec_at_long_paths_is_recorded_whole_and_still_controlled(tmp_path: Path) -> None:
    """Defect 1: execs at 3600-3745-byte paths, with a path rule active."""
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
        loop = f'for i in $(seq {RUNS}); do "$1" || exit 9; done'
        ran: dict[int, list[Record]] = {}
        with auditing(flags="ex", naflags="ex") as a, exec_rules(tmp_path, rules):
            for n, p in targets.items():
                r = run(*NOBODY, "/bin/sh", "-c", loop, "sh", p, check=False)
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
        assert len(got) == RUNS, (n, len(got))
    for n, p in denied.items():
        r = refused[n]
        assert r.returncode != 0, (n, r)
        (rec,) = [d for d in denials if paths(d)[:1] == [str(p)]]
        assert_return(rec, errno=errno.EACCES)
        assert texts(rec)[0].startswith("exec_control: denied by line "), texts(rec)
