"""The paper's latency tables and a storm, for lxbsm and Linux audit, in one guest boot.

Run inside an lxbsm-vm guest booted WITHOUT --load (``make bench`` does it):
this script loads and unloads the module itself, so that "no module" and
every lxbsm and auditd configuration are measured in the same boot.

    python3 bench/lxbsm_bench.py --ko build/<kernel>/lxbsm.ko --out RUNDIR/raw.json

Latency: ``build/progs/lat_sys`` (LMBench-style, the median of its samples)
once per configuration per round; the configurations are taken in rounds,
each round in a rotated order (odd rounds reversed), so the emulated CPU's
drift over the run hits them all alike (bench/execctl_bench.py does the same
for two).  Every round
checks that the configuration was in effect: the records lxbsm-auditd wrote
or the SYSCALL events auditd logged during the measurement.

Linux audit, once enabled, gives every task forked later an audit context
(audit_ever_enabled never goes back).  So that "none" and the lxbsm
configurations are the same before and after the auditd ones, the script
enables and disables audit once at the start and leaves the rule
``-a never,task`` in place whenever auditd is not measured: tasks then get
no audit context, as on a kernel where audit was never enabled (one
pristine "none" measurement before that is kept for comparison).

Hook costs: after the rounds, one more lat_sys run under each lxbsm
configuration with the module's cost accounting on (lxbsm-audit status
--hooks): per hook, runs, ns per run, records and their build and ring time.

Write throughput (issue 17): lat_sys write_4k and write_1m (pwrite + fsync
to a file on the bench's tmpfs) under "none", "protect" (lxbsm-auditd with
protect: on the written directory: every write's bytes go to the journal)
"protect_nofile" (a diagnostic: the module's capture into the ring for the
same directory, a reader that discards the records: the kernel's share of
"protect") and "auditd_watch" (auditd with -w on the directory -p wa); those
configurations measure nothing else, and the others no writes.

Storm: stress-ng fork, exec and open stressors on every CPU, as nobody
(stress-ng refuses to exec as root), for LXBSM_BENCH_STORM seconds under
each recording configuration: records per second through the daemon,
records lost, kretprobe misses, and the daemon's CPU.

Environment: LXBSM_BENCH_ROUNDS (5), LXBSM_BENCH_SCALE (1.0: lat_sys's
samples and batch sizes), LXBSM_BENCH_STORM (6 seconds),
LXBSM_BENCH_CONFIGS (comma list, default all), LXBSM_BENCH_TESTS (comma list, default
all: for a quick look at a few; LXBSM_BENCH_STORM=0 skips the storms),
LXBSM_BENCH_ASLR (0: kernel.randomize_va_space is 0 during the bench, so that
every lat_sys has the same address space layout and a fork copies the same
page tables in every round; 1: the guest's own setting).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from lxbsm_tools import audit, control, uapi  # noqa: E402
from lxbsm_tools.benchreport import CONFIGS, TESTS, WRITE_CONFIGS, WRITE_TESTS  # noqa: E402
from lxbsm_tools.ring import Ring  # noqa: E402

PROGS = REPO / "build" / "progs"
LAT_SYS = PROGS / "lat_sys"
HELLO = PROGS / "hello"
# "ring" (not one of issue 8's configurations): the module with the default
# classes writing into its ring with no reader at all, so that what the
# kernel side costs can be told from what the daemon's CPU time costs (under
# single-threaded TCG every vCPU shares one host thread).  "file_nowait"
# (diagnostic too): "file" with batch-wait:0, the daemon woken for each
# record that finds it idle, to show what batching the wakeups saves.
STORM_CONFIGS = ("file", "fifo", "file_frfw", "auditd", "auditd_frfw")
# lxbsm's default classes (audit_control's flags:lo,ex,pc,nt); the bench's
# processes have no audit id, so naflags are set to the same classes.
DEFAULT_FLAGS = "lo,ex,pc,nt"
FRFW_FLAGS = DEFAULT_FLAGS + ",fr,fw"
# Linux audit rules for the same events: exec, process life (fork, exit,
# setuid family), network endpoints; fr/fw adds the opens.
AUDIT_SYSCALLS = (
    "execve,execveat,fork,vfork,clone,clone3,exit,exit_group,"
    "setuid,setgid,setreuid,setregid,setresuid,setresgid,setfsuid,setfsgid,setgroups,"
    "accept,accept4,connect,bind"
)
AUDIT_OPEN_SYSCALLS = "open,openat,openat2,creat"

ROUNDS = int(os.environ.get("LXBSM_BENCH_ROUNDS", "5"))
SCALE = float(os.environ.get("LXBSM_BENCH_SCALE", "1.0"))
STORM_S = float(os.environ.get("LXBSM_BENCH_STORM", "6"))  # 0: no storms
ASLR = os.environ.get("LXBSM_BENCH_ASLR", "0") != "0"  # 0: no randomisation
# A subset of the tests, for a quicker look at a few (results.json then lacks the rest).
BENCH_TESTS = tuple(t for t in os.environ.get("LXBSM_BENCH_TESTS", ",".join(TESTS)).split(",") if t)
WORK = Path(tempfile.gettempdir()) / "lxbsm-bench"
WRITE_DIR = WORK / "write"  # the write tests' file; protected under "protect"
# The storms run as nobody: stress-ng refuses to exec as root.
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
STRESS_NG = [
    *NOBODY,
    "stress-ng",
    *("--fork", "0", "--exec", "0", "--open", "0"),  # 0: one of each per online CPU
    *("--timeout", f"{STORM_S:g}s", "--temp-path", "/tmp", "--metrics-brief"),
]
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def sh(*cmd: str, check: bool = True) -> str:
    p = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.strip()}")
    return p.stdout


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def stop_process(
    proc: subprocess.Popen[bytes] | subprocess.Popen[str] | None,
    sig: int = signal.SIGTERM,
    timeout: float = 60,
) -> None:
    """Stop @proc, if it runs, with @sig; killed if it is not gone within @timeout."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def prepare_work() -> None:
    """WORK on a tmpfs of its own, with copies of lat_sys and hello (LAT_SYS
    and HELLO then name them) and WRITE_DIR: timings on 9p or the guest's
    overlays swing with the host (sh's /bin/sh stays on the root)."""
    global LAT_SYS, HELLO
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    sh("mount", "-t", "tmpfs", "-o", "size=1g,mode=0755", "lxbsm-bench", str(WORK))
    WORK.chmod(0o755)
    for prog in (LAT_SYS, HELLO):
        shutil.copy2(prog, WORK / prog.name)
    LAT_SYS, HELLO = WORK / LAT_SYS.name, WORK / HELLO.name
    WRITE_DIR.mkdir(mode=0o755)


