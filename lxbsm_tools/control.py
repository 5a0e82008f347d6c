"""Turn OpenBSM-style configuration into what the kernel module takes.

audit_control's ``flags:``, ``naflags:`` and ``policy:`` values, audit_user
lines and the audit_event table become one :class:`uapi.KernelConfig`,
pushed with :func:`push` (the daemon does this at start and on reload).
"""

from __future__ import annotations

from collections.abc import Mapping

from lxbsm_tools import uapi
from lxbsm_tools.bsm import ClassTable, EventTable, load_class_table, load_event_table, parse_flags


class ConfigError(ValueError):
    """A configuration value the module cannot take; the message says which."""


def policy_bits(spec: str) -> int:
    """``"cnt,argv"`` -> LXBSM_POLICY_* bits.  Unknown names are an error."""
    bits = 0
    for name in filter(None, (p.strip() for p in spec.split(","))):
        if name == "none":
            continue
        if name not in uapi.POLICY_NAMES:
            known = ", ".join(sorted(uapi.POLICY_NAMES))
            raise ConfigError(f"unknown audit policy '{name}' (the module knows: {known})")
        bits |= uapi.POLICY_NAMES[name]
    return bits


def kernel_config(
    flags: str = "",
    naflags: str = "",
    policy: str = "cnt",
    users: Mapping[int, tuple[str, str]] | None = None,
    events: EventTable | None = None,
    classes: ClassTable | None = None,
) -> uapi.KernelConfig:
    """Build the module configuration from audit_control-style strings.

    ``users`` maps an audit id to its audit_user (always, never) flag strings.
    """
    classes = classes or load_class_table()
    events = events or load_event_table(classes=classes)
    try:
        user_masks = {
            auid: (parse_flags(always, classes), parse_flags(never, classes))
            for auid, (always, never) in (users or {}).items()
        }
        return uapi.KernelConfig(
            policy=policy_bits(policy),
            flags=parse_flags(flags, classes),
            naflags=parse_flags(naflags, classes),
            events={n: e.mask for n, e in events.by_number.items()},
            users=user_masks,
        )
    except ValueError as e:
        raise ConfigError(str(e)) from e


def push(fd: int, cfg: uapi.KernelConfig) -> None:
    uapi.set_config(fd, cfg)
