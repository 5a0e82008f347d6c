"""A real OpenSSH server in the guest, and two test users who log in to it
with a key (test_session.py, test_recover.py).

The users are made once per guest run (``ssh_env`` in conftest.py): their
lines in /etc/passwd name homes that must outlive every test module.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

USER, USER_UID = "lxtest", 2101
OTHER, OTHER_UID = "lxother", 2102
SU_GROUP, SU_GID = "lxsu", 2199


def append_line(path: str, text: str) -> None:
    # /etc/shadow is a file mounted on its own: written in place, never renamed.
    with open(path, "a") as f:
        f.write(text)


@dataclass
class Env:
    dir: Path
    key: Path  # both users' key
    wrong_key: Path
    home: Path  # USER's home
    other_home: Path


def make_env() -> Env:
    """The users (both may log in with ``key``), su and sudo rules, the
    host key; once per guest run."""
    d = Path(tempfile.mkdtemp(prefix="lxbsm-ssh-"))
    d.chmod(0o755)  # the test users reach their homes through it
    home, other_home = d / "home", d / "home-other"
    for name, uid, h in ((USER, USER_UID, home), (OTHER, OTHER_UID, other_home)):
        append_line("/etc/passwd", f"{name}:x:{uid}:{uid}::{h}:/bin/sh\n")
        append_line("/etc/group", f"{name}:x:{uid}:\n")
        # "*": no password to log in with, but not a locked account.
        append_line("/etc/shadow", f"{name}:*:19000:0:99999:7:::\n")
    append_line("/etc/group", f"{SU_GROUP}:x:{SU_GID}:{USER}\n")
    # su without a password for members of lxsu (pam_wheel's "trust").
    pam_su = Path("/etc/pam.d/su")
    pam_su.write_text(f"auth sufficient pam_wheel.so trust group={SU_GROUP}\n" + pam_su.read_text())
    sudoers = Path("/etc/sudoers.d/lxbsm-test")
    sudoers.write_text(f"{USER} ALL=(ALL) NOPASSWD: ALL\n")
    sudoers.chmod(0o440)
    key, wrong = d / "id", d / "wrong"
    for k in (key, wrong, d / "hostkey"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(k)], check=True)
    for h, uid in ((home, USER_UID), (other_home, OTHER_UID)):
        (h / ".ssh").mkdir(parents=True)
        shutil.copy(f"{key}.pub", h / ".ssh" / "authorized_keys")
        for p in (h, h / ".ssh", h / ".ssh" / "authorized_keys"):
            os.chown(p, uid, uid)
        h.chmod(0o700)
    # sshd's privilege separation child chroots here.
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    # The guest never finishes "booting" for pam_nologin.
    Path("/run/nologin").unlink(missing_ok=True)
    return Env(d, key, wrong, home, other_home)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Sshd:
    def __init__(self, env: Env, pam: bool) -> None:
        self.pam = pam
        self.port = _free_port()
        cfg = env.dir / f"sshd_config_{'pam' if pam else 'nopam'}"
        cfg.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nListenAddress ::1\n"
            f"HostKey {env.dir}/hostkey\nUsePAM {'yes' if pam else 'no'}\n"
            f"PidFile {env.dir}/sshd.pid\nAuthorizedKeysFile .ssh/authorized_keys\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "PermitRootLogin no\nStrictModes no\nUseDNS no\nLogLevel VERBOSE\n"
            "PrintMotd no\n"
        )
        self.log = env.dir / "sshd.log"
        self.proc = subprocess.Popen(
            ["/usr/sbin/sshd", "-D", "-e", "-f", str(cfg)],
            stdout=subprocess.DEVNULL,
            stderr=open(self.log, "w"),
            start_new_session=True,
        )
        # Ready once listening: a probe connection would be a failed login.
        deadline = time.monotonic() + 60
        while "Server listening on 127.0.0.1" not in self.log.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"sshd did not start: {self.log.read_text()}")
            time.sleep(0.2)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)


def ssh(
    sshd: Sshd, key: Path, host: str, command: str, user: str = USER, source: str | None = None
) -> subprocess.CompletedProcess[str]:
    """@command run by @user over ssh to @host, from the address @source
    (another loopback address, say) if given."""
    bind = ["-b", source] if source is not None else []
    return subprocess.run(
        [
            "ssh", "-F", "/dev/null", "-i", str(key), "-p", str(sshd.port), *bind,
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            f"{user}@{host}", command,
        ],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
