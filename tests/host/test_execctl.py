"""exec_control parsing: rules, identities, errors with file and line."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import pytest

from lxbsm_tools import execctl
from lxbsm_tools.auditd import config as cfgmod


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "exec_control"
    p.write_text(text)
    return p


def test_rules_resolve_to_canonical_path_and_inode(tmp_path: Path) -> None:
    prog = tmp_path / "prog"
    prog.write_bytes(b"\x7fELF")
    (tmp_path / "alias").symlink_to(prog)
    p = write(
        tmp_path,
        f"# comment\nmode: monitor\nallow {tmp_path}/alias auid=0\n\n"
        f"deny {prog} user=root   # trailing comment\ndeny {prog} group=root\n"
        f"deny {prog}\n",
    )
    xc = execctl.parse(p, protect=[])
    st = os.stat(prog)
    assert xc.rules.mode == "monitor"
    got = [(r.action, r.who, r.id, r.line, r.path, r.dev, r.ino) for r in xc.rules.rules]
    assert got == [
        ("allow", "auid", 0, 3, str(prog), st.st_dev, st.st_ino),
        ("deny", "uid", 0, 5, str(prog), st.st_dev, st.st_ino),
        ("deny", "gid", 0, 6, str(prog), st.st_dev, st.st_ino),
        ("deny", "anyone", 0, 7, str(prog), st.st_dev, st.st_ino),
    ]
    assert xc.warnings == ()


def test_default_mode_is_enforce_and_no_rules_is_off(tmp_path: Path) -> None:
    prog = tmp_path / "prog"
    prog.write_text("#!/bin/sh\n")
    assert execctl.parse(write(tmp_path, f"deny {prog}\n"), protect=[]).rules.mode == "enforce"
    assert execctl.parse(write(tmp_path, "mode: kill\n"), protect=[]).rules.mode == "off"
    packaged = execctl.parse(cfgmod.packaged("exec_control"), protect=[])
    assert packaged.rules.mode == "off" and packaged.rules.rules == ()


def test_a_missing_file_is_matched_by_path_only(tmp_path: Path) -> None:
    xc = execctl.parse(write(tmp_path, f"deny {tmp_path}/later\n"), protect=[])
    (rule,) = xc.rules.rules
    assert rule.path == f"{tmp_path}/later" and rule.dev is None and rule.ino is None
    assert xc.warnings == (
        f"{tmp_path}/exec_control:1: {tmp_path}/later does not exist now: matched by path only",
    )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("mode: strict", "mode is one of enforce, monitor, kill, got 'strict'"),
        ("block /bin/true", "expected 'allow|deny FILE [user=|group=|auid=]'"),
        ("deny", "expected 'allow|deny FILE"),
        ("deny bin/true", "the file must be an absolute path, got 'bin/true'"),
        ("deny sha256:" + "ab" * 31, "expected sha256: and 64 hex digits, got 'sha256:abab"),
        ("deny sha256:" + "zz" * 32, "expected sha256: and 64 hex digits"),
        ("deny sha256:" + "ab" * 32 + " user=x y", "at most one of user=, group=, auid= per rule"),
        ("deny /bin/true user=root group=root", "at most one of user=, group=, auid= per rule"),
        ("deny /bin/true uid=0", "expected user=, group= or auid=, got 'uid=0'"),
        ("deny /bin/true user=no-such-user-x", "no user 'no-such-user-x' on this system"),
        ("deny /bin/true group=no-such-group-x", "no group 'no-such-group-x' on this system"),
        ("deny /etc", "/etc is not a regular file"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    p = write(tmp_path, f"# rules\n{line}\n")
    with pytest.raises(execctl.ExecControlError) as e:
        execctl.parse(p, protect=[])
    assert str(e.value).startswith(f"{p}:2: {message}")


def test_content_rules_carry_the_digest(tmp_path: Path) -> None:
    prog = tmp_path / "prog"
    prog.write_bytes(b"\x7fELF not really")
    digest = hashlib.sha256(prog.read_bytes()).hexdigest()
    xc = execctl.parse(
        write(tmp_path, f"deny sha256:{digest.upper()} auid=1000\nallow sha256:{'0' * 64}\n"),
        protect=[],
    )
    first, second = xc.rules.rules
    assert (first.action, first.who, first.id, first.line) == ("deny", "auid", 1000, 1)
    assert first.sha256 == bytes.fromhex(digest)
    assert (first.path, first.dev, first.ino) == ("", None, None)
    assert (second.action, second.sha256) == ("allow", bytes(32))


def test_content_rules_cannot_lock_out_the_daemon(tmp_path: Path) -> None:
    python = os.path.realpath(sys.executable)
    digest = hashlib.sha256(Path(python).read_bytes()).hexdigest()
    with pytest.raises(execctl.ExecControlError, match=f"is the content of {python}"):
        execctl.parse(write(tmp_path, f"deny sha256:{digest}\n"))
    xc = execctl.parse(write(tmp_path, f"deny sha256:{digest} user=1000\n"))
    assert xc.rules.rules[0].sha256 == bytes.fromhex(digest)


def test_mode_twice_is_refused(tmp_path: Path) -> None:
    p = write(tmp_path, "mode: enforce\nmode: monitor\n")
    with pytest.raises(execctl.ExecControlError, match=r":2: mode given twice \(first on line 1\)"):
        execctl.parse(p, protect=[])


def test_rules_that_would_lock_out_the_daemon_are_refused(tmp_path: Path) -> None:
    python = os.path.realpath(sys.executable)
    assert python in execctl.daemon_files()
    for line in (f"deny {sys.executable}", f"deny {python} user=root", f"deny {python} auid=0"):
        with pytest.raises(execctl.ExecControlError, match="lxbsm-auditd needs to start"):
            execctl.parse(write(tmp_path, line + "\n"))
    # Denying it to someone else, or allowing it, is fine.
    xc = execctl.parse(write(tmp_path, f"deny {python} auid=1000\nallow {python}\n"))
    assert [r.action for r in xc.rules.rules] == ["deny", "allow"]


def test_audit_control_names_the_rules_file(tmp_path: Path) -> None:
    prog = tmp_path / "prog"
    prog.write_text("x")
    rules = tmp_path / "rules"
    rules.write_text(f"deny {prog}\n")
    control = tmp_path / "audit_control"
    control.write_text(f"dir:{tmp_path}\nflags:ex\nexec_control:{rules}\n")
    cfg = cfgmod.load(control)
    assert cfg.exec_rules.mode == "enforce"
    assert [r.path for r in cfg.exec_rules.rules] == [str(prog)]
    assert str(rules) in cfg.files
    rules.write_text(f"deny {prog}\ndeny relative\n")
    with pytest.raises(cfgmod.ConfigError, match=rf"^{rules}:2: the file must be an absolute"):
        cfgmod.load(control)
    control.write_text(f"dir:{tmp_path}\nexec_control:rules\n")
    with pytest.raises(cfgmod.ConfigError, match=r"audit_control:2: exec_control must be an absol"):
        cfgmod.load(control)


def test_without_a_rules_file_nothing_is_denied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cfgmod, "SYSTEM_DIR", tmp_path / "no-etc-security")
    control = tmp_path / "audit_control"
    control.write_text(f"dir:{tmp_path}\n")
    cfg = cfgmod.load(control)
    # The companion search ends at the packaged default.
    assert cfg.exec_rules.mode == "off" and cfg.exec_rules.rules == ()
    assert str(cfgmod.packaged("exec_control")) in cfg.files
