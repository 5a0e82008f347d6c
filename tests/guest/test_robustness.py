"""Bad arguments behave the same with and without the module; storms and reloads."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

from lxbsm_tools import uapi
from lxbsm_tools.bsm import encode_file_token, read_trail

from .audit import auditing
from .conftest import load_module, run

# Each line: a system call with bad arguments, made through libc's syscall().
BAD_CALLS = r"""
import ctypes, json, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
K = 0xffffffff81000000          # a kernel address
calls = {
  "open NULL":            (2, 0, 0, 0),
  "open kernel ptr":      (2, K, 0, 0),
  "openat bad fd":        (257, 9999, ctypes.c_char_p(b"x"), 0),
  "openat2 bad size":     (437, -100, ctypes.c_char_p(b"/"), K, 1),
  "creat NULL":           (85, 0, 0o600),
  "close -1":             (3, -1),
  "execve NULL":          (59, 0, 0, 0),
  "execve kernel argv":   (59, ctypes.c_char_p(b"/bin/true"), K, 0),
  "execveat bad fd":      (322, 9999, ctypes.c_char_p(b"x"), 0, 0, 0),
  "execveat empty no fd": (322, -1, ctypes.c_char_p(b""), 0, 0, 0x1000),
  "bind -1":              (49, -1, 0, 0),
  "connect kernel addr":  (42, 0, K, 16),
  "accept -1":            (43, -1, 0, 0),
  "accept4 bad flags":    (288, 0, 0, 0, -1),
  "setgroups huge":       (116, 1 << 30, 0),
  "setgroups kernel ptr": (116, 2, K),
  "setuid invalid":       (105, -1),
  "clone bad flags":      (56, 0x800 | 0x10000, 0, 0, 0, 0),
  "clone3 NULL":          (435, 0, 88),
}
out = {}
for name, (nr, *args) in calls.items():
    r = libc.syscall(nr, *args)
    out[name] = [r, ctypes.get_errno() if r < 0 else 0]
json.dump(out, sys.stdout)
"""


def bad_calls() -> dict[str, list[int]]:
    out = subprocess.run(
        ["python3", "-c", BAD_CALLS], capture_output=True, text=True, check=True
    ).stdout
    return dict(json.loads(out))


def test_bad_arguments_same_result_with_and_without_module() -> None:
    with auditing(flags="all", naflags="all", policy="cnt,argv,arge") as a:
        with_module = bad_calls()
        assert a.collect(), "the module recorded nothing"
    run("rmmod", "lxbsm")
    try:
        without = bad_calls()
    finally:
        load_module()
    assert with_module == without
    assert all(v[0] == -1 for v in without.values()), without


def test_default_ring_storm_loses_nothing_and_misses_nothing(tmp_path: Path) -> None:
    load_module()
    with auditing(flags="ex,pc,fr,fw", naflags="ex,pc,fr,fw", policy="cnt,argv") as a:
        trail = tmp_path / "storm.trail"
        stop = threading.Event()
        n = 0
        with trail.open("wb") as f:
            # As the daemon writes a trail: a file token first, then ring bytes.
            f.write(encode_file_token(str(trail), time=(int(time.time()), 0)))

            def reader() -> None:
                nonlocal n
                while not stop.is_set():
                    a.ring.wait(0.2)
                    for rec in a.ring.records():
                        f.write(rec)
                        n += 1

            t = threading.Thread(target=reader)
            t.start()
            subprocess.run(
                [
                    "stress-ng",
                    "--exec",
                    "1",
                    "--open",
                    "1",
                    "--timeout",
                    "30s",
                    "--quiet",
                    "--temp-path",
                    str(tmp_path),
                ],
                check=True,
            )
            time.sleep(0.5)
            stop.set()
            t.join()
        st = uapi.get_status(a.ctl)
        hooks = uapi.hooks(a.ctl)
    assert st.lost == {k: 0 for k in st.lost}
    assert {h.name: h.missed for h in hooks if h.missed} == {}
    assert n > 1000, f"only {n} records in a 30 s storm"
    # The raw ring bytes are a valid BSM trail.
    assert sum(1 for _ in read_trail(trail)) == n
