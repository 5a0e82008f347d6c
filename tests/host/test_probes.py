"""kmod/probe-features.sh: probes that cannot lie."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def a_kernel() -> str:
    """A supported kernel whose headers are on this host (ROOT "host")."""
    lines = subprocess.run(
        [str(REPO / "scripts" / "kernels.sh")], check=True, capture_output=True, text=True
    ).stdout.splitlines()
    return next(line.split()[1] for line in lines if line.split()[3] == "host")


def probe(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    kdir = f"/lib/modules/{a_kernel()}/build"
    return subprocess.run(
        [str(REPO / "kmod" / "probe-features.sh"), kdir, str(tmp_path / "gen")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


def test_probes_answer_with_a_working_compiler(tmp_path: Path) -> None:
    p = probe(tmp_path, dict(os.environ))
    assert p.returncode == 0, p.stderr
    assert "#define LXBSM_HAVE_" in (tmp_path / "gen" / "lxbsm_probes.h").read_text()


def test_a_broken_compiler_stops_the_build_instead_of_hiding_features(tmp_path: Path) -> None:
    """As with bookworm's gcc-12 on a kernel built by gcc-16: the compiler's error, not "absent"."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in (
        "gcc",
        "cc",
        *(f"{p}gcc-{v}" for p in ("", "x86_64-linux-gnu-") for v in range(9, 17)),
    ):
        fake = bin_dir / name
        fake.write_text(
            '#!/bin/sh\necho "gcc: error: unrecognized command-line option '
            "'-fmin-function-alignment=16'\" >&2\nexit 1\n"
        )
        fake.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    p = probe(tmp_path, env)
    assert p.returncode != 0
    assert "-fmin-function-alignment=16" in p.stderr
    assert "control probe" in p.stderr
    assert not (tmp_path / "gen" / "lxbsm_probes.h").exists()
