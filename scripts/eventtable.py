#!/usr/bin/env python3
"""Read the kernel's table of events (kmod/events.h) and write what comes from it.

    scripts/eventtable.py            print the generated part of docs/kernel.md
    scripts/eventtable.py --write    put it into docs/kernel.md (between its markers)
    scripts/eventtable.py --check    exit 1, saying why, if docs/kernel.md is stale

tests/host/test_kmod_tables.py checks the same, and that every event's number and
default classes are the packaged audit_event's.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EVENTS_H = REPO / "kmod" / "events.h"
ARCH_H = REPO / "kmod" / "arch" / "x86_64.h"
DOC = REPO / "docs" / "kernel.md"
BEGIN = "<!-- table-driven events: generated from kmod/events.h by scripts/eventtable.py -->"
END = "<!-- end of the generated table -->"


@dataclass
class Op:
    kind: str  # ARG32, FD_VNODE, UPATH_VNODE
    args: list[str]


@dataclass
class Event:
    name: str
    aue: int
    classes: int
    table: bool  # described whole by the table (ev_sys.c), not by a handler
    recipe: list[Op] = field(default_factory=list)
    calls: list[tuple[str, bool]] = field(default_factory=list)


@dataclass
class Table:
    events: list[Event]
    captures: list[tuple[str, bool, str]]  # kernel function, required, handler
    class_bits: dict[str, int]  # "fm" -> 0x8
    entry_points: tuple[str, str]  # native and compat prefixes, e.g. "__x64_sys_"


def _macro_body(text: str, name: str) -> str:
    """The body of #define name(...), continuation lines joined."""
    m = re.search(rf"^#define {name}\([^)]*\)((?:.*\\\n)*.*)$", text, re.M)
    if m is None:
        raise SystemExit(f"{EVENTS_H}: no #define {name}(...)")
    return m.group(1).replace("\\\n", " ")


def _scan(s: str, start: int = 0) -> Iterator[tuple[int, str, int]]:
    """(index, character, parenthesis depth after it) outside string literals."""
    depth, quoted = 0, False
    for i in range(start, len(s)):
        ch = s[i]
        if ch == '"':
            quoted = not quoted
        if quoted or ch == '"':
            yield i, "", depth  # inside a string: neither comma nor parenthesis
            continue
        depth += (ch == "(") - (ch == ")")
        yield i, ch, depth


def _split_args(s: str) -> list[str]:
    """Split on top-level commas (strings and parentheses kept whole)."""
    out, last = [], 0
    for i, ch, depth in _scan(s):
        if ch == "," and depth == 0:
            out.append(s[last:i].strip())
            last = i + 1
    if s[last:].strip():
        out.append(s[last:].strip())
    return out


def _rows(body: str, macro: str) -> list[list[str]]:
    """The argument lists of every macro(...) call in body."""
    rows, i = [], 0
    while (i := body.find(macro + "(", i)) >= 0:
        open_at = i + len(macro)
        end = next(j for j, ch, depth in _scan(body, open_at) if ch == ")" and depth == 0)
        rows.append(_split_args(body[open_at + 1 : end]))
        i = end + 1
    return rows


