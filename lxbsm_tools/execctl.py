"""exec_control: the programs lxbsm keeps from running, read strictly.

One rule a line, first match wins, no match allows::

    mode: enforce                 # enforce (EACCES), monitor (audit only) or kill
    deny /usr/bin/df              # nobody runs df ...
    allow /usr/bin/df auid=0      # ... (put this first to let root's sessions run it)
    deny /usr/bin/nc group=devs   # members of devs (real, effective or supplementary gid)
    deny /usr/bin/gdb user=alice  # alice: her real or effective uid, or her audit id
    deny /opt/x/tool auid=1000    # the person who logged in as 1000, whatever uid now
    deny sha256:<64 hex digits>   # any file with that content, copies and memfds too
    deny /opt/my\040tool/run#2    # a space written \040; '#' inside a word is the path's

Comments: ``#`` starts a comment at the start of a line or after white space,
never inside a word (``/opt/run#2`` is a path).  Words are separated by white
space; a space, tab, ``#`` at the start of a word or backslash inside a path
is written as a three-digit octal escape, as in /etc/fstab: ``\040`` (space),
``\011`` (tab), ``\043`` (``#``), ``\134`` (backslash).  Any other backslash
is an error.

A rule names a file; lxbsm resolves it when the rules load to the file's
canonical path and its device and inode, and the kernel matches either
against the file it is about to run (never against the name the caller
typed).  A rule whose file does not exist yet matches by path only.  A
sha256: rule names content instead (``sha256sum`` gives the digest): the
kernel hashes a file it has not seen before on the way back from the exec,
before the program's first instruction, kills it if a rule denies it, and
refuses it with EACCES from then on (docs/kernel.md, "Exec control").

Rules that would keep lxbsm-auditd itself from starting again (a deny of its
own interpreter or program that can apply to root) are refused: auditing
must never be locked out by its own configuration.
"""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from lxbsm_tools import cfgread, uapi

MODES = ("enforce", "monitor", "kill")
_COND = re.compile(r"(user|group|auid)=(\S+)")
_COMMENT = re.compile(r"(?:^|(?<=\s))#")
_ESCAPE = re.compile(rb"\\([0-7]{3})?")
_WHO = {"user": "uid", "group": "gid", "auid": "auid"}


class ExecControlError(ValueError):
    """A bad exec_control line; the message names the file and line."""


@dataclass(frozen=True)
class ExecControl:
    source: str
    rules: uapi.ExecRules
    warnings: tuple[str, ...] = ()


def daemon_files() -> list[str]:
    """The files lxbsm-auditd needs to start: its interpreter and its program."""
    files = [sys.executable]
    if sys.argv and sys.argv[0] and os.path.isabs(sys.argv[0]):
        files.append(sys.argv[0])
    return [os.path.realpath(f) for f in files]


def _ident(kind: str, value: str) -> int:
    if cfgread.is_decimal(value):
        return cfgread.id_number(value, f"{kind}=")
    what = "group" if kind == "group" else "user"
    try:
        if kind == "group":
            return grp.getgrnam(value).gr_gid
        return pwd.getpwnam(value).pw_uid
    except KeyError:
        raise ValueError(f"no {what} '{value}' on this system") from None
    except ValueError as e:  # NUL or unencodable bytes in the name
        raise ValueError(f"bad {what} name {value!r}: {e}") from None


def _identity(path: str) -> tuple[int, int] | None:
    """(dev, ino) of the file, None if it does not exist; ValueError if it cannot be checked."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        shown = path if len(path) <= 80 else f"{path[:60]}... ({len(path.encode())} bytes)"
        raise ValueError(f"{shown}: cannot check the file: {e.strerror}") from None
    return st.st_dev, st.st_ino


def unescape(word: str) -> str:
    """A word of the rules file with its octal escapes (``\\040``...) decoded."""
    raw = word.encode("utf-8", "surrogateescape")

    def one(m: re.Match[bytes]) -> bytes:
        if m.group(1) is None or int(m.group(1), 8) > 0xFF:
            raise ValueError(
                f"bad escape in '{word}': a backslash starts a three-digit octal escape "
                "(\\040 space, \\011 tab, \\043 #, \\134 backslash)"
            )
        return bytes([int(m.group(1), 8)])

    return _ESCAPE.sub(one, raw).decode("utf-8", "surrogateescape")


def escape(path: str) -> str:
    """How to write ``path`` in the rules file (the inverse of :func:`unescape`)."""
    out = []
    for i, ch in enumerate(path):
        if ch in " \t\n\\" or (ch == "#" and i == 0):
            out.append(f"\\{ord(ch):03o}")
        else:
            out.append(ch)
    return "".join(out)


def _can_hit_root(who: str, ident: int) -> bool:
    return who == "anyone" or ident == 0


_SHA256 = re.compile(r"sha256:([0-9a-fA-F]{64})")


def sha256_of(path: str) -> bytes | None:
    """The sha256 digest of a file's content, None if it cannot be read."""
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").digest()
    except OSError:
        return None