def round_order(configs: Sequence[str], r: int) -> list[str]:
    """The configurations of round @r: rotated to start at the r-th, and
    backwards in odd rounds (rotation alone keeps every configuration after
    the same one)."""
    k = r % len(configs)
    order = [*configs[k:], *configs[:k]]
    return order[::-1] if r % 2 else order


def settle() -> None:
    """Let what the previous configuration left (log writeback, exiting daemons) pass."""
    os.sync()
    time.sleep(1)


def loop_storm() -> list[str]:
    """lat_sys storm: fork, exec and 8 open+close in a loop, one worker per CPU."""
    return [
        *NOBODY,
        str(LAT_SYS),
        *("-t", f"{STORM_S:g}", "-j", str(os.cpu_count() or 1)),
        *("-f", "/tmp/lxbsm-bench-storm.file", "-p", str(HELLO), "storm"),
    ]


def tests_of(config: str) -> list[str]:
    """The tests measured under @config: the write tests under "none" and the
    write configurations, which measure nothing else."""
    if config == "none":
        return list(BENCH_TESTS)
    writes = config in WRITE_CONFIGS
    return [t for t in BENCH_TESTS if (t in WRITE_TESTS) == writes]


def lat_sys(tests: list[str]) -> dict[str, float]:
    if not tests:
        return {}
    out = sh(
        str(LAT_SYS), "-s", str(SCALE), "-f", str(WORK / "lat_file"), "-p", str(HELLO),
        "-w", str(WRITE_DIR), *tests,
    )  # fmt: skip
    got: dict[str, float] = json.loads(out)
    return got


