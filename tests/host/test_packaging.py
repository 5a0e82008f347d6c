"""The Debian package's commands come from pyproject.toml (scripts/console-scripts.py)."""

from __future__ import annotations

import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "console-scripts.py"


def run(pyproject_dir: Path) -> subprocess.CompletedProcess[str]:
    (pyproject_dir / "scripts").mkdir(exist_ok=True)
    copy = pyproject_dir / "scripts" / SCRIPT.name
    copy.write_text(SCRIPT.read_text())
    return subprocess.run([sys.executable, str(copy)], capture_output=True, text=True, check=False)


def test_every_command_but_the_vm_is_packaged_and_runs_a_main() -> None:
    out = subprocess.run(
        [sys.executable, str(SCRIPT)], capture_output=True, text=True, check=True
    ).stdout.split()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert {w.split(":")[0] for w in out} == set(scripts) - {"lxbsm-vm"}
    assert "lxbsm-recover:recover.main" in out
    for word in out:
        module = importlib.import_module("lxbsm_tools." + word.split(":")[1])
        assert callable(module.main), word


def test_an_entry_of_another_form_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project.scripts]\nlxbsm-x = "lxbsm_tools.x:run"\n')
    p = run(tmp_path)
    assert p.returncode == 1 and p.stdout == ""
    assert "lxbsm-x = 'lxbsm_tools.x:run'" in p.stderr and "pyproject.toml" in p.stderr
