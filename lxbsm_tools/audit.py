"""lxbsm-audit: control and status of lxbsm and lxbsm-auditd.

lxbsm-audit -n                  close the current trail, open a new one, expire old ones
lxbsm-audit -s                  re-read audit_control (and friends), push it, new trail
lxbsm-audit -t                  terminate the daemon (the trail is closed and renamed)
lxbsm-audit -e                  expire trails now (expire-after), without rotating
lxbsm-audit status [--json]     module version, ring geometry and counters, and the
                                daemon's counters when it runs
lxbsm-audit status --hooks      per hook: state, misses, and (with cost accounting on)
                                runs, time per run, records, time building them and
                                writing them to the ring
lxbsm-audit cost on|off         switch the module's per-hook cost accounting
lxbsm-audit rules [--json]      the exec control rules in force, and how often each
                                matched

The -n/-s/-t/-e flags are audit(8)'s; they talk to the daemon over its
control socket (--socket, default /run/lxbsm-auditd.sock).
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import os
import signal
import socket
import sys
from collections.abc import Sequence
from typing import Any

from lxbsm_tools import uapi

DEFAULT_SOCKET = "/run/lxbsm-auditd.sock"
TRIGGERS = {"n": "rotate", "s": "reload", "t": "terminate", "e": "expire"}


class DaemonUnavailable(Exception):
    pass


def daemon_request(path: str, cmd: str, timeout: float = 30.0) -> dict[str, Any]:
    """Send one command to lxbsm-auditd and return its JSON reply."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    s.settimeout(timeout)
    try:
        try:
            s.connect(path)
        except (FileNotFoundError, ConnectionRefusedError):
            msg = f"lxbsm-auditd is not running (no listener on {path})"
            raise DaemonUnavailable(msg) from None
        except PermissionError:
            raise DaemonUnavailable(f"{path}: permission denied: run as root") from None
        s.sendall(json.dumps({"cmd": cmd}).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError as e:
        raise DaemonUnavailable(f"lxbsm-auditd on {path}: {e.strerror or e}") from None
    finally:
        s.close()
    try:
        reply = json.loads(data)
    except ValueError:
        raise DaemonUnavailable(f"lxbsm-auditd on {path}: no answer") from None
    if not isinstance(reply, dict):
        raise DaemonUnavailable(f"lxbsm-auditd on {path}: bad answer")
    return reply


def _open(device: str) -> int:
    try:
        return uapi.open_control(device)
    except FileNotFoundError:
        raise SystemExit(
            f"lxbsm-audit: {device} does not exist: the lxbsm module is not loaded "
            "(insmod lxbsm.ko, or modprobe lxbsm after make install)"
        ) from None
    except PermissionError:
        raise SystemExit(
            f"lxbsm-audit: {device}: permission denied: run as root (needs CAP_AUDIT_CONTROL)"
        ) from None


def fetch_status(device: str) -> tuple[uapi.ModuleStatus, list[uapi.Hook], uapi.ExecRules]:
    fd = _open(device)
    try:
        return uapi.get_status(fd), uapi.hooks(fd), uapi.get_exec_rules(fd)
    except OSError as e:
        if e.errno == errno.ENOTTY:
            raise SystemExit(f"lxbsm-audit: {device} is not an lxbsm device") from None
        raise
    finally:
        os.close(fd)


def fetch_protect(device: str) -> dict[str, Any]:
    """LXBSM_IOC_PROTECT_STATUS: the trees in force and the journal records
    the module made, as a dict (or {"error": ...})."""
    fd = _open(device)
    try:
        k = uapi.protect_status(fd)
    except OSError as e:
        return {"error": e.strerror or str(e)}
    finally:
        os.close(fd)
    return {"trees": k.nr_trees, "records": k.records, "bytes": k.bytes, "lost": k.lost}


def status_rows(
    st: uapi.ModuleStatus, hooks: list[uapi.Hook], xc: uapi.ExecRules
) -> list[tuple[str, str]]:
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
        ("process table allocation failures", str(st.table_alloc_failed)),
        ("records that waited for room", str(st.waited)),
        ("full ring without cnt", "processes wait" if st.can_wait else "records are lost"),
    ]
    rows += [(f"lost: {why.replace('_', ' ')}", str(n)) for why, n in st.lost.items()]
    armed = [h.name for h in hooks if h.state == "on"]
    idle = [h.name for h in hooks if h.state == "idle"]
    absent = [h.name for h in hooks if h.state in ("missing", "off")]
    rows.append(("hooks", f"{len(armed)} armed, {len(idle)} idle, {len(absent)} absent"))
    rows += [(f"hook {h.name}", f"{h.state}, {h.hits} records") for h in hooks if h.hits]
    rows += [(f"kretprobe missed: {h.name}", str(h.missed)) for h in hooks if h.missed]
    if not any(h.missed for h in hooks):
        rows.append(("kretprobe missed", "0"))
    rows.append(("exec control", f"{xc.mode}, {len(xc.rules)} rules"))
    rows.append(("exec control: refused or killed", str(xc.denied)))
    return rows


