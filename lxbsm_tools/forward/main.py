"""lxbsm-forward: send the trails' records to the ``output:`` lines of audit_control.

Started by lxbsm-auditd (as the audit user, before the daemon confines
itself with seccomp, which forbids sockets) when audit_control has
``output:`` lines, or standalone (``lxbsm-forward --control FILE``; as root
it becomes the audit user first).  It only reads the trails, which stay the
record of truth; each output keeps its position in
``<first dir>/.lxbsm-forward/`` and the status of all of them is
``status.json`` there (``lxbsm-audit status`` shows it).

SIGHUP re-reads the ``output:`` lines (lxbsm-auditd passes its own reloads
on); SIGTERM stops.  Started by the daemon, it follows the daemon: when the
daemon goes away it sends what is left (for up to ``--drain`` seconds) and
stops.  docs/forwarding.md says what is guaranteed.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lxbsm_tools.auditd import config as cfgmod
from lxbsm_tools.auditd import privs
from lxbsm_tools.bsm import EventTable, load_event_table
from lxbsm_tools.cli import err, wakeup_pipe

from .outputs import Runner, make_runner
from .state import LOCK, STATUS, StateError, atomic_write, read_status, state_dir

PROG = "lxbsm-forward"
STATUS_EVERY = 1.0


class Forwarder:
    def __init__(self, cfg: cfgmod.Config, sdir: Path, log: Callable[[str], None]) -> None:
        self.cfg = cfg
        self.sdir = sdir
        self.log = log
        self.events: EventTable = load_event_table()
        self.runners: dict[str, Runner] = {}
        self.last_error = ""
        self.started = time.time()

    @property
    def host(self) -> str:
        return self.cfg.control.host or socket.gethostname()

    def apply(self, cfg: cfgmod.Config) -> list[str]:
        """Start, keep or replace the runners as ``cfg``'s outputs say; the errors."""
        errors = []
        wanted = {o.name: o for o in cfg.control.outputs}
        same_place = (cfg.control.dirs, cfg.control.host) == (
            self.cfg.control.dirs,
            self.cfg.control.host,
        )
        self.cfg = cfg
        for name, r in list(self.runners.items()):
            o = wanted.get(name)
            if o is not None and same_place and _same(o, r.out):
                continue
            r.stop()
            r.join(30)
            del self.runners[name]
            self.log(f"output {name}: stopped")
        for name, o in wanted.items():
            if name in self.runners:
                continue
            try:
                dirs = list(cfg.control.dirs)
                r = make_runner(o, dirs, self.host, self.sdir, self.events, self.log)
            except StateError as e:
                errors.append(f"output {name} ({o.line}): {e}")
                continue
            self.runners[name] = r
            # Fixed here, not when the thread first reads: a rotation in between
            # must not move a new output's start past the trail open now.
            r.start_trail()
            r.start()
            where = f"trail {r.pos.trail} offset {r.pos.offset}" if r.pos.trail else "open trail"
            self.log(f"output {name}: started at {where}")
        for problem in errors:
            self.log(problem)
        return errors

    def reload(self, control: str | None) -> None:
        try:
            cfg = cfgmod.load(control)
        except cfgmod.ConfigError as e:
            self.last_error = f"reload refused, outputs unchanged: {e}"
            self.log(self.last_error)
            return
        errors = self.apply(cfg)
        self.last_error = "; ".join(errors)

    def status(self, running: bool = True) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "uid": os.getuid(),
            "running": running,
            "started": self.started,
            "updated": time.time(),
            "control": self.cfg.control.source,
            "host": self.host,
            "outputs": [r.status() for r in self.runners.values()],
            "last_error": self.last_error,
        }

    def write_status(self, running: bool = True) -> None:
        try:
            atomic_write(self.sdir / STATUS, (json.dumps(self.status(running)) + "\n").encode())
        except OSError as e:
            self.log(f"cannot write {self.sdir / STATUS}: {e.strerror}")

    def stop(self) -> None:
        for r in self.runners.values():
            r.stop()
        for r in self.runners.values():
            r.join(30)


