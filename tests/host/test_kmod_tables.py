"""The module's own tables agree with the token library's.

kmod/bsm_errno.c (Linux errno -> BSM errno) and kmod/events.h (the table of
events: AUE numbers, default classes, for the table-driven ones their calls
and recipes) are C; the tools read lxbsm_tools.bsm and the packaged
audit_event, and docs/kernel.md's table is generated.  They must not drift.
"""

from __future__ import annotations

import errno
import re
import sys
from pathlib import Path

from lxbsm_tools.bsm import errno_to_bsm, load_class_table, load_event_table

KMOD = Path(__file__).resolve().parents[2] / "kmod"
sys.path.insert(0, str(KMOD.parent / "scripts"))
import eventtable  # noqa: E402  (scripts/eventtable.py)


def test_kernel_errno_table_matches_the_library() -> None:
    text = (KMOD / "bsm_errno.c").read_text()
    table = {name: int(v) for name, v in re.findall(r"\[(E[A-Z0-9]+)\] = (\d+),", text)}
    assert len(table) > 120
    for name, bsm in table.items():
        assert errno_to_bsm(getattr(errno, name)) == bsm, name
    # Every Linux errno the library maps to a real BSM number is in the kernel's table.
    covered = {getattr(errno, n) for n in table}
    for code in range(1, 134):
        if code in errno.errorcode and errno_to_bsm(code) != 250:
            assert code in covered, errno.errorcode[code]


def test_kernel_events_match_the_packaged_audit_event() -> None:
    table = eventtable.parse()
    assert len(table.events) > 40
    assert sum(e.table for e in table.events) >= 3
    events = load_event_table()
    classes = load_class_table()
    for ev in table.events:
        entry = events.get(ev.aue)
        assert entry is not None, f"{ev.name} ({ev.aue}) is not in the packaged audit_event"
        # lxbsm's own events (33000-33099) are AUE_LXBSM_*: LOST, and the journal's J*.
        own = ev.name == "LOST" or (ev.name.startswith("J") and 33000 <= ev.aue < 33100)
        want = f"AUE_LXBSM_{ev.name}" if own else f"AUE_{ev.name}"
        # OpenBSM spells the login-type events in lower case (AUE_openssh).
        assert entry.name.upper() == want.upper(), (entry.name, want)
        assert ev.classes == entry.mask, f"{ev.name}: kernel default classes {ev.classes:#x}"
    # The class bits the kernel names are the ones audit_class defines.
    for name, value in table.class_bits.items():
        assert classes.mask(name) == value
    names = [e.name for e in table.events]
    assert len(names) == len(set(names)), "an event is listed twice"


def test_table_driven_events_are_complete() -> None:
    """Every table-driven event has a system call and a recipe; every call an event."""
    table = eventtable.parse()
    for ev in (e for e in table.events if e.table):
        assert ev.calls, f"{ev.name}: no system call in LXBSM_TABLE_CALLS"
        assert ev.recipe, f"{ev.name}: an empty recipe"
        assert any(req for _c, req in ev.calls), f"{ev.name}: no required system call"
        # a recipe that names a file needs a capture kprobe to resolve it
        if any(op.kind != "ARG32" for op in ev.recipe):
            assert table.captures
    assert table.entry_points == ("__x64_sys_", "__ia32_sys_")


def test_docs_events_table_is_generated_from_the_kernel_table() -> None:
    doc = eventtable.DOC.read_text()
    assert eventtable.splice(doc, eventtable.markdown(eventtable.parse())) == doc, (
        "docs/kernel.md's table-driven events are stale: run scripts/eventtable.py --write"
    )
    assert "| AUE_FCHMODAT | 43146 | fm |" in doc