def daemon_rows(d: dict[str, Any] | None, why: str = "") -> list[tuple[str, str]]:
    if d is None:
        return [("daemon", f"not running ({why})" if why else "not running")]
    rows = [
        ("daemon", f"pid {d['pid']}, uid {d['uid']}"),
        ("configuration", str(d["control"])),
        ("current trail", str(d["trail"])),
        ("current trail size", f"{d['trail_bytes']} bytes"),
        ("records written", str(d["records"])),
        ("bytes written", str(d["bytes"])),
        ("rotations", str(d["rotations"])),
        ("trails expired", str(d["expired"])),
        ("trails recovered", str(d["recovered"])),
        ("lost: disk full", str(d["disk_full_dropped"])),
    ]
    for dd in d["dirs"]:
        val = f"{dd['free_percent']}%" if "free_percent" in dd else str(dd.get("error"))
        rows.append((f"free space: {dd['dir']}", f"{val} (minfree {d['minfree']}%)"))
    for f in d["feeds"]:
        state = "reader attached" if f["attached"] else "no reader"
        rows.append((f"feed {f['path']}", f"{state}, sent {f['sent']}"))
        rows.append((f"lost: feed {f['path']}", str(f["dropped"])))
    for x in d.get("listeners", []):
        rows.append((f"socket {x['path']}", f"{x['connections']} readers connected so far"))
    if d.get("last_error"):
        rows.append(("last reload error", str(d["last_error"])))
    rows += protect_rows(d.get("protect"))
    return rows


def protect_rows(p: dict[str, Any] | None) -> list[tuple[str, str]]:
    """Protected trees (docs/recovery.md): what is in force, the kernel's
    journal records, the journal directory and its last baseline."""
    if not p:
        return []
    trees = p.get("trees") or []
    rows = [("protected trees", ", ".join(trees) if trees else "none (protection off)")]
    k = p.get("kernel") or {}
    if "error" in k:
        rows.append(("protection: module", f"unavailable ({k['error']})"))
    else:
        rows += [
            ("protection: trees in the module", str(k.get("trees", 0))),
            ("protection: journal records", str(k.get("records", 0))),
            ("protection: journal data bytes", str(k.get("bytes", 0))),
            ("lost: changes not captured", str(k.get("lost", 0))),
        ]
    if p.get("journal"):
        limit = p.get("protect_max") or 0
        size = f"{p.get('journal_bytes', 0)} bytes"
        if limit:
            size += f" (protect-max {limit}{', full' if p.get('full') else ''})"
        rows += [
            ("journal", str(p["journal"])),
            ("journal size", size),
            ("journal entries filed", str(p.get("filed", 0))),
            ("lost: journal data over protect-max", str(p.get("over_max", 0))),
            ("lost: journal records malformed", str(p.get("malformed", 0))),
            ("lost: journal entries not written", str(p.get("errors", 0))),
        ]
        if p.get("last_error"):
            rows.append(("journal: last error", str(p["last_error"])))
    b = p.get("baseline") or {}
    state = str(b.get("state", "none"))
    if state == "done":
        state = f"{b.get('path')}: {b.get('files')} files, {b.get('nskipped', 0)} unreadable"
    elif state == "failed":
        state = f"failed: {b.get('error')}"
    rows.append(("baseline", state))
    return rows


