"""Hostile-user hardening of the device and the ring (issue 13, defects 9, 13, 16).

Each test performs the attack and shows it fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from lxbsm_tools import uapi
from lxbsm_tools.bsm import decode_records, encode_record, make_token
from lxbsm_tools.ring import Ring

from .audit import auditing, aue
from .conftest import load_module

# A helper run under reduced capabilities: it tries every entry point of the
# device and prints what each gave (0 or the errno name) as JSON.
PROBE = r"""
import errno, json, os, sys
sys.path.insert(0, os.environ["REPO"])
from lxbsm_tools import control, uapi
rec = bytes.fromhex(sys.argv[1])
out = {}
def attempt(name, fn):
    try:
        fn()
        out[name] = 0
    except OSError as e:
        out[name] = errno.errorcode[e.errno]
try:
    fd = os.open("/dev/lxbsm", os.O_RDONLY)
    out["open_ro"] = 0
except OSError as e:
    out["open_ro"] = errno.errorcode[e.errno]
    fd = -1
try:
    os.close(os.open("/dev/lxbsm", os.O_RDWR))
    out["open_rw"] = 0
except OSError as e:
    out["open_rw"] = errno.errorcode[e.errno]
if fd >= 0:
    attempt("submit", lambda: uapi.submit(fd, rec))
    attempt("status", lambda: uapi.get_status(fd))
    attempt("get_config", lambda: uapi.get_config(fd))
    attempt("get_rules", lambda: uapi.get_exec_rules(fd))
    attempt("set_config", lambda: uapi.set_config(fd, control.kernel_config("", "", "cnt")))
