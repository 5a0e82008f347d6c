"""The module's own tables agree with the token library's.

kmod/bsm_errno.c (Linux errno -> BSM errno) and kmod/events.h (the events
the kernel emits, their AUE numbers and default classes) are C; the tools
read lxbsm_tools.bsm and the packaged audit_event.  They must not drift.
"""

from __future__ import annotations

import errno
import re
from pathlib import Path

from lxbsm_tools.bsm import errno_to_bsm, load_class_table, load_event_table

KMOD = Path(__file__).resolve().parents[2] / "kmod"


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
    text = (KMOD / "events.h").read_text()
    rows = re.findall(r"X\((\w+),\s*(\d+),\s*([^)]*)\)", text)
    assert len(rows) > 40
    events = load_event_table()
    classes = load_class_table()
    macro_class = {m: int(v, 16) for m, v in re.findall(r"#define (AU_\w+)\s+(0x[0-9a-f]+)", text)}
    for name, number, class_expr in rows:
        entry = events.get(int(number))
        assert entry is not None, f"{name} ({number}) is not in the packaged audit_event"
        want = "AUE_LXBSM_LOST" if name == "LOST" else f"AUE_{name}"
        # OpenBSM spells the login-type events in lower case (AUE_openssh).
        assert entry.name.upper() == want.upper(), (entry.name, want)
        mask = 0
        for part in class_expr.split("|"):
            part = part.strip()
            mask |= macro_class[part] if part != "0" else 0
        assert mask == entry.mask, f"{name}: kernel default classes {mask:#x} != {entry.mask:#x}"
    # The class bits the kernel names are the ones audit_class defines.
    for macro, value in macro_class.items():
        assert classes.mask(macro[3:].lower()) == value