def forward_status(daemon: dict[str, Any] | None) -> dict[str, Any] | None:
    """lxbsm-forward's status file, as the daemon names it (None without outputs)."""
    path = daemon.get("forward") if daemon else None
    if not path:
        return None
    from lxbsm_tools.forward.state import read_status

    st = read_status(path)
    if st is None:
        return {"running": False, "error": f"no status in {path}: lxbsm-forward never ran"}
    alive = True
    try:
        os.kill(int(st["pid"]), 0)
    except PermissionError:
        pass  # alive, someone else's
    except (OSError, ValueError, KeyError):
        alive = False
    if not alive or not st.get("running"):
        st["running"] = False
        st["error"] = f"lxbsm-forward (pid {st.get('pid')}) is not running; last status below"
    return st


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def forward_rows(st: dict[str, Any] | None) -> list[tuple[str, str]]:
    if st is None:
        return []
    rows = [
        (
            "forwarder",
            f"pid {st.get('pid')}, running"
            if st.get("running")
            else str(st.get("error", "not running")),
        )
    ]
    for o in st.get("outputs", []):
        name = o["name"]
        state = "connected" if o["connected"] else "NOT connected"
        if o["kind"] == "jsonl":
            state = "writing" if o["connected"] else "NOT writing"
        rows.append(
            (
                f"output {name}",
                f"{state}, sent {o['sent']}, resent {o['resent']}, "
                f"spooled {o['spooled_bytes']} bytes, oldest unsent {_age(o['oldest_unsent_age'])}",
            )
        )
        lost = o["dropped"]
        rows.append((f"lost: output {name}", str(lost)))
        if o.get("lost_trails"):
            rows.append(
                (f"lost: output {name}: trails", f"{o['lost_trails']} ({o['lost_bytes']} bytes)")
            )
        if o.get("last_error"):
            rows.append((f"output {name}: last error", str(o["last_error"])))
    if st.get("last_error"):
        rows.append(("forwarder: last error", str(st["last_error"])))
    return rows


def _per(ns: int, n: int) -> str:
    return f"{ns / n:.0f}" if n else "-"


HOOK_HEAD = (
    "hook",
    "state",
    "missed",
    "runs",
    "ns/run",
    "returns",
    "ns/return",
    "records",
    "build ns/rec",
    "ring ns/rec",
    "total ms",
)


def hook_rows(hooks: list[uapi.Hook], costs: list[uapi.HookCost]) -> list[tuple[str, ...]]:
    """One row per hook (and one for task work), in the module's table order."""
    state = {h.name: h for h in hooks}
    rows: list[tuple[str, ...]] = []
    for c in costs:
        h = state.get(c.name)
        if h is not None and h.state in ("missing", "off") and not c.entry_calls:
            continue
        rows.append(
            (
                c.name,
                h.state if h else "-",
                str(h.missed) if h else "-",
                str(c.entry_calls),
                _per(c.entry_ns, c.entry_calls),
                str(c.ret_calls),
                _per(c.ret_ns, c.ret_calls),
                str(c.records),
                _per(c.build_ns, c.records),
                _per(c.ring_ns, c.records),
                f"{(c.entry_ns + c.ret_ns + (0 if h else c.build_ns + c.ring_ns)) / 1e6:.3f}",
            )
        )
    return rows


