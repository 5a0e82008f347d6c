"""lxbsm-audit: control and status of lxbsm.

lxbsm-audit status [--json]     module version, ring geometry and counters
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import os
import sys
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from lxbsm_tools import uapi


def fetch_status(device: str) -> uapi.ModuleStatus:
    try:
        fd = uapi.open_control(device)
    except FileNotFoundError:
        raise SystemExit(
            f"lxbsm-audit: {device} does not exist: the lxbsm module is not loaded "
            "(insmod lxbsm.ko, or modprobe lxbsm after make install)"
        ) from None
    except PermissionError:
        raise SystemExit(
            f"lxbsm-audit: {device}: permission denied: run as root (needs CAP_AUDIT_CONTROL)"
        ) from None
    try:
        return uapi.get_status(fd)
    except OSError as e:
        if e.errno == errno.ENOTTY:
            raise SystemExit(f"lxbsm-audit: {device} is not an lxbsm device") from None
        raise
    finally:
        os.close(fd)


def status_rows(st: uapi.ModuleStatus) -> list[tuple[str, str]]:
    used = st.producer_pos - st.consumer_pos
    rows = [
        ("module version", st.version),
        ("ABI", str(st.abi_version)),
        ("ring size", f"{st.data_size // 1024} KiB"),
        ("ring in use", f"{used} bytes ({100 * used / st.data_size:.1f}%)"),
        ("ring high water", f"{st.high_water} bytes ({100 * st.high_water / st.data_size:.1f}%)"),
        ("consumer attached", "yes" if st.consumer_open else "no"),
        ("records", str(st.records)),
        ("bytes", str(st.bytes)),
        ("submitted from user space", str(st.submitted)),
        ("process table entries", str(st.table_entries)),
    ]
    rows += [(f"lost: {why.replace('_', ' ')}", str(n)) for why, n in st.lost.items()]
    rows += [(f"kretprobe missed: hook {i}", str(n)) for i, n in enumerate(st.missed)]
    return rows


def cmd_status(args: argparse.Namespace) -> int:
    st = fetch_status(args.device)
    if args.json:
        print(json.dumps(dataclasses.asdict(st)))
        return 0
    rows = status_rows(st)
    if sys.stdout.isatty():
        table = Table(title="lxbsm", show_header=False)
        table.add_column("what", style="bold")
        table.add_column("value", justify="right")
        for name, value in rows:
            style = "red" if name.startswith(("lost", "kretprobe")) and value != "0" else None
            table.add_row(name, value, style=style)
        Console().print(table)
    else:
        width = max(len(name) for name, _ in rows)
        for name, value in rows:
            print(f"{name:<{width}}  {value}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="lxbsm-audit", description="Control and status of lxbsm.")
    p.add_argument("--device", default=uapi.DEVICE, help="lxbsm device (default /dev/lxbsm)")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("status", help="module version, ring geometry and counters")
    s.add_argument("--json", action="store_true", help="one JSON object")
    s.set_defaults(func=cmd_status)
    args = p.parse_args(argv)
    rc: int = args.func(args)
    return rc


if __name__ == "__main__":
    sys.exit(main())
