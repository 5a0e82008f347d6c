"""Issue 13, defects 7 and 15: audit ids and identity changes cannot be forged.

Defect 7: the kernel lets any process whose loginuid is unset write any value
to /proc/self/loginuid.  lxbsm records such a write by a process that is
neither root nor a CAP_AUDIT_CONTROL holder as AUE_SETAUID (whatever
pre-selection says), keeps the writer's audit id unset, and never makes a
login of it; a login program run by a user (LD_PRELOAD, a user namespace, a
chroot whose /usr/bin/login is the user's own program) is just a program.

Defect 15: su and sudo succeed when a process of their tree that set its gid
and then its uid runs a program: a PAM helper run before a refusal (here
pam_exec with ``seteuid``, which calls setuid(0) first, as pam_unix's helper
does) does not make a failed su a success.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from lxbsm_tools.bsm import Record

from .audit import PROGS, Auditor, auditing, describe, settle

USER, USER_UID = "lxhs1", 2201
OTHER, OTHER_UID = "lxhs2", 2202
NOBODY = 65534
UNSET = 0xFFFFFFFF
# No "ad": the refused AUE_SETAUID must be there all the same.
FLAGS = "lo,aa,ex,pc"
AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
LOGIN_EVENTS = ("AUE_login", "AUE_openssh", "AUE_logout")

FORGE_C = r"""
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Runs inside /usr/bin/login before its main(): pose as FORGE_AUID. */
__attribute__((constructor)) static void forge(void)
{
	const char *id = getenv("FORGE_AUID");
	char old[16] = "";
	int fd = open("/proc/self/loginuid", O_RDONLY);

	if (fd >= 0 && read(fd, old, sizeof(old) - 1) < 0)
		old[0] = 0;
	if (fd >= 0)
		close(fd);
	fd = open("/proc/self/loginuid", O_WRONLY);
	if (fd < 0 || !id || write(fd, id, strlen(id)) < 0) {
		printf("forge: write failed\n");
		_exit(3);
	}
	printf("forge: loginuid %s -> %s\n", old, id);
	fflush(stdout);
	_exit(0);
}
"""


def _append(path: str, text: str) -> None:
    # /etc/shadow is a file mounted on its own: written in place, never renamed.
    with open(path, "a") as f:
        f.write(text)


@pytest.fixture(scope="module")
def users() -> None:
    known = Path("/etc/passwd").read_text()
    for name, uid in ((USER, USER_UID), (OTHER, OTHER_UID)):
        if f"\n{name}:" in known:
            continue
        _append("/etc/passwd", f"{name}:x:{uid}:{uid}::/tmp:/bin/sh\n")
        _append("/etc/group", f"{name}:x:{uid}:\n")
        # "*": no password can match, but not a locked account.
        _append("/etc/shadow", f"{name}:*:19000:0:99999:7:::\n")


@pytest.fixture(scope="module")
def forge_lib() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="lxbsm-forge-"))
    d.chmod(0o755)
    (d / "forge.c").write_text(FORGE_C)
    subprocess.run(
        ["cc", "-shared", "-fPIC", "-O2", "-o", str(d / "forge.so"), str(d / "forge.c")],
        check=True,
    )
    (d / "forge.so").chmod(0o755)
    yield d / "forge.so"
    shutil.rmtree(d, ignore_errors=True)


def text_of(rec: Record) -> str:
    return " ".join(t.text for t in rec.all("text"))


def args_of(rec: Record) -> list[tuple[int, int, str]]:
    return [(t.num, t.value, t.text) for t in rec.all("arg32")]


def ran_true(a: Auditor, pid: int | None = None) -> list[Record]:
    return a.records(
        "AUE_EXECVE", pid=pid, where=lambda r: "/usr/bin/true" in [t.text for t in r.all("path")]
    )


def show(rec: Record) -> str:
    s = rec.subject
    who = f" auid={s.auid} ruid={s.ruid} euid={s.euid}" if s is not None else ""
    return f"{describe(rec)} success={rec.success} text={text_of(rec)!r}{who}"


def no_login_records(a: Auditor) -> None:
    found = [r for e in LOGIN_EVENTS for r in a.records(e)]
    assert found == [], "; ".join(show(r) for r in found)


def start_unset(*cmd: str) -> subprocess.Popen[str]:
    """@cmd in a process whose loginuid is unset (checked), as this test's is."""
    assert Path("/proc/self/loginuid").read_text().strip() == str(UNSET)
    return subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def refused_setauid(a: Auditor, pid: int, new: int) -> Record:
    rec = a.one("AUE_SETAUID", pid=pid)
    assert rec.success, describe(rec)
    assert args_of(rec) == [(1, UNSET, "old auid"), (2, new, "setauid")], describe(rec)
    assert "not taken: writer is not root" in text_of(rec)
    assert rec.subject is not None and rec.subject.auid == UNSET, describe(rec)
    return rec


