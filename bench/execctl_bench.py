"""Exec latency with exec control: no rules against 1000 deny rules, one guest boot.

Run inside a guest with the module loaded (``make bench-execctl`` does it).
Rounds alternate between the two configurations so that drift in the
emulated CPU hits both alike; each round is ``lat_exec`` over ROUND execs
of /usr/bin/true (fork + execve + wait, median).  The 1000 rules deny 1000
other files (by inode and by path), so every exec is looked up and none is
denied: the cost measured is that of the lookup.  Prints one JSON object
and a line with the median of the per-round ratios.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from lxbsm_tools import execctl, uapi

REPO = Path(__file__).resolve().parent.parent
LAT_EXEC = REPO / "build" / "progs" / "lat_exec"
ROUNDS = int(os.environ.get("LXBSM_BENCH_ROUNDS", "10"))
ROUND = int(os.environ.get("LXBSM_BENCH_EXECS", "200"))
NR_RULES = 1000


def lat_exec() -> float:
    out = subprocess.run([str(LAT_EXEC), str(ROUND)], check=True, capture_output=True, text=True)
    return float(out.stdout.split()[0])


def main() -> int:
    if not Path(uapi.DEVICE).exists():
        print("execctl_bench: run it in a guest with the module loaded", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as d:
        files = [Path(d) / f"prog{i}" for i in range(NR_RULES)]
        for f in files:
            f.write_text("#!/bin/sh\n")
        rules = Path(d) / "exec_control"
        rules.write_text("".join(f"deny {f}\n" for f in files))
        many = execctl.parse(rules).rules
        none = uapi.ExecRules("off", ())
        ctl = uapi.open_control()
        try:
            times: dict[str, list[float]] = {"no_rules": [], "rules_1000": []}
            for _ in range(ROUNDS):
                for name, xc in (("no_rules", none), ("rules_1000", many)):
                    uapi.set_exec_rules(ctl, xc)
                    times[name].append(lat_exec())
            uapi.set_exec_rules(ctl, none)
        finally:
            os.close(ctl)
    med = {k: statistics.median(v) for k, v in times.items()}
    # Each round pairs the two configurations back to back: the median of the
    # paired ratios does not move with the emulated CPU's drift over the run.
    paired = statistics.median(
        b / a for a, b in zip(times["no_rules"], times["rules_1000"], strict=True)
    )
    out = {"median_us": med, "rounds_us": times, "paired_ratio": paired}
    print(json.dumps(out))
    print(
        f"exec latency: {med['no_rules']:.1f} us without rules, {med['rules_1000']:.1f} us with "
        f"{NR_RULES} deny rules: {100 * (paired - 1):+.2f}% (median of {ROUNDS} paired rounds)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