def cmd_hooks(args: argparse.Namespace) -> int:
    fd = _open(args.device)
    try:
        hooks = uapi.hooks(fd)
        on, costs = uapi.hook_costs(fd)
    except OSError as e:
        if e.errno == errno.ENOTTY:
            raise SystemExit(
                f"lxbsm-audit: {args.device}: this module has no per-hook cost accounting "
                "(older than the tools): load the module of this release"
            ) from None
        raise
    finally:
        os.close(fd)
    if args.json:
        missed = {h.name: (h.state, h.missed, h.hits) for h in hooks}
        out = []
        for c in costs:
            row: dict[str, Any] = dataclasses.asdict(c)
            if c.name in missed:
                row["state"], row["missed"], row["hits"] = missed[c.name]
            out.append(row)
        print(json.dumps({"cost_accounting": on, "hooks": out}))
        return 0
    rows = hook_rows(hooks, costs)
    note = (
        "cost accounting on: counts since the module was loaded, while on"
        if on
        else "cost accounting off (lxbsm-audit cost on): runs and times are those counted "
        "while it was on"
    )
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(title="lxbsm hooks", caption=note)
        for i, head in enumerate(HOOK_HEAD):
            table.add_column(head, justify="left" if i < 2 else "right")
        for r in rows:
            table.add_row(*r, style="red" if r[2] not in ("0", "-") else None)
        Console().print(table)
    else:
        print(note)
        widths = [max(len(x) for x in col) for col in zip(HOOK_HEAD, *rows, strict=False)]
        for r in (HOOK_HEAD, *rows):
            print(
                "  ".join(
                    x.rjust(w) if i >= 2 else x.ljust(w)
                    for i, (x, w) in enumerate(zip(r, widths, strict=True))
                ).rstrip()
            )
    return 0


def cmd_cost(args: argparse.Namespace) -> int:
    try:
        uapi.set_cost_accounting(args.state == "on")
    except FileNotFoundError:
        print(
            f"lxbsm-audit: {uapi.COST_PARAM} does not exist: the lxbsm module is not loaded, "
            "or is older than the tools",
            file=sys.stderr,
        )
        return 1
    except PermissionError:
        print(f"lxbsm-audit: {uapi.COST_PARAM}: permission denied: run as root", file=sys.stderr)
        return 1
    print(f"cost accounting {args.state}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    if args.hooks:
        return cmd_hooks(args)
    st, hooks, xc = fetch_status(args.device)
    daemon: dict[str, Any] | None = None
    why = ""
    try:
        daemon = daemon_request(args.socket, "status", timeout=5.0).get("status")
    except DaemonUnavailable as e:
        why = str(e)
    if args.json:
        out = dataclasses.asdict(st)
        out["hooks"] = [dataclasses.asdict(h) for h in hooks]
        out["exec_control"] = dataclasses.asdict(xc)
        out["daemon"] = daemon
        out["forward"] = forward_status(daemon)
        out["protect"] = fetch_protect(args.device)
        print(json.dumps(out))
        return 0
    rows = status_rows(st, hooks, xc) + daemon_rows(daemon, why)
    if daemon is None or "protect" not in daemon:
        rows += protect_rows({"kernel": fetch_protect(args.device)})
    rows += forward_rows(forward_status(daemon))
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

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


def rule_rows(xc: uapi.ExecRules) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for r in xc.rules:
        who = "anyone" if r.who == "anyone" else f"{r.who}={r.id}"
        if r.sha256 is not None:
            where = f"sha256:{r.sha256.hex()}"
        else:
            where = r.path or f"inode {r.ino} on device {r.dev}"
        rows.append((str(r.line), r.action, where, who, str(r.hits)))
    return rows


def cmd_rules(args: argparse.Namespace) -> int:
    fd = _open(args.device)
    try:
        xc = uapi.get_exec_rules(fd)
    except OSError as e:
        if e.errno in (errno.ENOTTY, errno.EINVAL):
            raise SystemExit(f"lxbsm-audit: {args.device} is not an lxbsm device") from None
        raise
    finally:
        os.close(fd)
    if args.json:
        # A content rule's digest is written in hex, as in the rules file.
        print(json.dumps(dataclasses.asdict(xc), default=lambda b: b.hex()))
        return 0
    head = ("line", "action", "file", "who", "matched")
    rows = rule_rows(xc)
    title = f"exec control: {xc.mode}, {len(xc.rules)} rules, {xc.denied} refused or killed"
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title)
        for h in head:
            table.add_column(h, justify="right" if h in ("line", "matched") else "left")
        for row in rows:
            table.add_row(*row, style="red" if row[1] == "deny" and row[4] != "0" else None)
        Console().print(table)
    else:
        print(title)
        widths = [max(len(x) for x in col) for col in zip(head, *rows, strict=False)]
        for row in (head, *rows):
            print("  ".join(x.ljust(w) for x, w in zip(row, widths, strict=True)).rstrip())
    return 0


