"""The outputs of lxbsm-forward: syslog over TLS (RFC 5424/5425) and JSON lines.

Each output is a thread with its own cursor in the trails and its own
position file; one output that is stuck never holds up another, and none
holds up the daemon, which only ever writes the trails.

What "accepted" means (docs/forwarding.md):

* ``jsonl``: the lines were written and fdatasync-ed.
* ``syslog-tls``: RFC 5425 has no acknowledgement.  A batch counts as
  accepted once the collector's TCP stack has acknowledged its last byte
  (``TCP_INFO``'s ``bytes_acked``) and the connection then stayed up for
  ``confirm=`` seconds (2 by default: time for the collector to take it
  off its socket), or once the collector closed the connection in order
  after we closed ours (it read everything).  Any other end of a
  connection (reset, timeout, the collector going away) sends again
  everything after the last accepted record: a duplicate is possible,
  a loss is not.
"""

from __future__ import annotations

import errno
import json
import os
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lxbsm_tools.auditd.config import Output
from lxbsm_tools.bsm import BSMDecodeError, EventTable, Record, decode_records
from lxbsm_tools.bsm.text import JsonFormatter, PrauditFormatter

from .cursor import CHUNK, Cursor, Item, list_trails
from .state import Position, StateError, position_file

Log = Callable[[str], None]

# RFC 5424: facility 13 ("log audit"), severity 5 (notice).
PRI = 13 * 8 + 5
# The SD-ID's enterprise number is RFC 5612's example number: lxbsm has none of its own.
SD_ID = "lxbsm@32473"
APP_NAME = "lxbsm"
TCP_INFO_LEN = 232
TCP_INFO_BYTES_ACKED = 120  # offset of tcpi_bytes_acked (Linux 4.1 and later)
SIOCOUTQ = 0x5411
WINDOW = 8 << 20  # bytes sent and not yet acknowledged before sending pauses
SAVE_EVERY = 0.5  # seconds between position writes while records are accepted
CHECK_EVERY = 1.0  # spool bound and the oldest record's age


def _sd_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _printable(s: str, limit: int) -> str:
    s = "".join(c for c in s if 33 <= ord(c) <= 126)[:limit]
    return s or "-"


class Formatter:
    """A record as a JSON object (``lxbsm-praudit --json``) or praudit's one line."""

    def __init__(self, events: EventTable, host: str) -> None:
        self.events = events
        self.host = host
        self.json = JsonFormatter(events)
        self.text = PrauditFormatter(events, oneline=True)

    def decode(self, item: Item) -> Record | None:
        try:
            rec = next(iter(decode_records(item.raw, source=item.path or item.trail)), None)
        except BSMDecodeError:
            return None
        if rec is not None:
            rec.offset = item.offset  # where it is in its trail, as praudit --json says
        return rec

    def body(self, item: Item, rec: Record | None, fmt: str) -> str:
        if rec is None:
            return (
                f'{{"undecodable":true,"trail":"{item.trail}","offset":{item.offset},'
                f'"raw":"{item.raw.hex()}"}}'
            )
        if fmt == "text":
            return self.text.record(rec).rstrip("\n").rstrip(",")
        return self.json.record(rec)

    def jsonl(self, item: Item) -> bytes:
        rec = self.decode(item)
        body = self.body(item, rec, "json")
        head = f'{{"host":{json.dumps(self.host)},"trail":"{item.trail}","offset":{item.offset},'
        return (head + body[1:] + "\n").encode("utf-8", "surrogateescape")

    def syslog(self, item: Item, fmt: str) -> tuple[bytes, int | None]:
        """One octet-counted RFC 5424 message (RFC 5425/6587 framing) and its seq."""
        rec = self.decode(item)
        seq: int | None = None
        if rec is not None:
            tok = rec.first("seq")
            seq = int(tok.seq) if tok is not None else None
            t = rec.time
            stamp = datetime.fromtimestamp(t.sec + t.msec / 1000, UTC)
            entry = self.events.get(rec.event)
            event = entry.name if entry is not None else str(rec.event)
        else:
            stamp = datetime.now(UTC)
            event = "undecodable"
        ts = stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        params = [f'host="{_sd_escape(self.host)}"']
        if seq is not None:
            params.append(f'seq="{seq}"')
        params += [
            f'event="{_sd_escape(event)}"',
            f'trail="{item.trail}"',
            f'offset="{item.offset}"',
        ]
        sd = f"[{SD_ID} {' '.join(params)}]"
        msg = (
            f"<{PRI}>1 {ts} {_printable(self.host, 255)} {APP_NAME} - "
            f"{_printable(event, 32)} {sd} {self.body(item, rec, fmt)}"
        ).encode("utf-8", "surrogateescape")
        return str(len(msg)).encode() + b" " + msg, seq