def test_nobody_writing_loginuid_is_recorded_and_not_taken() -> None:
    """A service account sets its loginuid to another user's uid."""
    with auditing(flags=FLAGS, naflags=FLAGS) as a:
        p = start_unset(
            *AS_NOBODY,
            "sh",
            "-c",
            f"echo {USER_UID} > /proc/self/loginuid && cat /proc/self/loginuid"
            " && exec /usr/bin/true",
        )
        out, _ = p.communicate(timeout=60)
        # The kernel took it: the attack itself works.
        assert p.returncode == 0 and out.strip() == str(USER_UID), out
        settle()
        no_login_records(a)
        rec = refused_setauid(a, p.pid, USER_UID)
        assert (rec.subject.ruid, rec.subject.euid) == (NOBODY, NOBODY)  # type: ignore[union-attr]
        # What the process did next still says "no audit id".
        runs = ran_true(a, p.pid)
        assert [r.subject.auid for r in runs if r.subject] == [UNSET]


def test_login_with_ld_preload_as_nobody_is_no_login(forge_lib: Path) -> None:
    """/usr/bin/login run by nobody with code of nobody's in it."""
    with auditing(flags=FLAGS, naflags=FLAGS) as a:
        # env(1) puts the library in login's environment only.
        forge = ["env", f"LD_PRELOAD={forge_lib}", f"FORGE_AUID={USER_UID}"]
        p = start_unset(*AS_NOBODY, *forge, "/usr/bin/login")
        out, _ = p.communicate(timeout=60)
        assert p.returncode == 0 and f"-> {USER_UID}" in out, out
        settle()
        no_login_records(a)
        refused_setauid(a, p.pid, USER_UID)


def test_login_in_a_user_namespace_is_no_login(forge_lib: Path) -> None:
    """nobody as root of its own user namespace runs /usr/bin/login."""
    with auditing(flags=FLAGS, naflags=FLAGS) as a:
        forge = ["env", f"LD_PRELOAD={forge_lib}", "FORGE_AUID=0"]
        p = start_unset(*AS_NOBODY, "unshare", "-Ur", *forge, "/usr/bin/login")
        out, _ = p.communicate(timeout=60)
        # "0" in the namespace is nobody outside it.
        assert p.returncode == 0 and "-> 0" in out, out
        settle()
        no_login_records(a)
        rec = refused_setauid(a, p.pid, NOBODY)
        assert rec.subject is not None and rec.subject.ruid == NOBODY


