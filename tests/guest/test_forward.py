"""lxbsm-forward against a real rsyslog (Debian's rsyslog + rsyslog-gnutls) in the guest.

rsyslog listens with TLS on loopback and writes what it receives to a file.
An output whose ca= did not sign rsyslog's certificate is refused, nothing
sent, and goes with a reload (lxbsm-audit -s).  Then 20,000 records are made
(an audit id whose closes are audited) while the test restarts rsyslog once
mid-stream (a cut connection), stops it for 60 s, and SIGKILLs lxbsm-auditd
(and the lxbsm-forward it started) once.  Afterwards
every record of the trails is in rsyslog's file at least once, compared by
sequence number (policy:seq; the daemon's own records, which have none, by
trail and offset), duplicates are counted and reported, and the spool is
empty.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lxbsm_tools.bsm import read_trail
from lxbsm_tools.forward.state import STATUS, read_status

from .audit import PROGS
from .conftest import REPO, run
from .test_auditd import Auditd, audit_user, ctl, gone, tmp, trail_files

__all__ = ["audit_user", "ctl", "tmp"]  # fixtures, from test_auditd

AUID = 4243
PER_RUN = 5000  # closes per workload run: 4 runs, 20,000 records
PORT = 6514
STOP_SECONDS = 60
GTLS = Path("/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so")


def kernel_root() -> str:
    """The ROOT column of scripts/kernels.sh for the running kernel ("" if none)."""
    table = run(str(REPO / "scripts" / "kernels.sh"), "--table", check=False).stdout
    release = os.uname().release
    for line in table.splitlines():
        f = line.split()
        if len(f) >= 5 and fnmatch.fnmatch(release, f[3]):
            return f[4]
    return ""


@pytest.fixture(scope="module", autouse=True)
def rsyslog_installed() -> None:
    missing = [p for p in ("/usr/sbin/rsyslogd", str(GTLS)) if not os.path.exists(p)]
    if not missing:
        return
    root = kernel_root()
    msg = (
        f"{', '.join(missing)} missing: rsyslog and rsyslog-gnutls are in scripts/deps.sh "
        "host_pkgs (run make deps)"
    )
    if root == "host":
        pytest.fail(f"{msg}; this kernel's guest boots the host's root, where they belong")
    pytest.fail(
        f"{msg}; this kernel's guest root ({root or 'unknown'}) does not hold them: run this "
        "test on a kernel whose ROOT is host (scripts/guest-suite.sh runs it on 6.1)"
    )


def certs(d: Path) -> dict[str, Path]:
    def ssl(*args: str) -> None:
        run("openssl", *args)

    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(d / "ca.key"),
        "-out", str(d / "ca.pem"), "-days", "2", "-subj", "/CN=lxbsm test CA")  # fmt: skip
    (d / "ext").write_text("subjectAltName=IP:127.0.0.1\n")
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(d / "server.key"),
        "-out", str(d / "server.csr"), "-subj", "/CN=127.0.0.1")  # fmt: skip
    ssl("x509", "-req", "-in", str(d / "server.csr"), "-CA", str(d / "ca.pem"),
        "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-out", str(d / "server.pem"),
        "-days", "2", "-extfile", str(d / "ext"))  # fmt: skip
    # A CA that did not sign rsyslog's certificate.
    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(d / "rogue.key"),
        "-out", str(d / "rogue.pem"), "-days", "2", "-subj", "/CN=another CA")  # fmt: skip
    for name in ("ca.pem", "rogue.pem"):
        (d / name).chmod(0o644)
    return {
        "ca": d / "ca.pem",
        "cert": d / "server.pem",
        "key": d / "server.key",
        "rogue": d / "rogue.pem",
    }


class Rsyslog:
    def __init__(self, d: Path, c: dict[str, Path]) -> None:
        self.d = d
        self.out = d / "received.log"
        (d / "rsyslog-work").mkdir()
        self.conf = d / "rsyslog.conf"
        self.conf.write_text(
            f"""global(workDirectory="{d}/rsyslog-work" maxMessageSize="64k"
       defaultNetstreamDriver="gtls"
       defaultNetstreamDriverCAFile="{c["ca"]}"
       defaultNetstreamDriverCertFile="{c["cert"]}"
       defaultNetstreamDriverKeyFile="{c["key"]}")
