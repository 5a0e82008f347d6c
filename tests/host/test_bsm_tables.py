"""audit_event / audit_class tables and flag strings."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import BSM_SAMPLES

from lxbsm_tools.bsm import load_class_table, load_event_table, parse_flags
from lxbsm_tools.bsm.tables import ClassTable, EventTable

ETC = BSM_SAMPLES / "openbsm-etc"


@pytest.fixture
def openbsm_classes() -> ClassTable:
    return load_class_table([ETC / "audit_class"])


def test_duplicate_numbers_first_wins(openbsm_classes: ClassTable) -> None:
    ev = load_event_table([ETC / "audit_event"], openbsm_classes)
    assert ev.get(6171).name == "AUE_ftpd_logout"  # type: ignore[union-attr]
    assert ev.get(6172).description == "login - ssh"  # type: ignore[union-attr]
    assert ev.get(6168).name == "AUE_shutdown"  # type: ignore[union-attr]
    assert ev.get(65000) is None
    assert ev.mask(23) == 0x40000080 and ev.mask(83) == 0x3F
    assert ev.lookup("AUE_EXECVE") == 23 and ev.lookup("0x17") == 23


def test_parse_rules(tmp_path: Path) -> None:
    p = tmp_path / "ev"
    p.write_text("# comment\n\n5:A:first:fr\nbad line\n5:B:second:fw\n6:C:unknown class:zz,fw\n")
    c = ClassTable.parse(["0x1:fr:read", "0x2:fw:write", "0x4:fr:again"])
    assert c.by_name == {"fr": 1, "fw": 2}
    ev = load_event_table([tmp_path / "missing", p], c)
    assert ev.get(5).name == "A" and ev.mask(5) == 1  # type: ignore[union-attr]
    assert ev.mask(6) == 2 and ev.get(6).classes == ("zz", "fw")  # type: ignore[union-attr]
    with pytest.raises(FileNotFoundError):
        load_event_table([tmp_path / "missing"], c)


def test_packaged_tables_agree_with_openbsm(openbsm_classes: ClassTable) -> None:
    ours = load_event_table(
        [Path(__file__).resolve().parents[2] / "lxbsm_tools" / "data" / "audit_event"],
        load_class_table(
            [Path(__file__).resolve().parents[2] / "lxbsm_tools" / "data" / "audit_class"]
        ),
    )
    theirs = load_event_table([ETC / "audit_event"], openbsm_classes)
    lxbsm_only = [n for n in ours.by_number if 33000 <= n < 33100]
    assert lxbsm_only, "lxbsm-specific range should be used for clone"
    for num, e in ours.by_number.items():
        if num in lxbsm_only:
            assert theirs.get(num) is None
            continue
        t = theirs.get(num)
        assert t is not None and (t.name, t.mask) == (e.name, e.mask), num
    for name in (
        "AUE_EXECVE",
        "AUE_EXECVEAT",
        "AUE_FEXECVE",
        "AUE_OPEN_RWTC",
        "AUE_OPENAT_R",
        "AUE_CREAT",
        "AUE_CLOSE",
        "AUE_FORK",
        "AUE_VFORK",
        "AUE_EXIT",
        "AUE_SETUID",
        "AUE_SETRESGID",
        "AUE_SETGROUPS",
        "AUE_ACCEPT",
        "AUE_CONNECT",
        "AUE_BIND",
        "AUE_login",
        "AUE_logout",
        "AUE_su",
        "AUE_sudo",
        "AUE_ssh",
        "AUE_audit_startup",
        "AUE_audit_shutdown",
    ):
        assert name in ours.by_name, name


def test_default_paths_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LXBSM_AUDIT_EVENT", raising=False)
    monkeypatch.delenv("LXBSM_AUDIT_CLASS", raising=False)
    ev = load_event_table()
    assert isinstance(ev, EventTable) and ev.get(23) is not None
    monkeypatch.setenv("LXBSM_AUDIT_EVENT", str(ETC / "audit_event"))
    assert load_event_table().get(6171).name == "AUE_ftpd_logout"  # type: ignore[union-attr]


def test_parse_flags(openbsm_classes: ClassTable) -> None:
    c = openbsm_classes
    assert parse_flags("lo,+ex,-fr,^fw", c) == (0x40001000, 0x1001)
    assert parse_flags("all,^-fr", c) == (0xFFFFFFFF, 0xFFFFFFFE)
    assert parse_flags("fr,fw,^+fr", c) == (0x2, 0x3)
    assert parse_flags("fr,^fr", c) == (0, 0)
    assert parse_flags("", c) == (0, 0)
    assert parse_flags(" lo , aa ", c) == (0x3000, 0x3000)
    with pytest.raises(ValueError, match="unknown audit class"):
        parse_flags("lo,ua", c)
