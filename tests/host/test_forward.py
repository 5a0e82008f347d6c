"""lxbsm-forward on the host: trails written by the daemon's own TrailWriter,
a TLS collector in Python (certificates made with the openssl CLI), a
JSON-lines tailer that follows rotation by inode.

Records carry a BSM seq token (policy:seq), so what a collector got is
compared with what the trails hold by sequence number.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lxbsm_tools import audit
from lxbsm_tools.auditd import config as cfgmod
from lxbsm_tools.auditd.trail import TrailWriter
from lxbsm_tools.bsm import encode_record, load_event_table, make_token, read_trail
from lxbsm_tools.bsm.text import record_json
from lxbsm_tools.forward import main as fmain
from lxbsm_tools.forward import outputs as foutputs
from lxbsm_tools.forward.cursor import Cursor
from lxbsm_tools.forward.state import STATUS, Position, position_file, read_status

MARK = 6153
HOST = "testhost"


def record(seq: int, pad: int = 0) -> bytes:
    toks = [
        make_token("text", text=f"mark {seq} " + "x" * pad),
        make_token("return32", status=0, value=0),
        make_token("seq", seq=seq),
    ]
    t = time.time()
    return encode_record(MARK, 0, toks, time=(int(t), int(t * 1000) % 1000))


# -- certificates ------------------------------------------------------------


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _ca(d: Path, name: str) -> tuple[Path, Path]:
    key, pem = d / f"{name}.key", d / f"{name}.pem"
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(pem),
        "-days", "2", "-subj", f"/CN={name}",
    )  # fmt: skip
    return pem, key


def _leaf(d: Path, name: str, ca: tuple[Path, Path], san: str) -> tuple[Path, Path]:
    key, csr, pem, ext = (d / f"{name}.{x}" for x in ("key", "csr", "pem", "ext"))
    ext.write_text(f"subjectAltName={san}\n")
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
        "-subj", f"/CN={name}",
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
        "-CAcreateserial", "-out", str(pem), "-days", "2", "-extfile", str(ext),
    )  # fmt: skip
    return pem, key


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = Path(tempfile.mkdtemp(prefix="forward-certs-", dir="/tmp"))
    d.chmod(0o755)
    ca = _ca(d, "ca")
    rogue = _ca(d, "rogue")
    good = _leaf(d, "server", ca, "IP:127.0.0.1,DNS:localhost")
    wrong_name = _leaf(d, "elsewhere", ca, "DNS:elsewhere.example")
    bad = _leaf(d, "impostor", rogue, "IP:127.0.0.1")
    for p in d.iterdir():
        p.chmod(0o644)
    return {
        "ca": ca[0],
        "server": good[0],
        "server_key": good[1],
        "elsewhere": wrong_name[0],
        "elsewhere_key": wrong_name[1],
        "impostor": bad[0],
        "impostor_key": bad[1],
    }


# -- a collector -------------------------------------------------------------

FRAME = re.compile(rb"(\d+) ")


class Collector:
    """An RFC 5425 receiver: TLS, octet-counted frames, every message kept.

    ``raw`` keeps every byte that arrived before the TLS handshake finished
    (a sender speaking in clear would show up there)."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(str(cert), str(key))
        self.messages: list[bytes] = []
        self.bad_frames: list[bytes] = []
        self.handshake_errors: list[str] = []
        self.lock = threading.Lock()
        self.port = 0
        self.listener: socket.socket | None = None
        self.conns: list[socket.socket] = []
        self.thread: threading.Thread | None = None

    def start(self) -> Collector:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        self.port = s.getsockname()[1]
        s.listen(8)
        self.listener = s
        self.thread = threading.Thread(target=self._accept, args=(s,), daemon=True)
        self.thread.start()
        return self

    def _accept(self, s: socket.socket) -> None:
        while True:
            try:
                c, _ = s.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c: socket.socket) -> None:
        try:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            t = self.ctx.wrap_socket(c, server_side=True)
        except (OSError, ssl.SSLError) as e:
            with self.lock:
                self.handshake_errors.append(str(e))
            c.close()
            return
        self.conns.append(t)
        buf = b""
        while True:
            try:
                chunk = t.recv(65536)
            except (OSError, ssl.SSLError):
                break
            if not chunk:
                break
            buf += chunk
            while True:
                m = FRAME.match(buf)
                if not m:
                    if buf and not re.match(rb"\d*$", buf[:8]):
                        self.bad_frames.append(buf[:80])
                        buf = b""
                    break
                n = int(m.group(1))
                if len(buf) < m.end() + n:
                    break
                msg = buf[m.end() : m.end() + n]
                buf = buf[m.end() + n :]
                with self.lock:
                    self.messages.append(msg)
        try:
            t.close()
        except OSError:
            pass

    def stop(self) -> None:
        """Gone at once: listener closed, connections reset."""
        if self.listener is not None:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
            self.listener.close()
            self.listener = None
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)  # reset (SO_LINGER 0): unread bytes are lost
                c.close()
            except OSError:
                pass
        self.conns.clear()

    def seqs(self) -> list[int]:
        with self.lock:
            msgs = list(self.messages)
        out = []
        for m in msgs:
            found = re.search(rb' seq="(\d+)"', m)
            if found:
                out.append(int(found.group(1)))
        return out