def test_own_login_in_a_chroot_is_no_login() -> None:
    """nobody's own program at /usr/bin/login of a chroot it made."""
    root = Path(tempfile.mkdtemp(prefix="lxbsm-chroot-"))
    try:
        (root / "usr" / "bin").mkdir(parents=True)
        (root / "proc").mkdir()
        # A static program that writes loginuid as pam_loginuid does.
        shutil.copy(PROGS / "sysprobe32", root / "usr" / "bin" / "login")
        for d in (root, root / "usr", root / "usr" / "bin", root / "proc"):
            d.chmod(0o755)
        os.chown(root / "usr" / "bin" / "login", NOBODY, NOBODY)
        with auditing(flags=FLAGS, naflags=FLAGS) as a:
            p = start_unset(
                *AS_NOBODY,
                "unshare",
                "-Urm",
                "sh",
                "-c",
                f"mount --rbind /proc {root}/proc && "
                f"exec chroot {root} /usr/bin/login login-closes 0 0",
            )
            out, _ = p.communicate(timeout=60)
            assert p.returncode == 0, out
            settle()
            execs = a.records("AUE_EXECVE", pid=p.pid)
            # The kernel's own path of it, as the chroot sees it, was the login program's.
            assert any("/usr/bin/login" in [t.text for t in r.all("path")] for r in execs), [
                describe(r) for r in execs
            ]
            no_login_records(a)
            refused_setauid(a, p.pid, NOBODY)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_root_writing_loginuid_is_taken_and_recorded() -> None:
    """The other side: root may set an unset audit id (cron, systemd do)."""
    with auditing(flags=FLAGS + ",ad", naflags=FLAGS + ",ad") as a:
        p = start_unset("sh", "-c", "echo 4711 > /proc/self/loginuid && exec /usr/bin/true")
        out, _ = p.communicate(timeout=60)
        assert p.returncode == 0, out
        settle()
        rec = a.one("AUE_SETAUID", pid=p.pid)
        assert args_of(rec) == [(1, UNSET, "old auid"), (2, 4711, "setauid")]
        assert text_of(rec) == "setauid: audit id set"
        runs = ran_true(a, p.pid)
        assert [r.subject.auid for r in runs if r.subject] == [4711]
        no_login_records(a)


# ---- defect 15: su ----

PAM_SU = Path("/etc/pam.d/su")
# A PAM helper that calls setuid(0) before its exec, as pam_unix's does.
HELPER = "auth optional pam_exec.so seteuid /usr/bin/true\n"


@pytest.fixture
def pam_su() -> Iterator[Path]:
    saved = PAM_SU.read_text()
    yield PAM_SU
    PAM_SU.write_text(saved)


def su_records(a: Auditor) -> list[Record]:
    return a.records("AUE_su")


def helper_ran(a: Auditor) -> None:
    """pam_exec's helper ran in su's tree, with uid 0 after its setuid(0)."""
    runs = ran_true(a)
    assert any(r.subject is not None and r.subject.ruid == 0 for r in runs), [
        describe(r) for r in runs
    ]


