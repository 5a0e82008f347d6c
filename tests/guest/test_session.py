"""Login and session attribution (docs/kernel.md, "Sessions").

A real OpenSSH server runs in the guest on loopback, with and without PAM.
Without PAM nothing writes /proc/self/loginuid: the module infers the login
from sshd's accept, fork and setuid.  A test user logs in with a key and runs
``id``, ``sudo -n true`` and ``su -c /usr/bin/true <other>`` (a path: dash
``true`` is a builtin, nothing to exec); every record of that
session must carry the user's audit id, one session id and the client's
address as its terminal; the login and logout are recorded once each, and
su/sudo name both identities.  A wrong key gives a failed login and no
session.  A console-style login (``login -f`` on a pty) is attributed to the
pty.  Processes that predate insmod keep the audit id the kernel had.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator

import pytest

from lxbsm_tools.bsm import Record

from .audit import Auditor, auditing, aue, describe, run, settle
from .conftest import load_module
from .sshlogin import OTHER, OTHER_UID, USER, USER_UID, Env, Sshd, ssh
from .test_arming import states

FLAGS = "lo,aa,ex,pc,nt"


@pytest.fixture(params=[False, True], ids=["nopam", "pam"])
def sshd(request: pytest.FixtureRequest, ssh_env: Env) -> Iterator[Sshd]:
    s = Sshd(ssh_env, request.param)
    yield s
    s.stop()


def text_of(rec: Record) -> str:
    return " ".join(t.text for t in rec.all("text"))


def address_of(rec: Record) -> str:
    s = rec.subject
    assert s is not None
    return str(s.address)


def wait_for(a: Auditor, event: str, timeout: float = 30.0) -> list[Record]:
    """The records of @event, once at least one has come (the exit of a
    connection's processes follows the client's by a little)."""
    deadline = time.monotonic() + timeout
    while True:
        found = a.records(event)
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def session_records(a: Auditor) -> list[Record]:
    return a.records(where=lambda r: r.subject is not None and r.subject.auid == USER_UID)


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_ssh_session_is_attributed(ssh_env: Env, sshd: Sshd, host: str) -> None:
    with auditing(flags=FLAGS, naflags=FLAGS) as a:
        out = ssh(sshd, ssh_env.key, host, f"id; sudo -n true; su -c /usr/bin/true {OTHER}")
        assert out.returncode == 0, f"ssh: {out.stderr}\nsshd: {sshd.log.read_text()}"
        assert f"uid={USER_UID}({USER})" in out.stdout
        logout = wait_for(a, "AUE_logout")
        settle()
        summary = "\n".join(describe(r) for r in session_records(a))

        login = a.one("AUE_openssh")
        assert login.success, describe(login)
        assert login.subject is not None and login.subject.auid == USER_UID
        # With PAM the root monitor process sets the audit id (and writes the
        # record); without, the login is the session process becoming the user.
        assert login.subject.ruid == (0 if sshd.pam else USER_UID)
        assert address_of(login) == host
        assert text_of(login) == f"successful login: uid {USER_UID}"
        sid = login.subject.sid
        port = login.subject.port
        assert port != 0

        assert len(logout) == 1, summary
        assert logout[0].subject is not None
        assert (logout[0].subject.auid, logout[0].subject.sid) == (USER_UID, sid)
        assert logout[0].sort_key >= login.sort_key

        # Every record of the session: the user's audit id, one session, the client.
        recs = session_records(a)
        assert len(recs) >= 6, summary
        for r in recs:
            assert r.subject is not None
            assert (r.subject.sid, r.subject.port, address_of(r)) == (sid, port, host), describe(r)

        def ran(path: str) -> Record:
            found = [
                r
                for r in recs
                if r.event == aue("AUE_EXECVE") and path in [t.text for t in r.all("path")]
            ]
            assert len(found) >= 1, f"no exec of {path}:\n{summary}"
            return found[-1]

        ident = ran("/usr/bin/id").subject
        assert ident is not None and (ident.ruid, ident.euid) == (USER_UID, USER_UID)
        true_runs = [
            r.subject
            for r in recs
            if r.event == aue("AUE_EXECVE") and "/usr/bin/true" in [t.text for t in r.all("path")]
        ]
        assert {(s.ruid, s.euid) for s in true_runs if s} == {(0, 0), (OTHER_UID, OTHER_UID)}

        sudo = a.one("AUE_sudo")
        assert sudo.success and sudo.subject is not None
        assert (sudo.subject.auid, sudo.subject.euid, sudo.subject.sid) == (USER_UID, 0, sid)
        assert text_of(sudo) == f"sudo: uid {USER_UID} to uid 0 (euid 0)"
        su = a.one("AUE_su")
        assert su.success and su.subject is not None
        assert (su.subject.auid, su.subject.ruid, su.subject.sid) == (USER_UID, OTHER_UID, sid)
        assert text_of(su) == f"su: uid {USER_UID} to uid {OTHER_UID} (euid {OTHER_UID})"


def test_ssh_peer_is_known_with_accepts_unselected(ssh_env: Env, sshd: Sshd) -> None:
    """Only ``lo`` selected: fd_install (accept and open records) is disarmed, and
    the client's address still becomes the session's terminal (security_sock_graft)."""
    with auditing(flags="lo", naflags="lo") as a:
        deadline = time.monotonic() + 30
        while states()["fd_install"] != "idle":  # disarmed 2 s after the last use
            assert time.monotonic() < deadline, "fd_install stayed armed"
            time.sleep(0.2)
        assert states()["security_sock_graft"] == "on"
        out = ssh(sshd, ssh_env.key, "127.0.0.1", "true")
        assert out.returncode == 0, f"ssh: {out.stderr}\nsshd: {sshd.log.read_text()}"
        wait_for(a, "AUE_logout")
        settle()
        login = a.one("AUE_openssh")
        assert states()["fd_install"] == "idle"
    assert login.success and login.subject is not None, describe(login)
    assert login.subject.auid == USER_UID
    assert address_of(login) == "127.0.0.1"
    assert login.subject.port != 0


def test_ssh_failed_login(ssh_env: Env, sshd: Sshd) -> None:
    with auditing(flags=FLAGS, naflags=FLAGS) as a:
        out = ssh(sshd, ssh_env.wrong_key, "127.0.0.1", "id")
        assert out.returncode == 255, out.stdout + out.stderr
        fails = wait_for(a, "AUE_openssh")
        settle()
        assert len(fails) == 1, [describe(r) for r in fails]
        rec = fails[0]
        assert rec.success is False
        assert text_of(rec) == "failed login"
        assert rec.subject is not None and rec.subject.auid == 0xFFFFFFFF
        assert address_of(rec) == "127.0.0.1"
        assert a.records("AUE_logout") == []
        assert session_records(a) == []


def test_local_login_on_a_pty(ssh_env: Env) -> None:
    """login(1) on a terminal: PAM's pam_loginuid sets the audit id; the
    terminal id is the pty's device number with a zero address."""
    with auditing(flags=FLAGS, naflags=FLAGS) as a:
        # script(1) gives login a pty as its controlling terminal.
        out = subprocess.run(
            ["script", "-qec", f"login -f {USER}", "/dev/null"],
            input="stat -c rdev=%t:%T:%F $(tty); id -u; exit\n",
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert str(USER_UID) in out.stdout, out.stdout + out.stderr
        found = re.search(r"rdev=([0-9a-f]+):([0-9a-f]+):character special file", out.stdout)
        assert found, out.stdout
        rdev = os.makedev(int(found.group(1), 16), int(found.group(2), 16))
        wait_for(a, "AUE_logout")
        settle()
        login = a.one("AUE_login")
        assert login.success and login.subject is not None
        s = login.subject
        assert (s.auid, s.port, address_of(login)) == (USER_UID, rdev, "0.0.0.0"), describe(login)
        logout = a.one("AUE_logout")
        assert logout.subject is not None and logout.subject.sid == s.sid


def test_audit_id_is_set_once() -> None:
    """A process with an audit id keeps it, whatever it writes to loginuid."""
    with auditing(flags=FLAGS, naflags=FLAGS) as a:
        cmd = "echo 4242 > /proc/self/loginuid; echo 4343 > /proc/self/loginuid; exec /bin/true"
        p = subprocess.run(["sh", "-c", cmd], check=True)
        assert p.returncode == 0
        settle()
        runs = a.records(
            "AUE_EXECVE", where=lambda r: "/usr/bin/true" in [t.text for t in r.all("path")]
        )
        assert [r.subject.auid for r in runs if r.subject] == [4242]


def test_processes_from_before_insmod_keep_their_audit_id() -> None:
    run("rmmod", "lxbsm")
    p = subprocess.Popen(
        ["sh", "-c", "echo 4545 > /proc/self/loginuid; read x; exec /bin/true"],
        stdin=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1)
        load_module()
        with auditing(flags=FLAGS, naflags=FLAGS) as a:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.close()
            assert p.wait(timeout=30) == 0
            settle()
            runs = a.records("AUE_EXECVE", pid=p.pid)
            assert [r.subject.auid for r in runs if r.subject] == [4545]
    finally:
        if p.poll() is None:
            p.kill()
