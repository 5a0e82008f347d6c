"""execve, execveat, fexecve: success and failure, every way to reach a program."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from .audit import (
    PROGS,
    assert_return,
    assert_subject,
    auditing,
    failed,
    paths,
    spawn,
    write_script,
)


def execs(a, pid: int):  # type: ignore[no-untyped-def]
    return [r for r in a.records(pid=pid) if r.event in (23, 43262, 43144)]


def test_execve_records_args_path_attr_subject() -> None:
    with auditing() as a:
        pid, rc, _ = spawn("/usr/bin/id", "-u")
        assert rc == 0
        rec = a.one("AUE_EXECVE", pid)
    assert rec.first("exec_args").args == ["/usr/bin/id", "-u"]
    assert paths(rec) == ["/usr/bin/id"]
    attr = rec.first("attr32")
    st = os.stat("/usr/bin/id")
    assert (attr.mode, attr.uid, attr.gid, attr.nodeid) == (
        stat.S_IMODE(st.st_mode),
        st.st_uid,
        st.st_gid,
        st.st_ino,
    )
    assert_subject(rec, pid)
    assert_return(rec, value=0)
    # FreeBSD's token order: exec_args, path, attr32, subject, return.
    assert [t.name for t in rec.tokens] == [
        "header32",
        "exec_args",
        "path",
        "attr32",
        "subject32",
        "return32",
        "trailer",
    ]


def test_exec_env_with_arge_policy() -> None:
    with auditing(policy="cnt,argv,arge") as a:
        pid, _, _ = spawn("/usr/bin/true", env={"LXBSM_MARK": "x1"})
        rec = a.one("AUE_EXECVE", pid)
    assert rec.first("exec_env").env == ["LXBSM_MARK=x1"]


def test_no_args_without_argv_policy() -> None:
    with auditing(policy="cnt") as a:
        pid, _, _ = spawn("/usr/bin/true")
        rec = a.one("AUE_EXECVE", pid)
    assert rec.first("exec_args") is None
    assert paths(rec) == ["/usr/bin/true"]


def test_symlink_and_relative_path_resolve_to_the_program(tmp_path: Path) -> None:
    (tmp_path / "hello").symlink_to("/usr/bin/id")
    with auditing() as a:
        p1, _, _ = spawn("./hello", cwd=tmp_path)
        p2, _, _ = spawn("./id", "-g", cwd="/usr/bin")
        r1 = a.one("AUE_EXECVE", p1)
        r2 = a.one("AUE_EXECVE", p2)
    assert paths(r1) == ["/usr/bin/id"]
    assert r1.first("exec_args").args == ["./hello"]
    assert paths(r2) == ["/usr/bin/id"]


def test_alias_scripts_and_assembled_commands_show_the_program(tmp_path: Path) -> None:
    write_script(tmp_path / "test1.sh", "/usr/bin/id -u\n")
    write_script(tmp_path / "test2.sh", "./test1.sh\n")
    write_script(
        tmp_path / "test3.sh", 'cmd=""; for w in "$@"; do cmd="$cmd${w:0:1}"; done; $cmd\n'
    )
    with auditing() as a:
        spawn("/bin/bash", "-c", "shopt -s expand_aliases\nalias hi=id\nhi", cwd=tmp_path)
        spawn("./test2.sh", cwd=tmp_path)
        spawn("./test3.sh", "india", "delta", cwd=tmp_path)
        ids = a.records("AUE_EXECVE", where=lambda r: paths(r) == ["/usr/bin/id"])
        scripts = {
            paths(r)[0]: paths(r) for r in a.records("AUE_EXECVE") if paths(r)[0].endswith(".sh")
        }
    assert len(ids) == 3  # the alias, the script chain, the assembled name
    # A script is recorded with its own path and then its interpreter's.
    for name in ("test1.sh", "test2.sh", "test3.sh"):
        assert scripts[str(tmp_path / name)] == [str(tmp_path / name), "/usr/bin/bash"]


def test_failed_exec_enoent_records_the_absolute_name(tmp_path: Path) -> None:
    with auditing() as a:
        pid, _, out = spawn(PROGS / "sysprobe", "execve", "no-such-prog", "x", cwd=tmp_path)
        assert out.split() == ["-1", str(errno.ENOENT)]
        rec = a.one("AUE_EXECVE", pid, where=failed)
    assert paths(rec) == [str(tmp_path / "no-such-prog")]
    assert rec.first("exec_args").args == ["no-such-prog", "x"]
    assert rec.first("attr32") is None
    assert_return(rec, errno=errno.ENOENT)


def test_failed_exec_eacces_on_a_non_executable_file(tmp_path: Path) -> None:
    target = tmp_path / "data"
    target.write_text("not a program\n")
    with auditing() as a:
        pid, _, out = spawn(PROGS / "sysprobe", "execve", str(target))
        assert out.split() == ["-1", str(errno.EACCES)]
        rec = a.one("AUE_EXECVE", pid, where=failed)
    assert paths(rec) == [str(target)]
    assert_return(rec, errno=errno.EACCES)


def test_failed_exec_efault_and_e2big() -> None:
    with auditing() as a:
        p1, _, out1 = spawn(PROGS / "sysprobe", "execve-efault", "/usr/bin/true")
        assert out1.split() == ["-1", str(errno.EFAULT)]
        p2, _, out2 = spawn(PROGS / "sysprobe", "execve-big", "/usr/bin/true", "30", "100000")
        assert out2.split() == ["-1", str(errno.E2BIG)]
        r1 = a.one("AUE_EXECVE", p1, where=failed)
        r2 = a.one("AUE_EXECVE", p2, where=failed)
    assert_return(r1, errno=errno.EFAULT)
    assert paths(r1) == ["/usr/bin/true"]
    assert_return(r2, errno=errno.E2BIG)
    # The record stays within the BSM maximum: argv is cut to whole strings.
    args = r2.first("exec_args").args
    assert args[0] == "/usr/bin/true" and len(r2.raw) <= 32767
    assert all(s == "x" * 100_000 for s in args[1:])


def test_execveat_and_fexecve() -> None:
    code = (
        "import os, sys\n"
        "fd = os.open('/usr/bin', os.O_RDONLY | os.O_DIRECTORY)\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os.execve(os.open('/usr/bin/true', os.O_RDONLY), ['true'], {})\n"  # fexecve
        "os.waitpid(pid, 0)\n"
        "print(pid)\n"
    )
    with auditing() as a:
        _, rc, out = spawn("python3", "-c", code)
        assert rc == 0, out
        child = int(out.split()[-1])
        rec = a.one("AUE_FEXECVE", child)
        p2, rc2, _ = spawn(PROGS / "sysprobe", "execveat", "/usr/bin", "true")
        assert rc2 == 0
        rec2 = a.one("AUE_EXECVEAT", p2)
    assert rec.first("arg32").text == "fd"
    assert paths(rec) == ["/usr/bin/true"]
    assert_return(rec, value=0)
    assert paths(rec2) == ["/usr/bin/true"]
    assert rec2.first("exec_args").args == ["true"]


def test_ia32_execve_is_recorded() -> None:
    with auditing() as a:
        pid, rc, _ = spawn(PROGS / "sysprobe32", "execve", "/usr/bin/true", "ia32")
        assert rc == 0
        rec = a.one("AUE_EXECVE", pid, where=lambda r: paths(r) == ["/usr/bin/true"])
    assert rec.first("exec_args").args == ["/usr/bin/true", "ia32"]
    assert_return(rec, value=0)
    assert_subject(rec, pid)
