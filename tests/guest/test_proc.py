"""fork, vfork, clone, clone3, exit, the setuid family and setgroups."""

from __future__ import annotations

import errno
import os
import signal
import threading

from lxbsm_tools import uapi

from .audit import PROGS, assert_return, assert_subject, auditing, failed, settle, spawn
from .conftest import load_module


def child_pid(rec) -> int:  # type: ignore[no-untyped-def]
    arg = rec.first("arg32")
    assert arg.text == "child PID" and arg.num == 0
    return int(arg.value)


def test_fork_records_the_child_and_threads_are_not_processes() -> None:
    with auditing() as a:
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        t = threading.Thread(target=lambda: None)
        t.start()
        t.join()
        rec = a.one("AUE_FORK", os.getpid())
    assert child_pid(rec) == pid
    assert_return(rec, value=pid)
    assert_subject(rec, os.getpid())


def test_vfork_clone3_and_clone_failure() -> None:
    with auditing() as a:
        p1, _, out1 = spawn(PROGS / "sysprobe", "vfork")
        p2, _, out2 = spawn(PROGS / "sysprobe", "clone3")
        p3, _, out3 = spawn(PROGS / "sysprobe", "clone-einval")
        v = a.one("AUE_VFORK", p1)
        c3 = a.one("AUE_FORK", p2)
        bad = a.one("AUE_FORK", p3, where=failed)
    assert child_pid(v) == int(out1.split()[0])
    assert child_pid(c3) == int(out2.split()[0])
    assert out3.split() == ["-1", str(errno.EINVAL)]
    assert bad.first("arg32") is None
    assert_return(bad, errno=errno.EINVAL)


def test_exit_records_status_and_signal() -> None:
    with auditing() as a:
        p1, rc1, _ = spawn("sh", "-c", "exit 3")
        p2 = os.fork()
        if p2 == 0:
            os.kill(os.getpid(), signal.SIGKILL)
        os.waitpid(p2, 0)
        settle()
        e1 = a.one("AUE_EXIT", p1)
        e2 = a.one("AUE_EXIT", p2)
    assert rc1 == 3
    assert (e1.first("exit").status, e1.first("exit").value) == (3, 0)
    assert e2.first("exit").status == 128 + signal.SIGKILL
    assert_return(e1, value=0)


def test_setuid_family_and_setgroups() -> None:
    code = (
        "import os\n"
        "os.setgroups([10, 20])\n"
        "os.setresgid(100, 100, 100)\n"
        "os.setregid(100, 100)\n"
        "os.setgid(100)\n"
        "os.setresuid(1000, 1000, 0)\n"
        "os.setreuid(1000, 1000)\n"
        "try:\n"
        "    os.setuid(0)\n"
        "except PermissionError:\n"
        "    print('eperm')\n"
        "try:\n"
        "    os.setgroups([30])\n"
        "except PermissionError:\n"
        "    print('eperm')\n"
    )
    with auditing() as a:
        pid, _, out = spawn("python3", "-c", code)
        assert out.split() == ["eperm", "eperm"], out
        groups = a.one("AUE_SETGROUPS", pid, where=lambda r: r.success is True)
        groups_denied = a.one("AUE_SETGROUPS", pid, where=failed)
        resgid = a.one("AUE_SETRESGID", pid)
        resuid = a.one("AUE_SETRESUID", pid)
        reuid = a.one("AUE_SETREUID", pid)
        regid = a.one("AUE_SETREGID", pid)
        setgid = a.one("AUE_SETGID", pid)
        bad = a.one("AUE_SETUID", pid)
    assert [(t.num, t.value, t.text) for t in groups.all("arg32")] == [
        (1, 10, "setgroups"),
        (1, 20, "setgroups"),
    ]
    assert [(t.num, t.value, t.text) for t in resgid.all("arg32")] == [
        (1, 100, "rgid"),
        (2, 100, "egid"),
        (3, 100, "sgid"),
    ]
    assert [(t.num, t.value, t.text) for t in resuid.all("arg32")] == [
        (1, 1000, "ruid"),
        (2, 1000, "euid"),
        (3, 0, "suid"),
    ]
    assert [(t.value, t.text) for t in reuid.all("arg32")] == [(1000, "ruid"), (1000, "euid")]
    assert [(t.value, t.text) for t in regid.all("arg32")] == [(100, "rgid"), (100, "egid")]
    assert [(t.value, t.text) for t in setgid.all("arg32")] == [(100, "gid")]
    # The subject shows the credentials after the call.
    assert_subject(resuid, pid, uid=1000, gid=100, euid=1000)
    assert_return(resuid, value=0)
    assert [(t.value, t.text) for t in bad.all("arg32")] == [(0, "uid")]
    assert_return(bad, errno=errno.EPERM)
    assert_return(groups_denied, errno=errno.EPERM)
    assert_subject(groups_denied, pid, uid=1000, gid=100)


def test_empty_process_table_pool_seeds_processes_from_their_task() -> None:
    """Handlers never allocate: an empty pool (here always) costs the entry, not the ids.

    With no entry kept ready, every fork and first sight finds the process
    table's pool empty; a storm of children of a process that set its audit
    id is then described from each task (the kernel's loginuid and session)
    and audited under that id, and each failure is counted.
    """
    auid = 4243
    n = 200
    load_module("proc_pool=0")
    with auditing(flags="", naflags="", policy="", users={auid: ("ex", "")}) as a:
        before = uapi.get_status(a.ctl).table_alloc_failed
        script = (
            f"echo {auid} > /proc/self/loginuid || exit 9; "
            f"i=0; while [ $i -lt {n} ]; do /bin/true & i=$((i+1)); done; wait; "
            "read s < /proc/self/sessionid; echo $s"
        )
        _, rc, out = spawn("sh", "-c", script)
        assert rc == 0, out
        settle()
        execs = a.records(
            "AUE_EXECVE", where=lambda r: r.subject is not None and r.subject.auid == auid
        )
        failed_gets = uapi.get_status(a.ctl).table_alloc_failed - before
    subjects = [r.subject for r in execs if r.subject is not None]
    assert len(subjects) == n
    assert len({s.pid for s in subjects}) == n
    assert {s.sid for s in subjects} == {int(out.split()[-1])}
    assert failed_gets >= n
