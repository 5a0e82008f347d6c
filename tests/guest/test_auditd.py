"""lxbsm-auditd against the real module: trails, recovery, feeds, privileges.

Each test starts the daemon as the harness' root, with its own
audit_control in a fresh directory, and talks to it over its control socket.
Python starts slowly in the emulated guest (several seconds a process), so
the tests start few processes and do several things with each daemon.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lxbsm_tools import audit, control, uapi
from lxbsm_tools.auditd import trail
from lxbsm_tools.bsm import Record, decode_records, encode_record, make_token, read_trail
from lxbsm_tools.ring import Ring

from .conftest import load_module, run

DAEMON = (sys.executable, "-m", "lxbsm_tools.auditd.main", "--foreground")
AUE_EXECVE, STARTUP, SHUTDOWN, RECOVERY, MARK = 23, 45000, 45001, 45029, 6153


@pytest.fixture(scope="module", autouse=True)
def audit_user() -> None:
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "audit"],
        capture_output=True,
        check=False,
    )
    pwd.getpwnam("audit")  # KeyError fails every test here: the daemon needs it


class Auditd:
    def __init__(self, tmp: Path, control: Path, *extra: str) -> None:
        self.tmp, self.control, self.extra = tmp, control, extra
        self.sock = str(tmp / "auditd.sock")
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, timeout: float = 120) -> Auditd:
        self.spawn()
        return self.wait_up(timeout)

    def spawn(self) -> None:
        self.starts += 1
        self.log = self.tmp / f"auditd.{self.starts}.log"
        with open(self.log, "wb") as err:
            self.proc = subprocess.Popen(
                [*DAEMON, "--control", str(self.control), "--socket", self.sock, *self.extra],
                stderr=err,
            )

    def wait_up(self, timeout: float = 120) -> Auditd:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"lxbsm-auditd exited: {self.log.read_text()}")
            try:
                self.request("status")
                return self
            except audit.DaemonUnavailable:
                time.sleep(0.2)
        raise AssertionError(f"lxbsm-auditd did not come up: {self.log.read_text()}")

    def request(self, cmd: str) -> dict[str, Any]:
        reply = audit.daemon_request(self.sock, cmd)
        assert reply.get("ok"), reply
        return reply

    def status(self) -> dict[str, Any]:
        st: dict[str, Any] = self.request("status")["status"]
        return st

    def idle(self, ctl: int, timeout: float = 60) -> dict[str, Any]:
        """Wait until the daemon has taken everything in the ring; its status."""
        deadline = time.monotonic() + timeout
        while True:
            m = uapi.get_status(ctl)
            if m.producer_pos == m.consumer_pos:
                return self.status()
            assert time.monotonic() < deadline, "the daemon stopped reading the ring"
            time.sleep(0.1)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(30)

    def terminate(self) -> None:
        assert self.proc is not None
        self.request("terminate")
        assert self.proc.wait(60) == 0, self.log.read_text()

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


@pytest.fixture
def tmp() -> Iterator[Path]:
    """A directory the audit user can reach (pytest's tmp_path is 0700 root)."""
    d = Path(tempfile.mkdtemp(prefix="auditd-", dir="/tmp"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def ctl() -> Iterator[int]:
    fd = uapi.open_control()
    yield fd
    os.close(fd)


def control_file(
    tmp: Path, *lines: str, dirs: tuple[str, ...] = ("trails",), flags: str = "ex"
) -> Path:
    for d in dirs:
        (tmp / d).mkdir(exist_ok=True, parents=True)
    text = [f"dir:{tmp / d}" for d in dirs] + [f"flags:{flags}", f"naflags:{flags}", *lines]
    p = tmp / "audit_control"
    p.write_text("\n".join(text) + "\n")
    return p


def mark(n: int, pad: int = 0) -> bytes:
    t = time.time()
    toks = [make_token("text", text=f"mark {n} " + "x" * pad)]
    toks.append(make_token("return32", status=0, value=n))
    return encode_record(MARK, 0, toks, time=(int(t), int(t * 1000) % 1000))


def gone(pid: int) -> bool:
    """The process has exited (a zombie waiting for init counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def marks_in(records: list[Record]) -> list[int]:
    out = []
    for r in records:
        t = r.first("text")
        if r.event == MARK and t is not None:
            out.append(int(t.text.split()[1]))
    return out


def trail_files(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if trail.TRAIL_RE.fullmatch(p.name))


def all_records(d: Path) -> list[Record]:
    return [r for p in trail_files(d) for r in read_trail(str(p))]


def test_session_rotation_kill_restart_praudit_auditreduce_privileges(tmp: Path, ctl: int) -> None:
    cf = control_file(tmp, "policy:cnt,argv", "filesz:512K", "host:guest")
    tdir = tmp / "trails"
    d = Auditd(tmp, cf).start()
    try:
        assert d.proc is not None
        # Least privilege: the audit user, nothing in any capability set, seccomp on.
        st = dict(
            line.split(":", 1)
            for line in Path(f"/proc/{d.proc.pid}/status").read_text().splitlines()
        )
        uid = pwd.getpwnam("audit").pw_uid
        assert st["Uid"].split() == [str(uid)] * 4
        for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            assert int(st[cap], 16) == 0, cap
        assert (st["NoNewPrivs"].strip(), st["Seccomp"].strip()) == ("1", "2")

        pids = [subprocess.Popen(["/bin/true"]).pid for _ in range(3)]
        first = d.status()["trail"]
        assert re.fullmatch(rf"{tdir}/\d{{14}}\.not_terminated\.guest", first)
        assert os.readlink(tdir / "current") == first
        d.request("rotate")  # lxbsm-audit -n
        n = 0
        for pause in (0.3, 0.05, 0.15):
            for _ in range(250):
                uapi.submit(ctl, mark(n, 1000))
                n += 1
            time.sleep(pause)
            d.kill()  # mid-stream: the ring keeps what was not yet committed
            for _ in range(100):  # while no daemon runs
                uapi.submit(ctl, mark(n, 1000))
                n += 1
            d.start()
        for _ in range(500):  # with the 100 from the last pause: past filesz (512K)
            uapi.submit(ctl, mark(n, 1000))
            n += 1
        st2 = d.idle(ctl)
        assert st2["recovered"] == 1 and st2["rotations"] >= 1, st2
        d.terminate()
    finally:
        d.close()
    names = [p.name for p in trail_files(tdir)]
    assert not (tdir / "current").exists()
    assert not any("not_terminated" in n for n in names), names
    crashed = [n for n in names if ".crash_recovery." in n]
    assert len(crashed) == 3 and all(n.endswith(".guest") for n in names)
    assert len(names) >= 6  # -n, three crashes, and a filesz rotation in the last 600 KB
    recs = all_records(tdir)
    assert sorted(marks_in(recs)) == list(range(n)), "a record was lost or written twice"
    events = [r.event for r in recs]
    assert (events.count(STARTUP), events.count(SHUTDOWN), events.count(RECOVERY)) == (4, 1, 3)
    paths = [r.first("path") for r in recs if r.event == RECOVERY]
    assert sorted(t.text for t in paths if t is not None) == [str(tdir / c) for c in crashed]
    for p in trail_files(tdir):
        assert oct(p.stat().st_mode & 0o777) == "0o640"
        items = list(read_trail(str(p), include_file_tokens=True))
        assert items[0].name == "file"
        # A closed trail ends with a file token; the one the kill left ends with a record.
        crashed_trail = p.name in crashed
        assert isinstance(items[-1], Record) == crashed_trail, p

    tools = Path(sys.executable).parent
    files = [str(p) for p in trail_files(tdir)]
    pr = run(str(tools / "lxbsm-praudit"), *files)
    assert pr.stdout.count("audit daemon started") == 4
    assert pr.stdout.count("file,") == 2 * len(files) - 3  # crashed trails have no end token
    ar = subprocess.run(
        [str(tools / "lxbsm-auditreduce"), "-m", "AUE_EXECVE", *files],
        capture_output=True,
        check=True,
    )
    execs = list(decode_records(ar.stdout))
    assert {r.event for r in execs} == {AUE_EXECVE}
    got = {r.subject.pid for r in execs if r.subject is not None}
    assert set(pids) <= got


class FifoReader(threading.Thread):
    """An IDS reader: parses records off the FIFO as they come, notes arrival times."""

    def __init__(self, path: str, read: bool = True, lines: bool = False) -> None:
        super().__init__(daemon=True)
        self.path, self.read, self.lines = path, read, lines
        self.arrivals: list[tuple[float, Record]] = []
        self.objects: list[dict[str, Any]] = []
        self.stop = threading.Event()
        self.opened = threading.Event()

    def run(self) -> None:
        fd = os.open(self.path, os.O_RDONLY)
        self.opened.set()
        buf = b""
        while not self.stop.is_set():
            if not self.read:
                time.sleep(0.05)
                continue
            if not select.select([fd], [], [], 0.05)[0]:
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            now = time.monotonic()
            buf += chunk
            if self.lines:
                *done, buf = buf.split(b"\n")
                self.objects += [json.loads(line) for line in done]
                continue
            while len(buf) >= 5:
                size = int.from_bytes(buf[1:5], "big")
                if len(buf) < size:
                    break
                self.arrivals += [(now, r) for r in decode_records(buf[:size])]
                buf = buf[size:]
        os.close(fd)


def test_fifo_latency_a_stalled_reader_and_a_forbidden_syscall(
    tmp: Path, ctl: int, capsys: pytest.CaptureFixture[str]
) -> None:
    fast, stalled, js = str(tmp / "ids"), str(tmp / "stalled"), str(tmp / "ids.json")
    feeds_cfg = (f"realtime:{fast}", f"realtime:{stalled}", f"realtime:{js},json")
    cf = control_file(tmp, "policy:cnt,argv", *feeds_cfg)
    d = Auditd(tmp, cf, "--selftest").start()
    readers = [FifoReader(fast), FifoReader(stalled, read=False), FifoReader(js, lines=True)]
    try:
        for r in readers:
            r.start()
        deadline = time.monotonic() + 30
        while not all(f["attached"] for f in d.status()["feeds"]):
            assert time.monotonic() < deadline, "the daemon never opened the FIFOs"
            time.sleep(0.1)
        latencies: list[float] = []
        pids: list[int] = []
        for _ in range(20):
            t0 = time.monotonic()
            p = subprocess.Popen(["/bin/true"])
            while True:
                hit = [
                    t
                    for t, r in readers[0].arrivals
                    if r.event == AUE_EXECVE and r.subject is not None and r.subject.pid == p.pid
                ]
                if hit or time.monotonic() - t0 > 5:
                    break
                time.sleep(0.001)
            p.wait()
            assert hit, f"exec of pid {p.pid} never reached the FIFO"
            latencies.append(hit[0] - t0)
            pids.append(p.pid)
        latencies.sort()
        # The JSON feed carries the same records, decoded (lxbsm-praudit --json).
        time.sleep(0.5)
        json_execs = {
            t["pid"]
            for o in readers[2].objects
            if o["event"] == AUE_EXECVE
            for t in o["tokens"]
            if t["token"].startswith("subject")
        }
        assert set(pids) <= json_execs
        ms = [round(x * 1000, 1) for x in latencies]
        # Straight to fd 2, past pytest's capture: the numbers for the notes.
        msg = (
            f"exec -> FIFO latency, {len(ms)} execs (ms): min {ms[0]} median {ms[10]} max {ms[-1]}"
        )
        os.write(2, f"\n{msg}\n".encode())
        # The target (100 ms) is reported above, not asserted: emulated CPUs
        # vary.  A wake-up lost in the kernel or the daemon would cost a poll
        # timeout (1 s), which this still catches.
        assert latencies[-1] < 0.5, latencies

        # 2.5 MB: more than the stalled reader's queue (1 MiB) and pipe (64 KiB) hold.
        lost0 = uapi.get_status(ctl).lost_total
        n = 2500
        for i in range(n):
            uapi.submit(ctl, mark(i, 1000))
            if i % 100 == 99:
                # Paced by the reading reader, however slow the emulated CPU:
                # the stalled one still gets far more than it can hold.
                deadline = time.monotonic() + 60
                while len(marks_in([r for _, r in readers[0].arrivals])) < i + 1:
                    assert time.monotonic() < deadline, "the reading reader fell behind"
                    time.sleep(0.05)
        st = d.status()
        feeds = {f["path"]: f for f in st["feeds"]}
        assert feeds[stalled]["dropped"] > 0 and feeds[fast]["dropped"] == 0, feeds
        assert marks_in([r for _, r in readers[0].arrivals]) == list(range(n))
        assert uapi.get_status(ctl).lost_total == lost0, "the stalled reader cost the kernel"
        assert sorted(marks_in(all_records(tmp / "trails"))) == list(range(n))

        # lxbsm-audit status: the module's counters and the daemon's, per reader.
        capsys.readouterr()
        assert audit.main(["--socket", d.sock, "status", "--json"]) == 0
        js = json.loads(capsys.readouterr().out)
        assert js["records"] >= n and js["consumer_open"] is True
        jfeeds = {f["path"]: f for f in js["daemon"]["feeds"]}
        assert jfeeds[stalled]["dropped"] >= feeds[stalled]["dropped"] > 0
        assert audit.main(["--socket", d.sock, "status"]) == 0
        rows = capsys.readouterr().out
        assert re.search(rf"^lost: feed {stalled} +[1-9]\d*$", rows, re.M), rows
        assert re.search(rf"^lost: feed {fast} +0$", rows, re.M), rows
        assert re.search(r"^current trail +" + str(tmp / "trails"), rows, re.M), rows

        # seccomp: setuid(0) is not in the allow-list; the kernel kills the daemon.
        assert d.proc is not None
        try:
            audit.daemon_request(d.sock, "selftest-forbidden-syscall", timeout=30)
        except audit.DaemonUnavailable:
            pass
        assert d.proc.wait(30) == -signal.SIGSYS
    finally:
        for r in readers:
            r.stop.set()
        d.close()


def test_disk_full_with_cnt_counts_and_goes_on(tmp: Path, ctl: int) -> None:
    full = tmp / "full"
    full.mkdir()
    run("mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(full))
    try:
        cf = control_file(tmp, "policy:cnt", "minfree:0", dirs=("full/trails",), flags="no")
        # Nothing but this test's records: audit nothing and empty the ring first.
        control.push(ctl, control.kernel_config("no", "no", "cnt"))
        with Ring() as ring:
            list(ring.records())
        d = Auditd(tmp, cf).start()
        try:
            lost0 = uapi.get_status(ctl).lost_total
            n = 1000
            for i in range(n):
                uapi.submit(ctl, mark(i, 1000))
            st = d.idle(ctl)
            assert st["disk_full_dropped"] > 0 and st["records"] > 0, st
            assert st["records"] + st["disk_full_dropped"] == n + 1
            assert uapi.get_status(ctl).lost_total == lost0
            d.terminate()
        finally:
            d.close()
        recs = all_records(full / "trails")  # raises on a torn record
        got = marks_in(recs)
        assert got == sorted(got) and len(got) == st["records"] - 1
    finally:
        run("umount", str(full))


def test_no_module_is_a_clear_error_and_the_daemon_can_wait_for_it(tmp: Path) -> None:
    cf = control_file(tmp)
    run("rmmod", "lxbsm")
    try:
        r = subprocess.run(
            [sys.executable, "-m", "lxbsm_tools.auditd.main", "--foreground", "--control", str(cf)],
            capture_output=True,
            text=True,
        )
        assert r.returncode == 1
        assert "/dev/lxbsm does not exist: the lxbsm module is not loaded" in r.stderr
        assert "Traceback" not in r.stderr
        d = Auditd(tmp, cf, "--wait-device", "120")
        d.spawn()
        try:
            time.sleep(3)
            assert d.proc is not None and d.proc.poll() is None, d.log.read_text()
            load_module()
            assert d.wait_up().status()["records"] >= 1
            d.terminate()
        finally:
            d.close()
        # Without --foreground it detaches once the trail is open; the parent says so.
        r = subprocess.run(
            [*DAEMON[:-1], "--control", str(cf), "--socket", d.sock],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0, r.stderr
        pid = d.status()["pid"]
        assert pid != os.getpid() and os.getsid(pid) == pid  # its own session
        d.request("terminate")
        deadline = time.monotonic() + 30
        while not gone(pid):
            assert time.monotonic() < deadline, "the detached daemon did not stop"
            time.sleep(0.1)
    finally:
        load_module()


def test_exec_control_from_the_daemon_reloads_without_a_restart(tmp: Path, ctl: int) -> None:
    """exec_control: in audit_control; the daemon pushes it, -s reloads it, a bad one is refused."""
    rules = tmp / "exec_control"
    rules.write_text("deny /usr/bin/df\n")
    rules.chmod(0o644)
    cf = control_file(tmp, "policy:cnt,argv", f"exec_control:{rules}", flags="no")
    d = Auditd(tmp, cf).start()
    try:
        pid0 = d.proc.pid if d.proc else 0

        def df() -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                ["/bin/sh", "-c", "/usr/bin/df /; echo rc=$?"], capture_output=True, text=True
            )

        first = df()
        assert first.stdout.split()[-1] == "rc=126" and "Permission denied" in first.stderr
        assert [r.path for r in uapi.get_exec_rules(ctl).rules] == ["/usr/bin/df"]
        # A broken file is refused, and the rules in force stay.
        rules.write_text("deny /usr/bin/df\nforbid /usr/bin/id\n")
        reply = audit.daemon_request(d.sock, "reload")
        assert not reply["ok"] and f"{rules}:2: expected 'allow|deny FILE" in reply["error"]
        assert df().stdout.split()[-1] == "rc=126"
        # A good one takes effect at once, in the same daemon.
        rules.write_text("mode: monitor\ndeny /usr/bin/df\n")
        assert audit.main(["--socket", d.sock, "-s"]) == 0
        second = df()
        assert second.stdout.split()[-1] == "rc=0" and "Filesystem" in second.stdout
        xc = uapi.get_exec_rules(ctl)
        assert xc.mode == "monitor" and xc.rules[0].hits == 1
        assert d.proc is not None and d.proc.pid == pid0 and d.proc.poll() is None
        d.idle(ctl)
        d.terminate()
    finally:
        d.close()
        uapi.set_exec_rules(ctl, uapi.ExecRules("off", ()))
    texts = [t.text for r in all_records(tmp / "trails") if r.event == 23 for t in r.all("text")]
    # Nothing pre-selected (flags:no): only the two exec control matches are in the trail.
    assert texts == [
        "exec_control: denied by line 1 (deny /usr/bin/df)",
        "exec_control: denied by line 1 (deny /usr/bin/df)",
        "exec_control: would be denied by line 2 (deny /usr/bin/df)",
    ]
