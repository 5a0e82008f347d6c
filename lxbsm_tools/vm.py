"""lxbsm-vm: run a command in a QEMU guest booting a chosen Debian kernel.

The guest (virtme-ng, QEMU TCG) sees the host's root file system read-only, so
the repository, its .venv and Debian's python3 are all there.  With --load the
module is built on the host for that kernel and inserted before the command;
after the command it is removed again.  The command's output is streamed while
it runs; its exit status becomes ours.  The run fails when the guest's kernel
log shows a BUG, WARNING, Oops, Call Trace, lockdep or KASAN line (printed),
when the module cannot be unloaded, or when the guest dies.

    lxbsm-vm --kernel 6.12 --load -- python3 -m pytest tests/guest
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BOOT = Path("/boot")
# Kernel log lines that fail a run, whatever the command's status: splats,
# lockdep, KASAN, KFENCE, slub_debug's reports ("BUG kmalloc-64 (Tainted: ...):
# Right Redzone overwritten"), stalls and hung tasks.
BAD_DMESG = re.compile(
    r"BUG:|BUG [\w.:-]+ \(|WARNING:|Oops|Call Trace|lockdep|KASAN|KFENCE|"
    r"general protection fault|Redzone overwritten|Poison overwritten|"
    r"rcu_(?:sched|preempt) (?:self-)?detected stall|soft lockup|blocked for more than"
)
# QEMU's instruction counting: 2^0 ns of guest time per instruction, the guest
# clock running on while it sleeps.
ICOUNT = "shift=0,sleep=on"

# Kernel parameters that make memory errors visible (--memcheck): SLUB
# consistency checks, red zones and poisoning on every cache, and KFENCE
# sampling every allocation interval (where the kernel has KFENCE: Debian's
# 6.12 does, 6.1 does not).  A write past a kmalloc buffer is then reported
# when the object is checked or freed, and the report fails the run.  Not
# SLUB's owner tracking (U): it saves a stack trace at every allocation and
# free, which made the guests 13-17% slower under TCG (docs/kernel.md, "Memory
# errors") and only adds who allocated and freed the object to a report (to
# diagnose one, run without --memcheck, with --append slub_debug=FZPU ...).
MEMCHECK_PARAMS = ("slub_debug=FZP", "kfence.sample_interval=1")
# Every guest boots with these.  5.10 and 6.1 find the vCPUs' TSCs "unsynchronized"
# under TCG (the check races the round-robin vCPU scheduling), fall back to the
# HPET, and every clock read then leaves the guest: 6.1's 100-reload storm took
# 32 s a cycle on the HPET, 13 s on the TSC (docs/kernel.md, "Guests").  TCG's
# TSC is one counter for every vCPU, derived from the host's clock.
GUEST_PARAMS = ("tsc=reliable",)
# How the guest's 9p root is mounted (lxbsm_tools/virtme_root.py; docs/kernel.md,
# "Guests").  virtme-ng's msize=524288 is slow before 6.0, where every request
# allocates and hands QEMU two buffers of the full msize: on 5.10 a stat of a
# root file took 3.6 ms at 524288 and 0.9 ms at 32768, the boot 44 s and 27 s.
# Its cache=none goes to the host for every lookup and read: with cache=loose
# (the root is read-only and nothing changes it while a guest runs) 200 execs
# of /bin/true took 17 s instead of 24 on 6.12 and a Python import 8.9 s
# instead of 13.5.
VIRTME_MSIZE = 524288
OLD_9P_MSIZE = 32768
ROOT_CACHES = ("loose", "none")


def default_msize(version: str) -> int:
    """The root's 9p msize for a kernel release ('5.10.0-46-amd64')."""
    m = re.match(r"(\d+)\.(\d+)", version)
    if m is not None and (int(m[1]), int(m[2])) < (6, 0):
        return OLD_9P_MSIZE
    return VIRTME_MSIZE


EXIT_GUEST_DIED = 125
EXIT_TIMEOUT = 124
EXIT_SPLAT = 1


class VMError(Exception):
    """A problem the user can fix; the message says how."""


