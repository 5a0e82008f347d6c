"""Overflow: every record is either read or counted lost; without cnt, none is lost."""

from __future__ import annotations

import threading
import time

from lxbsm_tools import uapi

from .audit import PROGS, auditing, spawn
from .conftest import load_module

AUID = 4242
N = 3000


def closes(a, pid: int) -> int:  # type: ignore[no-untyped-def]
    return len(a.records("AUE_CLOSE", pid))


def test_tiny_ring_with_cnt_accounts_for_every_record_and_tells_the_reader() -> None:
    load_module("ring_size_kb=64")
    # Only audit id AUID is audited, and only for close: the child's close
    # calls are the only records, N + 1 of them (the loginuid file's close).
    with auditing(flags="", naflags="", policy="cnt", users={AUID: ("cl", "")}) as a:
        before = uapi.get_status(a.ctl).lost["ring_full"]
        pid, rc, _ = spawn(PROGS / "sysprobe", "login-closes", str(AUID), str(N))
        assert rc == 0
        read = closes(a, pid)
        lost = uapi.get_status(a.ctl).lost["ring_full"] - before
        assert lost > 0, "a 64 KiB ring should not hold 3000 records"
        assert read + lost == N + 1
        # The next record that finds room is preceded by the count of the gap.
        pid2, _, _ = spawn(PROGS / "sysprobe", "login-closes", str(AUID), "0")
        recs = a.records()
        notices = [r for r in recs if r.event == 33002]
        assert [n.first("text").text for n in notices] == [f"lxbsm: {lost} records lost"]
        assert recs.index(notices[0]) < recs.index(a.records("AUE_CLOSE", pid2)[0])


def test_without_cnt_processes_wait_for_room_and_nothing_is_lost() -> None:
    load_module("ring_size_kb=64")
    with auditing(flags="", naflags="", policy="", users={AUID: ("cl", "")}) as a:
        st0 = uapi.get_status(a.ctl)
        assert st0.can_wait
        done = threading.Event()
        counted: list[int] = []

        def slow_reader() -> None:
            while not done.is_set():
                time.sleep(0.05)
                counted.append(len(a.collect()))

        t = threading.Thread(target=slow_reader)
        t.start()
        try:
            pid, rc, _ = spawn(PROGS / "sysprobe", "login-closes", str(AUID), str(N))
        finally:
            done.set()
            t.join()
        assert rc == 0
        st = uapi.get_status(a.ctl)
        assert st.lost == st0.lost
        assert st.waited > st0.waited
        assert closes(a, pid) == N + 1
