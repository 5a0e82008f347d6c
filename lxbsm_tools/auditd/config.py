"""OpenBSM configuration files for lxbsm-auditd: audit_control, audit_user,
audit_event and audit_class, read strictly.

Formats are OpenBSM's (bsm-format.md section 4).  Where OpenBSM skips a line
it cannot parse, the daemon refuses it instead: every error names the file
and the line, and a daemon that is reloading keeps the configuration it has.

audit_control keys: ``dir`` (repeatable), ``dist``, ``flags``, ``naflags``,
``minfree``, ``policy``, ``filesz``, ``expire-after``, ``host``, ``qsize``;
lxbsm-auditd's own keys: ``realtime`` (repeatable: ``PATH`` for a FIFO,
``,json`` for JSON lines, ``,socket`` for a Unix socket), ``flush``
(``none``, ``incremental``, ``data``, ``sync``), ``freq`` (records between
incremental flushes), ``warn`` (the audit_warn-style hook command) and
``exec_control`` (the exec control rules file, default: the companion
``exec_control``) and ``output`` (repeatable: where lxbsm-forward sends
records, docs/forwarding.md).

Companion files are looked for next to the control file first, then in
/etc/security, then in the package's data directory.
"""

from __future__ import annotations

import dataclasses
import os
import pwd
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from lxbsm_tools import cfgread, control, execctl, uapi
from lxbsm_tools.bsm import ClassTable, EventTable, parse_flags