def say(msg: str) -> None:
    print(f"[lxbsm-vm] {msg}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Kernel:
    """One supported kernel, as scripts/kernels.sh names it."""

    id: str
    version: str
    role: str
    root: str

    @property
    def image(self) -> Path:
        return kernel_image(self.version, self.root)


def kernel_cache() -> Path:
    return Path(os.environ.get("LXBSM_CACHE", "/var/lib/lxbsm-build"))


def kernel_image(version: str, root: str = "") -> Path:
    """Where @version's image is: /boot for this host's kernels, the cache for the
    kernels of other suites (unpacked there by scripts/buildroot.sh)."""
    cached = kernel_cache() / "kernels" / version / "boot" / f"vmlinuz-{version}"
    if root != "host" and (root or cached.exists()):
        return cached
    return BOOT / f"vmlinuz-{version}"


def supported_kernels() -> list[Kernel]:
    """The supported kernels present here (scripts/kernels.sh; missing ones left out)."""
    proc = subprocess.run(
        [str(REPO / "scripts" / "kernels.sh")], capture_output=True, text=True, check=False
    )
    found = []
    for line in proc.stdout.splitlines():
        fields = line.split()
        if len(fields) == 4:
            found.append(Kernel(*fields))
    return found


def installed_kernels() -> list[str]:
    """Kernel versions that can boot: the supported ones, and any other with an
    image in /boot and modules in /lib/modules."""
    found = [k.version for k in supported_kernels()]
    for img in sorted(BOOT.glob("vmlinuz-*")):
        ver = img.name.removeprefix("vmlinuz-")
        if Path("/lib/modules", ver).is_dir() and ver not in found:
            found.append(ver)
    return found


def resolve_kernel(
    spec: str, available: Sequence[str] | None = None, ids: dict[str, str] | None = None
) -> str:
    """Map a kernel id of scripts/kernels.sh ('5.10', '6.12-rt', '7.3'), a prefix
    such as '6.1', or a full version to one kernel that can boot."""
    if ids is None:
        ids = {k.id: k.version for k in supported_kernels()} if available is None else {}
    if spec in ids:
        return ids[spec]
    kernels = list(installed_kernels() if available is None else available)
    if spec in kernels:
        return spec
    generic = [
        k for k in kernels if k.endswith("-amd64") and "-cloud-" not in k and "-rt-" not in k
    ]
    matches = [k for k in generic if k.startswith(spec + ".") or k.startswith(spec + "-")]
    if len(matches) == 1:
        return matches[0]
    have = ", ".join([*ids, *kernels]) or "none"
    if not matches:
        raise VMError(
            f"no installed kernel matches '{spec}' (installed: {have}).\n"
            "  Install the supported kernels with: make deps"
        )
    raise VMError(f"'{spec}' is ambiguous ({', '.join(matches)}): give the full version")


def find_tools() -> tuple[str, str]:
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        raise VMError(
            "qemu-system-x86_64 not found.\n"
            "  Install it with: make deps   (or: apt-get install qemu-system-x86)"
        )
    vng = Path(sys.executable).parent / "vng"
    if not vng.exists():
        found = shutil.which("vng")
        if found is None:
            raise VMError(
                "virtme-ng (vng) not found.\n"
                "  Install it with: make deps   (it goes into the project's .venv)"
            )
        vng = Path(found)
    return qemu, str(vng)


def bad_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if BAD_DMESG.search(line)]


@dataclass
class Run:
    kernel: str
    command: list[str]
    ko: Path | None
    ko_params: list[str]
    shares: list[Path]
    memory: str
    cpus: int
    timeout: float
    rundir: Path
    tcg_threads: str = "single"
    icount: bool = False
    append: tuple[str, ...] = ()
    msize: int = VIRTME_MSIZE
    root_cache: str = "loose"

    @property
    def root_9p(self) -> str:
        """The 9p options of the guest's root, in place of virtme-ng's."""
        return f"msize={self.msize},cache={self.root_cache}"

    @property
    def kernel_params(self) -> tuple[str, ...]:
        """What the guest kernel's command line gets: GUEST_PARAMS, then append."""
        return (*GUEST_PARAMS, *self.append)

    def guest_script(self) -> str:
        q = shlex.quote
        rd = q(str(self.rundir))
        lines = [
            "#!/bin/sh",
            "# Written by lxbsm-vm; runs inside the guest.",
            f"echo up > {rd}/booted",
            f"cd {q(str(REPO))}",
            f"export PATH={q(str(REPO / '.venv' / 'bin'))}:$PATH",
            f"export LXBSM_IN_GUEST=1 LXBSM_RUNDIR={rd}",
            "export PYTHONDONTWRITEBYTECODE=1 HYPOTHESIS_STORAGE_DIRECTORY=/tmp/hypothesis",
        ]
        if self.shares:
            lines.append(f"export LXBSM_SHARE={q(str(self.shares[0]))}")
        if self.ko is not None:
            params = " ".join(q(p) for p in self.ko_params)
            lines += [
                f"if ! insmod {q(str(self.ko))} {params} >{rd}/insmod.log 2>&1; then",
                f"  echo 'insmod failed:' >>{rd}/out.log; cat {rd}/insmod.log >>{rd}/out.log",
                f"  dmesg >{rd}/dmesg; echo 126 >{rd}/rc; echo done >{rd}/finished; exit 0",
                "fi",
                f"export LXBSM_MODULE_LOADED=1 LXBSM_KO={q(str(self.ko))}",
            ]
        lines += [
            f"( {shlex.join(self.command)} ) </dev/null >>{rd}/out.log 2>&1",
            f"echo $? >{rd}/rc",
        ]
        if self.ko is not None:
            lines += [
                "if grep -q '^lxbsm ' /proc/modules; then",
                f"  rmmod lxbsm >{rd}/rmmod.log 2>&1 || echo failed >{rd}/rmmod-failed",
                "fi",
            ]
        lines += [f"dmesg >{rd}/dmesg", f"echo done >{rd}/finished", ""]
        return "\n".join(lines)