class Module:
    def __init__(self, ko: Path) -> None:
        self.ko = ko

    @staticmethod
    def loaded() -> bool:
        return any(
            line.split()[0] == "lxbsm" for line in Path("/proc/modules").read_text().splitlines()
        )

    def load(self) -> None:
        if not self.loaded():
            sh("insmod", str(self.ko))
        deadline = time.monotonic() + 10
        while not Path(uapi.DEVICE).exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{uapi.DEVICE} did not appear")
            time.sleep(0.05)

    def unload(self) -> None:
        if self.loaded():
            sh("rmmod", "lxbsm")

    @staticmethod
    def counters() -> dict[str, int]:
        fd = uapi.open_control()
        try:
            st = uapi.get_status(fd)
            hooks = uapi.hooks(fd)
            prot = uapi.protect_status(fd)
        finally:
            os.close(fd)
        return {
            "records": st.records,
            "lost": st.lost_total,
            "protect_trees": prot.nr_trees,
            "protect_lost": prot.lost,  # changes to protected files not captured
            "missed": sum(h.missed for h in hooks),
            "pending": st.producer_pos - st.consumer_pos,
        }

    def drained(self, timeout: float = 120) -> None:
        # One descriptor for the whole wait: under fr, each open of the
        # device is itself a record, pending until the daemon runs, which on
        # one CPU it does not do between our open and our ioctl.
        deadline = time.monotonic() + timeout
        fd = uapi.open_control()
        try:
            while True:
                st = uapi.get_status(fd)
                if st.producer_pos == st.consumer_pos:
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError("the daemon stopped reading the ring")
                time.sleep(0.1)
        finally:
            os.close(fd)


class Lxbsmd:
    """lxbsm-auditd writing a trail (and feeding an IDS-like FIFO reader)."""

    def __init__(
        self, flags: str, fifo: bool, batch_wait: int | None = None, protect: Path | None = None
    ) -> None:
        self.flags, self.fifo, self.batch_wait = flags, fifo, batch_wait
        self.protect = protect
        self.dir = WORK / "lxbsmd"
        self.journal = self.dir / "journal"
        self.sock = str(self.dir / "auditd.sock")
        self.feed = self.dir / "feed"
        self.proc: subprocess.Popen[bytes] | None = None
        self.reader: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        (self.dir / "trails").mkdir(parents=True)
        self.dir.chmod(0o755)
        lines = [
            f"dir:{self.dir / 'trails'}",
            f"flags:{self.flags}",
            f"naflags:{self.flags}",
            "policy:cnt,argv",
            "filesz:0",
        ]
        if self.fifo:
            lines.append(f"realtime:{self.feed}")
        if self.batch_wait is not None:
            lines.append(f"batch-wait:{self.batch_wait}")
        if self.protect is not None:
            lines += [f"protect:{self.protect}", f"protect-journal:{self.journal}"]
        ctl = self.dir / "audit_control"
        ctl.write_text("\n".join(lines) + "\n")
        cmd = [sys.executable, "-m", "lxbsm_tools.auditd.main", "--foreground"]
        with open(self.dir / "daemon.log", "wb") as err:
            self.proc = subprocess.Popen(
                [*cmd, "--control", str(ctl), "--socket", self.sock], stderr=err
            )
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("lxbsm-auditd exited: " + (self.dir / "daemon.log").read_text())
            try:
                self.status()
                break
            except audit.DaemonUnavailable:
                if time.monotonic() > deadline:
                    raise RuntimeError("lxbsm-auditd did not come up") from None
                time.sleep(0.2)
        if self.protect is not None:
            # In force once the daemon has taken the tree's baseline (it
            # pushes the tree to the module first: docs/recovery.md).
            while not any((self.journal / "baselines").glob("*.base")):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("no baseline of the protected tree: " + self.describe())
                time.sleep(0.2)
        if self.fifo:
            self.reader = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--fifo-reader", str(self.feed)]
            )
            while not self.status()["feeds"][0]["attached"]:
                if time.monotonic() > deadline or self.reader.poll() is not None:
                    raise RuntimeError("the FIFO reader did not attach")
                time.sleep(0.2)

    def status(self) -> dict[str, Any]:
        reply = audit.daemon_request(self.sock, "status")
        st: dict[str, Any] = reply["status"]
        return st

    def describe(self) -> str:
        """The daemon's state and the end of its log, for an error message."""
        assert self.proc is not None
        rc = self.proc.poll()
        state = "running" if rc is None else f"exited with {rc}"
        try:
            log_tail = (self.dir / "daemon.log").read_text(errors="replace")[-2000:]
        except OSError as e:
            log_tail = f"(no log: {e})"
        try:
            stack = Path(f"/proc/{self.proc.pid}/stack").read_text() if rc is None else ""
            wchan = Path(f"/proc/{self.proc.pid}/wchan").read_text() if rc is None else ""
        except OSError:
            stack = wchan = ""
        return f"lxbsm-auditd {state}, wchan {wchan!r}, stack:\n{stack}log:\n{log_tail}"

    def counts(self) -> dict[str, int]:
        st = self.status()
        feeds = st["feeds"]
        return {
            "records": int(st["records"]),
            "daemon_lost": int(st.get("disk_full_dropped", 0)),
            "feed_sent": sum(int(f["sent"]) for f in feeds),
            "feed_dropped": sum(int(f["dropped"]) for f in feeds),
        }

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        for p in (self.proc, self.reader):
            stop_process(p)
        self.proc = self.reader = None
        shutil.rmtree(self.dir, ignore_errors=True)