def parse(events_h: Path = EVENTS_H, arch_h: Path = ARCH_H) -> Table:
    text = re.sub(r"/\*.*?\*/", "", events_h.read_text(), flags=re.S)
    bits = {
        m.lower()[3:]: int(v, 16) for m, v in re.findall(r"#define (AU_\w+)\s+(0x[0-9a-f]+)", text)
    }

    def mask(expr: str) -> int:
        return sum(bits[p.strip().lower()[3:]] for p in expr.split("|") if p.strip() != "0")

    events = [
        Event(n, int(a), mask(c), table=False)
        for n, a, c in _rows(_macro_body(text, "LXBSM_HANDLER_EVENTS"), "X")
    ]
    by_name: dict[str, Event] = {}
    for _p, n, a, c, recipe in _rows(_macro_body(text, "LXBSM_TABLE_EVENTS"), "E"):
        ops = [
            Op(k, _split_args(args))
            for k, args in re.findall(r"T_(\w+)\(((?:[^()\"]|\"[^\"]*\")*)\)", recipe)
        ]
        ev = Event(n, int(a), mask(c), table=True, recipe=ops)
        events.append(ev)
        by_name[n] = ev
    for ev_name, call, req in _rows(_macro_body(text, "LXBSM_TABLE_CALLS"), "C"):
        by_name[ev_name].calls.append((call, req == "true"))
    captures = [
        (sym.strip('"'), req == "true", handler)
        for sym, req, handler in _rows(_macro_body(text, "LXBSM_TABLE_CAPTURES"), "K")
    ]
    arch = arch_h.read_text()
    native = re.search(r'#define LXBSM_SYS\(call\)\s+"(\w+)" #call', arch)
    compat = re.search(r'#define LXBSM_SYS_COMPAT\(call\)\s+"(\w+)" #call', arch)
    if native is None or compat is None:
        raise SystemExit(f"{arch_h}: no LXBSM_SYS / LXBSM_SYS_COMPAT entry-point prefixes")
    return Table(events, captures, bits, (native.group(1), compat.group(1)))


def class_names(table: Table, mask: int) -> str:
    return ",".join(n for n, b in table.class_bits.items() if mask & b) or "(none)"


def _arg(i: str) -> str:
    return "the cwd" if i == "-1" else f"argument {i}"


def recipe_text(ops: list[Op]) -> str:
    parts = []
    for op in ops:
        if op.kind == "ARG32":
            n, text, i = op.args
            parts.append(f"arg32 {n} {text} (argument {i})")
        elif op.kind == "FD_VNODE":
            n, i = op.args
            parts.append(
                f'arg32 {n} "fd" (argument {i}), path, attr32 of its file; "non-file: fd" if none'
            )
        elif op.kind == "UPATH_VNODE":
            d, i = op.args
            parts.append(
                f"path, attr32 of the file the kernel resolved; if none, argument {i} as given, "
                f"made absolute from {_arg(d)}"
            )
        else:
            raise SystemExit(f"{EVENTS_H}: unknown recipe token T_{op.kind}")
    return "; ".join(parts)


def markdown(table: Table) -> str:
    native, compat = table.entry_points
    lines = [
        BEGIN,
        "",
        "| BSM event | AUE | default classes | hooks: kretprobes on the entry points "
        "| tokens (FreeBSD order), then subject, return, [seq], trailer |",
        "|---|---|---|---|---|",
    ]
    for ev in (e for e in table.events if e.table):
        hooks = ", ".join(
            f"`{native}{c}`{'' if req else ' (optional)'}, `{compat}{c}` (optional)"
            for c, req in ev.calls
        )
        classes = class_names(table, ev.classes)
        lines.append(
            f"| AUE_{ev.name} | {ev.aue} | {classes} | {hooks} | {recipe_text(ev.recipe)} |"
        )
    caps = ", ".join(f"`{sym}` ({handler})" for sym, _req, handler in table.captures)
    lines += ["", f"Capture kprobes (the file a call resolved): {caps or 'none'}.", "", END]
    return "\n".join(lines)


def splice(doc: str, block: str) -> str:
    if BEGIN not in doc or END not in doc:
        raise SystemExit(
            f"{DOC}: the markers of the generated table are missing ({BEGIN!r} ... {END!r})"
        )
    head, rest = doc.split(BEGIN, 1)
    _old, tail = rest.split(END, 1)
    return head + block + tail


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--write", action="store_true", help="update docs/kernel.md")
    g.add_argument("--check", action="store_true", help="fail if docs/kernel.md is stale")
    opts = ap.parse_args()
    block = markdown(parse())
    if not opts.write and not opts.check:
        print(block)
        return 0
    doc = DOC.read_text()
    new = splice(doc, block)
    if opts.check:
        if new != doc:
            print(
                f"{DOC}: the events table is stale: run scripts/eventtable.py --write",
                file=sys.stderr,
            )
            return 1
        return 0
    DOC.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
