"""Realtime feeds: FIFOs that IDS readers open to follow records as they come.

Each feed has its own bounded queue and its own drop counter.  The daemon
writes without blocking; a reader that is slow or gone only fills its own
queue, after which its records are dropped (and counted), never delaying the
trail, the other feeds or the kernel.  A reader that goes away and a new one
that comes later always start on a record boundary.  ``json`` feeds carry
the records decoded, one JSON object per line (``lxbsm-praudit --json``).
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from collections import deque
from dataclasses import dataclass, field


@dataclass
class Feed:
    path: str
    json: bool = False
    limit: int = 1 << 20  # bytes queued before records are dropped
    fd: int = -1
    queue: deque[bytes] = field(default_factory=deque)
    head: int = 0  # bytes of queue[0] already written
    queued: int = 0
    sent: int = 0
    dropped: int = 0
    attaches: int = 0
    conn: bool = False  # one reader's connection to a Listener, not a FIFO

    def create(self, uid: int = -1, gid: int = -1) -> None:
        """Make the FIFO (0640, owned by the daemon's user so it can reopen it)."""
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            os.mkfifo(self.path, 0o640)
            st = os.lstat(self.path)
        if not stat.S_ISFIFO(st.st_mode):
            raise OSError(errno.EEXIST, f"{self.path} exists and is not a FIFO")
        os.chmod(self.path, 0o640)
        if uid >= 0:
            os.chown(self.path, uid, gid)

    @property
    def attached(self) -> bool:
        return self.fd >= 0

    def try_attach(self) -> bool:
        """Open the FIFO if a reader has it open; False if none has."""
        if self.fd >= 0 or self.conn:
            return self.fd >= 0
        try:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            if e.errno in (errno.ENXIO, errno.ENOENT):
                return False
            raise
        self.attaches += 1
        return True

    def detach(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
        self.fd = -1
        self.queue.clear()
        self.head = self.queued = 0

    def push(self, item: bytes) -> None:
        if self.fd < 0:
            return
        if self.queued + len(item) > self.limit:
            self.dropped += 1
            return
        self.queue.append(item)
        self.queued += len(item)

    def flush(self) -> None:
        """Write what the pipe takes now."""
        while self.queue and self.fd >= 0:
            item = self.queue[0]
            try:
                n = os.write(self.fd, memoryview(item)[self.head :])
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno in (errno.EPIPE, errno.ECONNRESET):
                    self.detach()
                    return
                raise
            self.head += n
            if self.head == len(item):
                self.queue.popleft()
                self.queued -= len(item)
                self.head = 0
                self.sent += 1

    def counters(self) -> dict[str, object]:
        return {
            "path": self.path,
            "json": self.json,
            "attached": self.attached,
            "sent": self.sent,
            "dropped": self.dropped,
            "queued": len(self.queue),
            "queued_bytes": self.queued,
            "attaches": self.attaches,
        }


@dataclass
class Listener:
    """``realtime:PATH,socket``: a Unix stream socket; each reader that
    connects gets its own Feed (own queue, own drop counter)."""

    path: str
    json: bool = False
    sock: socket.socket | None = None
    connections: int = 0

    def create(self, uid: int = -1, gid: int = -1) -> None:
        """Bind (0660, group gid): done as root, before the privileges go."""
        try:
            if stat.S_ISSOCK(os.lstat(self.path).st_mode):
                os.unlink(self.path)
        except FileNotFoundError:
            pass
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        s.bind(self.path)
        os.chmod(self.path, 0o660)
        if gid >= 0:
            os.chown(self.path, -1, gid)
        s.listen(16)
        s.setblocking(False)
        self.sock = s

    def fileno(self) -> int:
        return self.sock.fileno() if self.sock is not None else -1

    def accept(self) -> Feed | None:
        if self.sock is None:
            return None
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return None
        conn.setblocking(False)
        conn.shutdown(socket.SHUT_RD)
        self.connections += 1
        return Feed(
            f"{self.path}#{self.connections}", self.json, fd=conn.detach(), attaches=1, conn=True
        )