def settled_count(count: Callable[[], int], quiet: Callable[[], bool], timeout: float) -> int:
    """Wait until count() stops growing while quiet() holds; its last value."""
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        n = count()
        if n == last and quiet():
            return n
        last = n
        time.sleep(0.5)
    return count()


class LinuxAudit:
    """Debian's auditd, logging to a file under WORK, with auditctl rules."""

    def __init__(self) -> None:
        self.dir = WORK / "auditd"
        self.logfile = self.dir / "log" / "audit.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.pos = 0
        self.events = 0

    @staticmethod
    def idle_state() -> None:
        """Audit off and no task audited: the state outside the auditd configurations."""
        sh("auditctl", "-D")
        sh("auditctl", "-a", "never,task")
        sh("auditctl", "-e", "0")

    def start(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        (self.dir / "log").mkdir(parents=True)
        (self.dir / "plugins.d").mkdir()
        conf = self.dir / "auditd.conf"
        # Debian's auditd.conf with the log under WORK and no rotation.
        conf.write_text(
            "\n".join(
                [
                    "local_events = yes",
                    "write_logs = yes",
                    f"log_file = {self.logfile}",
                    "log_format = ENRICHED",
                    "flush = INCREMENTAL_ASYNC",
                    "freq = 50",
                    "max_log_file = 0",
                    "max_log_file_action = IGNORE",
                    "space_left = 10",
                    "space_left_action = IGNORE",
                    "admin_space_left = 5",
                    "admin_space_left_action = IGNORE",
                    "disk_full_action = IGNORE",
                    "disk_error_action = IGNORE",
                    "name_format = NONE",
                    "priority_boost = 4",
                    f"plugin_dir = {self.dir / 'plugins.d'}",
                    "q_depth = 2000",
                    "overflow_action = SYSLOG",
                    "end_of_event_timeout = 2",
                    "",
                ]
            )
        )
        conf.chmod(0o640)
        with open(self.dir / "auditd.stderr", "wb") as err:
            self.proc = subprocess.Popen(["auditd", "-n", "-c", str(self.dir)], stderr=err)
        deadline = time.monotonic() + 60
        while self.status().get("pid") != str(self.proc.pid):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    "auditd did not start: " + (self.dir / "auditd.stderr").read_text()
                )
            time.sleep(0.2)
        self.pos = 0
        self.events = 0

    def rules(self, syscalls: str | None, watch: Path | None = None) -> None:
        """Replace the rules: the exit rules for SYSCALLS, a watch on the
        directory @watch for writes and attribute changes, or -a never,task
        for neither."""
        sh("auditctl", "-D")
        sh("auditctl", "-b", "8192")
        sh("auditctl", "--backlog_wait_time", "60000")
        if watch is not None:
            sh("auditctl", "-w", str(watch), "-p", "wa", "-k", "lxbsm")
        elif syscalls is None:
            sh("auditctl", "-a", "never,task")
        else:
            sh("auditctl", "-a", "always,exit", "-F", "arch=b64", "-S", syscalls, "-k", "lxbsm")
        sh("auditctl", "-e", "1")

    @staticmethod
    def status() -> dict[str, str]:
        out = sh("auditctl", "-s")
        return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)

    def count(self) -> int:
        """SYSCALL events logged so far (one per audited system call)."""
        try:
            with open(self.logfile, "rb") as f:
                f.seek(self.pos)
                chunk = f.read()
        except FileNotFoundError:
            return self.events
        cut = chunk.rfind(b"\n") + 1
        self.events += chunk[:cut].count(b"type=SYSCALL ")
        self.pos += cut
        return self.events

    def settled(self, timeout: float = 120) -> int:
        """Wait until the kernel's backlog is empty and the log stops growing."""
        return settled_count(self.count, lambda: self.status().get("backlog") == "0", timeout)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        self.idle_state()
        stop_process(self.proc)
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)


