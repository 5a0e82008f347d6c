"""bench/probe_cost.py's summary: paired ratios to none, spread, kernels without fprobes."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("probe_cost", REPO / "bench" / "probe_cost.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_summary_pairs_each_round_with_its_none() -> None:
    pc = load()
    # Round 2 runs twice as slow (drift): paired ratios must not see it.
    out: dict[str, Any] = {
        "kernel": "6.12.0-test",
        "clock": "icount",
        "rounds_n": 3,
        "rounds": {
            "none": {"open_close": [10.0, 20.0, 10.0], "tcp_connect": [100.0, 200.0, 100.0]},
            "open_kprobe": {"open_close": [11.0, 22.0, 11.5]},
            "tcp_kprobe": {"tcp_connect": [102.0, 204.0, 101.0]},
        },
    }
    lines = pc.summary(out)
    assert lines[0] == "kernel 6.12.0-test, 3 rounds, clock icount"
    assert "  open_close: none 10.000 us" in lines
    assert "  open_kprobe: 11.500 us, +1.500 us, +10.00% [+10.00, +15.00]" in lines
    assert "  tcp_kprobe: 102.000 us, +2.000 us, +2.00% [+1.00, +2.00]" in lines
    assert "  open_fprobe: not available on this kernel" in lines
    assert "  tcp_fprobe: not available on this kernel" in lines


def test_it_refuses_to_run_outside_a_guest() -> None:
    p = subprocess.run(
        [sys.executable, str(REPO / "bench" / "probe_cost.py"), "--out", "/dev/null"],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert p.returncode == 2
    assert "run it in an lxbsm-vm guest" in p.stderr
    assert "Traceback" not in p.stderr
