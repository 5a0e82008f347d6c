"""What the event tests share: configure the module, run things, read records."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from lxbsm_tools import control, uapi
from lxbsm_tools.bsm import Record, decode_records, errno_to_bsm, load_event_table
from lxbsm_tools.ring import Ring

from .conftest import REPO

EVENTS = load_event_table()
PROGS = REPO / "build" / "progs"


def aue(name: str) -> int:
    return EVENTS.by_name[name].number


class Auditor:
    """The consumer of the ring for one test, with the module configured."""

    def __init__(self, ring: Ring, ctl: int) -> None:
        self.ring = ring
        self.ctl = ctl
        self.seen: list[Record] = []

    def configure(
        self,
        flags: str = "all",
        naflags: str = "all",
        policy: str = "cnt,argv",
        users: dict[int, tuple[str, str]] | None = None,
    ) -> None:
        control.push(self.ctl, control.kernel_config(flags, naflags, policy, users))

    def collect(self) -> list[Record]:
        raw = b"".join(bytes(r) for r in self.ring.records())
        new = list(decode_records(raw, source="ring"))
        self.seen += new
        return new

    def records(
        self,
        event: str | None = None,
        pid: int | None = None,
        where: Callable[[Record], bool] | None = None,
    ) -> list[Record]:
        """Records seen so far (the ring is read first) matching all criteria."""
        self.collect()
        out = []
        for rec in self.seen:
            if event is not None and rec.event != aue(event):
                continue
            subj = rec.subject
            if pid is not None and (subj is None or subj.pid != pid):
                continue
            if where is not None and not where(rec):
                continue
            out.append(rec)
        return out

    def one(
        self, event: str, pid: int | None = None, where: Callable[[Record], bool] | None = None
    ) -> Record:
        found = self.records(event, pid, where)
        assert len(found) == 1, (
            f"expected one {event} record for pid {pid}, found {len(found)}: "
            + "; ".join(describe(r) for r in found)
        )
        return found[0]


def failed(rec: Record) -> bool:
    return rec.success is False


def describe(rec: Record) -> str:
    parts = [EVENTS.by_number[rec.event].name if rec.event in EVENTS.by_number else str(rec.event)]
    for tok in rec.tokens[1:-1]:
        fields = (
            {k: v for k, v in vars(tok).items() if not k.startswith("_")}
            if hasattr(tok, "__dict__")
            else {}
        )
        parts.append(f"{tok.name}{fields or ''}")
    return " ".join(parts)


@contextmanager
def auditing(**config: object) -> Iterator[Auditor]:
    ctl = uapi.open_control()
    try:
        with Ring() as ring:
            list(ring.records())
            a = Auditor(ring, ctl)
            a.configure(**config)  # type: ignore[arg-type]
            try:
                yield a
            finally:
                control.push(ctl, control.kernel_config("", "", "cnt"))
    finally:
        os.close(ctl)


def proc_ids(pid: int) -> tuple[int, int]:
    """(audit id, audit session) the kernel holds for a live process."""
    auid = int(Path(f"/proc/{pid}/loginuid").read_text())
    sid = int(Path(f"/proc/{pid}/sessionid").read_text())
    return auid, sid


def assert_subject(
    rec: Record,
    pid: int,
    *,
    uid: int = 0,
    gid: int = 0,
    euid: int | None = None,
    egid: int | None = None,
    auid: int | None = None,
    sid: int | None = None,
) -> None:
    s = rec.subject
    assert s is not None, "record without a subject"
    if auid is None or sid is None:
        my_auid, my_sid = proc_ids(os.getpid())
        auid = my_auid if auid is None else auid
        sid = my_sid if sid is None else sid
    want = (
        auid,
        uid if euid is None else euid,
        gid if egid is None else egid,
        uid,
        gid,
        pid,
        sid,
        0,
    )
    got = (s.auid, s.euid, s.egid, s.ruid, s.rgid, s.pid, s.sid, s.port)
    assert got == want, f"subject {got} != {want}"


def assert_return(rec: Record, *, errno: int = 0, value: int | None = None) -> None:
    ret = rec.return_token
    assert ret is not None
    if errno:
        assert (ret.status, ret.value) == (errno_to_bsm(errno), 0xFFFFFFFF)
    else:
        assert ret.status == 0
        if value is not None:
            assert ret.value == value


def paths(rec: Record) -> list[str]:
    return [t.text for t in rec.all("path")]


def run(
    *cmd: str | os.PathLike[str], cwd: str | os.PathLike[str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, check=check
    )


def spawn(
    *cmd: str | os.PathLike[str],
    cwd: str | os.PathLike[str] | None = None,
    env: dict[str, str] | None = None,
) -> tuple[int, int, str]:
    """Run a command to completion: (pid, exit status, output)."""
    p = subprocess.Popen(
        [str(c) for c in cmd],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out, _ = p.communicate()
    return p.pid, p.returncode, out


def write_script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/bash\n" + body)
    path.chmod(0o755)
    return path


def settle() -> None:
    """Give exiting children time to reach their exit hooks."""
    time.sleep(0.2)