def test_su_refused_after_a_pam_helper_is_a_failure_as_user(users: None, pam_su: Path) -> None:
    """A user's su with a wrong password: the helper ran, no identity changed."""
    pam_su.write_text(HELPER + pam_su.read_text())
    with auditing(flags=FLAGS, naflags=FLAGS) as a:
        p = subprocess.run(
            [
                "setpriv", f"--reuid={USER_UID}", f"--regid={USER_UID}", "--clear-groups",
                "su", OTHER, "-c", "/usr/bin/true",
            ],
            input="wrong-password\n", capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert p.returncode == 1, p.stdout + p.stderr
        settle()
        helper_ran(a)
        found = su_records(a)
        assert len(found) == 1, [show(r) for r in found]
        rec = found[0]
        assert rec.success is False, show(rec)
        assert text_of(rec) == f"su: uid {USER_UID}: no identity assumed"
        assert rec.subject is not None and rec.subject.ruid == USER_UID


def test_su_refused_after_a_pam_helper_is_a_failure_as_root(users: None, pam_su: Path) -> None:
    """The issue's case: root's su refused by PAM after a helper ran."""
    pam_su.write_text(HELPER + "auth requisite pam_deny.so\n" + pam_su.read_text())
    with auditing(flags=FLAGS, naflags=FLAGS) as a:
        p = subprocess.run(
            ["su", OTHER, "-c", "/usr/bin/true"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert p.returncode == 1, p.stdout + p.stderr
        settle()
        helper_ran(a)
        found = su_records(a)
        assert len(found) == 1, [show(r) for r in found]
        assert found[0].success is False, show(found[0])
        assert text_of(found[0]) == "su: uid 0: no identity assumed"


def test_su_success_names_the_identity_assumed(users: None, pam_su: Path) -> None:
    """With the same helper in the stack, a successful su is a success."""
    pam_su.write_text(HELPER + pam_su.read_text())
    with auditing(flags=FLAGS, naflags=FLAGS) as a:
        p = subprocess.run(
            ["su", OTHER, "-c", "/usr/bin/true"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert p.returncode == 0, p.stdout + p.stderr
        settle()
        found = su_records(a)
        assert len(found) == 1, [show(r) for r in found]
        rec = found[0]
        assert rec.success, show(rec)
        assert text_of(rec) == f"su: uid 0 to uid {OTHER_UID} (euid {OTHER_UID})"
        assert rec.subject is not None
        assert (rec.subject.ruid, rec.subject.euid) == (OTHER_UID, OTHER_UID)


def test_su_to_root_as_root_is_a_success(users: None) -> None:
    """No uid changes, yet the identity was assumed: still a success."""
    with auditing(flags=FLAGS, naflags=FLAGS) as a:
        p = subprocess.run(
            ["su", "root", "-c", "/usr/bin/true"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert p.returncode == 0, p.stdout + p.stderr
        settle()
        found = su_records(a)
        assert len(found) == 1, [show(r) for r in found]
        assert found[0].success and text_of(found[0]) == "su: uid 0 to uid 0 (euid 0)"


# ---- defect 15: sudo ----

PAM_SUDO = Path("/etc/pam.d/sudo")
SUDOERS = Path("/etc/sudoers.d/lxbsm-hardening")


@pytest.fixture
def sudo_env(users: None) -> Iterator[None]:
    saved = PAM_SUDO.read_text()
    PAM_SUDO.write_text(HELPER + saved)
    # To lxhs2 without a password; to root only with one (lxhs1 has none that matches).
    SUDOERS.write_text(f"{USER} ALL=({OTHER}) NOPASSWD: /usr/bin/true\n{USER} ALL=(root) ALL\n")
    SUDOERS.chmod(0o440)
    yield
    PAM_SUDO.write_text(saved)
    SUDOERS.unlink()


def as_user(*cmd: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "setpriv", f"--reuid={USER_UID}", f"--regid={USER_UID}", "--clear-groups",
            *cmd,
        ],
        input=stdin, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_sudo_refused_after_a_pam_helper_is_a_failure(sudo_env: None) -> None:
    """A user's sudo to root with a wrong password, a PAM helper having run."""
    with auditing(flags=FLAGS, naflags=FLAGS) as a:
        p = as_user("sudo", "-S", "-u", "root", "/usr/bin/true", stdin="wrong-password\n")
        assert p.returncode == 1, p.stdout + p.stderr
        settle()
        helper_ran(a)
        found = a.records("AUE_sudo")
        assert len(found) == 1, [show(r) for r in found]
        assert found[0].success is False, show(found[0])
        assert text_of(found[0]) == f"sudo: uid {USER_UID}: no identity assumed"


def test_sudo_success_names_the_identity_assumed(sudo_env: None) -> None:
    with auditing(flags=FLAGS, naflags=FLAGS) as a:
        p = as_user("sudo", "-n", "-u", OTHER, "/usr/bin/true")
        assert p.returncode == 0, p.stdout + p.stderr
        settle()
        found = a.records("AUE_sudo")
        assert len(found) == 1, [show(r) for r in found]
        rec = found[0]
        assert rec.success, show(rec)
        assert text_of(rec) == f"sudo: uid {USER_UID} to uid {OTHER_UID} (euid {OTHER_UID})"
