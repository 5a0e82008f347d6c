"""Hooks whose only duty is some events are armed only while a mask selects them.

The first two tests load the module with disarm_delay_ms=0 (disarmed at once);
the last one shows the default deferred disarm.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from lxbsm_tools import execctl, uapi

from .audit import auditing, paths
from .conftest import load_module

# hooks armed by the events they record, and the classes of those events
OPEN_CLASSES = {"fr", "fw", "fa", "fm", "fc", "fd"}  # AUE_OPEN_RC is fc,fr,fa,fm ...
BY_EVENTS = {
    "do_sys_openat2": OPEN_CLASSES,
    "__x64_sys_close": {"cl"},
    "kernel_clone": {"pc"},
    "__x64_sys_chmod": {"fm"},
    "security_path_chmod": {"fm"},
    "__sys_bind": {"nt"},
    "security_socket_bind": {"nt"},
    "__sys_accept4": {"nt"},
    "__sys_connect_file": {"nt"},
    "security_socket_connect": {"nt"},
    # an open's or an accept's record, with the file installed
    "fd_install": OPEN_CLASSES | {"nt"},
    # exec records (pc, ex) and exec control (armed by its rules, below)
    "__x64_sys_execve": {"pc", "ex"},
    "security_bprm_check": {"pc", "ex"},
    # exec control alone
    "security_file_open": set(),
    "security_mmap_file": set(),
}
XC_HOOKS = ("__x64_sys_execve", "security_bprm_check", "security_file_open", "security_mmap_file")
# hooks with other duties: the process table, sessions, exec control, peers
ALWAYS = ("sched_process_fork", "sched_process_exec", "security_sock_graft", "__sys_setuid")
# protected trees' capture (kmod/protect.c), armed while some tree is protected; two of its
# functions are hooked for other duties too (security_path_chmod, security_mmap_file), and the
# table lists those duties first (kmod/hooks.c: the capture's hooks come last)
PROTECT = (
    "rw_verify_area",
    "vfs_fallocate",
    "security_path_truncate",
    "security_path_unlink",
    "security_path_rename",
    "security_path_link",
    "security_path_mknod",
    "security_path_chown",
    "security_file_free",
)


def states(last: bool = False) -> dict[str, str]:
    """Each hook's state by its function; of a function hooked twice, the first hook's (the
    last's with @last)."""
    fd = uapi.open_control()
    try:
        hooks = list(uapi.hooks(fd))
    finally:
        os.close(fd)
    out: dict[str, str] = {}
    for h in reversed(hooks) if not last else hooks:
        out[h.name] = h.state
    return out


def entry_calls() -> dict[str, int]:
    fd = uapi.open_control()
    try:
        return {c.name: c.entry_calls for c in uapi.hook_costs(fd)[1]}
    finally:
        os.close(fd)


def test_hooks_are_armed_only_while_their_events_are_selected(tmp_path: Path) -> None:
    load_module("disarm_delay_ms=0")
    st = states()  # nothing selected since the load
    for name in BY_EVENTS:
        assert st[name] == "idle", (name, st[name])
    for name in ALWAYS:
        assert st[name] == "on", (name, st[name])
    for cls in ("fr", "cl", "pc", "ex", "fm", "nt"):
        with auditing(flags=cls, naflags=cls):
            st = states()
        want = {n: "on" if cls in c else "idle" for n, c in BY_EVENTS.items()}
        assert {n: st[n] for n in BY_EVENTS} == want, cls
        assert all(st[n] == "on" for n in ALWAYS)
    assert all(states()[n] == "idle" for n in BY_EVENTS)
    # Exec control's hooks, with nothing selected, while it has rules.
    rules = tmp_path / "exec_control"
    rules.write_text("deny /nonexistent/lxbsm-test\n")
    ctl = uapi.open_control()
    try:
        uapi.set_exec_rules(ctl, execctl.parse(rules).rules)
        armed_by_rules = states()
        uapi.set_exec_rules(ctl, uapi.ExecRules("off", ()))
    finally:
        os.close(ctl)
    assert {n: armed_by_rules[n] for n in XC_HOOKS} == dict.fromkeys(XC_HOOKS, "on")
    assert all(states()[n] == "idle" for n in BY_EVENTS)
    # The capture of protected trees, while a tree is protected, and only then.
    assert all(states(last=True)[n] == "idle" for n in (*PROTECT, "security_mmap_file"))
    ctl = uapi.open_control()
    tree = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY)
    try:
        uapi.set_protect(ctl, [tree])
        protecting = states(last=True)
        uapi.set_protect(ctl, [])
    finally:
        os.close(tree)
        os.close(ctl)
    assert {n: protecting[n] for n in (*PROTECT, "security_mmap_file", "security_path_chmod")} == (
        dict.fromkeys((*PROTECT, "security_mmap_file", "security_path_chmod"), "on")
    )
    # ... and nothing else: the events' hooks stay out of the calls' path
    assert all(protecting[n] == "idle" for n in ("do_sys_openat2", "kernel_clone", "__sys_accept4"))
    assert all(states(last=True)[n] == "idle" for n in PROTECT)
    # Disarmed, a hook is out of the calls' path: its handler does not run.
    target = tmp_path / "f"
    target.write_text("x")
    uapi.set_cost_accounting(True)
    try:
        before = entry_calls()
        for _ in range(50):
            os.close(os.open(target, os.O_RDONLY))
        after = entry_calls()
        with auditing(flags="fr", naflags="fr") as a:
            os.close(os.open(target, os.O_RDONLY))
            armed = entry_calls()
            rec = a.records("AUE_OPENAT_R", os.getpid(), where=lambda r: paths(r) == [str(target)])
    finally:
        uapi.set_cost_accounting(False)
    assert after["do_sys_openat2"] == before["do_sys_openat2"]
    assert after["__x64_sys_close"] == before["__x64_sys_close"]
    assert after["fd_install"] == before["fd_install"]
    assert armed["do_sys_openat2"] > after["do_sys_openat2"]
    assert len(rec) == 1


