"""The hook table: what is attached, and armed only when something selected needs it."""

from __future__ import annotations

import os

from lxbsm_tools import uapi

from .audit import auditing, spawn


def states() -> dict[str, str]:
    fd = uapi.open_control()
    try:
        return {h.name: h.state for h in uapi.hooks(fd)}
    finally:
        os.close(fd)


def test_nothing_selected_means_only_the_process_table_hooks_are_armed() -> None:
    st = states()
    assert st["sched_process_fork"] == st["sched_process_exit"] == "on"
    armed = {name for name, s in st.items() if s == "on"}
    assert armed <= {"sched_process_fork", "sched_process_exit", "audit_set_loginuid"}
    # Every ABI's entry points exist on the supported kernels.
    assert "missing" not in st.values(), st


def test_selecting_exec_arms_exactly_the_exec_hooks() -> None:
    with auditing(flags="ex", naflags="ex") as a:
        st = states()
        pid, _, _ = spawn("/usr/bin/true")
        assert a.one("AUE_EXECVE", pid)
        assert not a.records("AUE_OPENAT_R", pid)
    exec_hooks = {n for n in st if "execve" in n} | {"security_bprm_check"}
    assert {n for n in exec_hooks if st[n] != "on"} == set()
    assert st["do_sys_openat2"] == st["__sys_connect"] == "idle"
    # And disarmed again once nothing needs them.
    assert states()["__x64_sys_execve"] == "idle"