module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
template(name="lx" type="string" string="%structured-data% %msg%\\n")
ruleset(name="lx") {{ action(type="omfile" file="{self.out}" template="lx") }}
input(type="imtcp" port="{PORT}" address="127.0.0.1" ruleset="lx")
"""
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = open(self.d / f"rsyslog.{self.starts}.log", "wb")
        self.proc = subprocess.Popen(
            ["/usr/sbin/rsyslogd", "-n", "-f", str(self.conf), "-i", str(self.d / "rsyslog.pid")],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while f"127.0.0.1:{PORT} " not in run("ss", "-ltn", check=False).stdout:
            assert self.proc.poll() is None, (self.d / f"rsyslog.{self.starts}.log").read_text()
            assert time.monotonic() < deadline, "rsyslog does not listen"
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(60)
        self.proc = None


def wait_for(what: str, cond: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out ({timeout} s) waiting for {what}"
        time.sleep(0.2)


def workload() -> None:
    pid = subprocess.run(
        [str(PROGS / "sysprobe"), "login-closes", str(AUID), str(PER_RUN)], check=False
    )
    assert pid.returncode == 0


def record_keys(tdir: Path) -> list[str]:
    """Every record of the trails: 'seq N', or 'TRAIL@OFFSET' without a seq token."""
    keys = []
    for p in trail_files(tdir):
        for r in read_trail(str(p)):
            s = r.first("seq")
            keys.append(f"seq {s.seq}" if s is not None else f"{p.name[:14]}@{r.offset}")
    return keys


SD = re.compile(r'\[lxbsm@32473 host="[^"]*" (?:seq="(\d+)" )?event="[^"]*" '
                r'trail="(\d{14})" offset="(\d+)"\]')  # fmt: skip


def received_keys(out: Path) -> list[str]:
    keys = []
    for line in out.read_text(errors="replace").splitlines():
        m = SD.match(line)
        assert m, f"not a message of ours in rsyslog's file: {line[:200]}"
        keys.append(f"seq {m.group(1)}" if m.group(1) else f"{m.group(2)}@{m.group(3)}")
    return keys


def test_rsyslog_outage_cut_and_sigkill_lose_nothing(tmp: Path, ctl: int) -> None:
    t0 = time.monotonic()
    c = certs(tmp)
    tdir = tmp / "trails"
    tdir.mkdir()
    (tmp / "audit_user").write_text(f"{AUID}:cl:\n")
    cf = tmp / "audit_control"
    good = f"output:syslog-tls 127.0.0.1:{PORT} ca={c['ca']} confirm=2\n"
    base = f"dir:{tdir}\nflags:\nnaflags:\npolicy:cnt,seq\nhost:guest\n{good}"
    # A second output to the same rsyslog, with a CA that did not sign its
    # certificate, in text form (so that anything it sent would show).
    cf.write_text(base + f"output:syslog-tls localhost:{PORT} ca={c['rogue']} format=text\n")
    status_file = tdir / ".lxbsm-forward" / STATUS
    rs = Rsyslog(tmp, c)
    rs.start()
    d = Auditd(tmp, cf)

    def out(i: int = 0) -> dict[str, Any]:
        st = read_status(status_file) or {}
        outs = st.get("outputs") or [{}, {}]
        o: dict[str, Any] = outs[i] if i < len(outs) else {}
        return o

    audit_cmd = (sys.executable, "-m", "lxbsm_tools.audit", "--socket", d.sock)
    try:
        d.start()
        wait_for("lxbsm-forward connected", lambda: bool(out().get("connected")), 120)
        wait_for("the refusal", lambda: "REFUSED" in out(1).get("last_error", ""), 60)
        bad = out(1)
        assert "does not verify against ca=" in bad["last_error"], bad
        assert "nothing was sent" in bad["last_error"] and not bad["connected"], bad
        text = run(*audit_cmd, "status").stdout
        assert re.search(r"output syslog-tls:localhost:6514: last error +REFUSED", text), text
        # The refused output goes with a reload (lxbsm-audit -s); the other goes on.
        cf.write_text(base)
        run(*audit_cmd, "-s")
        wait_for(
            "the reload", lambda: len((read_status(status_file) or {}).get("outputs", [])) == 1, 60
        )
        assert out()["connected"]
        workload()
        # A cut: rsyslog restarted while records stream.
        wait_for(
            "records flowing", lambda: out().get("pending", 0) + out().get("sent", 0) > 500, 120
        )
        rs.stop()
        rs.start()
        workload()
        wait_for("records after the cut", lambda: out().get("sent", 0) > PER_RUN + 500, 300)
        # The collector away for 60 s; meanwhile records, and a SIGKILL of the daemon.
        rs.stop()
        stopped = time.monotonic()
        workload()
        wait_for("the outage in status", lambda: not out().get("connected", True), 60)
        fwd_pid = int((read_status(status_file) or {})["pid"])
        d.kill()
        os.kill(fwd_pid, signal.SIGKILL)
        workload()  # with no daemon: the ring holds them
        d.start()
        wait_for(
            "the new forwarder's status",
            lambda: (read_status(status_file) or {}).get("pid") not in (None, fwd_pid),
            120,
        )
        st = out()
        assert not st["connected"] and st["spooled_bytes"] > 0, st
        assert st["oldest_unsent_age"] is not None and st["oldest_unsent_age"] > 0, st
        text = run(*audit_cmd, "status").stdout
        assert re.search(r"output syslog-tls:127\.0\.0\.1:6514 +NOT connected, sent \d+", text)
        assert re.search(r"lost: output syslog-tls:127\.0\.0\.1:6514 +0", text), text
        time.sleep(max(0.0, STOP_SECONDS - (time.monotonic() - stopped)))
        rs.start()
        wait_for("an empty spool", lambda: out().get("spooled_bytes") == 0, 600)
        wait_for("nothing pending", lambda: out().get("pending") == 0, 60)
        final = out()
        fwd_pid = int((read_status(status_file) or {})["pid"])
        d.terminate()
        # The forwarder sends the shutdown record, then stops.
        wait_for("lxbsm-forward to stop", lambda: gone(fwd_pid), 120)
        rs.stop()
    finally:
        d.close()
        rs.stop()
    trail = record_keys(tdir)
    got = received_keys(rs.out)
    counts = Counter(got)
    missing = set(trail) - set(counts)
    dups = sum(n - 1 for n in counts.values() if n > 1)
    workload_records = sum(1 for k in set(trail) if k.startswith("seq "))
    result = {
        "trail_records": len(trail),
        "distinct_with_seq": workload_records,
        "received": len(got),
        "duplicates": dups,
        "resent_counted": final["resent"],
        "dropped": final["dropped"],
        "seconds": round(time.monotonic() - t0, 1),
    }
    print(f"forwarding: {json.dumps(result)}")
    rundir = os.environ.get("LXBSM_RUNDIR")
    if rundir:
        Path(rundir, "forward-result.json").write_text(json.dumps(result) + "\n")
    assert not missing, f"{len(missing)} records of the trails never reached rsyslog"
    assert workload_records >= 4 * PER_RUN, result
    assert final["dropped"] == 0 and final["lost_trails"] == 0, final
    text_form = [x for x in rs.out.read_text(errors="replace").splitlines() if "] header," in x]
    assert not text_form, f"the refused output sent records: {text_form[:2]}"
    extra = {k for k in counts if k.startswith("seq ")} - set(trail)
    assert not extra, f"rsyslog holds records the trails do not: {sorted(extra)[:5]}"
    assert "Traceback" not in "".join(p.read_text() for p in tmp.glob("auditd.*.log"))