def _content_rule(
    action: str, who: str, ident: int, line: int, target: str, guarded: Iterable[str]
) -> uapi.ExecRule:
    """A sha256:<hex> rule: any file with that content, wherever it is."""
    m = _SHA256.fullmatch(target)
    if not m:
        raise ValueError(f"expected sha256: and 64 hex digits, got '{target}'")
    digest = bytes.fromhex(m.group(1))
    if action == "deny" and _can_hit_root(who, ident):
        for g in guarded:
            if sha256_of(g) == digest:
                raise ValueError(
                    f"{target} is the content of {g}, which lxbsm-auditd needs to start; "
                    "deny it to users (user=, group=, auid=) instead"
                )
    return uapi.ExecRule(
        action=action, who=who, id=ident, line=line, path="", dev=None, ino=None, sha256=digest
    )


def parse(path: str | Path, protect: Iterable[str] | None = None) -> ExecControl:
    """Read an exec_control file; ExecControlError (file:line) on any fault."""
    path = Path(path)
    try:
        text = cfgread.read_text(path)
    except cfgread.FileReadError as e:
        raise ExecControlError(str(e)) from None
    guarded = {p: _identity(p) for p in (daemon_files() if protect is None else protect)}
    mode = "enforce"
    seen_mode = 0
    rules: list[uapi.ExecRule] = []
    warnings: list[str] = []
    for n, raw in enumerate(text.splitlines(), 1):
        m = _COMMENT.search(raw)
        line = (raw[: m.start()] if m else raw).strip()
        if not line:
            continue
        where = f"{path}:{n}"
        try:
            if line.startswith("mode:"):
                value = line.partition(":")[2].strip()
                if value not in MODES:
                    raise ValueError(f"mode is one of {', '.join(MODES)}, got '{value}'")
                if seen_mode:
                    raise ValueError(f"mode given twice (first on line {seen_mode})")
                mode, seen_mode = value, n
                continue
            words = line.split()
            if words[0] not in ("allow", "deny") or len(words) < 2:
                raise ValueError(f"expected 'allow|deny FILE [user=|group=|auid=]', got '{line}'")
            action, target, conds = words[0], unescape(words[1]), words[2:]
            if len(conds) > 1:
                raise ValueError("at most one of user=, group=, auid= per rule")
            who, ident = "anyone", 0
            if conds:
                m = _COND.fullmatch(conds[0])
                if not m:
                    raise ValueError(f"expected user=, group= or auid=, got '{conds[0]}'")
                who, ident = _WHO[m.group(1)], _ident(m.group(1), m.group(2))
            if target.startswith("sha256:"):
                rules.append(_content_rule(action, who, ident, n, target, guarded))
                continue
            if not target.startswith("/"):
                raise ValueError(f"the file must be an absolute path, got '{target}'")
            canon = os.path.realpath(target)
            ids = _identity(canon)
            if ids is None:
                warnings.append(f"{where}: {target} does not exist now: matched by path only")
            elif not os.path.isfile(canon):
                raise ValueError(f"{target} is not a regular file")
            if len(canon.encode("utf-8", "surrogateescape")) >= uapi.XC_PATH_LEN:
                if ids is None:
                    raise ValueError(f"{target}: path too long and no such file")
                warnings.append(f"{where}: path longer than 255 bytes: matched by inode only")
            if action == "deny" and _can_hit_root(who, ident):
                for g, gids in guarded.items():
                    if canon == g or (ids is not None and ids == gids):
                        raise ValueError(
                            f"{target} is {g}, which lxbsm-auditd needs to start; "
                            "deny it to users (user=, group=, auid=) instead"
                        )
            rules.append(
                uapi.ExecRule(
                    action=action,
                    who=who,
                    id=ident,
                    line=n,
                    path=canon,
                    dev=ids[0] if ids else None,
                    ino=ids[1] if ids else None,
                )
            )
        except ValueError as e:
            raise ExecControlError(f"{where}: {e}") from None
    if len(rules) > uapi.XC_MAX_RULES:
        raise ExecControlError(f"{path}: {len(rules)} rules, at most {uapi.XC_MAX_RULES}")
    xc = uapi.ExecRules(mode if rules else "off", tuple(rules))
    return ExecControl(str(path), xc, tuple(warnings))
