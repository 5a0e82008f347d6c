"""Shared fixtures for the host tests.

BSM fixtures are prefixed ``bsm_``.  Test data lives in ``tests/data`` (see
its README): OpenBSM's BSD-licensed test vectors under ``bsm-samples`` and the
project's own praudit fixtures under ``praudit``.  No test reads anything
outside the repository.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1] / "data"
BSM_SAMPLES = DATA / "bsm-samples"
PRAUDIT_DATA = DATA / "praudit"


def bsm_hex_record(name: str) -> bytes:
    """The bytes of ``tests/data/praudit/<name>.hex`` (``execve``, ``open``).

    Each line is ``<token> <hex words...> [comment]``; hex words are read
    until the first word that is not an even-length hex string.
    """
    out = bytearray()
    for line in (PRAUDIT_DATA / f"{name}.hex").read_text(encoding="utf-8").splitlines():
        for word in line.split()[1:]:
            if not re.fullmatch(r"[0-9a-f]+", word) or len(word) % 2:
                break
            out += bytes.fromhex(word)
    size = int.from_bytes(out[1:5], "big")
    assert len(out) == size, f"{name}: {len(out)} bytes, header says {size}"
    return bytes(out)


def bsm_expected(name: str) -> str:
    """The text of ``tests/data/praudit/<name>``."""
    return (PRAUDIT_DATA / name).read_text(encoding="utf-8")


@pytest.fixture
def bsm_openbsm_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Use OpenBSM's audit_event/audit_class (as the recorded praudit output did)."""
    monkeypatch.setenv("LXBSM_AUDIT_EVENT", str(BSM_SAMPLES / "openbsm-etc" / "audit_event"))
    monkeypatch.setenv("LXBSM_AUDIT_CLASS", str(BSM_SAMPLES / "openbsm-etc" / "audit_class"))


@pytest.fixture
def bsm_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """TZ=UTC, as OpenBSM's praudit was run for the recorded output."""
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