EBPF_PROGRAM = REPO / "bench" / "ebpf_peer.bt"


class Ebpf:
    """bpftrace recording the same events to a file: the eBPF tracer a user
    would pick instead (bench/ebpf_peer.bt)."""

    READY = "lxbsm-bench-ebpf ready"

    def __init__(self) -> None:
        self.dir = WORK / "ebpf"
        self.out = self.dir / "events.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        with open(self.dir / "stderr", "wb") as err:
            self.proc = subprocess.Popen(
                ["bpftrace", "-o", str(self.out), str(EBPF_PROGRAM)],
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        # bpftrace compiles and attaches first (a minute or more under TCG).
        deadline = time.monotonic() + 900
        while not (self.out.exists() and self.READY in self.out.read_text(errors="replace")):
            if self.proc.poll() is not None:
                raise RuntimeError(
                    "bpftrace exited: " + (self.dir / "stderr").read_text(errors="replace")
                )
            if time.monotonic() > deadline:
                raise RuntimeError("bpftrace did not attach")
            time.sleep(0.5)

    def count(self) -> int:
        """Events written so far (lines after the ready line)."""
        with open(self.out, "rb") as f:
            return max(0, sum(1 for _ in f) - 1)

    def settled(self, timeout: float = 60) -> int:
        """Wait until the output stops growing."""
        return settled_count(self.count, lambda: True, timeout)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        stop_process(self.proc, signal.SIGINT, 120)
        self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)


class RingReader:
    """protect_nofile: the module captures every write to the written
    directory into the ring as under "protect", and this reader takes the
    records off and discards them (no trail, no journal), resting 50 ms
    between batches as lxbsm-auditd does (batch-wait): what is left of
    "protect" without the daemon's filing is the kernel's capture."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--ring-reader", str(WRITE_DIR)],
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != b"ready":
            self.stop()
            raise RuntimeError("the ring reader did not start")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None


def ring_reader(tree: str) -> int:
    """RingReader's process: @tree protected, every record discarded."""
    stop = False

    def done(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, done)
    ring = Ring()
    fd = os.open(tree, os.O_PATH | os.O_DIRECTORY)
    try:
        uapi.set_protect(ring.fd, [fd])
    finally:
        os.close(fd)
    print("ready", flush=True)
    records = 0
    while not stop:
        if not ring.wait(1.0):
            continue
        start = ring.consumer_pos
        views, end = ring.batch()
        ring.commit(end)
        records += len(views)
        if 0 < end - start < ring.size // 8:
            time.sleep(0.05)
    print(f"ring reader: {records} records", file=sys.stderr, flush=True)
    return 0


