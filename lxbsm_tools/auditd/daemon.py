"""The audit daemon's loop: ring -> trail (+ realtime feeds), driven by poll().

One thread.  Each turn takes a batch of whole records from the ring, writes
it to the trail with one write(2), hands copies to the realtime feeds, and
only then gives the batch's ring space back (``commit``).  A journal entry
written before each batch lets a restarted daemon repair the one batch a
SIGKILL can interrupt (trail.py), so records are neither lost nor doubled.

Control requests arrive on a Unix socket (one JSON line in, one out):
``rotate`` (audit -n), ``reload`` (-s), ``terminate`` (-t), ``expire`` (-e),
``status``.  SIGTERM/SIGINT terminate, SIGHUP reloads, SIGUSR1 rotates.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lxbsm_tools import uapi
from lxbsm_tools.bsm import decode_records, encode_record, load_event_table, make_token
from lxbsm_tools.bsm.text import record_json
from lxbsm_tools.bsm.tokens import HEADER_IDS
from lxbsm_tools.cli import err, wakeup_pipe
from lxbsm_tools.forward.state import STATUS, state_dir

from . import config as cfgmod
from .feeds import Feed, Listener
from .protect import Protection
from .source import BatchRing
from .trail import DiskFull, Journal, TrailWriter, free_percent, now_ms, open_trails
from .trail import recovered_name as _recovered_name

PROG = "lxbsm-auditd"
AUE_AUDIT_STARTUP = 45000
AUE_AUDIT_SHUTDOWN = 45001
AUE_AUDIT_RECOVERY = 45029
BATCH_BYTES = 256 * 1024
RETRY_SECONDS = 0.2  # feeds without a reader, a full disk without cnt


def daemon_record(event: int, what: str, path: str | None = None) -> bytes:
    """What libauditd's auditd_gen_record() writes: text, [path], return32(0, 0)."""
    toks = [make_token("text", text=f"{PROG}::Audit {what}")]
    if path:
        toks.append(make_token("path", text=path))
    toks.append(make_token("return32", status=0, value=0))
    return encode_record(event, 0, toks, time=now_ms())


def split_records(data: bytes) -> list[bytes]:
    """Whole BSM records one after the other (as the kernel copies them), one by one.

    Every header token (header32, header32_ex, header64, header64_ex) has
    the record's byte count right after its id.
    """
    out = []
    off, end = 0, len(data)
    while off < end:
        n = int.from_bytes(data[off + 1 : off + 5], "big")
        if data[off] not in HEADER_IDS or n < 5 or off + n > end:
            raise ValueError(f"not a BSM record at offset {off} of a batch")
        out.append(data[off : off + n])
        off += n
    return out


