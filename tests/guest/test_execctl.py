"""Exec control: forbidden programs are refused in the kernel, however they are reached.

The test process holds the ring (it is the consumer, like the daemon), so it
is exempt from the rules; the programs it starts are not.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from lxbsm_tools import audit, execctl, uapi
from lxbsm_tools.bsm import Record

from .audit import assert_return, auditing, aue, failed, paths, spawn, write_script

DF = "/usr/bin/df"
LDSO = "/lib64/ld-linux-x86-64.so.2"


@contextmanager
def exec_rules(tmp_path: Path, text: str) -> Iterator[int]:
    """Load an exec_control file into the module for the block; off afterwards."""
    f = tmp_path / "exec_control"
    f.write_text(text)
    xc = execctl.parse(f)
    ctl = uapi.open_control()
    try:
        uapi.set_exec_rules(ctl, xc.rules)
        yield ctl
    finally:
        uapi.set_exec_rules(ctl, uapi.ExecRules("off", ()))
        os.close(ctl)


def texts(rec: Record) -> list[str]:
    return [t.text for t in rec.all("text")]


def df_denials(a, path: str = DF) -> list[Record]:  # type: ignore[no-untyped-def]
    return a.records("AUE_EXECVE", where=lambda r: failed(r) and paths(r)[:1] == [path])


def test_querypie_demonstrations_are_refused_and_audited(tmp_path: Path) -> None:
    (tmp_path / "hello").symlink_to(DF)
    write_script(tmp_path / "test1.sh", "df\n")
    write_script(tmp_path / "test2.sh", "./test1.sh\necho after=$?\n")
    write_script(
        tmp_path / "test3.sh", 'cmd=""; for w in "$@"; do cmd="$cmd${w:0:1}"; done; $cmd\n'
    )
    session = (
        "./hello; echo rc1=$?\n"
        "shopt -s expand_aliases\nalias hi=df\nhi; echo rc2=$?\n"
        "./test2.sh; echo rc3=$?\n"
        "./test3.sh delta foxtrot; echo rc4=$?\n"
        "echo still running\n"
    )
    # Nothing pre-selected: the refusals are audited all the same.
    with auditing(flags="no", naflags="no") as a, exec_rules(tmp_path, f"deny {DF}\n") as ctl:
        _, rc, out = spawn("/bin/bash", "-c", session, cwd=tmp_path)
        denials = df_denials(a)
        xc = uapi.get_exec_rules(ctl)
    assert rc == 0, out
    for want in ("rc1=126", "rc2=126", "after=126", "rc3=0", "rc4=126", "still running"):
        assert want in out.splitlines(), out
    assert out.count("Permission denied") == 4, out
    assert "Filesystem" not in out
    assert len(denials) == 4, [paths(r) for r in denials]
    for rec in denials:
        assert_return(rec, errno=errno.EACCES)
        assert texts(rec) == [f"exec_control: denied by line 1 (deny {DF})"]
    args = sorted(r.first("exec_args").args[0] for r in denials)
    assert args == ["./hello", "df", "df", "df"]
    assert xc.mode == "enforce" and xc.rules[0].hits == 4 and xc.denied >= 4


def run_py(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=False
    )


EXEC_FD = (
    "import os, sys\n"
    "fd = os.open(sys.argv[1], os.O_RDONLY)\n"
    "os.unlink(sys.argv[1])\n"
    "try:\n"
    "    os.execve(fd, ['df', '/'], dict(os.environ))\n"
    "except OSError as e:\n"
    "    print('errno', e.errno)\n"
)


MEMFD_EXEC = (
    "import os\n"
    "fd = os.memfd_create('dfcopy')\n"
    f"os.write(fd, open('{DF}', 'rb').read())\n"
    "os.execve(fd, ['df', '/'], dict(os.environ))\n"
)


def test_bypasses_a_user_would_try(tmp_path: Path) -> None:
    copy = tmp_path / "mydf"
    shutil.copy2(DF, copy)
    gone = tmp_path / "gone"
    shutil.copy2(DF, gone)
    os.link(copy, tmp_path / "hardlink")
    bound = tmp_path / "bound"
    bound.write_text("")
    subprocess.run(["mount", "--bind", DF, str(bound)], check=True)
    try:
        rules = f"deny {DF}\ndeny {copy}\ndeny {gone}\n"
        with auditing(flags="ex", naflags="ex") as a, exec_rules(tmp_path, rules):
            # The same inode by another name, another mount, another namespace.
            hard = spawn("/bin/sh", "-c", f"{tmp_path}/hardlink; echo rc=$?")
            bind = spawn("/bin/sh", "-c", f"{bound}; echo rc=$?")
            ns = spawn("unshare", "--mount", DF)
            # The dynamic loader maps the program without exec'ing it.
            ld = spawn(LDSO, DF)
            # A deleted file, run through a descriptor kept open.
            deleted = run_py(EXEC_FD, str(gone))
            # Documented exceptions: a copy with another inode (a memfd here)
            # runs, and is recorded with the name the kernel gives it.
            memfd = run_py(MEMFD_EXEC)
            denied = a.records("AUE_EXECVE", where=lambda r: failed(r) and bool(texts(r)))
            mmaps = a.records("AUE_MMAP")
            fexecs = a.records("AUE_FEXECVE")
            gone_rec = [r for r in a.records("AUE_FEXECVE", where=failed) if texts(r)]
    finally:
        subprocess.run(["umount", str(bound)], check=False)
    assert hard[2].split()[-1] == "rc=126" and "Permission denied" in hard[2]
    assert bind[2].split()[-1] == "rc=126" and "Permission denied" in bind[2]
    assert ns[1] != 0 and "Permission denied" in ns[2], ns
    assert ld[1] != 0 and "Filesystem" not in ld[2], ld
    assert deleted.stdout.split() == ["errno", str(errno.EACCES)], deleted
    by_path = {paths(r)[0]: r for r in denied}
    # The kernel's own name for each file, never the name typed.
    assert f"{tmp_path}/hardlink" in by_path and str(bound) in by_path and DF in by_path
    for rec in by_path.values():
        assert_return(rec, errno=errno.EACCES)
        assert texts(rec)[0].startswith("exec_control: denied by line ")
    (mm,) = [r for r in mmaps if paths(r) == [DF]]
    assert_return(mm, errno=errno.EACCES)
    assert texts(mm) == [f"exec_control: denied by line 1 (deny {DF})"]
    assert any(t.endswith(f"(deny {gone})") for r in gone_rec for t in texts(r))
    # The memfd copy ran: its record names the memfd, with no exec control text.
    assert "Filesystem" in memfd.stdout, memfd
    runs = [r for r in fexecs if paths(r)[0].startswith("/memfd:dfcopy")]
    assert runs and not texts(runs[0]) and runs[0].return_token.status == 0


def test_content_rules_catch_copies_memfds_and_the_loader(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    digest = hashlib.sha256(Path(DF).read_bytes()).hexdigest()
    copy, other = tmp_path / "mydf", tmp_path / "otherdf"
    shutil.copy2(DF, copy)
    shutil.copy2(DF, other)
    rules = f"deny sha256:{digest}\n"
    with auditing(flags="ex", naflags="ex") as a, exec_rules(tmp_path, rules) as ctl:
        # A file the kernel has not hashed yet is hashed on the way back from
        # the exec and killed before its first instruction ...
        first = spawn("/bin/sh", "-c", f"{copy} /; echo rc=$?")
        # ... and refused at the exec from then on: its digest is known.
        second = spawn("/bin/sh", "-c", f"{copy} /; echo rc=$?")
        memfd = run_py(MEMFD_EXEC)
        # The loader maps the program: killed at the mapping, then refused.
        ld_first = spawn(LDSO, str(other), "/")
        ld_second = spawn(LDSO, str(other), "/")
        # Changed content is another program: hashed again, and it runs.
        with open(copy, "ab") as f:
            f.write(b"\0")
        changed = spawn(str(copy), "/")
        recs = a.records(where=lambda r: any("sha256:" in t for t in texts(r)))
        xc = uapi.get_exec_rules(ctl)
        assert audit.main(["rules"]) == 0
        shown = capsys.readouterr().out
    assert first[2].split()[-1] == "rc=137" and "Filesystem" not in first[2], first
    assert second[2].split()[-1] == "rc=126" and "Permission denied" in second[2], second
    assert memfd.returncode == -9 and "Filesystem" not in memfd.stdout, memfd
    assert ld_first[1] == -9 and "Filesystem" not in ld_first[2], ld_first
    assert ld_second[1] != 0 and "Filesystem" not in ld_second[2], ld_second
    assert changed[1] == 0 and "Filesystem" in changed[2], changed
    rule = f"by line 1 (deny sha256:{digest})"
    got = [(r.event, paths(r)[0], texts(r)[0]) for r in recs]
    execve, mmap = aue("AUE_EXECVE"), aue("AUE_MMAP")
    assert got == [
        (execve, str(copy), f"exec_control: killed {rule}"),
        (execve, str(copy), f"exec_control: denied {rule}"),
        (execve, "/memfd:dfcopy (deleted)", f"exec_control: killed {rule}"),
        (mmap, str(other), f"exec_control: killed {rule}"),
        (mmap, str(other), f"exec_control: denied {rule}"),
    ], got
    for r in recs:
        assert_return(r, errno=errno.EACCES)
    assert xc.rules[0].sha256 == bytes.fromhex(digest) and xc.rules[0].hits == 5
    assert shown.splitlines()[2].split() == ["1", "deny", f"sha256:{digest}", "anyone", "5"]


def test_replaced_file_is_still_denied_by_path(tmp_path: Path) -> None:
    prog = tmp_path / "tool"
    shutil.copy2(DF, prog)
    with auditing(flags="no", naflags="no") as a, exec_rules(tmp_path, f"deny {prog}\n"):
        # What a package upgrade does: a new file renamed over the old one.
        new = tmp_path / "tool.dpkg-new"
        shutil.copy2(DF, new)
        os.rename(new, prog)
        assert os.stat(prog).st_ino != uapi.get_exec_rules(a.ctl).rules[0].ino
        _, _, out = spawn("/bin/sh", "-c", f"{prog}; echo rc=$?")
        (rec,) = df_denials(a, str(prog))
    assert out.split()[-1] == "rc=126"
    assert texts(rec) == [f"exec_control: denied by line 1 (deny {prog})"]


def test_scripts_interpreters_and_multicall_binaries(tmp_path: Path) -> None:
    script = write_script(tmp_path / "s.sh", "echo ran\n")
    busybox = shutil.which("busybox")
    assert busybox, "busybox-static is installed by make deps"
    rules = f"deny {script}\ndeny {DF}\n"
    with auditing(flags="ex", naflags="ex") as a, exec_rules(tmp_path, rules):
        direct = spawn("/bin/sh", "-c", f"{script}; echo rc=$?")
        via_bash = spawn("/bin/bash", str(script))
        applet = spawn(busybox, "df", "/")
        denied = a.records("AUE_EXECVE", where=failed)
        ran = a.records("AUE_EXECVE", where=lambda r: not failed(r))
    assert "Permission denied" in direct[2] and direct[2].split()[-1] == "rc=126", direct
    assert [paths(r) for r in denied] == [[str(script)]]
    # An interpreter reading a script is not an exec of the script: it runs,
    # and the record says bash ran with the script as its argument.
    assert via_bash[2].strip() == "ran"
    assert any(r.first("exec_args").args == ["/bin/bash", str(script)] for r in ran)
    # A multi-call binary is one program: denying df does not deny "busybox df".
    assert applet[1] == 0 and "Filesystem" in applet[2]
    assert any(r.first("exec_args").args == [busybox, "df", "/"] for r in ran)


def test_monitor_mode_denies_nothing_and_audits_what_it_would_deny(tmp_path: Path) -> None:
    (tmp_path / "hello").symlink_to(DF)
    with (
        auditing(flags="no", naflags="no") as a,
        exec_rules(tmp_path, f"mode: monitor\ndeny {DF}\n") as ctl,
    ):
        _, rc, out = spawn("/bin/sh", "-c", "./hello /; df /; echo rc=$?", cwd=tmp_path)
        recs = a.records("AUE_EXECVE", where=lambda r: paths(r)[:1] == [DF])
        xc = uapi.get_exec_rules(ctl)
    assert rc == 0 and out.count("Filesystem") == 2 and out.split()[-1] == "rc=0", out
    assert len(recs) == 2
    for rec in recs:
        assert_return(rec, value=0)
        assert texts(rec) == [f"exec_control: would be denied by line 2 (deny {DF})"]
    assert xc.mode == "monitor" and xc.rules[0].hits == 2


def test_kill_mode_kills_the_program_before_it_runs(tmp_path: Path) -> None:
    with auditing(flags="no", naflags="no") as a, exec_rules(tmp_path, f"mode: kill\ndeny {DF}\n"):
        _, rc, out = spawn("/bin/sh", "-c", "df /; echo rc=$?")
        assert rc == 0
        (rec,) = a.records("AUE_EXECVE", where=lambda r: paths(r)[:1] == [DF])
    assert out.split()[-1] == "rc=137" and "Filesystem" not in out, out
    assert_return(rec, value=0)
    assert texts(rec) == [f"exec_control: killed by line 2 (deny {DF})"]


def test_rules_by_user_group_and_audit_id(tmp_path: Path) -> None:
    as_nobody = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", DF, "/"]
    as_group = ["setpriv", "--regid=nogroup", "--clear-groups", DF, "/"]
    me = int(Path("/proc/self/loginuid").read_text())
    with auditing(flags="no", naflags="no") as a:
        with exec_rules(tmp_path, f"deny {DF} user=nobody\n"):
            root = spawn(DF, "/")
            nobody = spawn(*as_nobody)
        with exec_rules(tmp_path, f"deny {DF} group=nogroup\n"):
            grp_ = spawn(*as_group)
            root2 = spawn(DF, "/")
        with exec_rules(tmp_path, f"allow {DF} auid={me}\ndeny {DF}\n"):
            mine = spawn(DF, "/")
        with exec_rules(tmp_path, f"deny {DF} auid={me}\n"):
            mine_denied = spawn("setpriv", "--reuid=nobody", DF, "/")
        denials = df_denials(a)
    assert root[1] == 0 and root2[1] == 0 and mine[1] == 0
    for p in (nobody, grp_, mine_denied):
        assert p[1] != 0 and "Permission denied" in p[2], p
    # uid rules match the real/effective id; auid rules the audit id, whatever uid now.
    assert [r.subject.ruid for r in denials] == [65534, 0, 65534]
    assert [t for r in denials for t in texts(r)] == [
        f"exec_control: denied by line 1 (deny {DF})",
        f"exec_control: denied by line 1 (deny {DF})",
        f"exec_control: denied by line 1 (deny {DF})",
    ]


def test_the_ring_holder_is_exempt_and_lxbsm_audit_shows_the_rules(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    holder = (
        "import os\n"
        "from lxbsm_tools.ring import Ring\n"
        "r = Ring(); r.__enter__()\n"
        f"os.execv('{DF}', ['df', '/'])\n"
    )
    with exec_rules(tmp_path, f"deny {DF}\n"):
        # No consumer now: this test does not hold the ring.
        plain = spawn("/bin/sh", "-c", f"{DF} /")
        daemon_like = run_py(holder)
        assert audit.main(["rules"]) == 0
        text = capsys.readouterr().out
        assert audit.main(["rules", "--json"]) == 0
        js = json.loads(capsys.readouterr().out)
    assert plain[1] != 0 and "Permission denied" in plain[2]
    assert daemon_like.returncode == 0 and "Filesystem" in daemon_like.stdout, daemon_like
    assert text.splitlines()[0].startswith("exec control: enforce, 1 rules, ")
    assert text.splitlines()[2].split() == ["1", "deny", DF, "anyone", "1"]
    assert js["mode"] == "enforce" and js["rules"][0]["hits"] == 1
    assert js["rules"][0]["ino"] == os.stat(DF).st_ino


def test_bad_rule_sets_are_refused_and_leave_the_rules_in_force(tmp_path: Path) -> None:
    with exec_rules(tmp_path, f"deny {DF}\n") as ctl:
        bad = [
            uapi.ExecRules("enforce", (uapi.ExecRule("deny", "anyone", 0, 1, "rel", None, None),)),
            uapi.ExecRules("enforce", (uapi.ExecRule("deny", "anyone", 0, 1, "", None, None),)),
        ]
        for xc in bad:
            with pytest.raises(OSError) as e:
                uapi.set_exec_rules(ctl, xc)
            assert e.value.errno == errno.EINVAL
        assert [r.path for r in uapi.get_exec_rules(ctl).rules] == [DF]
        assert spawn("/bin/sh", "-c", f"{DF} /")[1] == 126
