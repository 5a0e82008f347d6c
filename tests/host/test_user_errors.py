"""What a user gets wrong is reported clearly: never a traceback, never a silent default.

Each case is one a new user met (issue 15): the exact input, the message
(with file:line where there is a file) and the exit status.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BSM_SAMPLES

from lxbsm_tools import execctl, uapi
from lxbsm_tools.auditd import config, daemon, main, trail

TRAIL = BSM_SAMPLES / "freebsd-execve-long-args.trail"
PY = sys.executable


def sh(cmd: str, env: dict[str, str] | None = None, timeout: float = 60) -> tuple[int, str]:
    """Run ``cmd`` in bash; (status, stderr).  Python's own start-up noise is kept."""
    p = subprocess.run(
        ["bash", "-c", cmd],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        check=False,
    )
    assert "Traceback" not in p.stderr, p.stderr
    return p.returncode, p.stderr


PRAUDIT = f"{PY} -m lxbsm_tools.praudit"
REDUCE = f"{PY} -m lxbsm_tools.auditreduce"
AUDITD = f"{PY} -m lxbsm_tools.auditd.main"


# -- praudit and auditreduce: inputs, outputs, options ---------------------------------


def test_auditreduce_of_a_directory(tmp_path: Path) -> None:
    assert sh(f"{REDUCE} {tmp_path} >/dev/null") == (
        1,
        f"lxbsm-auditreduce: {tmp_path}: cannot open: Is a directory\n",
    )


def test_cannot_open_says_why(tmp_path: Path) -> None:
    rc, err = sh(f"{REDUCE} {tmp_path}/nope {TRAIL} >/dev/null")
    assert (rc, err) == (
        1,
        f"lxbsm-auditreduce: {tmp_path}/nope: cannot open: No such file or directory\n",
    )


@pytest.mark.parametrize("tool", ["praudit", "auditreduce"])
def test_output_to_dev_full(tool: str) -> None:
    cmd = PRAUDIT if tool == "praudit" else REDUCE
    assert sh(f"{cmd} {TRAIL} >/dev/full") == (
        1,
        f"lxbsm-{tool}: cannot write to standard output: No space left on device\n",
    )


@pytest.mark.parametrize("tool", ["praudit", "auditreduce"])
def test_stdout_closed(tool: str) -> None:
    cmd = PRAUDIT if tool == "praudit" else REDUCE
    assert sh(f"{cmd} {TRAIL} >&-") == (
        1,
        f"lxbsm-{tool}: standard output is closed: nowhere to write "
        "(redirect it to a file or pipe)\n",
    )


@pytest.mark.parametrize("tool", ["praudit", "auditreduce"])
def test_stdin_closed(tool: str) -> None:
    cmd = PRAUDIT if tool == "praudit" else REDUCE
    assert sh(f"{cmd} <&- >/dev/null") == (
        1,
        f"lxbsm-{tool}: standard input is closed: give a file name, or pipe a trail in\n",
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("-a 2024010199", "bad date '2024010199': hour 99 is not 00-23"),
        ("-b 20241301", "bad date '20241301': month 13 is not 01-12"),
        ("-a 20230229", "bad date '20230229': February has 28 days"),
        ("-d 2024013", "bad date '2024013' (want YYYYMMDD"),
        ("-m 70000", "-m 70000: event numbers are 0-65535 (16 bits in the header)"),
        ("-m -1", "-m -1: event numbers are 0-65535"),
        ("-u 4294967296", "a numeric user 4294967296 is out of range (0-4294967295)"),
        ("-f 99999999999", "a numeric group 99999999999 is out of range (0-4294967295)"),
        ("-j 4294967296", "-j 4294967296: out of range (0-4294967295)"),
    ],
)
def test_auditreduce_option_errors(args: str, message: str) -> None:
    rc, err = sh(f"{REDUCE} {args} {TRAIL} >/dev/null")
    assert rc == 1
    assert err.startswith(f"lxbsm-auditreduce: {message}")
    assert "usage: lxbsm-auditreduce" in err


def test_a_uid_above_32_bits_is_not_truncated_to_select_root(tmp_path: Path) -> None:
    # 2^32 would have matched auid 0 once truncated.
    rc, _ = sh(f"{REDUCE} -u {2**32} {TRAIL} > {tmp_path}/out")
    assert rc == 1 and (tmp_path / "out").read_bytes() == b""


