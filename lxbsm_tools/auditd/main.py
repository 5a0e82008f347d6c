"""lxbsm-auditd [--foreground] [--control FILE]: the lxbsm audit daemon.

As root it opens /dev/lxbsm (waiting for the module with --wait-device),
pushes the configuration to the module, prepares the trail directories and
realtime FIFOs, binds the control socket and recovers trails a killed daemon
left open; then it becomes the ``audit`` user with no capabilities, confines
itself with seccomp and copies records from the ring to the trail.
"""

from __future__ import annotations

import argparse
import errno
import gc
import os
import socket
import sys
from collections.abc import Callable, Sequence

from lxbsm_tools import control

from . import config as cfgmod
from . import privs, protect
from .daemon import PROG, Daemon, set_signals, stderr_log
from .device import NoDevice, find_device
from .source import BatchRing

DEFAULT_SOCKET = "/run/lxbsm-auditd.sock"


def _prepare_dirs(dirs: Sequence[str], gid: int) -> None:
    for d in dirs:
        os.makedirs(d, mode=0o750, exist_ok=True)
        if os.geteuid() == 0 and gid >= 0:
            os.chown(d, 0, gid)
            os.chmod(d, 0o770)


def _check_access(dirs: Sequence[str], user: str) -> None:
    for d in dirs:
        if not os.access(d, os.W_OK | os.X_OK):
            raise OSError(
                f"user {user} cannot write to {d}: every directory above it must be "
                f"searchable (x) by {user}"
            )


def _bind(path: str) -> socket.socket:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    old = os.umask(0o177)
    try:
        s.bind(path)
    finally:
        os.umask(old)
    s.listen(8)
    s.setblocking(False)
    return s


def warn_helper(command: str, log: Callable[[str], None]) -> tuple[int, int]:
    """A child, outside the seccomp filter, that runs the warn hook: (pid, write end)."""
    r, w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid:
        os.close(r)
        return pid, w
    os.close(w)
    import subprocess

    with os.fdopen(r, "rb") as f:
        for line in f:
            kind, _, arg = line.decode(errors="replace").rstrip("\n").partition("\t")
            if kind not in ("soft", "hard", "allsoft", "allhard", "link"):
                continue
            try:
                subprocess.run([command, kind, *([arg] if arg else [])], check=False, timeout=60)
            except (OSError, subprocess.SubprocessError) as e:
                log(f"warn hook {command}: {e}")
    os._exit(0)


def forward_helper(control: str, syslog: bool) -> tuple[int, int]:
    """lxbsm-forward, as this (audit) user, outside the seccomp filter that
    forbids sockets: (pid, write end of its pipe).  The daemon writes
    ``reload`` lines to it; the pipe's end tells it the daemon is gone."""
    r, w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid:
        os.close(r)
        os.set_blocking(w, False)
        return pid, w
    try:
        os.close(w)
        os.set_inheritable(r, True)
        cmd = [sys.executable, "-m", "lxbsm_tools.forward.main", "--control", control]
        cmd += ["--daemon-fd", str(r)] + (["--syslog"] if syslog else [])
        os.execv(sys.executable, cmd)
    finally:
        os._exit(127)


def _notify(sock: socket.socket | None, msg: bytes) -> None:
    addr = os.environ.get("NOTIFY_SOCKET")
    if sock is None or not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        sock.sendto(msg, addr)
    except OSError:
        pass


