"""Throughput of lxbsm-praudit and lxbsm-auditreduce on a generated trail.

Run: ``python bench/tools_bench.py [--records N]`` (default 10^6 records).
A trail of execve/open/close records like the kernel writes (about 150
bytes each) is generated with the library's encoder, then timed:

* decode only (``decode_records``);
* ``lxbsm-praudit -l`` and default mode, output to /dev/null;
* ``lxbsm-auditreduce -u 1000`` and a merge of two halves, output to /dev/null.

Prints records/s for each: wall clock (the figure that matters for a feed),
and per second of this process's CPU time, which shows the cost of the code
itself when other work (virtual machines...) shares the CPUs.  ``os.cpu_count``
and the load average are printed first, as the conditions of the run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lxbsm_tools.bsm import decode_records, encode_record, errno_to_bsm, make_token


def _templates() -> list[tuple[int, list[object]]]:
    subj = [
        make_token(
            "subject32",
            auid=a,
            euid=0,
            egid=0,
            ruid=a,
            rgid=a,
            pid=4000 + a,
            sid=4200,
            port=0,
            address="192.168.1.10",
        )
        for a in (1000, 1001, 0)
    ]
    out: list[tuple[int, list[object]]] = []
    for i, s in enumerate(subj):
        out.append(
            (
                23,
                [
                    make_token("exec_args", args=["/bin/ls", "-l", f"/tmp/d{i}"]),
                    make_token("path", text="/bin/ls"),
                    make_token(
                        "attr32", mode=0o100755, uid=0, gid=0, fsid=2049, nodeid=131090, dev=0
                    ),
                    s,
                    make_token("return32", status=0, value=0),
                ],
            )
        )
        out.append(
            (
                72,
                [
                    make_token("arg32", num=2, value=0, text="flags"),
                    make_token("path", text="/etc/passwd"),
                    make_token(
                        "attr32", mode=0o100644, uid=0, gid=0, fsid=2049, nodeid=1835014, dev=0
                    ),
                    s,
                    make_token("return32", status=0, value=3),
                ],
            )
        )
        out.append(
            (
                112,
                [
                    make_token("arg32", num=1, value=3, text="fd"),
                    s,
                    make_token("return32", status=errno_to_bsm(9), value=0xFFFFFFFF),
                ],
            )
        )
    return out


def generate(path: Path, n: int, start: int = 1704164645) -> int:
    """Write ``n`` records; the header time advances by 1 ms per record."""
    tpl = _templates()
    size = 0
    with open(path, "wb") as f:
        chunk: list[bytes] = []
        for i in range(n):
            ev, toks = tpl[i % len(tpl)]
            t = start * 1000 + i
            rec = encode_record(ev, 0, toks, time=(t // 1000, t % 1000))  # type: ignore[arg-type]
            chunk.append(rec)
            size += len(rec)
            if len(chunk) >= 10000:
                f.write(b"".join(chunk))
                chunk.clear()
        f.write(b"".join(chunk))
    return size


def _time(label: str, n: int, fn: object) -> float:
    """Run ``fn`` once; print wall-clock and CPU-time records/s."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()  # type: ignore[operator]
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(
        f"{label:<42} {dt:7.2f} s  {n / dt:>10,.0f} records/s"
        f"  (cpu {cpu:6.2f} s, {n / cpu:>9,.0f} records/cpu-s)"
    )
    return n / dt


def _run_main(main: object, argv: list[str]) -> None:
    fd = os.open(os.devnull, os.O_WRONLY)
    saved = os.dup(1)
    sys.stdout.flush()
    os.dup2(fd, 1)
    try:
        main(argv)  # type: ignore[operator]
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(fd)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    args = ap.parse_args()
    os.environ.setdefault("TZ", "UTC")
    time.tzset()
    from lxbsm_tools import auditreduce, praudit

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{sys.implementation.name} {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {load}")
    with tempfile.TemporaryDirectory() as d:
        trail = Path(d) / "bench.trail"
        n = args.records
        t0 = time.perf_counter()
        size = generate(trail, n)
        print(f"generated {n:,} records, {size / 1e6:.1f} MB in {time.perf_counter() - t0:.1f} s")
        data = trail.read_bytes()
        _time("decode_records", n, lambda: sum(1 for _ in decode_records(data)))
        _time("lxbsm-praudit -l", n, lambda: _run_main(praudit.main, ["-l", str(trail)]))
        _time("lxbsm-praudit (default)", n, lambda: _run_main(praudit.main, [str(trail)]))
        _time("lxbsm-praudit -x", n, lambda: _run_main(praudit.main, ["-x", str(trail)]))
        _time(
            "lxbsm-auditreduce -u 1000",
            n,
            lambda: _run_main(auditreduce.main, ["-u", "1000", str(trail)]),
        )
        half = len(data) // 2
        # split on a record boundary
        offs = 0
        for rec in decode_records(data):
            if rec.offset >= half:
                offs = rec.offset
                break
        a, b = Path(d) / "a.trail", Path(d) / "b.trail"
        a.write_bytes(data[:offs])
        b.write_bytes(data[offs:])
        _time(
            "lxbsm-auditreduce (merge 2 trails, all)",
            n,
            lambda: _run_main(auditreduce.main, [str(b), str(a)]),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