class Daemon:
    def __init__(
        self,
        cfg: cfgmod.Config,
        ring: BatchRing,
        *,
        control_file: str | None,
        sock: socket.socket | None,
        log: Callable[[str], None],
        warn_pipe: int = -1,
        selftest: bool = False,
    ) -> None:
        self.cfg = cfg
        self.ring = ring
        self.control_file = control_file
        self.sock = sock
        self.log = log
        self.warn_pipe = warn_pipe
        self.forward_pipe = -1  # lxbsm-forward's pipe (main.forward_helper), if started
        self.forward_elsewhere = False  # --no-forward: lxbsm-forward.service sends them
        self.forward_pid = 0
        self.selftest = selftest
        ac = cfg.control
        self.trail = TrailWriter(
            ac.dirs,
            host=ac.host,
            filesz=ac.filesz,
            minfree=ac.minfree,
            flush=ac.flush,
            freq=ac.freq,
            warn=self.warn,
        )
        self.feeds = [Feed(f.path, f.json) for f in ac.feeds if not f.socket]
        self.listeners = [Listener(f.path, f.json) for f in ac.feeds if f.socket]
        self.events = load_event_table()
        self.stopping = False
        self.requests: list[str] = []
        self.started = time.time()
        self.counters = {
            "records": 0,
            "bytes": 0,
            "batches": 0,
            "disk_full_dropped": 0,
            "disk_full_events": 0,
            "rotations": 0,
            "expired": 0,
            "reloads": 0,
            "recovered": 0,
            "skipped_after_crash": 0,
        }
        self.last_error = ""
        self.blocked_until = 0.0
        self.shutdown_rec: bytes | None = None
        self.next_space_check = 0.0
        # Protected trees (docs/recovery.md): main.py attaches the baseline helper.
        self.protect = Protection(lambda msg: self.log(msg))

    # -- warnings (audit_warn) ---------------------------------------------------

    def warn(self, kind: str, arg: str) -> None:
        self.log(f"warning: {kind} {arg}".rstrip())
        if self.warn_pipe >= 0:
            try:
                os.write(self.warn_pipe, f"{kind}\t{arg}\n".encode())
            except OSError:
                pass

    # -- start -------------------------------------------------------------------

    def recover(self) -> list[str]:
        """Repair and rename trails a killed daemon left open (before auditing starts)."""
        done = []
        for path in open_trails(self.cfg.control.dirs):
            j = Journal.read(path.parent)
            if j is not None and j.trail == path.name:
                self._repair(path, j)
            new = _recovered_name(path)
            os.rename(path, new)
            self.log(f"recovered {path} as {new}")
            done.append(str(new))
        self.counters["recovered"] += len(done)
        return done

    def _repair(self, path: Path, j: Journal) -> None:
        size = path.stat().st_size
        if j.start < size < j.end:
            # Torn batch: cut it; its records are still in the ring.
            os.truncate(path, j.start)
            self.log(f"{path}: cut a torn batch at offset {j.start}")
            return
        if size != j.end or j.end == j.start or self.ring.consumer_pos != j.ring_start:
            return
        # The batch reached the trail but the ring was not told: skip it there,
        # after checking that the ring really still holds those same bytes.
        views, end = self.ring.batch(j.end - j.start)
        ring_bytes = b"".join(bytes(v) for v in views)
        with open(path, "rb") as f:
            f.seek(j.start)
            trail_bytes = f.read(j.end - j.start)
        if end == j.ring_end and ring_bytes == trail_bytes:
            self.ring.commit(end)
            self.counters["skipped_after_crash"] += len(views)
            self.log(f"{path}: {len(views)} records already written, not written again")

    def submit(self, record: bytes) -> None:
        """Through the kernel (audit(2)), so it takes its place in the stream."""
        try:
            self.ring.submit(record)
        except OSError as e:
            self.log(f"cannot submit a daemon record to the module ({e.strerror}): writing it")
            pos = self.ring.consumer_pos
            try:
                self.trail.write(record, 1, pos, pos)
            except DiskFull:
                pass

    def start(self, recovered: list[str]) -> None:
        # The trees first: a tree that cannot be protected stops the start
        # (ConfigError naming its line), as any other configuration error.
        self.protect.apply(self.cfg.control, self.ring)
        path = self.trail.open()
        self.log(f"trail {path}")
        for r in recovered:
            self.submit(daemon_record(AUE_AUDIT_RECOVERY, "recovery", r))
        self.submit(daemon_record(AUE_AUDIT_STARTUP, "startup"))
        self.expire()

    # -- the ring ----------------------------------------------------------------

    def drain(self, max_batches: int = 64) -> int:
        """Take what the ring holds to the trail and feeds; the ring bytes taken."""
        if time.monotonic() < self.blocked_until:
            return 0
        first = self.ring.consumer_pos
        for _ in range(max_batches):
            start = self.ring.consumer_pos
            data, n, end = self.ring.copy_batch(BATCH_BYTES)
            if end == start:
                break
            if data and not self._write(data, n, start, end):
                break
            if data:
                # Filed before the ring is told, like the trail: a crash
                # loses no entry (docs/recovery.md, "The daemon").
                trail = str(self.trail.path)
                self.protect.scan(data, trail, max(0, self.trail.size - len(data)))
                self.protect.flush()
            self.ring.commit(end)
            if data:
                self._feed(data)
            if self.trail.full():
                self.rotate("filesz")
        return self.ring.consumer_pos - first

    def _write(self, data: bytes, n: int, start: int, end: int) -> bool:
        """Write one batch; False to leave it in the ring for later."""
        try:
            self.trail.write(data, n, start, end)
        except DiskFull as e:
            self.counters["disk_full_events"] += 1
            cur = str(self.trail.path.parent) if self.trail.path else ""
            other = self.trail.pick_dir(avoid=cur)
            if other != cur:
                self.warn("hard", cur)
                self.rotate("disk full", other)
                try:
                    self.trail.write(data, n, start, end)
                    self._count(data, n)
                    return True
                except DiskFull:
                    pass
            self.warn("allhard", str(e))
            if self.cfg.kernel.policy & uapi.POLICY_CNT:
                self.counters["disk_full_dropped"] += n
                return True
            self.blocked_until = time.monotonic() + RETRY_SECONDS
            return False
        self._count(data, n)
        return True

    def _count(self, data: bytes, n: int) -> None:
        self.counters["records"] += n
        self.counters["bytes"] += len(data)
        self.counters["batches"] += 1
        if self.shutdown_rec is not None and self.shutdown_rec in data:
            self.shutdown_rec = b""

    def _feed(self, data: bytes) -> None:
        live = [f for f in self.feeds if f.attached]
        if not live:
            return
        try:
            recs = split_records(data)
        except ValueError as e:  # the kernel copies whole records: never expected
            self.log(f"realtime feeds: {e}; this batch is in the trail only")
            return
        lines: list[bytes] | None = None
        for f in live:
            if f.json:
                if lines is None:
                    lines = [
                        (record_json(r, self.events) + "\n").encode()
                        for r in decode_records(data, source="lxbsm", skip_bad=True)
                    ]
                items = lines
            else:
                items = recs
            for item in items:
                f.push(item)
            f.flush()

    # -- commands ----------------------------------------------------------------

    def rotate(self, why: str, directory: str | None = None) -> None:
        closed, new = self.trail.rotate(directory)
        self.counters["rotations"] += 1
        self.log(f"rotated ({why}): {closed} -> {new}")

    def expire(self) -> list[str]:
        removed = self.trail.expire(self.cfg.control.expire)
        self.counters["expired"] += len(removed)
        for r in removed:
            self.log(f"expired {r}")
        return removed

    def reload(self) -> dict[str, Any]:
        pushing = False
        try:
            new = cfgmod.load(self.control_file)
            for d in new.control.dirs:
                if not os.access(d, os.W_OK | os.X_OK):
                    raise cfgmod.ConfigError(
                        f"{new.control.source}: dir:{d} does not exist or is not writable "
                        "by the daemon (new directories need a restart to be set up)"
                    )
            pushing = True
            self.ring.push(new.kernel, new.exec_rules)
            self.protect.apply(new.control, self.ring)
        except (ValueError, OSError) as e:
            # ConfigError (file:line), a rule the module refused, an unreadable file.
            return self._reload_refused(str(e), pushing)
        except Exception as e:
            # A fault of ours must never stop auditing: keep going as before.
            return self._reload_refused(
                f"reload failed ({type(e).__name__}: {e}), a bug: please report it", pushing
            )
        for w in new.warnings:
            self.log(w)
        self.cfg = new
        ac = new.control
        t = self.trail
        t.dirs, t.host, t.filesz, t.minfree = list(ac.dirs), ac.host, ac.filesz, ac.minfree
        t.flush, t.freq = ac.flush, ac.freq
        known = {f.path for f in self.feeds}
        for f in ac.feeds:
            if f.path not in known and not f.socket:
                feed = Feed(f.path, f.json)
                try:
                    feed.create()
                    self.feeds.append(feed)
                except OSError as e:
                    self.log(f"realtime feed {f.path}: {e}")
        self.counters["reloads"] += 1
        self.last_error = ""
        self.rotate("reload")
        reply: dict[str, Any] = {"ok": True, "files": list(new.files)}
        if self.forward_pipe >= 0:
            try:
                os.write(self.forward_pipe, b"reload\n")
            except OSError as e:
                self.log(f"cannot tell lxbsm-forward to reload: {e.strerror}")
        elif ac.outputs and not self.forward_elsewhere:
            why = (
                "output: lines take effect when lxbsm-auditd is restarted (it started "
                "without outputs, so no lxbsm-forward runs), or run lxbsm-forward"
            )
            self.log(why)
            reply["warning"] = why
        return reply

    def _reload_refused(self, why: str, pushed: bool) -> dict[str, Any]:
        if pushed:
            # The module may hold half of the new configuration: give it the old one back.
            try:
                self.ring.push(self.cfg.kernel, self.cfg.exec_rules)
            except (ValueError, OSError) as e:
                self.log(f"cannot give the module the configuration in force back: {e}")
        self.last_error = why
        self.log(f"reload refused, keeping the configuration in force: {why}")
        return {"ok": False, "error": why}

    def status(self) -> dict[str, Any]:
        t = self.trail
        dirs = []
        for d in self.cfg.control.dirs:
            try:
                dirs.append({"dir": d, "free_percent": round(free_percent(d), 2)})
            except OSError as e:
                dirs.append({"dir": d, "error": e.strerror})
        return {
            "pid": os.getpid(),
            "uid": os.getuid(),
            "started": self.started,
            "control": self.cfg.control.source,
            "trail": str(t.path) if t.path else None,
            "trail_bytes": t.size,
            "dirs": dirs,
            "minfree": self.cfg.control.minfree,
            "feeds": [f.counters() for f in self.feeds],
            "listeners": [{"path": x.path, "connections": x.connections} for x in self.listeners],
            "last_error": self.last_error,
            "forward": self.forward_status(),
            "forward_elsewhere": self.forward_elsewhere,
            "protect": self.protect.status(self.ring),
            **self.counters,
        }

    def forward_status(self) -> str | None:
        """Where lxbsm-forward writes its status, when outputs are configured."""
        if not self.cfg.control.outputs and self.forward_pipe < 0:
            return None
        return str(state_dir(self.cfg.control.dirs[0]) / STATUS)

    def command(self, cmd: str) -> dict[str, Any]:
        if cmd == "status":
            return {"ok": True, "status": self.status()}
        if cmd == "rotate":
            self.drain()
            self.rotate("audit -n")
            return {"ok": True, "trail": str(self.trail.path), "expired": self.expire()}
        if cmd == "expire":
            return {"ok": True, "expired": self.expire()}
        if cmd == "reload":
            return self.reload()
        if cmd == "terminate":
            self.stopping = True
            return {"ok": True}
        if cmd == "selftest-forbidden-syscall" and self.selftest:
            os.setuid(0)  # not in the seccomp allow-list: the kernel kills us here
            return {"ok": False, "error": "setuid(0) returned: no seccomp filter"}
        return {"ok": False, "error": f"unknown command '{cmd}'"}

    def _client(self) -> None:
        assert self.sock is not None
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(2.0)
            try:
                cred = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
                _pid, uid, _gid = struct.unpack("3i", cred)
                data = b""
                while not data.endswith(b"\n") and len(data) < 4096:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                if uid not in (0, os.getuid()):
                    reply: dict[str, Any] = {"ok": False, "error": "permission denied"}
                else:
                    try:
                        req = json.loads(data or b"{}")
                        cmd = str(req.get("cmd", "")) if isinstance(req, dict) else ""
                    except ValueError:
                        cmd = ""
                    try:
                        reply = self.command(cmd)
                    except OSError as e:
                        self.log(f"{cmd}: {e}")
                        reply = {"ok": False, "error": f"{cmd}: {e}"}
                conn.sendall(json.dumps(reply).encode() + b"\n")
            except OSError:
                pass

    # -- loop --------------------------------------------------------------------

    def run(self, wakeup: int) -> None:
        # After a batch, the ring is left alone for batch-wait ms, so that
        # records written meanwhile come in the next batch: one wakeup and
        # one write(2) for many records, instead of one for each record when
        # they come one at a time.  The first record after a quiet spell
        # still wakes the daemon at once, and a batch of an eighth of the
        # ring or more is followed by the next one without waiting.
        rest_until = 0.0
        while not self.stopping:
            p = select.poll()
            resting = rest_until - time.monotonic()
            if resting <= 0:
                p.register(self.ring.fd, select.POLLIN)
            p.register(wakeup, select.POLLIN)
            if self.sock is not None:
                p.register(self.sock.fileno(), select.POLLIN)
            listeners = {x.fileno(): x for x in self.listeners if x.sock is not None}
            for fd in listeners:
                p.register(fd, select.POLLIN)
            helper = self.protect.fileno()
            if helper >= 0:
                p.register(helper, select.POLLIN)
            self.feeds = [f for f in self.feeds if f.attached or not f.conn]
            feeds_by_fd = {}
            detached = False
            for f in self.feeds:
                if not f.attached:
                    detached = True
                    continue
                p.register(f.fd, select.POLLOUT if f.queue else 0)
                feeds_by_fd[f.fd] = f
            timeout = 1.0
            if detached or self.blocked_until:
                timeout = RETRY_SECONDS
            if resting > 0:
                timeout = min(timeout, resting)
            for fd, ev in p.poll(max(1, round(timeout * 1000))):
                if fd == wakeup:
                    self._signals(wakeup)
                elif self.sock is not None and fd == self.sock.fileno():
                    self._client()
                elif fd == helper:
                    self.protect.readable()
                elif fd in listeners:
                    new = listeners[fd].accept()
                    if new is not None:
                        self.feeds.append(new)
                elif fd in feeds_by_fd:
                    f = feeds_by_fd[fd]
                    if ev & (select.POLLERR | select.POLLHUP):
                        f.detach()
                    else:
                        f.flush()
            for req in self.requests:
                self.command(req)
            self.requests.clear()
            now = time.monotonic()
            if now >= rest_until:
                took = self.drain()
                wait = self.cfg.control.batch_wait / 1000
                rest_until = now + wait if 0 < took < self.ring.size // 8 else 0.0
                now = time.monotonic()
            if self.blocked_until and now >= self.blocked_until:
                self.blocked_until = 0.0
            for f in self.feeds:
                if not f.attached:
                    f.try_attach()
            if now >= self.next_space_check:
                self.next_space_check = now + 1.0
                if self.trail.space_low():
                    self.rotate("minfree")
        self.shutdown()

    def _signals(self, wakeup: int) -> None:
        try:
            data = os.read(wakeup, 64)
        except BlockingIOError:
            return
        for signo in data:
            if signo in (signal.SIGTERM, signal.SIGINT):
                self.stopping = True
            elif signo == signal.SIGHUP:
                self.requests.append("reload")
            elif signo == signal.SIGUSR1:
                self.requests.append("rotate")

    def shutdown(self) -> None:
        rec = daemon_record(AUE_AUDIT_SHUTDOWN, "shutdown")
        self.shutdown_rec = rec
        self.submit(rec)
        deadline = time.monotonic() + 2.0
        while self.shutdown_rec and time.monotonic() < deadline:
            self.drain()
            if self.shutdown_rec and not self.ring.pending():
                self.ring.wait(0.05)
        for f in self.feeds:
            f.flush()
        closed = self.trail.shutdown()
        self.log(f"closed {closed}")


def set_signals() -> int:
    """Signals go through a pipe poll() watches; the read end."""
    return wakeup_pipe(signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)


def stderr_log(msg: str) -> None:
    err(PROG, msg)