class Tail(threading.Thread):
    """Copy a growing file to our stdout until stopped."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.stop = threading.Event()
        self.pos = 0

    def pump(self) -> None:
        try:
            with self.path.open("rb") as f:
                f.seek(self.pos)
                chunk = f.read()
        except FileNotFoundError:
            return
        if chunk:
            self.pos += len(chunk)
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()

    def run(self) -> None:
        while not self.stop.wait(0.3):
            self.pump()
        self.pump()


def build_module(kernel: str) -> Path:
    say(f"building lxbsm.ko for {kernel}")
    proc = subprocess.run([str(REPO / "scripts" / "build-module.sh"), kernel], check=False)
    if proc.returncode != 0:
        raise VMError(f"the module did not build for {kernel}")
    return REPO / "build" / kernel / "lxbsm.ko"


def vng_command(run: Run, vng: str, image: Path, script: Path) -> list[str]:
    """The virtme-ng command line that boots @image and runs @script."""
    cmd = [
        vng,
        "--run",
        str(image),
        "--disable-kvm",
        # Multi-threaded TCG runs each vCPU in its own host thread, and then
        # does not keep kernel text that one vCPU rewrites (text_poke_bp, as
        # every kprobe and tracepoint (un)registration does) coherent for the
        # others: guests die in int3 handlers even with no lxbsm loaded
        # (docs/kernel.md, "Guests").  Round-robin TCG keeps SMP semantics.
        f"--qemu-opts=-accel tcg,thread={run.tcg_threads}"
        # Guest time from instructions executed (1 ns each), not the host's
        # clock: timings that do not move with the host's load (one vCPU).
        + (f" -icount {ICOUNT}" if run.icount else ""),
        "--force-9p",
        # The kernel's messages go to the console log, so a guest that
        # dies leaves its last words there.
        "--verbose",
        "--memory",
        run.memory,
        "--cpus",
        str(run.cpus),
        "--rwdir",
        str(run.rundir),
    ]
    for param in run.kernel_params:
        cmd += ["--append", param]
    for share in run.shares:
        cmd += ["--rwdir", str(share)]
    cmd += ["--exec", f"sh {shlex.quote(str(script))}"]
    return cmd


def execute(run: Run) -> int:
    _, vng = find_tools()
    image = kernel_image(run.kernel)
    run.rundir.mkdir(parents=True, exist_ok=True)
    for name in ("booted", "finished", "rc", "out.log", "dmesg", "rmmod-failed"):
        (run.rundir / name).unlink(missing_ok=True)
    script = run.rundir / "guest.sh"
    script.write_text(run.guest_script())
    cmd = vng_command(run, vng, image, script)
    # vng starts virtme-run from its PATH: ours (the root's 9p options) goes first.
    shim = run.rundir / "virtme-shim"
    shim.mkdir(exist_ok=True)
    (shim / "virtme-run").write_text(
        f"#!{sys.executable}\nimport sys\nfrom lxbsm_tools.virtme_root import main\n"
        "sys.exit(main())\n"
    )
    (shim / "virtme-run").chmod(0o755)
    env = dict(os.environ)
    env["PATH"] = f"{shim}:{Path(vng).parent}:{env.get('PATH', '')}"
    env["LXBSM_ROOT_9P"] = run.root_9p

    params = " ".join(run.kernel_params)
    say(
        f"booting {run.kernel} under QEMU TCG ({run.cpus} CPUs, {run.tcg_threads}-threaded, "
        + (f"icount {ICOUNT}, " if run.icount else "")
        + f"{run.memory}; 9p root {run.root_9p}; kernel parameters: {params})"
    )
    start = time.monotonic()
    console = (run.rundir / "console.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=console, stderr=subprocess.STDOUT, env=env)
    tail = Tail(run.rundir / "out.log")
    booted = False
    timed_out = False
    next_note = 10.0
    try:
        while proc.poll() is None:
            waited = time.monotonic() - start
            if not booted and waited >= next_note:
                say(f"still booting ({waited:.0f} s; the console is in {run.rundir}/console.log)")
                next_note += 10
            if not booted and (run.rundir / "booted").exists():
                booted = True
                load = f"insmod {run.ko.name}; " if run.ko else ""
                say(
                    f"guest up in {time.monotonic() - start:.1f} s; {load}running: "
                    f"{shlex.join(run.command)}"
                )
                tail.start()
            if time.monotonic() - start > run.timeout:
                timed_out = True
                proc.kill()
                break
            time.sleep(0.2)
        proc.wait()
    finally:
        console.close()
        if tail.is_alive():
            tail.stop.set()
            tail.join()
        elif (run.rundir / "out.log").exists():
            tail.pump()
    elapsed = time.monotonic() - start

    if timed_out:
        say(
            f"TIMEOUT: the guest ran longer than {run.timeout:.0f} s; console: "
            f"{run.rundir / 'console.log'}"
        )
        return EXIT_TIMEOUT
    if not (run.rundir / "finished").exists():
        console_text = (run.rundir / "console.log").read_text(errors="replace")
        say("the guest died before the command finished; last console lines:")
        for line in console_text.splitlines()[-40:]:
            print(f"    {line}", file=sys.stderr)
        return EXIT_GUEST_DIED
    rc = int((run.rundir / "rc").read_text().strip() or EXIT_GUEST_DIED)
    dmesg = (run.rundir / "dmesg").read_text(errors="replace")
    splats = bad_lines(dmesg)
    say(f"guest finished in {elapsed:.1f} s, command exit status {rc}")
    status = rc
    if (run.rundir / "rmmod-failed").exists():
        say("FAIL: rmmod lxbsm failed: " + (run.rundir / "rmmod.log").read_text().strip())
        status = status or EXIT_SPLAT
    if splats:
        say(
            f"FAIL: the guest kernel log has {len(splats)} BUG/WARNING/Oops/Call Trace/"
            f"lockdep/KASAN/KFENCE/slub_debug line(s) (full log: {run.rundir / 'dmesg'}):"
        )
        for line in splats:
            print(f"    {line}", file=sys.stderr)
        status = status or EXIT_SPLAT
    return status


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="lxbsm-vm",
        description="Boot a Debian kernel under QEMU (TCG) with this repository visible, "
        "optionally load lxbsm.ko, run COMMAND, and fail on kernel splats.",
        epilog="example: lxbsm-vm --kernel 6.12 --load -- python3 -m pytest tests/guest",
    )
    p.add_argument(
        "--kernel", help="kernel id ('5.10', '6.12-rt', '7.3': see --list) or full version"
    )
    p.add_argument(
        "--load",
        action="store_true",
        help="build lxbsm.ko for that kernel and insmod it before COMMAND",
    )
    p.add_argument("--ko", type=Path, help="insmod this module file instead (implies --load)")
    p.add_argument(
        "--no-build", action="store_true", help="with --load, use build/<kernel>/lxbsm.ko as it is"
    )
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="module parameter for insmod (repeatable)",
    )
    p.add_argument(
        "--share",
        action="append",
        type=Path,
        default=[],
        metavar="DIR",
        help="host folder the guest may write (repeatable; first one is $LXBSM_SHARE)",
    )
    p.add_argument(
        "--append",
        action="append",
        default=[],
        metavar="PARAM",
        help="kernel command-line parameter for the guest (repeatable)",
    )
    p.add_argument(
        "--memcheck",
        action="store_true",
        help="boot with memory-error detection: " + " ".join(MEMCHECK_PARAMS),
    )
    p.add_argument(
        "--msize",
        type=int,
        default=None,
        help=f"9p msize of the guest's root (default: {OLD_9P_MSIZE} before 6.0, where "
        f"virtme-ng's {VIRTME_MSIZE} makes every file access slow; {VIRTME_MSIZE} on newer "
        "kernels)",
    )
    p.add_argument(
        "--root-cache",
        choices=ROOT_CACHES,
        default="loose",
        help="9p caching of the guest's read-only root (default loose; none asks the host "
        "every time, as virtme-ng does)",
    )
    p.add_argument("--memory", default="2G", help="guest memory (default 2G)")
    p.add_argument("--cpus", type=int, default=None, help="guest CPUs (default 2; 1 with --icount)")
    p.add_argument(
        "--icount",
        action="store_true",
        help=f"count guest time in instructions (QEMU -icount {ICOUNT}): timings that do not "
        "drift with the host's load, for benchmarks; one vCPU (SMP guests hang at boot so)",
    )
    p.add_argument("--timeout", type=float, default=1800, help="seconds (default 1800)")
    p.add_argument(
        "--tcg-threads",
        choices=("single", "multi"),
        default="single",
        help="QEMU TCG threading (default single: multi is faster but does not keep "
        "patched kernel text coherent across vCPUs, so kprobe (un)registration can crash it)",
    )
    p.add_argument(
        "--rundir", type=Path, help="where the run's files go (default build/vm/<kernel>-<pid>)"
    )
    p.add_argument(
        "--list", action="store_true", help="list the supported kernels and whether they are here"
    )
    p.add_argument("command", nargs="*", metavar="COMMAND")
    args = p.parse_args(argv)
    if args.list:
        return args
    if not args.kernel:
        p.error("--kernel is required (see --list)")
    if not args.command:
        p.error("no COMMAND given (put it after --)")
    return args


def list_kernels() -> int:
    kernels = supported_kernels()
    proc = subprocess.run(
        [str(REPO / "scripts" / "kernels.sh"), "--table"],
        capture_output=True,
        text=True,
        check=True,
    )
    present = {k.id: k for k in kernels}
    missing = 0
    print("id\tsuite\tversion\tbuild root\tin make check")
    for line in proc.stdout.splitlines():
        kid, suite, _flavour, _glob, root, role = line.split()
        k = present.get(kid)
        if k is None:
            missing += 1
        print(f"{kid}\t{suite}\t{k.version if k else 'MISSING (run make deps)'}\t{root}\t{role}")
    others = [v for v in installed_kernels() if v not in {k.version for k in kernels}]
    for v in others:
        print(f"-\t-\t{v}\thost\tnot supported")
    return 1 if missing else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.list:
        return list_kernels()
    try:
        kernel = resolve_kernel(args.kernel)
        ko: Path | None = None
        if args.ko is not None:
            ko = args.ko.resolve()
            if not ko.is_file():
                raise VMError(f"module file {ko} does not exist")
        elif args.load:
            ko = REPO / "build" / kernel / "lxbsm.ko"
            if not args.no_build:
                ko = build_module(kernel)
            elif not ko.is_file():
                raise VMError(
                    f"{ko} does not exist: drop --no-build or run make module KVER={kernel}"
                )
        cpus = args.cpus if args.cpus is not None else (1 if args.icount else 2)
        if args.icount and cpus != 1:
            raise VMError(f"--icount takes one vCPU (--cpus {cpus}): SMP guests hang at boot so")
        shares = [s.resolve() for s in args.share]
        for s in shares:
            s.mkdir(parents=True, exist_ok=True)
        rundir = (args.rundir or REPO / "build" / "vm" / f"{kernel}-{os.getpid()}").resolve()
        run = Run(
            kernel=kernel,
            command=list(args.command),
            ko=ko,
            ko_params=args.param,
            shares=shares,
            memory=args.memory,
            cpus=cpus,
            timeout=args.timeout,
            rundir=rundir,
            tcg_threads=args.tcg_threads,
            icount=args.icount,
            append=(*(MEMCHECK_PARAMS if args.memcheck else ()), *args.append),
            msize=default_msize(kernel) if args.msize is None else args.msize,
            root_cache=args.root_cache,
        )
        return execute(run)
    except VMError as e:
        say(f"error: {e}")
        return 2
    except KeyboardInterrupt:
        say("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