def test_arming_races_calls_and_configuration_changes(tmp_path: Path) -> None:
    """Arm and disarm 40 times under an open/close/chmod/fork storm: no call lost its way.

    Each switch arms or disarms about 20 hooks (text patching: ~1 s a switch under TCG).
    """
    load_module("disarm_delay_ms=0")
    target = tmp_path / "s"
    target.write_text("x")
    storm = subprocess.Popen(
        ["sh", "-c", f"while :; do chmod 600 {target}; cat {target} >/dev/null; done"]
    )
    try:
        with auditing(flags="", naflags="") as a:
            for i in range(40):
                a.configure(flags="fr,fm,cl,pc" if i % 2 else "", naflags="")
                a.collect()
            a.configure(flags="fm", naflags="fm")
            pid = os.getpid()
            os.chmod(target, 0o640)
            rec = a.one("AUE_CHMOD", pid)
    finally:
        storm.kill()
        storm.wait()
    assert paths(rec) == [str(target)]
    assert all(states()[n] == "idle" for n in BY_EVENTS)


def test_a_hook_nobody_needs_is_disarmed_after_the_delay(tmp_path: Path) -> None:
    """Default disarm_delay_ms (2 s): deselected, a hook stays armed, records nothing, idles."""
    target = tmp_path / "d"
    target.write_text("x")
    with auditing(flags="fr", naflags="fr") as a:
        assert states()["do_sys_openat2"] == "on"
        a.configure(flags="", naflags="")
        t0 = time.monotonic()
        still = states()
        os.close(os.open(target, os.O_RDONLY))
        assert not a.records(where=lambda r: paths(r) == [str(target)])
        while any(states()[n] != "idle" for n in BY_EVENTS):
            assert time.monotonic() - t0 < 60, "the deferred disarm did not happen"
            time.sleep(0.1)
        waited = time.monotonic() - t0
    assert still["do_sys_openat2"] == "on", "disarmed at once, not after the delay"
    assert waited >= 1.0, waited
    # Selected again, it is armed at once and records.
    with auditing(flags="fr", naflags="fr") as a:
        assert states()["do_sys_openat2"] == "on"
        os.close(os.open(target, os.O_RDONLY))
        got = a.records("AUE_OPENAT_R", os.getpid(), where=lambda r: paths(r) == [str(target)])
    assert len(got) == 1