class Bench:
    def __init__(self, ko: Path, configs: tuple[str, ...]) -> None:
        self.mod = Module(ko)
        self.configs = configs
        self.lxbsmd: Lxbsmd | None = None
        self.auditd: LinuxAudit | None = None
        self.ebpf: Ebpf | None = None
        self.reader: RingReader | None = None

    # Each configuration: enter, counter (records so far), leave.
    def enter(self, config: str) -> None:
        if config == "none":
            self.mod.unload()
            return
        if config == "ebpf":
            self.mod.unload()
            self.ebpf = Ebpf()
            self.ebpf.start()
            return
        if config.startswith("auditd"):
            self.mod.unload()
            self.auditd = LinuxAudit()
            self.auditd.start()
            if config == "auditd_watch":
                self.auditd.rules(None, watch=WRITE_DIR)
                return
            self.auditd.rules(
                None
                if config == "auditd_norules"
                else AUDIT_SYSCALLS
                if config == "auditd"
                else AUDIT_SYSCALLS + "," + AUDIT_OPEN_SYSCALLS
            )
            return
        self.mod.load()
        if config == "idle":
            return
        if config == "protect_nofile":
            self.reader = RingReader()
            self.reader.start()
            return
        if config in ("ring", "ring_frfw"):
            flags = FRFW_FLAGS if config == "ring_frfw" else DEFAULT_FLAGS
            fd = uapi.open_control()
            try:
                control.push(fd, control.kernel_config(flags, flags, "cnt,argv"))
            finally:
                os.close(fd)
            return
        flags = FRFW_FLAGS if config == "file_frfw" else DEFAULT_FLAGS
        self.lxbsmd = Lxbsmd(
            flags,
            fifo=config == "fifo",
            batch_wait=0 if config == "file_nowait" else None,
            protect=WRITE_DIR if config == "protect" else None,
        )
        self.lxbsmd.start()

    def records(self, config: str) -> int:
        """Records of the configuration so far (0 where there is nothing to count)."""
        if self.auditd is not None:
            return self.auditd.settled()
        if self.ebpf is not None:
            return self.ebpf.settled()
        if self.lxbsmd is not None:
            try:
                self.mod.drained()
            except RuntimeError as e:
                raise RuntimeError(f"{e}: {self.lxbsmd.describe()}") from None
            return self.lxbsmd.counts()["records"]
        if config in ("idle", "ring", "ring_frfw", "protect_nofile"):
            return Module.counters()["records"]
        return 0

    def leave(self, config: str) -> None:
        if self.lxbsmd is not None:
            self.lxbsmd.stop()
            self.lxbsmd = None
        if self.auditd is not None:
            self.auditd.stop()
            self.auditd = None
        if self.ebpf is not None:
            self.ebpf.stop()
            self.ebpf = None
        if self.reader is not None:
            self.reader.stop()
            self.reader = None
        if config != "none":
            self.mod.unload()

    def check(self, config: str, n: int) -> None:
        """The configuration was in effect: it recorded, or (idle, norules) it did not."""
        recording = (
            "file",
            "fifo",
            "file_frfw",
            "ring",
            "ring_frfw",
            "file_nowait",
            "auditd",
            "auditd_frfw",
            "ebpf",
            "protect",
            "protect_nofile",
            "auditd_watch",
        )
        if config in recording and n <= 0:
            raise RuntimeError(f"{config}: no records during the measurement")
        if config == "idle" and n != 0:
            raise RuntimeError(f"idle: the module wrote {n} records with nothing pre-selected")

    def latency_round(self, r: int, out: dict[str, Any]) -> None:
        for config in round_order(self.configs, r):
            self.enter(config)
            try:
                settle()
                before = self.records(config)
                m0 = Module.counters() if config.startswith("protect") else None
                daemon = self.lxbsmd or self.auditd or self.ebpf or self.reader
                cpu0, w0 = (cpu_seconds(daemon.pid) if daemon else 0.0), time.monotonic()
                t = lat_sys(tests_of(config))
                w1 = time.monotonic()
                cpu = (cpu_seconds(daemon.pid) - cpu0) if daemon else 0.0
                n = self.records(config) - before
                if config in ("ring", "ring_frfw") and (lost := Module.counters()["lost"]):
                    # No reader: a full ring would time the loss path instead.
                    raise RuntimeError(
                        f"{config}: the ring lost {lost} records (no reader empties it): "
                        "lower LXBSM_BENCH_SCALE"
                    )
                if m0 is not None:
                    # Records the ring lost and changes the module could not
                    # capture (JLOST): work the measurement left out, so kept.
                    m1 = Module.counters()
                    if m1["protect_trees"] != 1:
                        raise RuntimeError(f"{config}: {m1['protect_trees']} trees in force")
                    lost = m1["lost"] - m0["lost"] + m1["protect_lost"] - m0["protect_lost"]
                    out.setdefault("lost", {}).setdefault(config, []).append(lost)
                if self.lxbsmd is not None and config == "fifo":
                    c = self.lxbsmd.counts()
                    if c["feed_sent"] <= 0:
                        raise RuntimeError("fifo: the reader got nothing")
            finally:
                self.leave(config)
            self.check(config, n)
            for test, us in t.items():
                out["rounds"].setdefault(config, {}).setdefault(test, []).append(us)
            out["records"].setdefault(config, []).append(n)
            out["daemon_cpu_pct"].setdefault(config, []).append(round(100 * cpu / (w1 - w0), 1))
            log(f"round {r + 1}/{ROUNDS} {config}: {n} records; " + json.dumps(t))

    def hook_costs(self, config: str) -> list[dict[str, Any]]:
        """One lat_sys run under @config with the module's cost accounting on:
        what each hook cost (only hooks that ran).  Separate from the latency
        rounds, which run with accounting off (it reads the clock twice or
        three times per handler)."""
        self.enter(config)
        try:
            settle()
            fd = uapi.open_control()
            try:
                uapi.set_cost_accounting(True)
                _, before = uapi.hook_costs(fd)
                lat_sys(tests_of(config))
                _, after = uapi.hook_costs(fd)
                uapi.set_cost_accounting(False)
            finally:
                os.close(fd)
        finally:
            self.leave(config)
        rows = [a.minus(b) for a, b in zip(after, before, strict=True)]
        return [vars(r) for r in rows if r.entry_calls or r.ret_calls or r.records]

    def storm(self, config: str) -> dict[str, Any]:
        """stress-ng's storm, then lat_sys's loop storm, under one configuration."""
        self.enter(config)
        try:
            res = self.storm_run(config, STRESS_NG)
            res["loop_storm"] = self.storm_run(config, loop_storm())
        finally:
            self.leave(config)
        return res

    def storm_run(self, config: str, cmd: list[str]) -> dict[str, Any]:
        daemon = self.lxbsmd or self.auditd
        assert daemon is not None
        cpu0 = cpu_seconds(daemon.pid)
        rec0 = self.records(config)
        m0 = None if self.auditd else Module.counters()
        a0 = self.lxbsmd.counts() if self.lxbsmd else None
        lost0 = int(LinuxAudit.status().get("lost", "0")) if self.auditd else 0
        t0 = time.monotonic()
        run = subprocess.run(cmd, cwd="/tmp", capture_output=True, text=True, check=False)
        t1 = time.monotonic()
        if run.returncode != 0:
            raise RuntimeError(f"{cmd[4]} failed under {config}: {run.stderr[-2000:]}")
        rec1 = self.records(config)  # waits for the daemon to catch up
        t2 = time.monotonic()
        cpu = cpu_seconds(daemon.pid) - cpu0
        res: dict[str, Any] = {
            "records": rec1 - rec0,
            "run_s": round(t1 - t0, 2),
            "drain_s": round(t2 - t1, 2),
            "records_per_s": round((rec1 - rec0) / (t2 - t0), 1),
            "daemon_cpu_pct": round(100 * cpu / (t2 - t0), 1),
            "output": [
                line.split("] ", 1)[-1]
                for line in (run.stdout + run.stderr).splitlines()
                if "metrc" in line or line.startswith("{")
            ],
        }
        if self.auditd is not None:
            res["lost"] = int(LinuxAudit.status().get("lost", "0")) - lost0
            res["missed"] = None  # no kretprobes: auditd hooks the syscall path
        else:
            assert m0 is not None and a0 is not None and self.lxbsmd is not None
            m1, a1 = Module.counters(), self.lxbsmd.counts()
            res["lost"] = m1["lost"] - m0["lost"] + a1["daemon_lost"] - a0["daemon_lost"]
            res["missed"] = m1["missed"] - m0["missed"]
            res["produced"] = m1["records"] - m0["records"]
            res["feed_sent"] = a1["feed_sent"] - a0["feed_sent"]
            res["feed_dropped"] = a1["feed_dropped"] - a0["feed_dropped"]
        return res


