"""Event and class tables (``audit_event`` / ``audit_class``) and flag strings.

File formats are OpenBSM's:

* ``audit_class``: ``mask:name:description`` per line;
* ``audit_event``: ``number:name:description:class1,class2`` per line.

Blank lines and lines starting with ``#`` are ignored, as are malformed
lines.  When a number (or name) appears twice, the **first** line wins,
like OpenBSM's ``getauevnum()`` (bsm-format.md 1b.2).

The packaged defaults live in ``lxbsm_tools/data/``; the system files in
``/etc/security/`` override them when present.  The environment variables
``LXBSM_AUDIT_EVENT`` and ``LXBSM_AUDIT_CLASS`` name other files (tests use
them to point at OpenBSM's own tables).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from lxbsm_tools.cfgread import check_regular, read_text

__all__ = [
    "ClassTable",
    "EventEntry",
    "EventTable",
    "default_class_paths",
    "default_event_paths",
    "load_class_table",
    "load_event_table",
    "parse_flags",
]

SYSTEM_DIR = Path("/etc/security")


def _packaged(name: str) -> Path:
    return Path(str(resources.files("lxbsm_tools") / "data" / name))


def default_event_paths() -> list[Path]:
    """Candidate ``audit_event`` files, most specific first."""
    env = os.environ.get("LXBSM_AUDIT_EVENT")
    if env:
        return [Path(env)]
    return [SYSTEM_DIR / "audit_event", _packaged("audit_event")]


def default_class_paths() -> list[Path]:
    """Candidate ``audit_class`` files, most specific first."""
    env = os.environ.get("LXBSM_AUDIT_CLASS")
    if env:
        return [Path(env)]
    return [SYSTEM_DIR / "audit_class", _packaged("audit_class")]


def _first_existing(paths: Sequence[str | os.PathLike[str]], name: str) -> Path:
    """The first of ``paths`` that exists; FileNotFoundError naming the table and where
    it was looked for (and the environment variable that chose it, if one did)."""
    for p in paths:
        check_regular(p)  # a directory where the table belongs is an error, not a skip
        if Path(p).is_file():
            return Path(p)
    var = f"LXBSM_{name.upper()}"
    env = os.environ.get(var)
    if env and [str(p) for p in paths] == [env]:
        raise FileNotFoundError(f"{name} table {env} (from {var}): No such file")
    raise FileNotFoundError(f"no {name} table (looked for {', '.join(str(p) for p in paths)})")


def _lines(path: Path) -> Iterable[str]:
    for line in read_text(path).splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            yield line


@dataclass(frozen=True)
class ClassTable:
    """Audit classes: name -> mask (first definition wins)."""

    by_name: dict[str, int]
    descriptions: dict[str, str]

    def mask(self, name: str) -> int:
        return self.by_name[name]

    def names_for(self, mask: int) -> list[str]:
        """Single-bit class names whose bits are all in ``mask``."""
        return [n for n, m in self.by_name.items() if m and m & (m - 1) == 0 and m & mask]

    @classmethod
    def parse(cls, lines: Iterable[str]) -> ClassTable:
        by_name: dict[str, int] = {}
        desc: dict[str, str] = {}
        for line in lines:
            parts = line.split(":")
            if len(parts) < 3:
                continue
            try:
                mask = int(parts[0], 0)
            except ValueError:
                continue
            name = parts[1].strip()
            if not name or name in by_name:
                continue
            by_name[name] = mask & 0xFFFFFFFF
            desc[name] = ":".join(parts[2:]).strip()
        return cls(by_name, desc)


@dataclass(frozen=True)
class EventEntry:
    number: int
    name: str
    description: str
    classes: tuple[str, ...]
    mask: int


@dataclass(frozen=True)
class EventTable:
    """Audit events by number and by name (first definition wins)."""

    by_number: dict[int, EventEntry]
    by_name: dict[str, EventEntry]

    def get(self, number: int) -> EventEntry | None:
        return self.by_number.get(number)

    def lookup(self, spec: str) -> int:
        """Event number from a number or an ``AUE_*`` name; KeyError if unknown."""
        s = spec.strip()
        try:
            return int(s, 0)
        except ValueError:
            pass
        return self.by_name[s].number

    def mask(self, number: int) -> int | None:
        e = self.by_number.get(number)
        return None if e is None else e.mask

    @classmethod
    def parse(cls, lines: Iterable[str], classes: ClassTable | None = None) -> EventTable:
        by_number: dict[int, EventEntry] = {}
        by_name: dict[str, EventEntry] = {}
        cmap = classes.by_name if classes is not None else {}
        for line in lines:
            parts = line.split(":")
            if len(parts) != 4:
                continue
            try:
                num = int(parts[0], 0)
            except ValueError:
                continue
            if not 0 <= num <= 0xFFFF:
                continue
            names = tuple(c.strip() for c in parts[3].split(",") if c.strip())
            mask = 0
            for c in names:
                mask |= cmap.get(c, 0)
            e = EventEntry(num, parts[1].strip(), parts[2].strip(), names, mask)
            by_number.setdefault(num, e)
            by_name.setdefault(e.name, e)
        return cls(by_number, by_name)


def load_class_table(paths: Sequence[str | os.PathLike[str]] | None = None) -> ClassTable:
    """Read the first existing ``audit_class`` among ``paths`` (default: system, packaged)."""
    p = _first_existing(paths if paths is not None else default_class_paths(), "audit_class")
    return ClassTable.parse(_lines(p))


def load_event_table(
    paths: Sequence[str | os.PathLike[str]] | None = None,
    classes: ClassTable | None = None,
) -> EventTable:
    """Read the first existing ``audit_event`` among ``paths``.

    Class names are resolved with ``classes`` (default: :func:`load_class_table`);
    class names the class table does not define contribute no bits.
    """
    p = _first_existing(paths if paths is not None else default_event_paths(), "audit_event")
    if classes is None:
        classes = load_class_table()
    return EventTable.parse(_lines(p), classes)


def parse_flags(flags: str, classes: ClassTable | None = None) -> tuple[int, int]:
    """Parse an audit flag string into ``(success_mask, failure_mask)``.

    OpenBSM ``getauditflagsbin`` semantics: a comma-separated list of class
    names processed left to right; ``name`` adds the class for success and
    failure, ``+name`` for success only, ``-name`` for failure only, ``^name``
    removes it from both, ``^+name`` from success, ``^-name`` from failure.
    ``ValueError`` for an unknown class name.
    """
    if classes is None:
        classes = load_class_table()
    success = failure = 0
    for raw in flags.split(","):
        tok = raw.strip()
        if not tok:
            continue
        remove = tok.startswith("^")
        if remove:
            tok = tok[1:]
        want_s = want_f = True
        if tok.startswith("+"):
            want_f = False
            tok = tok[1:]
        elif tok.startswith("-"):
            want_s = False
            tok = tok[1:]
        if tok not in classes.by_name:
            raise ValueError(f"unknown audit class {tok!r}")
        m = classes.by_name[tok]
        if remove:
            if want_s:
                success &= ~m
            if want_f:
                failure &= ~m
        else:
            if want_s:
                success |= m
            if want_f:
                failure |= m
    return success & 0xFFFFFFFF, failure & 0xFFFFFFFF