def _same(a: cfgmod.Output, b: cfgmod.Output) -> bool:
    return {**vars(a), "line": ""} == {**vars(b), "line": ""}


def _lock(sdir: Path, log: Callable[[str], None]) -> int:
    """One forwarder per state directory: a second waits for the first to stop."""
    fd = os.open(sdir / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        st = read_status(sdir / STATUS) or {}
        log(f"waiting for the lxbsm-forward already running (pid {st.get('pid', '?')}) to stop")
        fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=PROG, description="Forward audit records to collectors.")
    p.add_argument("--control", metavar="FILE", help="audit_control (as lxbsm-auditd)")
    p.add_argument("--user", default="audit", help="user to run as when started as root (audit)")
    p.add_argument("--state", metavar="DIR", help="state directory (<first dir>/.lxbsm-forward)")
    p.add_argument("--daemon-fd", type=int, default=-1, help=argparse.SUPPRESS)
    p.add_argument(
        "--drain",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="after the daemon stops, keep sending this long at most (30)",
    )
    p.add_argument("--syslog", action="store_true", help="log to syslog instead of stderr")
    p.add_argument("--check", action="store_true", help="check the configuration and exit")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    def log(msg: str) -> None:
        err(PROG, msg)

    if args.syslog:
        import syslog

        syslog.openlog(PROG, syslog.LOG_PID, syslog.LOG_DAEMON)

        def log(msg: str) -> None:
            syslog.syslog(syslog.LOG_NOTICE, msg)

    try:
        cfg = cfgmod.load(args.control)
    except cfgmod.ConfigError as e:
        log(f"configuration error: {e}")
        return 2
    if args.check:
        print(f"{PROG}: configuration OK, {len(cfg.control.outputs)} outputs")
        return 0
    if os.geteuid() == 0:
        try:
            uid, gid = privs.audit_ids(args.user)
            privs.drop_privileges(uid, gid)
        except (privs.PrivError, OSError) as e:
            log(f"cannot become {args.user}: {e}")
            return 1
    sdir = Path(args.state) if args.state else state_dir(cfg.control.dirs[0])
    try:
        sdir.mkdir(mode=0o750, exist_ok=True)
        lock = _lock(sdir, log)
    except OSError as e:
        log(
            f"cannot use the state directory {sdir}: {e.strerror} (it must be writable by "
            f"uid {os.geteuid()}: the trail directory is root:audit 0770)"
        )
        return 1
    wakeup = wakeup_pipe(signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    fwd = Forwarder(cfg, sdir, log)
    errors = fwd.apply(cfg)
    fwd.last_error = "; ".join(errors)
    if not cfg.control.outputs:
        log(f"no output: lines in {cfg.control.source}: waiting for a reload")
    daemon_fd = args.daemon_fd
    drain_until = drain_start = 0.0
    buf = b""
    next_status = 0.0
    try:
        while True:
            fds = [wakeup] + ([daemon_fd] if daemon_fd >= 0 else [])
            ready, _, _ = select.select(fds, [], [], 0.2)
            stop = False
            if wakeup in ready:
                for signo in os.read(wakeup, 64):
                    if signo == signal.SIGHUP:
                        fwd.reload(args.control)
                    elif signo in (signal.SIGTERM, signal.SIGINT):
                        stop = True
            if daemon_fd in ready:
                try:
                    chunk = os.read(daemon_fd, 4096)
                except OSError:
                    chunk = b""
                if not chunk:
                    os.close(daemon_fd)
                    daemon_fd = -1
                    drain_start = time.monotonic()
                    drain_until = drain_start + args.drain
                    log("lxbsm-auditd went away: sending what is left, then stopping")
                buf += chunk
                *lines, buf = buf.split(b"\n")
                if b"reload" in lines:
                    fwd.reload(args.control)
            now = time.monotonic()
            if now >= next_status:
                next_status = now + STATUS_EVERY
                fwd.write_status()
            if stop:
                break
            if drain_until:
                if now >= drain_until or all(r.idle(drain_start) for r in fwd.runners.values()):
                    break
    finally:
        fwd.stop()
        fwd.write_status(running=False)
        os.close(lock)
    return 0


if __name__ == "__main__":
    sys.exit(main())