def test_a_missing_class_table_is_blamed_on_the_class_table() -> None:
    rc, err = sh(f"{REDUCE} -m AUE_EXECVE {TRAIL} >/dev/null", {"LXBSM_AUDIT_CLASS": "/nope"})
    assert rc == 1
    assert err.splitlines()[0] == (
        "lxbsm-auditreduce: -m AUE_EXECVE: audit_class table /nope (from LXBSM_AUDIT_CLASS): "
        "No such file"
    )
    rc, err = sh(f"{PRAUDIT} {TRAIL} >/dev/null", {"LXBSM_AUDIT_CLASS": "/nope"})
    assert (rc, err) == (
        0,
        "lxbsm-praudit: warning: audit_class table /nope (from LXBSM_AUDIT_CLASS): No such file; "
        "events print as numbers\n",
    )


def test_an_event_table_that_is_a_device_is_refused_at_once() -> None:
    rc, err = sh(f"{PRAUDIT} {TRAIL} >/dev/null", {"LXBSM_AUDIT_EVENT": "/dev/zero"}, timeout=20)
    assert (rc, err) == (
        0,
        "lxbsm-praudit: warning: /dev/zero: is a character device, not a configuration file; "
        "events print as numbers\n",
    )


# -- lxbsm-auditd's configuration ---------------------------------------------------------


def control(tmp_path: Path, extra: str = "") -> Path:
    (tmp_path / "trails").mkdir(exist_ok=True)
    p = tmp_path / "audit_control"
    p.write_text(f"dir:{tmp_path}/trails\nflags:lo\n{extra}")
    return p


def check(cf: Path) -> tuple[int, str]:
    return sh(f"{AUDITD} --check --control {cf}", timeout=30)


def test_check_audit_user_with_a_nul_in_a_name(tmp_path: Path) -> None:
    cf = control(tmp_path)
    (tmp_path / "audit_user").write_bytes(b"root:lo:no\nbad\0name:lo:\n")
    rc, err = check(cf)
    assert rc == 2
    assert err == (
        f"lxbsm-auditd: configuration error: {tmp_path}/audit_user:2: "
        "bad user 'bad\\x00name': embedded null byte\n"
    )


def test_check_audit_user_with_a_superscript_digit(tmp_path: Path) -> None:
    # '²' is not a number (int() refuses it): a name no user has, as any other.
    cf = control(tmp_path)
    (tmp_path / "audit_user").write_text("²:lo:\n")
    rc, err = check(cf)
    assert rc == 0
    assert err == (
        f"lxbsm-auditd: {tmp_path}/audit_user:1: no user '²' on this system: line ignored\n"
    )


@pytest.mark.parametrize(
    ("name", "line", "message"),
    [
        ("audit_user", "4294967296:lo:no", "a numeric user (audit id) 4294967296 is out of range"),
        ("exec_control", "deny /bin/true auid=4294967296", "auid= 4294967296 is out of range"),
        ("exec_control", "deny /bin/true user=99999999999", "user= 99999999999 is out of range"),
        ("exec_control", "deny /bin/true auid=²", "no user '²' on this system"),
        ("exec_control", "deny /" + "a" * 5000, "cannot check the file: File name too long"),
        ("exec_control", "deny /opt/a\\x", "bad escape in '/opt/a\\x'"),
        ("exec_control", "deny /opt/a\\04", "bad escape"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path: Path, name: str, line: str, message: str) -> None:
    cf = control(tmp_path)
    (tmp_path / name).write_text(f"# first\n{line}\n")
    with pytest.raises(config.ConfigError) as e:
        config.load(cf)
    assert str(e.value).startswith(f"{tmp_path}/{name}:2: ")
    assert message in str(e.value)
    rc, err = check(cf)
    assert rc == 2 and f"{tmp_path}/{name}:2: " in err


def test_a_rule_below_a_regular_file_is_matched_by_path(tmp_path: Path) -> None:
    cf = control(tmp_path)
    (tmp_path / "exec_control").write_text("deny /etc/passwd/x\n")
    cfg = config.load(cf)
    assert [r.path for r in cfg.exec_rules.rules] == ["/etc/passwd/x"]
    assert cfg.warnings == (
        f"{tmp_path}/exec_control:1: /etc/passwd/x does not exist now: matched by path only",
    )
    assert check(cf)[0] == 0


@pytest.mark.parametrize("name", ["exec_control", "audit_user", "audit_event", "audit_class"])
def test_a_directory_where_a_file_belongs_is_an_error(tmp_path: Path, name: str) -> None:
    cf = control(tmp_path)
    (tmp_path / name).mkdir()
    with pytest.raises(config.ConfigError) as e:
        config.load(cf)
    assert str(e.value) == f"{tmp_path}/{name}: is a directory, not a configuration file"
    assert check(cf) == (
        2,
        f"lxbsm-auditd: configuration error: {tmp_path}/{name}: is a directory, "
        "not a configuration file\n",
    )


def test_an_exec_control_key_naming_a_directory(tmp_path: Path) -> None:
    cf = control(tmp_path, f"exec_control:{tmp_path}\n")
    assert check(cf) == (
        2,
        f"lxbsm-auditd: configuration error: {tmp_path}: is a directory, "
        "not a configuration file\n",
    )


@pytest.mark.parametrize("path", ["/dev/zero", "/dev/null"])
def test_control_that_is_a_device(path: str) -> None:
    rc, err = sh(f"{AUDITD} --check --control {path}", timeout=20)
    assert (rc, err) == (
        2,
        f"lxbsm-auditd: configuration error: {path}: is a character device, "
        "not a configuration file\n",
    )


def test_a_huge_control_file_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "audit_control"
    p.write_text(f"dir:{tmp_path}\n" + "#" * (5 << 20) + "\n")
    with pytest.raises(config.ConfigError, match=r"larger than 4 MiB: not a configuration file"):
        config.load(p)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("minfree:²", "minfree (a percentage) is a decimal number 0-100, got '²'"),
        ("minfree:101", "minfree (a percentage) 101 is out of range (0-100)"),
        ("freq:0", "freq 0 is out of range (1-4294967295)"),
        ("qsize:1e3", "qsize is a decimal number 0-4294967295, got '1e3'"),
        ("exec_control:/x\0y", "a NUL byte in the line"),
        ("dir:/x\0y", "a NUL byte in the line"),
    ],
)
def test_numbers_explain_themselves(tmp_path: Path, line: str, message: str) -> None:
    cf = control(tmp_path, line + "\n")
    with pytest.raises(config.ConfigError) as e:
        config.load(cf)
    assert str(e.value) == f"{cf}:3: {message}"


