"""lxbsm-audit status --hooks and cost: what needs no module."""

from __future__ import annotations

from pathlib import Path

import pytest

from lxbsm_tools import audit, uapi


def cost(name: str, **kw: int) -> uapi.HookCost:
    fields = dict.fromkeys(uapi.COST_FIELDS, 0) | kw
    return uapi.HookCost(name, **fields)


def test_hook_rows_per_run_figures_and_missing_hooks_left_out() -> None:
    hooks = [
        uapi.Hook("__x64_sys_execve", "on", 2, 10),
        uapi.Hook("__ia32_compat_sys_execve", "missing", 0, 0),
        uapi.Hook("__x64_sys_close", "idle", 0, 0),
    ]
    costs = [
        cost(
            "__x64_sys_execve",
            entry_calls=10,
            entry_ns=20000,
            ret_calls=10,
            ret_ns=50000,
            records=10,
            build_ns=15000,
            ring_ns=5000,
        ),
        cost("__ia32_compat_sys_execve"),
        cost("__x64_sys_close"),
        cost("(task work)", records=2, build_ns=4000, ring_ns=2000),
    ]
    rows = audit.hook_rows(hooks, costs)
    assert rows == [
        ("__x64_sys_execve", "on", "2", "10", "2000", "10", "5000", "10", "1500", "500", "0.070"),
        ("__x64_sys_close", "idle", "0", "0", "-", "0", "-", "0", "-", "-", "0.000"),
        ("(task work)", "-", "-", "0", "-", "0", "-", "2", "2000", "1000", "0.006"),
    ]


def test_cost_difference() -> None:
    a = cost("x", entry_calls=5, entry_ns=100)
    b = cost("x", entry_calls=2, entry_ns=40)
    assert a.minus(b) == cost("x", entry_calls=3, entry_ns=60)


def test_cost_switch_without_module_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(uapi, "COST_PARAM", str(tmp_path / "absent" / "cost"))
    assert audit.main(["cost", "on"]) == 1
    assert "not loaded" in capsys.readouterr().err
