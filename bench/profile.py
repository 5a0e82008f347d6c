"""Where the added cost goes: perf profiles of lat_sys in the guest, per configuration.

    lxbsm-vm --kernel 6.12 --no-build --rundir build/bench/profile -- \\
        python3 bench/profile.py --ko build/<kernel>/lxbsm.ko TEST...

For each of none, ring (records into the ring, no reader) and file (the
daemon writing a trail), runs ``perf record -a -e cpu-clock -g`` (TCG has no
PMU) around ``lat_sys TEST...`` and writes ``perf report`` (by command and
symbol, no children, entries above 0.5%) to $LXBSM_RUNDIR/perf-<config>.txt,
with the lat_sys result at the top.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import lxbsm_bench as lb


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--ko", type=Path, required=True)
    p.add_argument("--configs", default="none,ring,file")
    p.add_argument("--scale", default="0.5", help="lat_sys -s (samples and batches)")
    p.add_argument("--freq", default="4000", help="perf record -F (samples per guest second)")
    p.add_argument(
        "--children",
        action="store_true",
        help="report each symbol with what it calls (inclusive), by symbol",
    )
    p.add_argument("tests", nargs="+")
    args = p.parse_args()
    rundir = Path(os.environ.get("LXBSM_RUNDIR", "/tmp"))
    lb.WORK.mkdir(parents=True, exist_ok=True)
    # as the bench does: its files on a tmpfs, not the overlay
    lb.sh("mount", "-t", "tmpfs", "-o", "size=1g,mode=0755", "lxbsm-prof", str(lb.WORK))
    lb.WORK.chmod(0o755)
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "audit"],
        capture_output=True,
        check=False,
    )
    # Kernel and module symbols in the report: perf reads /proc/kallsyms.
    Path("/proc/sys/kernel/kptr_restrict").write_text("0\n")
    Path("/proc/sys/kernel/perf_event_paranoid").write_text("-1\n")
    Path("/proc/sys/kernel/randomize_va_space").write_text("0\n")
    bench = lb.Bench(args.ko.resolve(), tuple(args.configs.split(",")))
    for config in bench.configs:
        bench.enter(config)
        data = rundir / f"perf-{config}.data"
        try:
            perf = ["perf", "record", "-q", "-a", "-g", "-e", "cpu-clock", "-F", args.freq]
            perf += ["-o", str(data)]
            lat = [str(lb.LAT_SYS), "-s", args.scale, "-f", str(lb.WORK / "lat_file")]
            rec = subprocess.run(
                [*perf, "--", *lat, "-p", str(lb.HELLO), *args.tests],
                capture_output=True,
                text=True,
                check=True,
            )
            # Reported while the module is loaded: its symbols are in kallsyms.
            rep = subprocess.run(
                [
                    *("perf", "report", "-i", str(data), "--stdio"),
                    "--children" if args.children else "--no-children",
                    *("-g", "none", "--kallsyms", "/proc/kallsyms"),
                    *("--sort", "sym" if args.children else "comm,sym"),
                    *("--percent-limit", "0.2" if args.children else "0.3"),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
        finally:
            bench.leave(config)
        text = f"# {config}: lat_sys {' '.join(args.tests)} -> {rec.stdout.strip()}\n"
        (rundir / f"perf-{config}.txt").write_text(text + rep.stdout + rep.stderr[-2000:])
        lb.log(text.strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
