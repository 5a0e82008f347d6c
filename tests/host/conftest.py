"""Shared fixtures for the host tests.

BSM fixtures are prefixed ``bsm_``.  Test data comes from ``../shared``
beside the repository (or ``$LXBSM_SHARED``); it is never copied into the
repository.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

SHARED = Path(os.environ.get("LXBSM_SHARED", Path(__file__).resolve().parents[2].parent / "shared"))
BSM_SAMPLES = SHARED / "bsm-samples"
BSM_FORMAT_MD = SHARED / "bsm-format.md"


def bsm_md_text() -> str:
    return BSM_FORMAT_MD.read_text(encoding="utf-8")


def bsm_md_hex_record(name: str) -> bytes:
    """The bytes of ``execve.bsm``/``open.bsm`` from bsm-format.md 1a.3.

    Each token line is ``<token> <hex words...> [comment]``; hex words are
    read until the first word that is not hex.
    """
    md = bsm_md_text()
    m = re.search(rf"^{re.escape(name)} \((\d+) bytes;.*?$", md, re.M)
    assert m is not None, f"{name} not found in bsm-format.md"
    size = int(m.group(1))
    out = bytearray()
    for line in md[m.end() + 1 :].splitlines():
        if not line.strip() or line.startswith("```") or re.match(r"^\S+\.bsm \(", line):
            break
        for word in line.split()[1:]:
            if not re.fullmatch(r"[0-9a-f]+", word) or len(word) % 2:
                break
            out += bytes.fromhex(word)
    assert len(out) == size, f"{name}: parsed {len(out)} bytes, md says {size}"
    return bytes(out)


def bsm_md_block_after(marker: str) -> str:
    """The text of the first fenced code block after ``marker`` in the md."""
    md = bsm_md_text()
    i = md.index(marker)
    start = md.index("```", i)
    start = md.index("\n", start) + 1
    end = md.index("```", start)
    return md[start:end]


@pytest.fixture
def bsm_shared() -> Path:
    assert BSM_SAMPLES.is_dir(), f"shared test data missing: {BSM_SAMPLES}"
    return SHARED


@pytest.fixture
def bsm_openbsm_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Use OpenBSM's audit_event/audit_class (as bsm-format.md's praudit did)."""
    monkeypatch.setenv("LXBSM_AUDIT_EVENT", str(BSM_SAMPLES / "openbsm-etc" / "audit_event"))
    monkeypatch.setenv("LXBSM_AUDIT_CLASS", str(BSM_SAMPLES / "openbsm-etc" / "audit_class"))


@pytest.fixture
def bsm_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """TZ=UTC, as praudit was run for bsm-format.md."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


BSM_FAKE_USERS = {0: "root", 1000: "alice"}
BSM_FAKE_GROUPS = {0: "root", 1000: "staff", 5: "tty"}


@pytest.fixture
def bsm_fake_names(monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[int, str]]:
    """A fixed password/group database: uid 0 root, 1000 alice; gid 0 root, 1000 staff.

    Only the praudit text module sees it (pytest itself needs the real one).
    """
    from types import SimpleNamespace

    from lxbsm_tools.bsm import text

    class _Ent:
        def __init__(self, name: str) -> None:
            self.pw_name = name
            self.gr_name = name

    def getpwuid(uid: int) -> _Ent:
        if uid in BSM_FAKE_USERS:
            return _Ent(BSM_FAKE_USERS[uid])
        raise KeyError(uid)

    def getgrgid(gid: int) -> _Ent:
        if gid in BSM_FAKE_GROUPS:
            return _Ent(BSM_FAKE_GROUPS[gid])
        raise KeyError(gid)

    monkeypatch.setattr(text, "pwd", SimpleNamespace(getpwuid=getpwuid))
    monkeypatch.setattr(text, "grp", SimpleNamespace(getgrgid=getgrgid))
    return {"users": BSM_FAKE_USERS, "groups": BSM_FAKE_GROUPS}


@pytest.fixture
def bsm_run_praudit(
    capsysbinary: pytest.CaptureFixture[bytes],
) -> Callable[..., tuple[int, str, str]]:
    """Run lxbsm-praudit in-process; returns (status, stdout, stderr)."""
    from lxbsm_tools import praudit

    def run(*args: str) -> tuple[int, str, str]:
        status = praudit.main(list(args))
        out, err = capsysbinary.readouterr()
        return status, out.decode("utf-8", "surrogateescape"), err.decode()

    return run