print(json.dumps(out))
"""


def forged_exec() -> bytes:
    """An AUE_EXECVE record that claims root ran /bin/sh from nowhere."""
    now = time.time()
    return encode_record(
        aue("AUE_EXECVE"),
        0,
        [
            make_token("path", text="/bin/sh"),
            make_token(
                "subject32",
                auid=0,
                euid=0,
                egid=0,
                ruid=0,
                rgid=0,
                pid=1,
                sid=1,
                port=0,
                address="0.0.0.0",
            ),
            make_token("return32", status=0, value=0),
        ],
        time=(int(now), int(now * 1000) % 1000),
    )


def probe(caps: str, record: bytes) -> dict[str, object]:
    """Run PROBE as root with only @caps in its bounding set."""
    env = dict(os.environ, REPO=str(uapi.__file__).rsplit("/lxbsm_tools/", 1)[0])
    cmd = ["setpriv", f"--bounding-set=-all{caps}", "--inh-caps=-all", sys.executable, "-c"]
    p = subprocess.run(
        [*cmd, PROBE, record.hex()], capture_output=True, text=True, env=env, check=True
    )
    return dict(json.loads(p.stdout))


def test_capabilities_are_the_documented_ones() -> None:
    """Each entry point takes the capability uapi/lxbsm.h says, no more, no less."""
    rec = forged_exec()
    with Ring():  # the consumer is taken: a read-write open may only say EBUSY or EPERM
        none = probe("", rec)
        write = probe(",+audit_write", rec)
        control = probe(",+audit_control", rec)
    assert none == {"open_ro": "EPERM", "open_rw": "EPERM"}, none
    # CAP_AUDIT_WRITE alone: submit, and nothing else.
    assert write["open_ro"] == 0 and write["open_rw"] == "EPERM", write
    assert write["submit"] == 0, write
    for name in ("status", "get_config", "get_rules", "set_config"):
        assert write[name] == "EPERM", (name, write)
    # CAP_AUDIT_CONTROL alone: read and change the configuration, but not submit.
    assert control["open_ro"] == 0 and control["open_rw"] == "EPERM", control
    assert control["submit"] == "EPERM", control
    for name in ("status", "get_config", "get_rules", "set_config"):
        assert control[name] == 0, (name, control)


def test_a_submitted_record_cannot_pose_as_the_kernels() -> None:
    """A forged exec record submitted by a program with CAP_AUDIT_WRITE is marked as such."""
    rec = forged_exec()
    with auditing(flags="ex", naflags="ex", policy="cnt,seq") as a:
        out = probe(",+audit_write", rec)
        assert out["submit"] == 0, out
        subprocess.run(["/bin/true"], check=True)
        execs = a.records("AUE_EXECVE")
    forged = [r for r in execs if r.first("path") and r.first("path").text == "/bin/sh"]  # type: ignore[union-attr]
    real = [r for r in execs if r not in forged]
    assert len(forged) == 1 and real, [len(forged), len(real)]
    split = uapi.split_submitted(forged[0].raw)
    assert split is not None, "the submitted record carries no submitter text"
    orig, text = split
    assert orig == rec  # everything the submitter wrote is kept, byte for byte
    # The text names the real submitter, not the subject it claimed.
    words = text.removeprefix(uapi.SUBMITTED_TEXT).split()
    fields = dict(zip(words[::2], words[1::2], strict=True))
    assert fields["pid"] != "1" and fields["ruid"] == "0", text
    # The module's own records never carry it.
    for r in real:
        assert uapi.split_submitted(r.raw) is None


def test_oversized_submission_is_refused_cleanly() -> None:
    fd = uapi.open_control()
    try:
        big = encode_record(
            aue("AUE_EXECVE"),
            0,
            [make_token("text", text="x" * (uapi.MAX_SUBMIT - 10))],
            time=(0, 0),
        )
        assert len(big) > uapi.MAX_SUBMIT
        try:
            uapi.submit(fd, big)
            raise AssertionError("a record over LXBSM_MAX_SUBMIT was taken")
        except OSError as e:
            assert e.errno == 22
    finally:
        os.close(fd)


def test_time_and_sequence_follow_the_ring_order() -> None:
    """Records from racing CPUs: header times never go back, seq rises by one."""
    workers = 4
    code = (
        "import os, time\n"
        "end = time.time() + 6\n"
        "while time.time() < end:\n"
        "    os.close(os.open('/etc/hostname', os.O_RDONLY))\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        os._exit(0)\n"
        "    os.waitpid(pid, 0)\n"
    )
    with auditing(flags="fr,pc", naflags="fr,pc", policy="cnt,seq") as a:
        st0 = a.ring.status()  # the counts are the module's since load: this test's share
        procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(workers)]
        raw = bytearray()
        while any(p.poll() is None for p in procs):
            raw += b"".join(bytes(r) for r in a.ring.records())
            time.sleep(0.05)
        raw += b"".join(bytes(r) for r in a.ring.records())
        st1 = a.ring.status()
    lost = {k: st1.lost[k] - st0.lost[k] for k in st1.lost}
    missed = st1.missed - st0.missed
    records = list(decode_records(bytes(raw), source="ring"))
    # Enough records from the racing workers, interleaved, to see an order.
    assert len(records) > 300, len(records)
    pids = {r.subject.pid for r in records if r.subject is not None}
    assert len(pids) >= workers, pids
    assert sum(lost.values()) == 0, (lost, missed)
    times = [r.sort_key for r in records]
    back = [(i, times[i - 1], times[i]) for i in range(1, len(times)) if times[i] < times[i - 1]]
    assert not back, f"{len(back)} records earlier than the one before: {back[:5]}"
    seqs = [int(r.first("seq").seq) for r in records if r.first("seq") is not None]  # type: ignore[union-attr]
    assert len(seqs) == len(records)
    jumps = [(i, seqs[i - 1], seqs[i]) for i in range(1, len(seqs)) if seqs[i] != seqs[i - 1] + 1]
    assert not jumps, f"sequence out of ring order: {jumps[:5]}"


# The consumer fills its own ring, then makes records of its own with no cnt.
CONSUMER = r"""
import errno, json, os, sys, time
sys.path.insert(0, os.environ["REPO"])
from lxbsm_tools import control, uapi
from lxbsm_tools.bsm import encode_record, make_token
from lxbsm_tools.ring import Ring
ring = Ring()  # this process is the consumer, and never reads
ctl = uapi.open_control()
# Big records first, then ever smaller ones, until not even the smallest fits.
for size in (4000, 400, 40, 1):
    rec = encode_record(32800, 0, [make_token("text", text="x" * size)], time=(0, 0))
    while True:
        try:
            uapi.submit(ctl, rec)
        except OSError as e:
            assert e.errno == errno.ENOSPC
            break
before = uapi.get_status(ctl).lost["ring_full"]
control.push(ctl, control.kernel_config("fr,cl", "fr,cl", ""))  # no cnt: processes wait
start = time.monotonic()
for _ in range(50):
    os.close(os.open("/etc/hostname", os.O_RDONLY))
took = time.monotonic() - start
control.push(ctl, control.kernel_config("", "", "cnt"))
print(json.dumps({"took": took, "lost": uapi.get_status(ctl).lost["ring_full"] - before}))
"""


def test_the_consumer_never_waits_for_room_only_it_frees() -> None:
    """Without cnt, the consumer's own records that a full ring cannot take are lost."""
    load_module("ring_size_kb=64")
    env = dict(os.environ, REPO=str(uapi.__file__).rsplit("/lxbsm_tools/", 1)[0])
    p = subprocess.Popen(
        [sys.executable, "-c", CONSUMER], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        out, _ = p.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise AssertionError("the consumer waited for ring space that only it can free") from None
    assert p.returncode == 0
    result = json.loads(out)
    # 50 opens and 50 closes (and the config push's own records) did not fit, and say so.
    assert result["lost"] >= 100, result
    assert result["took"] < 60, result
    # The module is not stuck: the next consumer reads the ring as usual.
    with Ring() as ring:
        assert len(list(ring.records())) > 0