# -- exec_control: '#' and escapes ----------------------------------------------------------


def test_hash_inside_a_path_is_part_of_it(tmp_path: Path) -> None:
    p = tmp_path / "exec_control"
    p.write_text(
        "# a comment line\n"
        "deny /opt/run#2   # a comment after white space\n"
        "deny /opt/my\\040tool\\043x user=0\n"
        "deny \\043odd\n"
        "deny /opt/back\\134slash#\n"
    )
    with pytest.raises(execctl.ExecControlError, match=r":4: the file must be an absolute path"):
        execctl.parse(p, protect=[])
    p.write_text(p.read_text().replace("deny \\043odd\n", "deny /\\043odd\n"))
    xc = execctl.parse(p, protect=[])
    assert [r.path for r in xc.rules.rules] == [
        "/opt/run#2",
        "/opt/my tool#x",
        "/#odd",
        "/opt/back\\slash#",
    ]
    assert [r.line for r in xc.rules.rules] == [2, 3, 4, 5]


def test_escape_is_the_inverse_of_unescape() -> None:
    for path in ("/opt/my tool", "/a\\b", "#x", "/a#b", "/tab\there"):
        assert execctl.unescape(execctl.escape(path)) == path
        assert " " not in execctl.escape(path)


# -- the daemon: reload and start-up ----------------------------------------------------------


