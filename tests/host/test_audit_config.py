"""lxbsm-auditd's configuration: OpenBSM formats, strict, errors name file and line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lxbsm_tools.auditd import config
from lxbsm_tools.bsm import load_class_table, parse_flags

REPO = Path(__file__).resolve().parents[2]
GOOD = """\
# comment
dir:{d}/a
dir:{d}/b
flags:lo,+ex,-fw
naflags:lo
minfree:7
policy:cnt,argv
filesz:2M
expire-after:60d AND 1G
host:box.example
qsize:100
dist:off
realtime:{d}/ids
realtime:{d}/ids.json,json
realtime:{d}/ids.sock,socket,json
flush:incremental
freq:10
batch-wait:50
"""


def write(tmp_path: Path, text: str, name: str = "audit_control") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_the_packaged_default_is_the_repository_root_file() -> None:
    assert (REPO / "lxbsm_tools/data/audit_control").read_bytes() == (
        REPO / "audit_control"
    ).read_bytes()


def test_the_packaged_default_loads() -> None:
    cfg = config.load(config.packaged("audit_control"))
    classes = load_class_table()
    assert cfg.control.dirs == ("/var/audit",)
    assert cfg.kernel.flags == parse_flags("lo,aa,ex,pc,nt", classes)
    assert cfg.control.filesz == 16 << 20
    assert cfg.control.expire == config.Expiry(age=60 * 86400, size=10 << 30, both=False)
    assert cfg.users[0] == ("lo", "no")  # the packaged audit_user


def test_every_key(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, GOOD.format(d=tmp_path)))
    ac = cfg.control
    assert ac.dirs == (f"{tmp_path}/a", f"{tmp_path}/b")
    assert (ac.minfree, ac.filesz, ac.host, ac.qsize, ac.dist) == (
        7,
        2 << 20,
        "box.example",
        100,
        False,
    )
    assert ac.expire == config.Expiry(age=60 * 86400, size=1 << 30, both=True)
    assert ac.feeds == (
        config.Feed(f"{tmp_path}/ids"),
        config.Feed(f"{tmp_path}/ids.json", json=True),
        config.Feed(f"{tmp_path}/ids.sock", json=True, socket=True),
    )
    assert (ac.flush, ac.freq, ac.batch_wait) == ("incremental", 10, 50)
    classes = load_class_table()
    assert cfg.kernel.flags == parse_flags("lo,+ex,-fw", classes)
    assert cfg.kernel.naflags == parse_flags("lo", classes)
    assert cfg.kernel.policy == 0x1 | 0x4


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("naflags:lo,bogus", "unknown audit class 'bogus'"),
        ("policy:cnt,frobnicate", "frobnicate"),
        ("minfree:101", "minfree"),
        ("minfree:ten", "minfree"),
        ("filesz:100K", "minimum 512K"),
        ("filesz:12Q", "bad size"),
        ("expire-after:60 days", "expire-after"),
        ("expire-after:60d XOR 1G", "expire-after"),
        ("expire-after:1G OR 2G", "two sizes"),
        ("nosuchkey:1", "unknown key 'nosuchkey'"),
        ("just words", "expected 'key:value'"),
        ("dir:relative/path", "absolute"),
        ("flags:lo", "given twice"),
        ("realtime:/x,xml", "realtime"),
        ("flush:sometimes", "flush"),
        ("dist:maybe", "dist"),
        ("host:a b", "bad host"),
        ("batch-wait:1001", "batch-wait (milliseconds) 1001 is out of range (0-1000)"),
        ("batch-wait:soon", "batch-wait"),
        ("protect:srv/www", "protect takes absolute paths, got 'srv/www'"),
        ("protect:/srv,,/etc", "empty path in protect"),
        ("protect:/srv/../etc", "holds '..'"),
        ("protect:/srv/www,/srv/www/", "/srv/www is protected twice"),
        ("protect:/a\\x", "bad escape"),
        ("protect-journal:var/lib", "protect-journal must be an absolute path"),
        ("protect-max:lots", "bad size"),
        ("protect:" + ",".join(f"/t{i}" for i in range(17)), "more than 16 protected trees"),
    ],
)
def test_a_bad_line_names_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    p = write(tmp_path, f"dir:{tmp_path}\nflags:lo\n\n# c\n{line}\n")
    with pytest.raises(config.ConfigError) as e:
        config.load(p)
    assert str(e.value).startswith(f"{p}:5: ")
    assert message in str(e.value)


def test_protected_trees_journal_and_limit(tmp_path: Path) -> None:
    text = (
        f"dir:{tmp_path}\nprotect:/etc, /srv/www\nprotect:/srv/a\\054b/c\\040d\n"
        "protect-journal:/var/lib/lxbsm/j/\nprotect-max:2G\n"
    )
    cfg = config.load(write(tmp_path, text))
    ac = cfg.control
    assert ac.protect == ("/etc", "/srv/www", "/srv/a,b/c d")
    p = tmp_path / "audit_control"
    assert ac.protect_where == (f"{p}:2", f"{p}:2", f"{p}:3")
    assert not any("protect" in w for w in cfg.warnings)
    assert (ac.protect_journal, ac.protect_max) == ("/var/lib/lxbsm/j", 2 << 30)
    ac = config.load(write(tmp_path, f"dir:{tmp_path}\n")).control
    assert (ac.protect, ac.protect_journal, ac.protect_max) == ((), "/var/lib/lxbsm/protect", 0)


def test_a_journal_inside_a_protected_tree_is_refused(tmp_path: Path) -> None:
    p = write(tmp_path, f"dir:{tmp_path}\nprotect:/var/lib\n")
    with pytest.raises(config.ConfigError) as e:
        config.load(p)
    assert str(e.value) == (
        f"{p}:2: the journal /var/lib/lxbsm/protect is inside the protected tree /var/lib: "
        "its own writes would be journaled (set protect-journal: elsewhere)"
    )


def test_no_dir_is_an_error(tmp_path: Path) -> None:
    p = write(tmp_path, "flags:lo\n")
    with pytest.raises(config.ConfigError, match="no 'dir:' line"):
        config.load(p)


def test_companion_files_next_to_the_control_file_win(tmp_path: Path) -> None:
    write(tmp_path, f"dir:{tmp_path}\n")
    write(tmp_path, "nobody:ex:no\n0:lo,ex:no\n", "audit_user")
    cfg = config.load(tmp_path / "audit_control")
    assert cfg.users[0] == ("lo,ex", "no")
    assert str(tmp_path / "audit_user") in cfg.files
    assert len(cfg.users) == 2  # nobody exists on Debian


@pytest.mark.parametrize(
    ("name", "text", "lineno"),
    [
        ("audit_user", "root:lo:no\nroot:lo\n", 2),
        ("audit_user", "\nroot:lo,zz:no\n", 2),
        ("audit_event", "1:AUE_x:x:ex\n2:AUE_y:y:nosuchclass\n", 2),
        ("audit_event", "x:AUE_x:x:ex\n", 1),
        ("audit_event", "70000:AUE_x:x:ex\n", 1),
        ("audit_class", "0x1:fr:read\nzz:fw:write\n", 2),
        ("audit_class", "0x1\n", 1),
    ],
)
def test_companion_file_errors_name_file_and_line(
    tmp_path: Path, name: str, text: str, lineno: int
) -> None:
    write(tmp_path, f"dir:{tmp_path}\n")
    if name == "audit_event":
        write(tmp_path, config.packaged("audit_class").read_text(), "audit_class")
    p = write(tmp_path, text, name)
    with pytest.raises(config.ConfigError) as e:
        config.load(tmp_path / "audit_control")
    assert str(e.value).startswith(f"{p}:{lineno}: ")


def test_an_unknown_user_is_a_warning_not_an_error(tmp_path: Path) -> None:
    write(tmp_path, f"dir:{tmp_path}\n")
    write(tmp_path, "no-such-user-here:lo:no\n", "audit_user")
    cfg = config.load(tmp_path / "audit_control")
    assert cfg.users == {}
    assert cfg.warnings == (
        f"{tmp_path}/audit_user:1: no user 'no-such-user-here' on this system: line ignored",
    )


@pytest.mark.parametrize(
    ("spec", "age", "size", "old_big", "old_small", "new_big"),
    [
        ("10M", None, 10 << 20, True, False, True),
        ("2d", 2 * 86400, None, True, True, False),
        ("2d AND 10M", 2 * 86400, 10 << 20, True, False, False),
        ("2d OR 10M", 2 * 86400, 10 << 20, True, True, True),
    ],
)
def test_expiry(
    spec: str, age: int | None, size: int | None, old_big: bool, old_small: bool, new_big: bool
) -> None:
    e = config.parse_expiry(spec)
    assert (e.age, e.size) == (age, size)
    assert e.expired(3 * 86400, 20 << 20) is old_big
    assert e.expired(3 * 86400, 1 << 20) is old_small
    assert e.expired(60, 20 << 20) is new_big


def test_the_daemon_reports_a_bad_line_without_a_traceback(tmp_path: Path) -> None:
    p = write(tmp_path, f"dir:{tmp_path}\nflags:lo,nope\n")
    r = subprocess.run(
        [sys.executable, "-m", "lxbsm_tools.auditd.main", "--check", "--control", str(p)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2
    assert r.stderr == f"lxbsm-auditd: configuration error: {p}:2: unknown audit class 'nope'\n"
