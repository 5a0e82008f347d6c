"""Turn the guests' raw.json files into results.json, the paper's table and a plot.

    python bench/report.py OUTDIR RAW.json...

Writes OUTDIR/results.json (kernel -> config -> test -> median us, and
kernel -> "storm"), OUTDIR/table.md and OUTDIR/table.json (us and % over
"none" for every configuration and test), OUTDIR/overhead.png, and prints
the table with the targets.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from lxbsm_tools import benchreport as br  # noqa: E402


def plot(raw: dict[str, dict[str, Any]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("report: matplotlib is missing (make deps installs it); no plot", file=sys.stderr)
        return False
    kernels = sorted(raw)
    fig, axes = plt.subplots(len(kernels), 1, figsize=(12, 4.5 * len(kernels)), squeeze=False)
    configs = [c for c in br.CONFIGS if c != br.BASE and c not in br.WRITE_CONFIGS]
    tests = br.LATENCY_TESTS
    width = 0.8 / len(configs)
    for ax, kernel in zip(axes[:, 0], kernels, strict=True):
        pct = br.overhead_pct(raw[kernel]["rounds"])
        for i, c in enumerate(c for c in configs if c in pct):
            xs = [j + (i - len(configs) / 2 + 0.5) * width for j in range(len(tests))]
            ax.bar(xs, [pct[c].get(t, 0.0) for t in tests], width, label=c)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(tests)))
        ax.set_xticklabels(tests)
        ax.set_ylabel("% over no module (median of paired rounds)")
        ax.set_yscale("symlog", linthresh=10)
        ax.set_title(f"{kernel}: latency overhead")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, ncol=4)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return True


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[0])
    raw: dict[str, dict[str, Any]] = {}
    for p in argv[1:]:
        run = json.loads(Path(p).read_text())
        raw[run["kernel"]] = run
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(br.results(raw), indent=1) + "\n")
    tables = {k: br.table(run["rounds"]) for k, run in raw.items()}
    (out / "table.json").write_text(json.dumps(tables, indent=1) + "\n")
    md = []
    for k in sorted(raw):
        run = raw[k]
        for part in (
            br.markdown(k, run["rounds"], run.get("rounds_n")),
            br.write_markdown(
                k, run["rounds"], run.get("rounds_n"), run.get("daemon_cpu_pct"), run.get("lost")
            ),
        ):
            if part:
                md.append(part)
        clock = run.get("clock", "wall")
        md.append(
            f"{k}: guest time "
            + (
                "counted in instructions (QEMU -icount, one vCPU)"
                if clock == "icount"
                else "wall-clock TCG"
            )
            + f", {run.get('cpus', '?')} CPU(s)\n"
        )
        if run.get("hook_costs"):
            md.append(br.hook_cost_markdown(k, run["hook_costs"]))
        if run.get("storm"):
            md.append(br.storm_markdown(k, run["storm"]))
        lines = [t.line() for t in br.targets(run["rounds"])]
        lines += br.storm_lost_targets(run.get("storm", {}))
        if lines:
            md.append(f"**{k}**, targets\n\n" + "".join(f"- {x}\n" for x in lines))
        if "wall_s" in run:
            md.append(f"{k}: guest run {run['wall_s']:.0f} s\n")
    text = "\n".join(md)
    (out / "table.md").write_text(text)
    plotted = plot(raw, out / "overhead.png")
    print(text)
    print(
        f"written: {out / 'results.json'}, {out / 'table.md'}, {out / 'table.json'}"
        + (f", {out / 'overhead.png'}" if plotted else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