def _explain(e: OSError, who: str) -> str:
    """An OSError as the path, the reason, and what to do about it."""
    what = e.strerror or str(e)
    path = f"{e.filename}: " if e.filename else ""
    hint = ""
    if e.errno in (errno.EPERM, errno.EACCES):
        hint = (
            f" (check the owner and mode of the path and of every directory above it for {who}; "
            "network and 9p file systems may refuse chmod, chown or root: "
            "use a local file system for trails, FIFOs and the socket)"
        )
    elif e.errno == errno.EROFS:
        hint = " (the file system is read-only: choose another dir: in audit_control)"
    elif e.errno in (errno.ENOSPC, errno.EDQUOT):
        hint = " (free some space or choose another dir: in audit_control)"
    return f"{path}{what}{hint}"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=PROG, description="The lxbsm audit daemon.")
    p.add_argument("--foreground", "-f", action="store_true", help="do not detach")
    p.add_argument(
        "--control",
        metavar="FILE",
        help="audit_control (default /etc/security/audit_control, else the packaged one)",
    )
    p.add_argument("--device", default="/dev/lxbsm", help="the lxbsm device")
    p.add_argument("--socket", default=DEFAULT_SOCKET, help=f"control socket ({DEFAULT_SOCKET})")
    p.add_argument("--user", default="audit", help="user (and group) to run as (audit)")
    p.add_argument(
        "--wait-device",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long for the module to be loaded",
    )
    p.add_argument("--no-seccomp", action="store_true", help="do not confine with seccomp")
    p.add_argument(
        "--no-forward",
        action="store_true",
        help="do not start lxbsm-forward for output: lines (lxbsm-forward.service sends them)",
    )
    p.add_argument("--check", action="store_true", help="check the configuration and exit")
    p.add_argument("--selftest", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    log = stderr_log
    try:
        cfg = cfgmod.load(args.control)
    except cfgmod.ConfigError as e:
        log(f"configuration error: {e}")
        return 2
    for w in cfg.warnings:
        log(w)
    if args.check:
        print(f"{PROG}: configuration OK: {', '.join(cfg.files)}")
        return 0
    root = os.geteuid() == 0
    ready_r = ready_w = -1
    if not args.foreground:
        # Detach first: the process that opens the ring is the one the module
        # exempts from exec control, so it must be the one that keeps running.
        ready_r, ready_w = os.pipe()
        if os.fork():
            os.close(ready_w)
            ok = os.read(ready_r, 1)
            return 0 if ok == b"1" else 1
        os.close(ready_r)
        os.setsid()
    try:
        uid, gid = privs.audit_ids(args.user) if root else (-1, -1)
        device = find_device(args.device, args.wait_device)
        ring = BatchRing(device)
    except (privs.PrivError, NoDevice) as e:
        log(str(e))
        return 1
    except OSError as e:
        hint = " (run as root)" if e.errno in (1, 13) else ""
        log(f"cannot open {args.device}: {e.strerror}{hint}")
        return 1
    background_log = None
    null = -1
    if not args.foreground:
        # Detached, the log goes to syslog; set up before seccomp (it connects now).
        import syslog

        syslog.openlog(PROG, syslog.LOG_PID | syslog.LOG_NDELAY, syslog.LOG_DAEMON)

        def background_log(msg: str) -> None:
            syslog.syslog(syslog.LOG_NOTICE, msg)

        null = os.open(os.devnull, os.O_RDWR)
    step = f"pushing the configuration to the module ({device})"
    who = args.user if root else f"uid {os.geteuid()}"
    try:
        ring.push(cfg.kernel, cfg.exec_rules)
        step = "preparing the trail directories"
        _prepare_dirs(cfg.control.dirs, gid)
        step = f"binding the control socket {args.socket}"
        sock = _bind(args.socket)
        if root:
            os.chown(args.socket, 0, gid)
            os.chmod(args.socket, 0o660)
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        step = "setting up the daemon"
        d = Daemon(cfg, ring, control_file=args.control, sock=sock, log=log, selftest=args.selftest)
        d.forward_elsewhere = args.no_forward
        for f in d.feeds:
            step = f"creating the realtime FIFO {f.path}"
            f.create(uid, gid)
        for x in d.listeners:
            step = f"creating the realtime socket {x.path}"
            x.create(uid, gid)
        step = "recovering trails a stopped daemon left open"
        recovered = d.recover()
        if cfg.control.protect:
            journal = cfg.control.protect_journal
            step = f"preparing the journal directory {journal} (protect-journal:)"
            protect.prepare_journal(journal, uid, gid)
            step = "starting the baseline helper"
            pid, helper = protect.start_helper(
                journal,
                drop=(lambda: privs.drop_privileges(uid, gid, keep=(protect.CAP_DAC_READ_SEARCH,)))
                if root
                else None,
                seccomp=None
                if args.no_seccomp
                else (lambda: privs.install_seccomp(privs.ALLOWED + list(protect.HELPER_SYSCALLS))),
            )
            d.protect.attach_helper(pid, helper)
        wakeup = set_signals()
        if root:
            step = f"dropping privileges to user {args.user}"
            privs.drop_privileges(uid, gid)
            step = f"checking that user {args.user} can write the trail directories"
            _check_access(cfg.control.dirs, args.user)
        if cfg.control.warn:
            step = f"starting the warn hook {cfg.control.warn}"
            d.warn_pipe = warn_helper(cfg.control.warn, log)[1]
        if cfg.control.outputs and not args.no_forward:
            step = "starting lxbsm-forward"
            d.forward_pid, d.forward_pipe = forward_helper(
                cfg.control.source, syslog=not args.foreground
            )
        if not args.no_seccomp:
            step = "installing the seccomp filter"
            privs.install_seccomp()
        step = f"putting the protected trees in force and opening the first trail as {who}"
        d.start(recovered)
    except OSError as e:
        log(f"cannot start: {step}: {_explain(e, who)}")
        return 1
    except (privs.PrivError, cfgmod.ConfigError) as e:
        log(f"cannot start: {step}: {e}")
        return 1
    except control.ConfigError as e:
        log(f"the module refused the configuration: {e}")
        return 1
    log(
        f"running as uid {os.getuid()} gid {os.getgid()}, "
        f"seccomp {'off' if args.no_seccomp else 'on'}"
    )
    _notify(notify, b"READY=1")
    if ready_w >= 0:
        os.write(ready_w, b"1")
        os.close(ready_w)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        if background_log is not None:
            d.log = background_log
    # Everything loaded so far (the token tables, the event table, the
    # modules) lives as long as the daemon: out of the cyclic collector's
    # way, so that its full collections do not walk it again and again.
    gc.collect()
    gc.freeze()
    d.run(wakeup)
    _notify(notify, b"STOPPING=1")
    return 0


if __name__ == "__main__":
    sys.exit(main())