def _reload_forwarder(sock: str) -> None:
    """SIGHUP to lxbsm-forward (one the daemon started already got the reload
    through its pipe; one started on its own, e.g. lxbsm-forward.service, did not)."""
    try:
        daemon = daemon_request(sock, "status", timeout=5.0).get("status")
    except DaemonUnavailable:
        return
    st = forward_status(daemon)
    if st and st.get("running"):
        try:
            os.kill(int(st["pid"]), signal.SIGHUP)
        except (OSError, ValueError, KeyError) as e:
            print(f"lxbsm-audit: cannot tell lxbsm-forward to reload: {e}", file=sys.stderr)
    elif st is not None and daemon is not None and daemon.get("forward_elsewhere"):
        print(
            "lxbsm-audit: output: lines are configured but lxbsm-forward is not running: "
            "systemctl enable --now lxbsm-forward (docs/forwarding.md)",
            file=sys.stderr,
        )


def cmd_trigger(args: argparse.Namespace, cmd: str) -> int:
    try:
        reply = daemon_request(args.socket, cmd)
    except DaemonUnavailable as e:
        print(f"lxbsm-audit: {e}", file=sys.stderr)
        return 1
    if not reply.get("ok"):
        print(f"lxbsm-audit: {cmd}: {reply.get('error', 'refused')}", file=sys.stderr)
        return 1
    if reply.get("warning"):
        print(f"lxbsm-audit: {reply['warning']}", file=sys.stderr)
    if cmd == "reload":
        _reload_forwarder(args.socket)
    if reply.get("trail"):
        print(f"new trail: {reply['trail']}")
    for path in reply.get("expired", []):
        print(f"expired: {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="lxbsm-audit",
        description="Control and status of lxbsm and lxbsm-auditd.",
        usage="lxbsm-audit [-n | -s | -t | -e] | status [--json] [--hooks] | cost on|off | "
        "rules [--json]",
    )
    p.add_argument("--device", default=uapi.DEVICE, help="lxbsm device (default /dev/lxbsm)")
    p.add_argument(
        "--socket", default=DEFAULT_SOCKET, help=f"daemon control socket ({DEFAULT_SOCKET})"
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument("-n", action="store_true", help="rotate: close the trail, open a new one")
    g.add_argument("-s", action="store_true", help="re-read the configuration")
    g.add_argument("-t", action="store_true", help="terminate the daemon")
    g.add_argument("-e", action="store_true", help="expire trails now")
    sub = p.add_subparsers(dest="command")
    s = sub.add_parser("status", help="module and daemon counters")
    s.add_argument("--json", action="store_true", help="one JSON object")
    s.add_argument(
        "--hooks", action="store_true", help="per hook: state, misses, runs, time, records"
    )
    s.set_defaults(func=cmd_status)
    c = sub.add_parser("cost", help="switch per-hook cost accounting (status --hooks)")
    c.add_argument("state", choices=("on", "off"))
    c.set_defaults(func=cmd_cost)
    r = sub.add_parser("rules", help="exec control rules in force and their matches")
    r.add_argument("--json", action="store_true", help="one JSON object")
    r.set_defaults(func=cmd_rules)
    args = p.parse_args(argv)
    flags = [cmd for f, cmd in TRIGGERS.items() if getattr(args, f)]
    if flags and args.command:
        p.error("give either a flag (-n, -s, -t, -e) or a command, not both")
    if flags:
        return cmd_trigger(args, flags[0])
    if not args.command:
        p.error("a flag (-n, -s, -t, -e) or a command (status, cost, rules) is required")
    rc: int = args.func(args)
    return rc


if __name__ == "__main__":
    sys.exit(main())
