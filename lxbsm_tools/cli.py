"""What the trail tools share on the command line: standard streams that may be
closed or full, and messages instead of tracebacks."""

from __future__ import annotations

import os
import signal
import sys
from typing import IO, TextIO


def err(prog: str, msg: str) -> None:
    """``prog: msg`` on standard error, if there is one."""
    stream = sys.stderr
    if stream is None:
        return
    try:
        stream.write(f"{prog}: {msg}\n")
        stream.flush()
    except (OSError, ValueError):
        pass


def stderr() -> TextIO:
    """Standard error, or /dev/null when it is closed (never standard output)."""
    if sys.stderr is not None:
        return sys.stderr
    return open(os.devnull, "w")  # lives as long as the process


def binary_stdin(prog: str) -> IO[bytes] | None:
    """Standard input as bytes, or None (after saying so) when it is closed."""
    stream = sys.stdin
    if stream is None:
        err(prog, "standard input is closed: give a file name, or pipe a trail in")
        return None
    return stream.buffer


def binary_stdout(prog: str) -> IO[bytes] | None:
    """Standard output as bytes, or None (after saying so) when it is closed."""
    stream = sys.stdout
    if stream is None:
        err(prog, "standard output is closed: nowhere to write (redirect it to a file or pipe)")
        return None
    return stream.buffer


def silence_stdout() -> None:
    """Point fd 1 at /dev/null, so that the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
    except OSError:
        pass


def write_failed(prog: str, e: OSError) -> int:
    """Standard output refused our data (a full disk, /dev/full, EIO): say so; status 1."""
    err(prog, f"cannot write to standard output: {e.strerror or e}")
    silence_stdout()
    return 1


def wakeup_pipe(*signals: signal.Signals) -> int:
    """@signals (and SIGPIPE ignored) go through a pipe a poll() or select()
    watches, as bytes of their numbers; the read end.  For the daemons."""
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    for s in signals:
        signal.signal(s, lambda *_: None)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    return r