SYSTEM_DIR = Path("/etc/security")
MIN_FILESZ = 512 * 1024  # OpenBSM's MIN_AUDIT_FILE_SIZE
MAX_BATCH_WAIT = 1000  # ms: records wait at most this long in the ring for the next batch
FLUSH_MODES = ("none", "incremental", "data", "sync")
DEFAULT_JOURNAL = "/var/lib/lxbsm/protect"  # the journal of protected files
_UNITS = {"B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
_AGES = {"s": 1, "m": 60, "h": 3600, "d": 86400, "y": 365 * 86400}


class ConfigError(ValueError):
    """A configuration file is wrong; the message names the file and line."""


def packaged(name: str) -> Path:
    return Path(str(resources.files("lxbsm_tools") / "data" / name))


def _usable(p: Path) -> bool:
    """True for a regular file; ConfigError for anything else that exists there.

    A directory (or FIFO, device...) where a configuration file belongs is a
    mistake to report, never a reason to fall back silently on a default.
    """
    try:
        cfgread.check_regular(p)
    except cfgread.FileReadError as e:
        raise ConfigError(str(e)) from None
    return p.is_file()


def default_control() -> Path:
    p = SYSTEM_DIR / "audit_control"
    return p if _usable(p) else packaged("audit_control")


def companion(control_file: Path, name: str) -> Path | None:
    """Where ``name`` (audit_user, audit_event...) comes from for this control file."""
    for p in (control_file.parent / name, SYSTEM_DIR / name, packaged(name)):
        if _usable(p):
            return p
    return None


@dataclass(frozen=True)
class Expiry:
    """``expire-after``: an age, a total size, or both joined by AND/OR."""

    age: int | None = None  # seconds
    size: int | None = None  # bytes
    both: bool = False  # True: AND, False: OR (or a single condition)

    def expired(self, age: float, total: int) -> bool:
        old = self.age is not None and age > self.age
        big = self.size is not None and total > self.size
        if self.age is not None and self.size is not None:
            return (old and big) if self.both else (old or big)
        return old or big


@dataclass(frozen=True)
class Feed:
    path: str
    json: bool = False
    socket: bool = False  # a listening Unix socket, one queue per connected reader


OUTPUT_KINDS = ("syslog-tls", "jsonl")
DEFAULT_SPOOL = 1 << 30  # trail bytes never sent an output may have before the oldest go
DEFAULT_CONFIRM = 2.0  # seconds a TCP-acknowledged record must stay unchallenged (forward.py)


@dataclass(frozen=True)
class Output:
    """``output:`` (lxbsm-forward): where records are forwarded to.

    ``syslog-tls HOST:PORT ca=FILE [cert=FILE key=FILE] [format=json|text]
    [spool=SIZE] [confirm=SECONDS]`` or ``jsonl PATH [rotate=SIZE] [keep=N]
    [spool=SIZE]``.
    """

    kind: str
    target: str  # HOST:PORT, or the JSON-lines file's path
    host: str = ""  # syslog-tls: the collector's name (checked against its certificate)
    port: int = 0
    ca: str = ""
    cert: str = ""
    key: str = ""
    format: str = "json"
    rotate: int = 0  # jsonl: bytes; 0 = never
    keep: int = 5  # jsonl: rotated files kept (PATH.1 ... PATH.keep)
    spool: int = DEFAULT_SPOOL
    confirm: float = DEFAULT_CONFIRM
    line: str = ""  # FILE:LINE it came from

    @property
    def name(self) -> str:
        return f"{self.kind}:{self.target}"


def parse_output(value: str) -> Output:
    """One ``output:`` value; ValueError says what is wrong and what is expected."""
    words = value.split()
    usage = (
        "expected 'output: syslog-tls HOST:PORT ca=FILE [cert=FILE key=FILE] "
        "[format=json|text] [spool=SIZE] [confirm=SECONDS]' or "
        "'output: jsonl PATH [rotate=SIZE] [keep=N] [spool=SIZE]'"
    )
    if len(words) < 2 or words[0] not in OUTPUT_KINDS:
        raise ValueError(f"{usage}, got '{value}'")
    kind, target, opts = words[0], words[1], words[2:]
    allowed = {
        "syslog-tls": {"ca", "cert", "key", "format", "spool", "confirm"},
        "jsonl": {"rotate", "keep", "spool"},
    }[kind]
    kv: dict[str, str] = {}
    for o in opts:
        k, sep, v = o.partition("=")
        if not sep or not v:
            raise ValueError(f"output option '{o}' is not KEY=VALUE ({usage})")
        if k not in allowed:
            raise ValueError(
                f"output {kind} takes {', '.join(sorted(allowed))}, not '{k}' ({usage})"
            )
        if k in kv:
            raise ValueError(f"output option '{k}' given twice")
        kv[k] = v
    kw: dict[str, object] = {}
    if "spool" in kv:
        kw["spool"] = parse_size(kv["spool"])
        if kw["spool"] == 0:
            raise ValueError("spool=0 would drop every record the output cannot send at once")
    if kind == "syslog-tls":
        m = re.fullmatch(r"(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})", target)
        if not m or not 0 < int(m.group(3)) < 65536:
            raise ValueError(f"syslog-tls takes HOST:PORT ([ADDR]:PORT for IPv6), got '{target}'")
        kw["host"] = m.group(1) or m.group(2)
        kw["port"] = int(m.group(3))
        if "ca" not in kv:
            raise ValueError(
                "syslog-tls needs ca=FILE, the CA that signed the collector's certificate "
                "(records are never sent unverified)"
            )
        if ("cert" in kv) != ("key" in kv):
            raise ValueError("syslog-tls takes cert=FILE and key=FILE together (a client cert)")
        for k in ("ca", "cert", "key"):
            if k in kv:
                f = kv[k]
                if not f.startswith("/"):
                    raise ValueError(f"{k}={f}: give an absolute path")
                try:
                    cfgread.check_regular(f)
                except cfgread.FileReadError as e:
                    raise ValueError(f"{k}={e}") from None
                if not os.path.exists(f):
                    raise ValueError(f"{k}={f}: no such file")
                kw[k] = f
        fmt = kv.get("format", "json")
        if fmt not in ("json", "text"):
            raise ValueError(f"format is json or text, got '{fmt}'")
        kw["format"] = fmt
        if "confirm" in kv:
            try:
                confirm = float(kv["confirm"].removesuffix("s"))
            except ValueError:
                confirm = -1.0
            if not 0 <= confirm <= 600:
                raise ValueError(f"confirm is 0 to 600 seconds, got '{kv['confirm']}'")
            kw["confirm"] = confirm
    else:
        if not target.startswith("/") or target.endswith("/"):
            raise ValueError(f"jsonl takes the absolute path of a file, got '{target}'")
        if "rotate" in kv:
            rotate = kw["rotate"] = parse_size(kv["rotate"])
            if 0 < rotate < 4096:
                raise ValueError(f"rotate={kv['rotate']} is below the minimum 4K (or 0: never)")
        if "keep" in kv:
            kw["keep"] = cfgread.decimal(kv["keep"], "keep (rotated files kept)", 1000, minimum=1)
    return Output(kind, target, **kw)  # type: ignore[arg-type]


@dataclass(frozen=True)
class AuditControl:
    source: str
    dirs: tuple[str, ...]
    flags: str = ""
    naflags: str = ""
    minfree: int = 20
    policy: str = "cnt"
    filesz: int = 0
    expire: Expiry | None = None
    host: str | None = None
    qsize: int | None = None
    dist: bool = False
    feeds: tuple[Feed, ...] = ()
    flush: str = "none"
    freq: int = 100
    batch_wait: int = 50  # milliseconds
    warn: str | None = None
    exec_control: str | None = None
    protect: tuple[str, ...] = ()  # protected trees (docs/recovery.md)
    protect_where: tuple[str, ...] = ()  # "file:line" each tree was given at
    protect_journal: str = DEFAULT_JOURNAL
    protect_max: int = 0  # bytes the journal may hold; 0: no limit of its own
    outputs: tuple[Output, ...] = ()  # lxbsm-forward (docs/forwarding.md)


@dataclass(frozen=True)
class Config:
    """Everything the daemon runs with, and what it pushes to the module."""

    control: AuditControl
    users: dict[int, tuple[str, str]]
    kernel: uapi.KernelConfig
    exec_rules: uapi.ExecRules = field(default=uapi.ExecRules("off", ()))
    files: tuple[str, ...] = field(default=())
    warnings: tuple[str, ...] = field(default=())


def parse_size(value: str) -> int:
    m = re.fullmatch(r"(\d+)\s*([BKMG]?)", value.strip())
    if not m:
        raise ValueError(f"bad size '{value}' (a number with B, K, M or G)")
    return int(m.group(1)) * _UNITS[m.group(2) or "B"]


def parse_expiry(value: str) -> Expiry:
    parts = value.split()
    if len(parts) not in (1, 3) or (len(parts) == 3 and parts[1] not in ("AND", "OR")):
        raise ValueError(f"bad expire-after '{value}' (e.g. '60d', '1G', '60d AND 1G')")
    age = size = None
    for p in parts[::2]:
        m = re.fullmatch(r"(\d+)([smhdy])", p)
        if m:
            if age is not None:
                raise ValueError(f"two ages in expire-after '{value}'")
            age = int(m.group(1)) * _AGES[m.group(2)]
            continue
        try:
            s = parse_size(p)
        except ValueError:
            raise ValueError(
                f"bad expire-after term '{p}' (an age with s/m/h/d/y or a size with B/K/M/G)"
            ) from None
        if size is not None:
            raise ValueError(f"two sizes in expire-after '{value}'")
        size = s
    return Expiry(age, size, len(parts) == 3 and parts[1] == "AND")


def _lines(path: Path) -> list[tuple[int, str]]:
    try:
        return cfgread.lines(path)
    except cfgread.FileReadError as e:
        raise ConfigError(str(e)) from None


def parse_control(path: Path, classes: ClassTable) -> AuditControl:
    values: dict[str, str] = {}
    dirs: list[str] = []
    feeds: list[Feed] = []
    protect: list[str] = []
    protect_where: list[str] = []
    outputs: list[Output] = []
    kw: dict[str, object] = {}
    for n, line in _lines(path):
        where = f"{path}:{n}"
        key, sep, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if not sep:
            raise ConfigError(f"{where}: expected 'key:value', got '{line}'")
        if "\0" in line:
            raise ConfigError(f"{where}: a NUL byte in the line")
        try:
            if key == "dir":
                if not value.startswith("/"):
                    raise ValueError(f"dir must be an absolute path, got '{value}'")
                dirs.append(value)
                continue
            if key == "realtime":
                fpath, *opts = value.split(",")
                if not fpath.startswith("/") or not set(opts) <= {"json", "socket"}:
                    raise ValueError(
                        f"realtime takes an absolute path [,json] [,socket], got '{value}'"
                    )
                feeds.append(Feed(fpath, "json" in opts, "socket" in opts))
                continue
            if key == "output":
                out = parse_output(value)
                for o in outputs:
                    if o.name == out.name:
                        raise ValueError(f"output {out.name} given twice (first at {o.line})")
                outputs.append(dataclasses.replace(out, line=where))
                continue
            if key == "protect":
                for tree in parse_trees(value):
                    if tree in protect:
                        raise ValueError(f"{tree} is protected twice")
                    if len(protect) == uapi.PROTECT_MAX:
                        raise ValueError(
                            f"more than {uapi.PROTECT_MAX} protected trees (the module's limit)"
                        )
                    protect.append(tree)
                    protect_where.append(where)
                continue
            if key in values:
                raise ValueError(f"'{key}' given twice (first value '{values[key]}')")
            values[key] = value
            if key in ("flags", "naflags"):
                parse_flags(value, classes)
                kw[key] = value
            elif key == "policy":
                control.policy_bits(value)
                kw[key] = value
            elif key == "minfree":
                kw[key] = cfgread.decimal(value, "minfree (a percentage)", 100)
            elif key == "filesz":
                size = parse_size(value)
                if 0 < size < MIN_FILESZ:
                    raise ValueError(f"filesz {value} is below the minimum 512K (or 0: never)")
                kw[key] = size
            elif key == "expire-after":
                kw["expire"] = parse_expiry(value)
            elif key == "host":
                if not re.fullmatch(r"[A-Za-z0-9._:-]+", value):
                    raise ValueError(f"bad host '{value}'")
                kw[key] = value
            elif key == "qsize":
                kw[key] = cfgread.decimal(value, "qsize", 0xFFFFFFFF)
            elif key == "dist":
                if value not in ("on", "off", "yes", "no"):
                    raise ValueError(f"dist is on/off/yes/no, got '{value}'")
                kw[key] = value in ("on", "yes")
            elif key == "flush":
                if value not in FLUSH_MODES:
                    raise ValueError(f"flush is one of {', '.join(FLUSH_MODES)}, got '{value}'")
                kw[key] = value
            elif key == "freq":
                kw[key] = cfgread.decimal(value, "freq", 0xFFFFFFFF, minimum=1)
            elif key == "batch-wait":
                ms = value.removesuffix("ms")
                kw["batch_wait"] = cfgread.decimal(ms, "batch-wait (milliseconds)", MAX_BATCH_WAIT)
            elif key == "warn":
                kw[key] = value or None
            elif key == "exec_control":
                if not value.startswith("/"):
                    raise ValueError(f"exec_control must be an absolute path, got '{value}'")
                kw["exec_control"] = value
            elif key == "protect-journal":
                if not value.startswith("/") or len(value) > 1024:
                    raise ValueError(f"protect-journal must be an absolute path, got '{value}'")
                kw["protect_journal"] = os.path.normpath(value)
            elif key == "protect-max":
                kw["protect_max"] = parse_size(value)
            else:
                raise ValueError(f"unknown key '{key}'")
        except ValueError as e:
            raise ConfigError(f"{where}: {e}") from None
    if not dirs:
        raise ConfigError(f"{path}: no 'dir:' line (where should trails go?)")
    journal = str(kw.get("protect_journal", DEFAULT_JOURNAL))
    for tree, tree_where in zip(protect, protect_where, strict=True):
        if journal == tree or journal.startswith(tree.rstrip("/") + "/"):
            raise ConfigError(
                f"{tree_where}: the journal {journal} is inside the protected tree {tree}: "
                "its own writes would be journaled (set protect-journal: elsewhere)"
            )
    return AuditControl(
        str(path),
        tuple(dirs),
        feeds=tuple(feeds),
        protect=tuple(protect),
        protect_where=tuple(protect_where),
        outputs=tuple(outputs),
        **kw,  # type: ignore[arg-type]
    )


def parse_trees(value: str) -> list[str]:
    """``protect:``'s comma-separated absolute paths; a comma, space or
    backslash in a path is written as an octal escape (``\\054``), as in
    exec_control."""
    trees = []
    for word in value.split(","):
        word = word.strip()
        if not word:
            raise ValueError(f"empty path in protect '{value}' (paths are separated by commas)")
        tree = execctl.unescape(word)
        if not tree.startswith("/"):
            raise ValueError(f"protect takes absolute paths, got '{word}'")
        if len(tree.encode("utf-8", "surrogateescape")) > 4095:
            raise ValueError(f"protect path '{word[:60]}...' is longer than 4095 bytes")
        parts = tree.split("/")
        if ".." in parts:
            raise ValueError(f"protect path '{word}' holds '..' (give the path itself)")
        trees.append(os.path.normpath(tree))
    return trees


def parse_classes(path: Path) -> ClassTable:
    lines = _lines(path)
    for n, line in lines:
        parts = line.split(":")
        try:
            if len(parts) < 3 or not parts[1].strip():
                raise ValueError("expected 'mask:name:description'")
            int(parts[0], 0)
        except ValueError:
            raise ConfigError(f"{path}:{n}: bad audit_class line '{line}'") from None
    return ClassTable.parse(line for _, line in lines)


def parse_events(path: Path, classes: ClassTable) -> EventTable:
    lines = _lines(path)
    for n, line in lines:
        parts = line.split(":")
        try:
            if len(parts) != 4:
                raise ValueError("expected 'number:name:description:classes'")
            if not 0 <= int(parts[0], 0) <= 0xFFFF:
                raise ValueError("event number out of range")
            for c in filter(None, (c.strip() for c in parts[3].split(","))):
                if c not in classes.by_name:
                    raise ValueError(f"unknown class '{c}'")
        except ValueError as e:
            raise ConfigError(f"{path}:{n}: bad audit_event line '{line}': {e}") from None
    return EventTable.parse((line for _, line in lines), classes)


def parse_users(path: Path, classes: ClassTable) -> tuple[dict[int, tuple[str, str]], list[str]]:
    """audit_user: ``name:always:never``; users unknown here are a warning, not an error."""
    users: dict[int, tuple[str, str]] = {}
    warnings = []
    for n, line in _lines(path):
        parts = line.split(":")
        if len(parts) != 3 or not parts[0]:
            raise ConfigError(f"{path}:{n}: expected 'user:alwaysaudit:neveraudit', got '{line}'")
        name, always, never = parts
        try:
            parse_flags(always, classes)
            parse_flags(never, classes)
        except ValueError as e:
            raise ConfigError(f"{path}:{n}: {e}") from None
        try:
            if cfgread.is_decimal(name):
                uid = cfgread.id_number(name, "a numeric user (audit id)")
            else:
                uid = pwd.getpwnam(name).pw_uid
        except KeyError:
            warnings.append(f"{path}:{n}: no user '{name}' on this system: line ignored")
            continue
        except ValueError as e:  # a NUL or an unencodable byte in the name; id out of range
            raise ConfigError(f"{path}:{n}: bad user {name!r}: {e}") from None
        users.setdefault(uid, (always, never))
    return users, warnings


def load(control_file: str | Path | None = None) -> Config:
    """Read and check the whole configuration; ConfigError (file:line) on any fault."""
    cf = Path(control_file) if control_file is not None else default_control()
    files = [str(cf)]
    cpath = companion(cf, "audit_class")
    epath = companion(cf, "audit_event")
    if cpath is None or epath is None:
        raise ConfigError(f"{cf}: no audit_class or audit_event next to it or packaged")
    classes = parse_classes(cpath)
    events = parse_events(epath, classes)
    files += [str(cpath), str(epath)]
    ac = parse_control(cf, classes)
    users: dict[int, tuple[str, str]] = {}
    warnings: list[str] = []
    upath = companion(cf, "audit_user")
    if upath is not None:
        users, warnings = parse_users(upath, classes)
        files.append(str(upath))
    try:
        kcfg = control.kernel_config(ac.flags, ac.naflags, ac.policy, users, events, classes)
    except control.ConfigError as e:
        raise ConfigError(f"{cf}: {e}") from None
    if ac.exec_control:
        xpath: Path | None = Path(ac.exec_control)
    else:
        xpath = companion(cf, "exec_control")
    xrules = uapi.ExecRules("off", ())
    if xpath is not None:
        try:
            xc = execctl.parse(xpath)
        except execctl.ExecControlError as e:
            raise ConfigError(str(e)) from None
        xrules = xc.rules
        warnings += xc.warnings
        files.append(str(xpath))
    return Config(ac, users, kcfg, xrules, tuple(files), tuple(warnings))