class _Ring:
    """What Daemon needs of BatchRing, no more (positions count records)."""

    size = 1 << 20
    fd = -1

    def __init__(self) -> None:
        self.pushed: list[object] = []
        self.recs: list[bytes] = []
        self.cons = 0

    @property
    def consumer_pos(self) -> int:
        return self.cons

    def push(self, cfg: object, rules: object = None) -> None:
        self.pushed.append((cfg, rules))

    def set_protect(self, fds: list[int]) -> None:
        self.protected = len(fds)

    def protect_status(self) -> uapi.ProtectStatus:
        return uapi.ProtectStatus(0, 0, 0, 0)

    def submit(self, record: bytes) -> None:
        self.recs.append(record)

    def copy_batch(self, max_bytes: int) -> tuple[bytes, int, int]:
        data = b"".join(self.recs[self.cons :])
        return data, len(self.recs) - self.cons, len(self.recs)

    def commit(self, pos: int) -> None:
        self.cons = pos

    def pending(self) -> bool:
        return self.cons < len(self.recs)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            b"root:lo:no\nbad\0name:lo:\n",
            "audit_user:2: bad user 'bad\\x00name': embedded null byte",
        ),
        (
            b"root:lo:no\n4294967296:lo:\n",
            "audit_user:2: bad user '4294967296': a numeric user (audit id) 4294967296 is out of "
            "range (0-4294967295)",
        ),
        (b"root:lo:no\nroot:lo,zz:no\n", "audit_user:2: unknown audit class 'zz'"),
    ],
)
def test_a_bad_reload_keeps_the_configuration_and_the_daemon(
    tmp_path: Path, text: bytes, message: str
) -> None:
    cf = control(tmp_path)
    (tmp_path / "audit_user").write_text("root:lo:no\n")
    logs: list[str] = []
    ring = _Ring()
    d = daemon.Daemon(config.load(cf), ring, control_file=str(cf), sock=None, log=logs.append)  # type: ignore[arg-type]
    d.start([])
    before = d.cfg
    (tmp_path / "audit_user").write_bytes(text)
    reply = d.reload()
    assert reply["ok"] is False and message in reply["error"]
    assert d.cfg is before and ring.pushed == []
    assert d.stopping is False
    assert any(
        f"reload refused, keeping the configuration in force: {tmp_path}/{message}" in m
        for m in logs
    )
    assert d.status()["last_error"] == reply["error"]
    # Still auditing: a record goes to the trail, and a fixed file reloads.
    ring.submit(daemon.daemon_record(daemon.AUE_AUDIT_STARTUP, "still here"))
    assert d.drain() >= 1
    (tmp_path / "audit_user").write_text("root:lo,ex:no\n")
    assert d.reload()["ok"] is True
    assert d.cfg is not before and len(ring.pushed) == 1
    d.shutdown()


def test_a_reload_that_fails_in_the_module_gives_the_old_configuration_back(tmp_path: Path) -> None:
    cf = control(tmp_path)
    ring = _Ring()
    d = daemon.Daemon(config.load(cf), ring, control_file=str(cf), sock=None, log=lambda m: None)  # type: ignore[arg-type]
    d.start([])
    before = d.cfg
    calls: list[object] = []

    def push(cfg: object, rules: object = None) -> None:
        calls.append(cfg)
        if len(calls) == 1:
            raise OSError(errno.EINVAL, "Invalid argument")

    ring.push = push  # type: ignore[method-assign]
    reply = d.reload()
    assert reply == {"ok": False, "error": "[Errno 22] Invalid argument"}
    assert d.cfg is before and calls[1] is before.kernel
    d.shutdown()


def test_a_trail_that_cannot_be_chmod_says_path_and_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fchmod(fd: int, mode: int) -> None:
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(trail.os, "fchmod", fchmod)
    w = trail.TrailWriter([str(tmp_path)], host=None, filesz=0, minfree=0, flush="none", freq=1)
    with pytest.raises(OSError) as e:
        w.open()
    msg = main._explain(e.value, "audit")
    assert msg.startswith(f"{tmp_path}/")
    assert ".not_terminated: fchmod 0640: Operation not permitted (check the owner and mode" in msg
    assert "network and 9p file systems may refuse chmod" in msg


def test_a_device_that_is_not_lxbsm(tmp_path: Path) -> None:
    cf = control(tmp_path)
    rc, err = sh(
        f"{AUDITD} --foreground --no-seccomp --user root --device /dev/null --control {cf}"
    )
    assert rc == 1
    assert err == (
        "lxbsm-auditd: cannot open /dev/null: /dev/null is not the lxbsm device (it does not "
        "answer lxbsm's status request): name the lxbsm node (--device /dev/lxbsm)\n"
    )
    rc, err = sh(f"{PY} -m lxbsm_tools.audit --device /dev/null rules")
    assert (rc, err) == (1, "lxbsm-audit: /dev/null is not an lxbsm device\n")


def test_a_start_up_error_names_the_step_and_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """lxbsm-auditd's main() over a fake device: a trail directory that cannot be made."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    cf = tmp_path / "audit_control"
    cf.write_text(f"dir:{blocker}/trails\nflags:lo\n")
    monkeypatch.setattr(main, "find_device", lambda path, wait: "/dev/fake-lxbsm")
    monkeypatch.setattr(main, "BatchRing", lambda device: _Ring())
    monkeypatch.setattr(main.privs, "audit_ids", lambda user: (os.getuid(), os.getgid()))
    rc = main.main(
        ["--foreground", "--no-seccomp", "--control", str(cf), "--socket", str(tmp_path / "s")]
    )
    assert rc == 1
    assert capsys.readouterr().err == (
        f"lxbsm-auditd: cannot start: preparing the trail directories: {blocker}/trails: "
        "Not a directory\n"
    )
