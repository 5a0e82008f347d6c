"""Per-hook cost accounting: LXBSM_IOC_HOOK_COST, the cost parameter, lxbsm-audit."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from lxbsm_tools import uapi

from .audit import auditing, spawn
from .conftest import load_module, python_as_nobody, run

N = 20
EXECVE = "__x64_sys_execve"


def costs() -> tuple[bool, dict[str, uapi.HookCost]]:
    fd = uapi.open_control()
    try:
        on, got = uapi.hook_costs(fd)
    finally:
        os.close(fd)
    return on, {c.name: c for c in got}


def test_hooks_are_costed_only_while_accounting_is_on() -> None:
    assert Path(uapi.COST_PARAM).read_text().strip() == "N"  # off by default
    uapi.set_cost_accounting(True)
    try:
        with auditing() as a:
            on, before = costs()
            assert on
            pids = [spawn("/bin/true")[0] for _ in range(N)]
            for pid in pids:
                a.one("AUE_EXECVE", pid)
            _, after = costs()
    finally:
        uapi.set_cost_accounting(False)
    assert list(after)[-1] == "(task work)"
    d = after[EXECVE].minus(before[EXECVE])
    print(d)
    assert d.entry_calls >= N and d.ret_calls >= N
    assert d.entry_ns > 0 and d.ret_ns > 0
    # Each exec's record is finished in the return handler, which is timed
    # with it: building and writing them is part of the handler's time.
    assert d.records >= N
    assert 0 < d.build_ns + d.ring_ns <= d.ret_ns
    fork = after["sched_process_fork"].minus(before["sched_process_fork"])
    assert fork.entry_calls >= N and fork.ret_calls == 0

    on, before = costs()
    assert not on
    with auditing() as a:
        for pid in [spawn("/bin/true")[0] for _ in range(N)]:
            a.one("AUE_EXECVE", pid)
    _, after = costs()
    assert after == before, "counters moved while accounting was off"


def test_status_hooks_shows_the_table_and_json() -> None:
    r = run("lxbsm-audit", "cost", "on")
    assert r.stdout.strip() == "cost accounting on"
    try:
        # exec events selected: the exec hooks are armed (docs/kernel.md, "Arming")
        with auditing():
            spawn("/bin/true")
            text = run("lxbsm-audit", "status", "--hooks").stdout
            got = json.loads(run("lxbsm-audit", "status", "--hooks", "--json").stdout)
    finally:
        run("lxbsm-audit", "cost", "off")
    assert text.startswith("cost accounting on")
    assert any(line.startswith(EXECVE + " ") for line in text.splitlines())
    assert got["cost_accounting"] is True
    row = next(h for h in got["hooks"] if h["name"] == EXECVE)
    assert row["state"] == "on" and row["entry_calls"] >= 1
    off = run("lxbsm-audit", "status", "--hooks").stdout
    assert off.startswith("cost accounting off")


def test_unprivileged_user_cannot_switch_accounting() -> None:
    r = python_as_nobody(f"open({uapi.COST_PARAM!r}, 'w').write('1')")
    assert r.returncode != 0 and "PermissionError" in r.stderr
    assert Path(uapi.COST_PARAM).read_text().strip() == "N"


def test_switching_under_load_and_unloading_while_on() -> None:
    """Toggled while execs, opens and records race it, then unloaded while on."""
    storm = subprocess.Popen(
        ["sh", "-c", "while :; do /bin/true; cat /proc/self/stat >/dev/null; done"]
    )
    try:
        with auditing():
            for i in range(200):
                uapi.set_cost_accounting(i % 2 == 0)
                time.sleep(0.005)
            uapi.set_cost_accounting(True)
            time.sleep(0.5)
            on, got = costs()
            assert on and got[EXECVE].entry_calls > 0
        load_module()  # rmmod while on, with the storm running
    finally:
        storm.kill()
        storm.wait()
    assert Path(uapi.COST_PARAM).read_text().strip() == "N"
    on, got = costs()
    assert not on and got[EXECVE].entry_calls == 0