def fifo_reader(path: str) -> int:
    """An IDS-like realtime reader: takes every record off the FIFO as it comes."""
    records = 0
    buf = b""
    stop = False

    def done(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, done)
    with open(path, "rb", buffering=0) as f:
        while not stop:
            try:
                chunk = f.read(1 << 16)
            except InterruptedError:
                continue
            if not chunk:
                break
            buf += chunk
            # Split whole records: every BSM header token has the record's
            # length (big-endian u32) right after its token id.
            off = 0
            while len(buf) - off >= 5:
                size = int.from_bytes(buf[off + 1 : off + 5], "big")
                if size < 5 or len(buf) - off < size:
                    break
                off += size
                records += 1
            buf = buf[off:]
    print(f"fifo reader: {records} records", flush=True)
    return 0


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--ko", type=Path)
    p.add_argument("--out", type=Path)
    p.add_argument("--fifo-reader")
    p.add_argument("--ring-reader")
    args = p.parse_args()
    if args.fifo_reader:
        return fifo_reader(args.fifo_reader)
    if args.ring_reader:
        return ring_reader(args.ring_reader)
    if args.ko is None or args.out is None:
        p.error("--ko and --out are required")
    if os.environ.get("LXBSM_IN_GUEST") != "1" or Module.loaded():
        print("lxbsm_bench: run it in an lxbsm-vm guest booted without --load", file=sys.stderr)
        return 2
    configs = tuple(
        c for c in os.environ.get("LXBSM_BENCH_CONFIGS", ",".join(CONFIGS)).split(",") if c
    )
    start = time.monotonic()
    # Files and trails on a tmpfs of their own, and the programs measured.
    prepare_work()
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "audit"],
        capture_output=True,
        check=False,
    )
    out: dict[str, Any] = {
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        # "icount" when make bench booted the guest with lxbsm-vm --icount
        "clock": os.environ.get("LXBSM_BENCH_CLOCK", "wall"),
        "rounds_n": ROUNDS,
        "scale": SCALE,
        "storm_s": STORM_S,
        "configs": list(configs),
        "rounds": {},
        "records": {},
        "daemon_cpu_pct": {},
        "storm": {},
        "hook_costs": {},
    }
    aslr_file = Path("/proc/sys/kernel/randomize_va_space")
    aslr_was = aslr_file.read_text().strip()
    if not ASLR:
        aslr_file.write_text("0\n")
    out["randomize_va_space"] = int(aslr_file.read_text())
    bench = Bench(args.ko.resolve(), configs)
    log(f"kernel {out['kernel']}, {ROUNDS} rounds of {', '.join(configs)}; scale {SCALE}")
    out["pristine_none"] = lat_sys(tests_of("none"))
    log("none, before audit was ever enabled: " + json.dumps(out["pristine_none"]))
    sh("auditctl", "-e", "1")
    LinuxAudit.idle_state()
    try:
        for r in range(ROUNDS):
            bench.latency_round(r, out)
            args.out.write_text(json.dumps(out, indent=1))
        lxbsm_configs = (c for c in configs if c not in ("none", "ebpf") and "auditd" not in c)
        for config in lxbsm_configs:
            log(f"hook costs under {config}")
            out["hook_costs"][config] = bench.hook_costs(config)
            args.out.write_text(json.dumps(out, indent=1))
        for config in (c for c in STORM_CONFIGS if c in configs and STORM_S > 0):
            log(f"storm under {config} ({STORM_S:g} s)")
            out["storm"][config] = bench.storm(config)
            log(f"storm {config}: " + json.dumps(out["storm"][config]))
            args.out.write_text(json.dumps(out, indent=1))
    finally:
        bench.leave("cleanup")
        aslr_file.write_text(aslr_was + "\n")
    out["wall_s"] = round(time.monotonic() - start, 1)
    args.out.write_text(json.dumps(out, indent=1))
    log(f"done in {out['wall_s']:.0f} s: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