class Runner(threading.Thread):
    """One output: its cursor, its position, its counters, its thread."""

    def __init__(
        self,
        out: Output,
        dirs: list[str],
        host: str,
        state_dir: Path,
        events: EventTable,
        log: Log,
    ) -> None:
        super().__init__(name=out.name, daemon=True)
        self.out = out
        self.dirs = dirs
        self.log = log
        self.pos_path = position_file(state_dir, out.name)
        pos = Position.load(self.pos_path, out.name, host)
        self.pos = pos if pos is not None else Position(out.name, host)
        self.fmt = Formatter(events, host)
        self.cursor = Cursor(dirs, self.pos.trail, self.pos.offset, self._loss)
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.connected = False
        self.last_error = ""
        self.spooled = 0
        self.oldest: float | None = None  # header time of the oldest record not accepted
        self.dirty = False
        self.saved_at = 0.0
        self.checked_at = 0.0
        self.pending = 0  # records handed to the collector and not yet accepted
        # (trail, offset) after records dropped while others were pending
        self.floor: tuple[str, int] = ("", 0)

    # -- shared bookkeeping ---------------------------------------------------

    def _loss(self, kind: str, detail: str, nbytes: int) -> None:
        with self.lock:
            if kind == "trail":
                self.pos.lost_trails += 1
            self.pos.lost_bytes += nbytes
            self.dirty = True
        self.log(f"output {self.out.name}: LOST {nbytes} bytes of records: {detail}")

    def error(self, msg: str) -> None:
        if msg != self.last_error:
            self.log(f"output {self.out.name}: {msg}")
        self.last_error = msg

    def accept(self, trail: str, offset: int, seq: int | None, records: int) -> None:
        with self.lock:
            # Never backwards: a spool drop may have moved the position past a batch
            # that was on its way.
            if (trail, offset) > (self.pos.trail, self.pos.offset):
                self.pos.trail, self.pos.offset = trail, offset
                if seq is not None:
                    self.pos.seq = seq
            self.pos.sent += records
            self.dirty = True

    def save(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self.dirty or (not force and now - self.saved_at < SAVE_EVERY):
            return
        with self.lock:
            self.dirty = False
            snapshot = Position(**vars(self.pos))
        try:
            snapshot.save(self.pos_path)
            self.saved_at = now
        except OSError as e:
            self.dirty = True
            self.error(f"cannot write the position file {self.pos_path}: {e.strerror}")

    def start_trail(self) -> bool:
        """A new output starts at the open trail; False while there is none."""
        if self.pos.trail:
            return True
        open_ = [t for t in list_trails(self.dirs) if not t.closed]
        if not open_:
            return False
        with self.lock:
            self.pos.trail, self.pos.offset = open_[-1].start, 0
            self.dirty = True
        self.cursor.seek(self.pos.trail, 0)
        self.save(force=True)
        return True

    def check(self, force: bool = False) -> None:
        """Once a second: the spool bound (dropping, counted, what is over it)
        and the age of the oldest record not accepted."""
        now = time.monotonic()
        if not force and now - self.checked_at < CHECK_EVERY:
            return
        self.checked_at = now
        if not self.pos.trail:
            return
        try:
            self._check()
        except OSError:
            pass  # read() says why the trails cannot be read

    def _check(self) -> None:
        # The bound is on what was never sent (from the send cursor on): records on
        # their way, not yet accepted, are not dropped for being late.
        if self.cursor.trail:
            unsent = Cursor(self.dirs, self.cursor.trail, self.cursor.offset, lambda *_: None)
            over = unsent.backlog() - self.out.spool
            if over > 0:
                self._drop(over)
        probe = Cursor(self.dirs, self.pos.trail, self.pos.offset, lambda *_: None)
        backlog = probe.backlog()
        first = probe.read(1)
        probe.close()
        rec = self.fmt.decode(first[0]) if first else None
        with self.lock:
            # Only file tokens (a trail's closing and opening ones) left: nothing to send.
            self.spooled = backlog if first else 0
            self.oldest = rec.time.as_float() if rec is not None else None

    def _drop(self, excess: int) -> None:
        """Skip the oldest records never sent, ``excess`` bytes of them, counted."""
        skipper = Cursor(self.dirs, self.cursor.trail, self.cursor.offset, self._loss)
        skipped = nbytes = 0
        last: Item | None = None
        while nbytes < excess:
            items = skipper.read(min(CHUNK, excess - nbytes))
            if not items:
                break
            skipped += len(items)
            nbytes += sum(len(i.raw) for i in items)
            last = items[-1]
        skipper.close()
        if last is None:
            return
        with self.lock:
            if self.pending == 0:
                self.pos.trail, self.pos.offset = last.trail, last.end
            else:  # where the position goes once what is on its way is accepted
                self.floor = (last.trail, last.end)
            self.pos.dropped += skipped
            self.dirty = True
        self.cursor.seek(last.trail, last.end)
        self.log(
            f"output {self.out.name}: DROPPED {skipped} records ({nbytes} bytes, up to trail "
            f"{last.trail} offset {last.end}): its backlog went over spool={self.out.spool} bytes"
        )
        self.save(force=True)

    def read(self) -> list[Item]:
        """The next records; [] (and the reason in status) when the trails cannot be read."""
        try:
            items = self.cursor.read(CHUNK)
        except OSError as e:
            self.error(
                f"cannot read the trails: {e.filename or ''}: {e.strerror or e} (they must be "
                f"readable by uid {os.getuid()}, which this runs as); retrying"
            )
            self.cursor.close()
            self.wait(1.0)
            return []
        if self.last_error.startswith("cannot read the trails"):
            self.last_error = ""
        return items

    def rewind(self) -> None:
        """Send again from the last accepted record (after a break), or from
        after the records dropped since, if that is later."""
        with self.lock:
            if self.floor > (self.pos.trail, self.pos.offset):
                self.pos.trail, self.pos.offset = self.floor
                self.dirty = True
            self.floor = ("", 0)
        self.cursor.seek(self.pos.trail, self.pos.offset)

    def status(self) -> dict[str, Any]:
        with self.lock:
            p = self.pos
            return {
                "name": self.out.name,
                "kind": self.out.kind,
                "target": self.out.target,
                "connected": self.connected,
                "sent": p.sent,
                "resent": p.resent,
                "pending": self.pending,
                "spooled_bytes": self.spooled,
                "spool_limit": self.out.spool,
                "oldest_unsent_age": (
                    None if self.oldest is None else round(max(0.0, time.time() - self.oldest), 3)
                ),
                "dropped": p.dropped,
                "lost_trails": p.lost_trails,
                "lost_bytes": p.lost_bytes,
                "position": {"trail": p.trail, "offset": p.offset, "seq": p.seq},
                "last_error": self.last_error,
                "damaged": self.cursor.damaged,
            }

    def idle(self, since: float) -> bool:
        """Everything in the trails is accepted (nothing spooled, nothing
        pending), as counted after ``since`` (time.monotonic())."""
        with self.lock:
            fresh = self.checked_at > since
            return fresh and self.spooled == 0 and self.pending == 0 and bool(self.pos.trail)

    def stop(self) -> None:
        self.stopping.set()

    def wait(self, seconds: float) -> None:
        self.stopping.wait(seconds)

    def run(self) -> None:
        try:
            self.loop()
        except Exception as e:  # a fault of ours: say so, keep the position, stop this output
            self.error(f"stopped by an internal error ({type(e).__name__}: {e}): please report it")
        finally:
            self.save(force=True)
            self.cursor.close()

    def loop(self) -> None:
        raise NotImplementedError


@dataclass
class Inflight:
    trail: str
    end: int
    seq: int | None
    records: int
    mark: int  # bytes_acked the peer must reach for the whole batch
    acked_at: float | None = None


class SyslogTLS(Runner):
    """``output: syslog-tls HOST:PORT ca=FILE ...``: RFC 5424 over TLS (RFC 5425)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.sock: ssl.SSLSocket | None = None
        self.inflight: list[Inflight] = []
        self.backoff = 1.0
        self.next_try = 0.0
        self.ctx: ssl.SSLContext | None = None

    def context(self) -> ssl.SSLContext:
        o = self.out
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the chain and the name
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_verify_locations(cafile=o.ca)
        except (OSError, ssl.SSLError) as e:
            raise ConfigProblem(
                f"cannot use ca={o.ca}: {getattr(e, 'strerror', None) or e} "
                "(a PEM file of CA certificates, readable by this user)"
            ) from None
        if o.cert:
            try:
                ctx.load_cert_chain(o.cert, o.key)
            except (OSError, ssl.SSLError) as e:
                raise ConfigProblem(
                    f"cannot use cert={o.cert} key={o.key}: "
                    f"{getattr(e, 'strerror', None) or e} (PEM certificate and its key)"
                ) from None
        return ctx

    def connect(self) -> None:
        o = self.out
        if self.ctx is None:
            self.ctx = self.context()
        raw = socket.create_connection((o.host, o.port), timeout=10)
        try:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            self.sock = self.ctx.wrap_socket(raw, server_hostname=o.host)
        except BaseException:
            raw.close()
            raise
        self.sock.settimeout(30)

    def acked(self) -> int:
        assert self.sock is not None
        info = self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_LEN)
        return int(struct.unpack_from("=Q", info, TCP_INFO_BYTES_ACKED)[0])

    def outq(self) -> int:
        import fcntl

        assert self.sock is not None
        buf = fcntl.ioctl(self.sock.fileno(), SIOCOUTQ, b"\0\0\0\0")
        return int(struct.unpack("=i", buf)[0])

    def written(self) -> int:
        """Bytes handed to TCP on this connection: acknowledged plus still queued.
        Both move when an acknowledgement comes in, so they are read until none
        came in between: their sum is then exact.  (Read once each, an ack
        between the reads made it too low, accepting bytes not yet acknowledged,
        or too high, waiting forever for bytes never sent.)  If acks keep coming,
        the later acked count is used, which can only be too high: such a batch
        is accepted with the next one."""
        for _ in range(1000):
            acked = self.acked()
            queued = self.outq()
            if self.acked() == acked:
                return acked + queued
        return self.acked() + self.outq()

    def peer_gone(self) -> str:
        """Why the connection is over ("" if it is not): the collector sends nothing."""
        assert self.sock is not None
        if not select.select([self.sock], [], [], 0)[0] and not self.sock.pending():
            return ""
        self.sock.settimeout(0)
        try:
            data = self.sock.recv(4096)
            return "the collector closed the connection" if not data else ""
        except (ssl.SSLWantReadError, BlockingIOError):
            return ""
        except (OSError, ssl.SSLError) as e:
            return f"connection lost ({e})"
        finally:
            self.sock.settimeout(30)

    def _disconnect(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None
        with self.lock:
            self.connected = False

    def broken(self, why: str) -> None:
        again = sum(b.records for b in self.inflight)
        self._disconnect()
        with self.lock:
            self.pos.resent += again
            self.pending = 0
            self.dirty = True
        self.inflight.clear()
        self.rewind()
        self.error(f"{why}; {again} records not confirmed will be sent again")
        self.next_try = time.monotonic() + self.backoff
        self.backoff = min(self.backoff * 2, 30.0)

    def confirm(self, now: float) -> None:
        if self.sock is None or not self.inflight:
            return
        acked = self.acked()
        for b in self.inflight:
            if b.acked_at is None and acked >= b.mark:
                b.acked_at = now
        while self.inflight:
            b = self.inflight[0]
            if b.acked_at is None or now - b.acked_at < self.out.confirm:
                break
            self.inflight.pop(0)
            self.accept(b.trail, b.end, b.seq, b.records)
            with self.lock:
                self.pending -= b.records
        if not self.inflight and self.floor[0]:
            with self.lock:
                if self.floor > (self.pos.trail, self.pos.offset):
                    self.pos.trail, self.pos.offset = self.floor
                    self.dirty = True
                self.floor = ("", 0)

    def send(self, items: list[Item]) -> None:
        assert self.sock is not None
        frames = []
        seq: int | None = None
        for it in items:
            frame, s = self.fmt.syslog(it, self.out.format)
            frames.append(frame)
            if s is not None:
                seq = s
        self.sock.sendall(b"".join(frames))
        mark = self.written()
        last = items[-1]
        self.inflight.append(Inflight(last.trail, last.end, seq, len(items), mark))
        with self.lock:
            self.pending += len(items)

    def loop(self) -> None:
        while not self.stopping.is_set():
            now = time.monotonic()
            if not self.start_trail():
                self.wait(0.2)
                continue
            self.check()
            self.save()
            if self.sock is None:
                if now < self.next_try:
                    self.wait(min(0.2, self.next_try - now))
                    continue
                try:
                    self.connect()
                except ConfigProblem as e:
                    self.error(str(e))
                    self.next_try = now + 30
                    continue
                except ssl.SSLCertVerificationError as e:
                    self.error(
                        f"REFUSED {self.out.host}:{self.out.port}: its certificate does not "
                        f"verify against ca={self.out.ca}: {e.verify_message or e} "
                        "(nothing was sent; fix the collector's certificate or ca=; "
                        "retrying every 30 s)"
                    )
                    self.next_try = now + 30
                    continue
                except (OSError, ssl.SSLError) as e:
                    self.error(f"cannot connect to {self.out.target}: {e}")
                    self.next_try = now + self.backoff
                    self.backoff = min(self.backoff * 2, 30.0)
                    continue
                with self.lock:
                    self.connected = True
                self.last_error = ""
                self.log(f"output {self.out.name}: connected")
            try:
                why = self.peer_gone()
                if why:
                    self.broken(why)
                    continue
                self.confirm(now)
                if self.inflight and self.acked() + WINDOW < self.inflight[-1].mark:
                    self.wait(0.05)
                    continue
                items = self.read()
                if items:
                    self.send(items)
                    self.backoff = 1.0
                else:
                    self.wait(0.1 if self.inflight else 0.2)
            except (OSError, ssl.SSLError) as e:
                self.broken(f"sending to {self.out.target} failed ({e})")
        self.close_cleanly()

    def close_cleanly(self) -> None:
        """Stopping: wait (a little) for the collector to take what was sent,
        close, and accept everything if it then closes in order too."""
        if self.sock is None:
            return
        deadline = time.monotonic() + 5
        try:
            while self.inflight and time.monotonic() < deadline:
                if self.acked() >= self.inflight[-1].mark:
                    break
                time.sleep(0.05)
            self.sock.settimeout(5)
            self.sock.unwrap()  # close_notify, and the collector's in return
            clean = True
        except (OSError, ssl.SSLError, ValueError):
            clean = False
        if clean or self._read_eof():
            for b in self.inflight:
                self.accept(b.trail, b.end, b.seq, b.records)
            with self.lock:
                self.pending = 0
            self.inflight.clear()
            self.rewind()  # to after records dropped meanwhile, if any
        self._disconnect()

    def _read_eof(self) -> bool:
        assert self.sock is not None
        try:
            raw = socket.socket(fileno=os.dup(self.sock.fileno()))
        except OSError:
            return False
        try:
            raw.shutdown(socket.SHUT_WR)
            raw.settimeout(5)
            while True:
                if not raw.recv(65536):
                    return True
        except OSError:
            return False
        finally:
            raw.close()


class ConfigProblem(Exception):
    pass


class JsonLines(Runner):
    """``output: jsonl PATH [rotate=SIZE] [keep=N]``: one JSON object a line,
    rotated by renaming (PATH -> PATH.1 ...) and creating PATH anew between
    two batches, so a shipper following by inode never sees a torn line."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.fd = -1
        self.size = 0
        self.path = Path(self.out.target)

    def open(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        size = os.fstat(fd).st_size
        if size:
            # A line torn by a crash (power loss, full disk) is cut: it is sent again.
            with open(self.path, "rb") as f:
                f.seek(max(0, size - (1 << 20)))
                chunk = f.read()
            if not chunk.endswith(b"\n"):
                cut = size - len(chunk) + chunk.rfind(b"\n") + 1
                os.ftruncate(fd, cut)
                self.log(f"output {self.out.name}: cut a torn last line at offset {cut}")
                size = cut
        self.fd, self.size = fd, size
        with self.lock:
            self.connected = True

    def rotate_file(self) -> None:
        os.fsync(self.fd)
        os.close(self.fd)
        self.fd = -1
        keep = self.out.keep
        for n in range(keep, 0, -1):
            src = self.path if n == 1 else self.path.with_name(f"{self.path.name}.{n - 1}")
            dst = self.path.with_name(f"{self.path.name}.{n}")
            try:
                os.rename(src, dst)
            except FileNotFoundError:
                pass
        dfd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        self.open()

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        done = 0
        try:
            while done < len(view):
                done += os.write(self.fd, view[done:])
        except OSError:
            if done:
                os.ftruncate(self.fd, self.size)  # never leave a torn line behind
            raise
        os.fdatasync(self.fd)
        self.size += len(data)

    def loop(self) -> None:
        while not self.stopping.is_set():
            if not self.start_trail():
                self.wait(0.2)
                continue
            self.check()
            self.save()
            try:
                if self.fd < 0:
                    self.open()
                    self.last_error = ""
                items = self.read()
                if not items:
                    self.wait(0.2)
                    continue
                if self.out.rotate and self.size >= self.out.rotate:
                    self.rotate_file()
                self.write(b"".join(self.fmt.jsonl(i) for i in items))
            except OSError as e:
                hint = " (free some space)" if e.errno in (errno.ENOSPC, errno.EDQUOT) else ""
                self.error(f"cannot write {self.path}: {e.strerror or e}{hint}; retrying")
                if self.fd >= 0:
                    os.close(self.fd)
                self.fd = -1
                with self.lock:
                    self.connected = False
                self.rewind()
                self.wait(1.0)
                continue
            seqs = [s for s in (self._seq(i) for i in items[-1:]) if s is not None]
            last = items[-1]
            self.accept(last.trail, last.end, seqs[-1] if seqs else None, len(items))
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        with self.lock:
            self.connected = False

    def _seq(self, item: Item) -> int | None:
        rec = self.fmt.decode(item)
        tok = rec.first("seq") if rec is not None else None
        return int(tok.seq) if tok is not None else None


def make_runner(
    out: Output, dirs: list[str], host: str, state_dir: Path, events: EventTable, log: Log
) -> Runner:
    """The runner for ``out``; StateError if its position file is damaged."""
    cls = SyslogTLS if out.kind == "syslog-tls" else JsonLines
    return cls(out, dirs, host, state_dir, events, log)


__all__ = ["ConfigProblem", "Formatter", "JsonLines", "Runner", "StateError", "SyslogTLS"]