# -- trails and configuration -------------------------------------------------


class Trails:
    def __init__(self, d: Path) -> None:
        self.dir = d / "trails"
        self.dir.mkdir()
        self.dir.chmod(0o777)
        self.w = TrailWriter([str(self.dir)], host=HOST)
        self.w.open()
        self.seq = 0

    def write(self, n: int, pad: int = 100) -> None:
        for _ in range(n):
            self.seq += 1
            self.w.write(record(self.seq, pad), 1, 0, 0)
        self.readable()

    def readable(self) -> None:
        """The daemon's trails are audit:audit 0640; here root's, for nobody too."""
        for p in self.dir.iterdir():
            if p.is_file():
                p.chmod(0o644)

    def rotate(self) -> None:
        self.w.rotate()
        self.readable()

    def close(self) -> None:
        self.w.shutdown()


def control(d: Path, trails: Trails, *outputs: str) -> Path:
    p = d / "audit_control"
    lines = [f"dir:{trails.dir}", "flags:ex", "naflags:ex", f"host:{HOST}"]
    lines += [f"output:{o}" for o in outputs]
    p.write_text("\n".join(lines) + "\n")
    return p


def wait_for(what: str, cond: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def d() -> Iterator[Path]:
    """A directory the forwarder reaches after dropping to nobody (tmp_path is 0700)."""
    p = Path(tempfile.mkdtemp(prefix="forward-", dir="/tmp"))
    p.chmod(0o777)
    yield p
    if not os.environ.get("KEEP"):
        shutil.rmtree(p, ignore_errors=True)


class InProcess:
    """The forwarder's Forwarder object, in this process (its threads)."""

    def __init__(self, cf: Path) -> None:
        self.logs: list[str] = []
        cfg = cfgmod.load(cf)
        self.sdir = Path(cfg.control.dirs[0]) / ".lxbsm-forward"
        self.sdir.mkdir(exist_ok=True)
        self.fwd = fmain.Forwarder(cfg, self.sdir, self.logs.append)
        assert self.fwd.apply(cfg) == []

    def out(self, i: int = 0) -> dict[str, Any]:
        st: dict[str, Any] = self.fwd.status()["outputs"][i]
        return st

    def stop(self) -> None:
        self.fwd.stop()


# -- tests -------------------------------------------------------------------


def test_output_lines_are_checked_with_file_and_line(d: Path, certs: dict[str, Path]) -> None:
    t = Trails(d)
    ca = certs["ca"]
    good = control(
        d, t, f"syslog-tls 127.0.0.1:6514 ca={ca} format=text spool=10M confirm=1", f"jsonl {d}/x"
    )
    outs = cfgmod.load(good).control.outputs
    assert [(o.kind, o.host, o.port, o.format, o.spool, o.confirm) for o in outs[:1]] == [
        ("syslog-tls", "127.0.0.1", 6514, "text", 10 << 20, 1.0)
    ]
    assert outs[1].target == f"{d}/x" and outs[1].line == f"{good}:6"
    bad = {
        "syslog-tls 127.0.0.1:6514": "needs ca=FILE",
        f"syslog-tls 127.0.0.1 ca={ca}": "HOST:PORT",
        f"syslog-tls 127.0.0.1:70000 ca={ca}": "HOST:PORT",
        "syslog-tls h:1 ca=/nonexistent.pem": "ca=/nonexistent.pem: no such file",
        f"syslog-tls h:1 ca={d}": "is a directory",
        f"syslog-tls h:1 ca={ca} cert={ca}": "cert=FILE and key=FILE together",
        f"syslog-tls h:1 ca={ca} format=xml": "format is json or text",
        f"syslog-tls h:1 ca={ca} rotate=1M": "takes ca, cert, confirm, format, key, spool",
        "jsonl relative.jsonl": "absolute path",
        "jsonl /x rotate=1K": "minimum 4K",
        "jsonl /x spool=0": "spool=0",
        "jsonl /x keep=0": "keep (rotated files kept) 0 is out of range",
        "relp h:1": "expected 'output: syslog-tls",
    }
    for line, why in bad.items():
        cf = control(d, t, f"jsonl {d}/first", line)
        with pytest.raises(cfgmod.ConfigError) as e:
            cfgmod.load(cf)
        assert str(e.value).startswith(f"{cf}:6: "), (line, str(e.value))
        assert why in str(e.value), (line, str(e.value))
    cf = control(d, t, f"jsonl {d}/same", f"jsonl {d}/same")
    with pytest.raises(cfgmod.ConfigError, match=rf"{cf}:6: output jsonl:{d}/same given twice"):
        cfgmod.load(cf)
    # The same error from the command line: no traceback, status 2.
    p = subprocess.run(
        [sys.executable, "-m", "lxbsm_tools.forward.main", "--control", str(cf)],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert f"{cf}:6: output jsonl:{d}/same given twice" in p.stderr
    t.close()


def test_syslog_tls_framing_structured_data_and_position(d: Path, certs: dict[str, Path]) -> None:
    col = Collector(certs["server"], certs["server_key"]).start()
    t = Trails(d)
    t.write(50)
    cf = control(d, t, f"syslog-tls 127.0.0.1:{col.port} ca={certs['ca']} confirm=0.2")
    f = InProcess(cf)
    try:
        t.write(150, pad=3000)  # some batches of several records, a rotation in between
        t.rotate()
        t.write(100)
        wait_for("every record", lambda: len(col.messages) >= 300)
        wait_for("every record accepted", lambda: f.out()["sent"] == 300)
        f.fwd.runners[next(iter(f.fwd.runners))].check(force=True)
        st = f.out()
    finally:
        f.stop()
        col.stop()
        t.close()
    assert col.bad_frames == [] and col.handshake_errors == []
    assert sorted(col.seqs()) == list(range(1, 301)), "a record missing or doubled"
    events = load_event_table()
    trail_recs = {
        r.first("seq").seq: r
        for p in sorted(t.dir.iterdir())
        if p.name[0].isdigit()
        for r in read_trail(str(p))
    }
    for m in col.messages:
        head = re.match(
            rb'<109>1 (\S+) testhost lxbsm - (\S+) \[lxbsm@32473 host="testhost" seq="(\d+)" '
            rb'event="(\S+)" trail="(\d{14})" offset="(\d+)"\] ',
            m,
        )
        assert head, m[:200]
        rec = trail_recs[int(head.group(3))]
        assert head.group(2) == head.group(4)
        where = (rec.offset, Path(rec.source).name[:14])
        assert (int(head.group(6)), head.group(5).decode()) == where
        body = json.loads(m[head.end() :])
        expected = json.loads(record_json(rec, events))
        # The trail was named .not_terminated when it was read, and is closed now.
        assert Path(body.pop("source")).name[:14] == Path(expected.pop("source")).name[:14]
        assert body == expected
        assert re.fullmatch(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", head.group(1))
    # The 50 records written before the forwarder started came too: it began at the
    # start of the open trail.
    name = f"syslog-tls:127.0.0.1:{col.port}"
    pos = Position.load(position_file(f.sdir, name), name, HOST)
    assert pos is not None and (pos.seq, pos.sent, pos.dropped) == (300, 300, 0)
    saved = json.loads(position_file(f.sdir, name).read_text())
    assert (saved["seq"], saved["sent"], saved["dropped"]) == (300, 300, 0)
    assert st["spooled_bytes"] == 0 and st["oldest_unsent_age"] is None and st["connected"]


def test_bad_certificate_is_refused_and_nothing_is_sent(d: Path, certs: dict[str, Path]) -> None:
    t = Trails(d)
    t.write(20)
    cols = [
        Collector(certs["impostor"], certs["impostor_key"]).start(),  # another CA
        Collector(certs["elsewhere"], certs["elsewhere_key"]).start(),  # another name
    ]
    cf = control(d, t, *(f"syslog-tls 127.0.0.1:{c.port} ca={certs['ca']}" for c in cols))
    f = InProcess(cf)
    try:
        t.write(20)
        wait_for("both refusals", lambda: all("REFUSED" in o["last_error"] for o in
                                              f.fwd.status()["outputs"]))  # fmt: skip
        time.sleep(0.5)
        outs = f.fwd.status()["outputs"]
    finally:
        f.stop()
        for c in cols:
            c.stop()
        t.close()
    for o in outs:
        assert "does not verify against ca=" in o["last_error"], o
        assert "nothing was sent" in o["last_error"]
        assert (o["connected"], o["sent"], o["spooled_bytes"] > 0) == (False, 0, True)
    assert "IP address mismatch" in outs[1]["last_error"] or "mismatch" in outs[1]["last_error"]
    for c in cols:
        assert c.messages == [] and c.handshake_errors, "a record went out without TLS"


def _forwarder(cf: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "lxbsm_tools.forward.main", "--control", str(cf)]
            + (["--user", "nobody"] if os.geteuid() == 0 else []),
            stderr=err,
        )


def _status(t: Trails) -> dict[str, Any]:
    return read_status(t.dir / ".lxbsm-forward" / STATUS) or {"outputs": [{}]}


def test_outage_sigkill_and_resume_lose_nothing(d: Path, certs: dict[str, Path]) -> None:
    col = Collector(certs["server"], certs["server_key"]).start()
    t = Trails(d)
    cf = control(d, t, f"syslog-tls 127.0.0.1:{col.port} ca={certs['ca']} confirm=0.3")
    log = d / "forward.log"
    p = _forwarder(cf, log)
    try:
        wait_for("the forwarder's status", lambda: _status(t)["outputs"][0].get("connected"))
        t.write(500)
        wait_for("the first records", lambda: len(col.messages) >= 200)
        col.stop()  # the collector goes away mid-stream
        t.write(500)
        wait_for(
            "the outage in status",
            lambda: (
                not _status(t)["outputs"][0]["connected"]
                and _status(t)["outputs"][0]["spooled_bytes"] > 0
            ),
        )
        col.start()  # back on the same port
        t.rotate()
        t.write(500)
        wait_for("records after the outage", lambda: max(col.seqs(), default=0) > 1000)
        p.send_signal(signal.SIGKILL)  # mid-stream
        p.wait(10)
        # lxbsm-audit status tells a dead forwarder from a live one.
        dead = audit.forward_status({"forward": str(t.dir / ".lxbsm-forward" / STATUS)})
        assert dead is not None and not dead["running"] and "is not running" in dead["error"]
        t.write(500)
        p = _forwarder(cf, log)
        wait_for("every record", lambda: set(col.seqs()) >= set(range(1, 2001)), 60)
        wait_for("an empty spool", lambda: _status(t)["outputs"][0]["spooled_bytes"] == 0)
        wait_for("nothing pending", lambda: _status(t)["outputs"][0]["pending"] == 0)
        st = _status(t)["outputs"][0]
        p.send_signal(signal.SIGTERM)
        assert p.wait(30) == 0
    finally:
        if p.poll() is None:
            p.kill()
        col.stop()
        t.close()
    seqs = col.seqs()
    dups = len(seqs) - len(set(seqs))
    assert sorted(set(seqs)) == list(range(1, 2001)), log.read_text()
    assert st["dropped"] == 0 and st["resent"] >= 1, st
    assert "Traceback" not in log.read_text()
    print(f"2000 records, {dups} duplicates, {st['resent']} resent (counted)")


def test_spool_bound_drops_are_counted_and_logged(d: Path, certs: dict[str, Path]) -> None:
    col = Collector(certs["server"], certs["server_key"]).start()
    port = col.port
    col.stop()  # nothing listens: every record waits in the trails
    t = Trails(d)
    cf = control(d, t, f"syslog-tls 127.0.0.1:{port} ca={certs['ca']} spool=20K confirm=0.2")
    f = InProcess(cf)
    try:
        t.write(300, pad=200)  # about 100 KB
        runner = next(iter(f.fwd.runners.values()))
        wait_for("drops", lambda: f.out()["dropped"] > 0)
        runner.check(force=True)
        assert f.out()["spooled_bytes"] <= 20 << 10
        col.start()
        wait_for("the rest", lambda: f.out()["sent"] + f.out()["dropped"] >= 300)
        wait_for("an empty spool", lambda: f.out()["spooled_bytes"] == 0)
    finally:
        f.stop()
        col.stop()
        t.close()
    st = f.out()
    got = sorted(set(col.seqs()))
    # The oldest went, the newest came: no gap but the counted one, at the front.
    assert got == list(range(st["dropped"] + 1, 301)), (st, got[:5])
    assert any("DROPPED" in line and "spool=20480" in line for line in f.logs), f.logs
    rows = dict(audit.forward_rows({"pid": 1, "running": True, "outputs": [st]}))
    assert rows[f"lost: output syslog-tls:127.0.0.1:{port}"] == str(st["dropped"])
    assert "spooled 0 bytes" in rows[f"output syslog-tls:127.0.0.1:{port}"]


def test_a_trail_expired_before_it_was_sent_is_a_counted_loss(d: Path) -> None:
    t = Trails(d)
    t.write(10)
    losses: list[tuple[str, str, int]] = []
    first = next(p for p in t.dir.iterdir() if p.name.endswith("not_terminated." + HOST))
    start = first.name[:14]
    c = Cursor([str(t.dir)], start, 0, lambda *a: losses.append(a))
    assert len(c.read(300)) >= 1
    t.rotate()
    t.write(5)
    removed = next(p for p in t.dir.iterdir() if p.name.startswith(start))
    removed.unlink()
    items = c.read()
    assert [i.trail for i in items] != [] and all(i.trail > start for i in items)
    assert len(losses) == 1 and losses[0][0] == "trail" and losses[0][2] >= 7 * 140, losses
    t.close()


def test_jsonl_rotation_never_tears_a_line_for_an_inode_follower(d: Path) -> None:
    t = Trails(d)
    out = d / "out" / "audit.jsonl"
    out.parent.mkdir()
    out.parent.chmod(0o777)
    cf = control(d, t, f"jsonl {out} rotate=8K keep=100")
    f = InProcess(cf)
    lines: list[bytes] = []
    done = threading.Event()

    def follow() -> None:
        """What Fluent Bit's tail does: read to EOF, switch when PATH is a new inode."""
        while not out.exists():
            time.sleep(0.01)
        fh = open(out, "rb")
        buf = b""
        while True:
            chunk = fh.read()
            buf += chunk
            *whole, buf = buf.split(b"\n")
            lines.extend(whole)
            if chunk:
                continue
            try:
                if os.stat(out).st_ino != os.fstat(fh.fileno()).st_ino:
                    fh.close()
                    fh = open(out, "rb")
                    assert buf == b"", "a rotated file ended inside a line"
                    continue
            except FileNotFoundError:
                pass
            if done.is_set():
                break
            time.sleep(0.005)
        fh.close()

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    try:
        for i in range(20):  # 20 batches of 25 lines (about 15 KB): a rotation before each
            t.write(25, pad=50)
            wait_for("the batch", lambda i=i: f.out()["sent"] == 25 * (i + 1))  # type: ignore[misc]
            # the follower has the batch before the next rotation (it polls, as tail does,
            # and a file rotated twice between two of its polls would be skipped whole)
            wait_for("the follower", lambda i=i: len(lines) >= 25 * (i + 1))  # type: ignore[misc]
        wait_for("every line", lambda: f.out()["sent"] == 500)
    finally:
        time.sleep(0.3)
        done.set()
        reader.join(10)
        f.stop()
        t.close()
    objs = [json.loads(x) for x in lines]
    seqs = [next(tok["seq"] for tok in o["tokens"] if tok["token"] == "seq") for o in objs]
    assert seqs == list(range(1, 501))
    assert {o["host"] for o in objs} == {HOST}
    rotated = sorted(out.parent.glob("audit.jsonl.*"))
    assert len(rotated) >= 15
    for p in [*rotated, out]:
        assert p.read_bytes().endswith(b"\n")
        assert p.stat().st_size < 8192 + 256 * 1024


def test_jsonl_cuts_a_torn_last_line_and_resends_it(d: Path) -> None:
    t = Trails(d)
    out = d / "audit.jsonl"
    cf = control(d, t, f"jsonl {out}")
    f = InProcess(cf)
    try:
        t.write(10)
        wait_for("10 lines", lambda: f.out()["sent"] == 10)
    finally:
        f.stop()
    # A crash (power loss) left half a line, and the position one record back.
    pos_file = next(f.sdir.glob("jsonl*.pos"))
    saved = json.loads(pos_file.read_text())
    text = out.read_bytes().splitlines(keepends=True)
    out.write_bytes(b"".join(text[:9]) + text[9][:20])
    last_start = json.loads(text[9])["offset"]
    saved.update(offset=last_start, sent=9)
    pos_file.write_text(json.dumps(saved))
    f = InProcess(cf)
    try:
        wait_for("the resent line", lambda: f.out()["sent"] == 10)
    finally:
        f.stop()
        t.close()
    objs = [json.loads(x) for x in out.read_bytes().splitlines()]
    assert [o["offset"] for o in objs] == [json.loads(x)["offset"] for x in text]
    assert any("cut a torn last line" in x for x in f.logs)


def test_a_new_output_starts_at_the_trail_open_when_it_was_added(
    d: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The start is fixed when the output is added, not when its thread first
    reads: a rotation before the thread runs loses nothing (seen in CI)."""
    t = Trails(d)
    t.write(5)
    out = d / "o.jsonl"
    cf = control(d, t, f"jsonl {out}")
    held: list[threading.Thread] = []
    monkeypatch.setattr(foutputs.Runner, "start", lambda self: held.append(self))
    f = InProcess(cf)
    monkeypatch.undo()
    try:
        t.write(5)
        t.rotate()
        t.write(5)
        for r in held:
            r.start()
        wait_for("15 lines", lambda: f.out()["sent"] == 15)
    finally:
        f.stop()
        t.close()
    # From the start of the trail open when the output was added, past the rotation.
    objs = [json.loads(x) for x in out.read_bytes().splitlines()]
    seqs = [next(tok["seq"] for tok in o["tokens"] if tok["token"] == "seq") for o in objs]
    assert seqs == list(range(1, 16))


def test_damaged_position_file_is_an_error_not_a_fresh_start(d: Path) -> None:
    t = Trails(d)
    cf = control(d, t, f"jsonl {d}/o.jsonl")
    sdir = t.dir / ".lxbsm-forward"
    sdir.mkdir()
    position_file(sdir, f"jsonl:{d}/o.jsonl").write_text("{not json")
    cfg = cfgmod.load(cf)
    fwd = fmain.Forwarder(cfg, sdir, lambda m: None)
    errors = fwd.apply(cfg)
    assert len(errors) == 1 and "damaged position file" in errors[0] and "remove it" in errors[0]
    assert f"{cf}:5" in errors[0] and fwd.runners == {}
    t.close()


def test_state_outside_reach_is_a_clear_error(d: Path) -> None:
    t = Trails(d)
    cf = control(d, t, f"jsonl {d}/o.jsonl")
    blocker = d / "file"
    blocker.write_text("")
    p = subprocess.run(
        [sys.executable, "-m", "lxbsm_tools.forward.main", "--control", str(cf)]
        + ["--state", str(blocker / "x")]
        + (["--user", "nobody"] if os.geteuid() == 0 else []),
        capture_output=True,
        text=True,
    )
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert f"cannot use the state directory {blocker / 'x'}" in p.stderr
    t.close()
    shutil.rmtree(t.dir)


def test_the_daemon_passes_reloads_on_and_names_the_status_file(d: Path) -> None:
    from test_auditd import FakeRing

    from lxbsm_tools.auditd import daemon

    tdir = d / "trails"
    tdir.mkdir()
    cf = d / "audit_control"
    cf.write_text(f"dir:{tdir}\nflags:ex\nnaflags:ex\nhost:{HOST}\noutput:jsonl {d}/a.jsonl\n")
    logs: list[str] = []
    ring = FakeRing()
    dm = daemon.Daemon(cfgmod.load(cf), ring, control_file=str(cf), sock=None, log=logs.append)  # type: ignore[arg-type]
    dm.trail.open()
    assert dm.status()["forward"] == str(tdir / ".lxbsm-forward" / STATUS)
    # Started without a forwarder (none was forked): a reload says what to do.
    reply = dm.command("reload")
    assert reply["ok"] and "restarted" in reply["warning"] and "lxbsm-forward" in reply["warning"]
    # Under systemd (--no-forward) lxbsm-forward.service sends them: no such advice.
    dm.forward_elsewhere = True
    reply = dm.command("reload")
    assert reply["ok"] and "warning" not in reply, reply
    assert dm.status()["forward_elsewhere"] is True
    dm.forward_elsewhere = False
    r, w = os.pipe()
    dm.forward_pipe = w
    cf.write_text(cf.read_text() + f"output:jsonl {d}/b.jsonl\n")
    assert dm.command("reload")["ok"]
    assert os.read(r, 100) == b"reload\n"
    # A bad output: line: refused with file:line, nothing passed on.
    cf.write_text(cf.read_text() + "output:jsonl relative\n")
    reply = dm.command("reload")
    assert not reply["ok"] and reply["error"].startswith(f"{cf}:7: jsonl takes the absolute")
    os.set_blocking(r, False)
    with pytest.raises(BlockingIOError):
        os.read(r, 100)
    dm.trail.shutdown()
    os.close(r)
    os.close(w)


def test_text_format_is_praudits_one_line(d: Path, certs: dict[str, Path]) -> None:
    from lxbsm_tools.bsm.text import PrauditFormatter

    col = Collector(certs["server"], certs["server_key"]).start()
    t = Trails(d)
    cf = control(d, t, f"syslog-tls localhost:{col.port} ca={certs['ca']} format=text")
    f = InProcess(cf)
    try:
        t.write(20)
        wait_for("20 messages", lambda: len(col.messages) == 20)
    finally:
        f.stop()
        col.stop()
        t.close()
    fmt = PrauditFormatter(load_event_table(), oneline=True)
    recs = [r for p in sorted(t.dir.iterdir()) if p.name[0].isdigit() for r in read_trail(str(p))]
    texts = [m.split(b"] ", 1)[1].decode() for m in col.messages]
    assert texts == [fmt.record(r).rstrip("\n").rstrip(",") for r in recs]
    assert all("\n" not in x and x.startswith("header,") for x in texts)


def test_sighup_reloads_outputs_and_a_bad_reload_keeps_them(d: Path) -> None:
    t = Trails(d)
    a, b = d / "a.jsonl", d / "b.jsonl"
    cf = control(d, t, f"jsonl {a}")
    log = d / "forward.log"
    p = _forwarder(cf, log)
    try:
        wait_for("output a", lambda: _status(t)["outputs"][0].get("connected"))
        pid = _status(t)["pid"]
        t.write(10)
        wait_for("10 lines in a", lambda: _status(t)["outputs"][0].get("sent") == 10)
        control(d, t, f"jsonl {a}", f"jsonl {b} rotate=1M")
        p.send_signal(signal.SIGHUP)
        wait_for("two outputs", lambda: len(_status(t)["outputs"]) == 2)
        t.write(5)
        names = [f"jsonl:{a}", f"jsonl:{b}"]
        wait_for(
            "both written",
            lambda: (
                {o["name"]: o["sent"] for o in _status(t)["outputs"]} == dict.fromkeys(names, 15)
            ),
        )
        # a kept its runner and its count; b started at the open trail's start.
        assert len(b.read_text().splitlines()) == 15 and len(a.read_text().splitlines()) == 15
        bad = control(d, t, f"jsonl {a}", "jsonl relative")
        p.send_signal(signal.SIGHUP)
        wait_for("the refusal", lambda: "reload refused" in _status(t)["last_error"])
        st = _status(t)
        assert f"{bad}:6: jsonl takes the absolute path" in st["last_error"]
        assert [o["name"] for o in st["outputs"]] == names and st["pid"] == pid
        control(d, t, f"jsonl {b} rotate=1M")
        p.send_signal(signal.SIGHUP)
        wait_for("a gone", lambda: [o["name"] for o in _status(t)["outputs"]] == names[1:])
        p.send_signal(signal.SIGTERM)
        assert p.wait(30) == 0
    finally:
        if p.poll() is None:
            p.kill()
        t.close()
    assert _status(t)["running"] is False
    assert "Traceback" not in log.read_text()


def test_records_on_their_way_are_not_dropped_for_being_late(
    d: Path, certs: dict[str, Path]
) -> None:
    col = Collector(certs["server"], certs["server_key"]).start()
    t = Trails(d)
    # Sent at once, accepted only 3 s later: the backlog counted from the position
    # goes far over spool=, what was never sent does not.
    cf = control(d, t, f"syslog-tls 127.0.0.1:{col.port} ca={certs['ca']} spool=8K confirm=3")
    f = InProcess(cf)
    try:
        wait_for("connected", lambda: f.out()["connected"])
        t.write(100, pad=200)  # about 35 KB
        wait_for("every record there", lambda: len(col.messages) == 100)
        wait_for("a check while they are pending", lambda: f.out()["spooled_bytes"] > 8192)
        assert f.out()["pending"] == 100 and f.out()["sent"] == 0
        wait_for("accepted", lambda: f.out()["sent"] == 100)
        st = f.out()
    finally:
        f.stop()
        col.stop()
        t.close()
    assert st["dropped"] == 0 and sorted(col.seqs()) == list(range(1, 101))


def test_daemon_pipe_reload_and_the_end_of_the_daemon(d: Path) -> None:
    """As lxbsm-auditd runs it: reload lines on a pipe; the pipe's end: send
    what is left, then stop."""
    t = Trails(d)
    a, b = d / "a.jsonl", d / "b.jsonl"
    cf = control(d, t, f"jsonl {a}")
    r, w = os.pipe()
    log = d / "forward.log"
    cmd = [sys.executable, "-m", "lxbsm_tools.forward.main", "--control", str(cf)]
    cmd += ["--daemon-fd", str(r), "--drain", "20"]
    cmd += ["--user", "nobody"] if os.geteuid() == 0 else []
    with open(log, "wb") as err:
        p = subprocess.Popen(cmd, stderr=err, pass_fds=(r,))
    os.close(r)
    try:
        wait_for("output a", lambda: _status(t)["outputs"][0].get("connected"))
        control(d, t, f"jsonl {a}", f"jsonl {b}")
        os.write(w, b"reload\n")
        wait_for("two outputs", lambda: len(_status(t)["outputs"]) == 2)
        t.write(30)
        t.close()  # the daemon's last records and its closing file token
        os.close(w)  # the daemon is gone
        assert p.wait(30) == 0
    finally:
        if p.poll() is None:
            p.kill()
    st = _status(t)
    assert st["running"] is False and [o["sent"] for o in st["outputs"]] == [30, 30]
    assert len(a.read_text().splitlines()) == len(b.read_text().splitlines()) == 30
    assert "lxbsm-auditd went away" in log.read_text()


def test_a_host_name_with_quotes_and_brackets_stays_json_and_sd() -> None:
    """host: is the administrator's text: JSON-escaped in a JSON line, SD-escaped in syslog."""
    from lxbsm_tools.forward.cursor import Item
    from lxbsm_tools.forward.outputs import Formatter

    host = 'web"1]\\x'
    raw = record(7)
    item = Item(raw, "20261204190000", 0, len(raw))
    f = Formatter(load_event_table(), host)
    line = json.loads(f.jsonl(item))
    assert (line["host"], line["trail"], line["offset"]) == (host, "20261204190000", 0)
    msg, seq = f.syslog(item, "json")
    assert seq == 7
    assert b'host="web\\"1\\]\\\\x"' in msg


def test_a_hostile_path_stays_one_valid_json_line_and_one_frame() -> None:
    """A user picks the path: newline, non-UTF-8 bytes, quotes, brackets, 4000 bytes.
    The JSON line is one line of valid UTF-8 JSON holding the bytes exactly; the
    syslog message is one octet-counted frame whose structured data is intact."""
    import base64

    from lxbsm_tools.bsm import encode_record
    from lxbsm_tools.forward.cursor import Item
    from lxbsm_tools.forward.outputs import Formatter

    path = b'/tmp/\xff\xfe\n]"x\\' + b"A" * 4000
    toks = [
        make_token("path", text=path.decode("utf-8", "surrogateescape")),
        make_token("return32", status=0, value=0),
        make_token("seq", seq=5),
    ]
    raw = encode_record(72, 0, toks, time=(int(time.time()), 0))
    item = Item(raw, "20261204190000", 0, len(raw))
    f = Formatter(load_event_table(), "h")
    line = f.jsonl(item)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    obj = json.loads(line.decode("utf-8"))
    (tok,) = [t for t in obj["tokens"] if t["token"] == "path"]
    assert base64.b64decode(tok["text"]["base64"]) == path
    msg, seq = f.syslog(item, "json")
    length, _, body = msg.partition(b" ")
    assert int(length) == len(body) and seq == 5
    assert b"\n" not in body
    assert re.search(rb'\[lxbsm@32473 host="h" seq="5" event="[^"]+" trail="20261204190000"', body)


def test_lxbsm_audit_s_says_when_the_forwarder_service_is_not_running(
    d: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Under systemd (--no-forward) with output: lines and no lxbsm-forward running,
    lxbsm-audit -s says how to start it; with it running, it sends it SIGHUP."""
    status = d / "status.json"
    status.write_text(json.dumps({"pid": 2**22 + 7, "running": False, "outputs": []}))
    daemon_status = {"forward": str(status), "forward_elsewhere": True}
    monkeypatch.setattr(
        audit, "daemon_request", lambda sock, cmd, timeout=5.0: {"status": daemon_status}
    )
    audit._reload_forwarder("sock")
    assert "systemctl enable --now lxbsm-forward" in capsys.readouterr().err
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: sent.append((pid, sig)))
    status.write_text(json.dumps({"pid": 4321, "running": True, "outputs": []}))
    audit._reload_forwarder("sock")
    assert sent[-1] == (4321, signal.SIGHUP) and capsys.readouterr().err == ""
