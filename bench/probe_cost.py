#!/usr/bin/env python3
"""What entering lxbsm's hooks costs, per kind of probe, with empty handlers.

Run in an lxbsm-vm guest booted without --load, best with --icount:

    lxbsm-vm --kernel 6.12 --no-build --icount --rundir build/bench/pc -- \\
        python3 bench/probe_cost.py --out build/bench/pc/probe_cost.json

It loads build/probecost/<release>/probecost.ko (bench/probecost/build.sh
builds it) once per variant and runs lat_sys's open_close and tcp_connect on a
tmpfs, in rounds: every variant once per round, beside "none" (no module) in
the same round, so each figure is the median of paired ratios with the lowest
and highest round.  A variant places empty probes on the functions lxbsm hooks
for that test, as lxbsm places them:

- open: do_sys_openat2 at entry and return, do_filp_open and fd_install at
  entry (the events of fr,fw);
- tcp: __sys_connect_file and __sys_accept4 at entry and return,
  security_socket_connect, security_sock_graft and fd_install at entry;

each as kprobes and kretprobes, and as fprobes where the kernel has them
(CONFIG_FPROBE; not in Debian's 5.10 and 6.1).  The difference from "none" is
what merely entering the hooks costs; lxbsm's handlers' work comes on top.
LXBSM_BENCH_ROUNDS (default 7) and LXBSM_BENCH_SCALE as for lxbsm_bench.py.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
ROUNDS = int(os.environ.get("LXBSM_BENCH_ROUNDS", "7"))
SCALE = float(os.environ.get("LXBSM_BENCH_SCALE", "1.0"))
WORK = Path(tempfile.gettempdir()) / "lxbsm-probe-cost"

OPEN_ENTRY = "do_filp_open,fd_install"
OPEN_BOTH = "do_sys_openat2"
TCP_ENTRY = "security_socket_connect,security_sock_graft,fd_install"
TCP_BOTH = "__sys_connect_file,__sys_accept4"
# variant -> (test, probecost.ko parameters)
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "open_kprobe": ("open_close", ["kind=kprobe", f"entry={OPEN_ENTRY}", f"both={OPEN_BOTH}"]),
    "open_fprobe": ("open_close", ["kind=fprobe", f"entry={OPEN_ENTRY}", f"both={OPEN_BOTH}"]),
    "tcp_kprobe": ("tcp_connect", ["kind=kprobe", f"entry={TCP_ENTRY}", f"both={TCP_BOTH}"]),
    "tcp_fprobe": ("tcp_connect", ["kind=fprobe", f"entry={TCP_ENTRY}", f"both={TCP_BOTH}"]),
}
TESTS = ("open_close", "tcp_connect")


def log(msg: str) -> None:
    print(f"[probe-cost {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def lat_sys(lat: Path, test: str) -> float:
    p = run(str(lat), "-s", str(SCALE), "-f", str(WORK / "lat_file"), test)
    if p.returncode != 0:
        raise RuntimeError(f"lat_sys {test} failed ({p.returncode}): {p.stderr.strip()}")
    got: dict[str, float] = json.loads(p.stdout)
    return got[test]


def measure(lat: Path, ko: Path, variant: str) -> float | None:
    """lat_sys's figure under @variant; None if this kernel cannot place its probes."""
    test, params = VARIANTS[variant]
    p = run("insmod", str(ko), *params)
    if p.returncode != 0:
        log(f"{variant}: not measured here: {p.stderr.strip()}")
        return None
    try:
        time.sleep(0.5)
        return lat_sys(lat, test)
    finally:
        p = run("rmmod", "probecost")
        if p.returncode != 0:
            raise RuntimeError(f"rmmod probecost failed: {p.stderr.strip()}")


def summary(out: dict[str, Any]) -> list[str]:
    lines = [f"kernel {out['kernel']}, {out['rounds_n']} rounds, clock {out['clock']}"]
    none = out["rounds"]["none"]
    for test in TESTS:
        lines.append(f"  {test}: none {statistics.median(none[test]):.3f} us")
    for variant, (test, _) in VARIANTS.items():
        got = out["rounds"].get(variant)
        if not got:
            lines.append(f"  {variant}: not available on this kernel")
            continue
        added = [v - n for v, n in zip(got, none[test], strict=True)]
        pct = [100 * (v / n - 1) for v, n in zip(got, none[test], strict=True)]
        lines.append(
            f"  {variant}: {statistics.median(got):.3f} us, +{statistics.median(added):.3f} us, "
            f"{statistics.median(pct):+.2f}% [{min(pct):+.2f}, {max(pct):+.2f}]"
        )
    return lines


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="JSON of every round")
    args = p.parse_args()
    if os.environ.get("LXBSM_IN_GUEST") != "1":
        print("probe_cost: run it in an lxbsm-vm guest", file=sys.stderr)
        return 2
    release = platform.release()
    ko = REPO / "build" / "probecost" / release / "probecost.ko"
    lat0 = REPO / "build" / "progs" / "lat_sys"
    for f, how in ((ko, f"bench/probecost/build.sh {release}"), (lat0, "make progs")):
        if not f.exists():
            print(f"probe_cost: {f} is missing: {how} builds it", file=sys.stderr)
            return 2
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    if run("mount", "-t", "tmpfs", "-o", "size=256m", "lxbsm-probe-cost", str(WORK)).returncode:
        print(f"probe_cost: cannot mount a tmpfs on {WORK}", file=sys.stderr)
        return 2
    lat = WORK / "lat_sys"
    shutil.copy2(lat0, lat)
    aslr = Path("/proc/sys/kernel/randomize_va_space")
    aslr_was = aslr.read_text()
    aslr.write_text("0\n")
    out: dict[str, Any] = {
        "kernel": release,
        "clock": os.environ.get("LXBSM_BENCH_CLOCK", "wall"),
        "rounds_n": ROUNDS,
        "scale": SCALE,
        "rounds": {},
    }
    try:
        for r in range(ROUNDS):
            order = ["none", *VARIANTS]
            k = r % len(order)
            order = order[k:] + order[:k]
            if r % 2:
                order.reverse()
            for variant in order:
                if variant == "none":
                    got = {t: lat_sys(lat, t) for t in TESTS}
                    for t, us in got.items():
                        out["rounds"].setdefault("none", {}).setdefault(t, []).append(us)
                    continue
                got_us = measure(lat, ko, variant)
                if got_us is not None:
                    out["rounds"].setdefault(variant, []).append(got_us)
            log(f"round {r + 1}/{ROUNDS} done")
        # A variant is reported only if it ran in every round (paired with none).
        for variant in VARIANTS:
            if len(out["rounds"].get(variant, [])) != ROUNDS:
                out["rounds"].pop(variant, None)
    finally:
        aslr.write_text(aslr_was)
        run("umount", str(WORK))
    args.out.write_text(json.dumps(out, indent=1))
    for line in summary(out):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
