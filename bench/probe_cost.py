#!/usr/bin/env python3
"""What entering lxbsm's hooks costs, per kind of probe, with empty handlers.

Run in an lxbsm-vm guest booted without --load, best with --icount:

    lxbsm-vm --kernel 6.12 --no-build --icount --rundir build/bench/pc -- \\
        python3 bench/probe_cost.py --out build/bench/pc/probe_cost.json

It loads build/probecost/<release>/probecost.ko (bench/probecost/build.sh
builds it) once per variant and runs lat_sys's open_close and tcp_connect on
the bench's tmpfs, in rounds: every variant once per round, beside "none" (no
module) in the same round, in lxbsm_bench.py's order, so each figure is the
median of paired ratios with the lowest and highest round.  A variant places
empty probes on the functions lxbsm hooks for that test, as lxbsm places
them:

- open: do_sys_openat2 at entry and return, do_filp_open and fd_install at
  entry (the events of fr,fw);
- tcp: __sys_connect_file and __sys_accept4 at entry and return,
  security_socket_connect, security_sock_graft and fd_install at entry;

each as kprobes and kretprobes, and as fprobes where the kernel has them
(CONFIG_FPROBE; not in Debian's 5.10 and 6.1).  The difference from "none" is
what merely entering the hooks costs; lxbsm's handlers' work comes on top.
LXBSM_BENCH_ROUNDS (default 7 here) and LXBSM_BENCH_SCALE as for lxbsm_bench.py.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import lxbsm_bench as lb

from lxbsm_tools import benchreport as br

ROUNDS = int(os.environ.get("LXBSM_BENCH_ROUNDS", "7"))

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


def measure(ko: Path, variant: str) -> float | None:
    """lat_sys's figure under @variant; None if this kernel cannot place its probes."""
    test, params = VARIANTS[variant]
    p = subprocess.run(["insmod", str(ko), *params], capture_output=True, text=True, check=False)
    if p.returncode != 0:
        lb.log(f"{variant}: not measured here: {p.stderr.strip()}")
        return None
    try:
        time.sleep(0.5)
        return lb.lat_sys([test])[test]
    finally:
        lb.sh("rmmod", "probecost")


def summary(out: dict[str, Any]) -> list[str]:
    rounds = out["rounds"]
    med, pct, spread = br.medians(rounds), br.overhead_pct(rounds), br.overhead_spread(rounds)
    lines = [f"kernel {out['kernel']}, {out['rounds_n']} rounds, clock {out['clock']}"]
    for test in TESTS:
        lines.append(f"  {test}: none {med['none'][test]:.3f} us")
    for variant, (test, _) in VARIANTS.items():
        if test not in rounds.get(variant, {}):
            lines.append(f"  {variant}: not available on this kernel")
            continue
        lo, hi = spread[variant][test]
        lines.append(
            f"  {variant}: {med[variant][test]:.3f} us, "
            f"+{med[variant][test] - med['none'][test]:.3f} us, "
            f"{pct[variant][test]:+.2f}% [{lo:+.2f}, {hi:+.2f}]"
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
    ko = lb.REPO / "build" / "probecost" / release / "probecost.ko"
    for f, how in ((ko, f"bench/probecost/build.sh {release}"), (lb.LAT_SYS, "make progs")):
        if not f.exists():
            print(f"probe_cost: {f} is missing: {how} builds it", file=sys.stderr)
            return 2
    lb.prepare_work()
    aslr = Path("/proc/sys/kernel/randomize_va_space")
    aslr_was = aslr.read_text()
    aslr.write_text("0\n")
    out: dict[str, Any] = {
        "kernel": release,
        "clock": os.environ.get("LXBSM_BENCH_CLOCK", "wall"),
        "rounds_n": ROUNDS,
        "scale": lb.SCALE,
        "rounds": {},  # variant -> test -> us per round, as lxbsm_bench.py's
    }
    rounds: dict[str, dict[str, list[float]]] = out["rounds"]
    try:
        for r in range(ROUNDS):
            for variant in lb.round_order(["none", *VARIANTS], r):
                if variant == "none":
                    for test, us in lb.lat_sys(list(TESTS)).items():
                        rounds.setdefault("none", {}).setdefault(test, []).append(us)
                    continue
                got = measure(ko, variant)
                if got is not None:
                    rounds.setdefault(variant, {}).setdefault(VARIANTS[variant][0], []).append(got)
            lb.log(f"round {r + 1}/{ROUNDS} done")
        # A variant is reported only if it ran in every round (paired with none).
        for variant in VARIANTS:
            if len(rounds.get(variant, {}).get(VARIANTS[variant][0], [])) != ROUNDS:
                rounds.pop(variant, None)
    finally:
        aslr.write_text(aslr_was)
        subprocess.run(["umount", str(lb.WORK)], check=False)
    args.out.write_text(json.dumps(out, indent=1))
    for line in summary(out):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
