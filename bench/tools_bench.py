"""Throughput of lxbsm-praudit and lxbsm-auditreduce on a generated trail.

Run: ``python bench/tools_bench.py [--records N]`` (default 10^6 records).
A trail of execve/open/close records like the kernel writes (about 150
bytes each) is generated with the library's encoder, then timed:

* decode only (``decode_records``, in this process);
* ``lxbsm-praudit`` in every mode and ``--json``;
* ``lxbsm-auditreduce`` with header-only selections (none, ``-m``, ``-c``,
  ``-a``/``-b``, ``-v``, merges of two halves) and token selections
  (``-u``, ``-e``, ``-o file=``).

Each tool runs as a child process (``python -m``), output to /dev/null.
Prints records/s for each: wall clock (the figure that matters for a feed),
per second of the child's CPU time, which shows the cost of the code itself
when other work (virtual machines...) shares the CPUs, and the child's peak
RSS (memory must not grow with the trail).  ``os.cpu_count`` and the load
average are printed first, as the conditions of the run.  ``--tree DIR``
times the tools of another checkout (before/after on the same trail).
"""

from __future__ import annotations

import argparse
import os
import subprocess
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
    """Run ``fn`` once in this process; print wall-clock and CPU-time records/s."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()  # type: ignore[operator]
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(
        f"{label:<44} {dt:7.2f} s  {n / dt:>10,.0f} records/s"
        f"  (cpu {cpu:6.2f} s, {n / cpu:>10,.0f} records/cpu-s)"
    )
    return n / dt


def _run_tool(label: str, n: int, tree: Path, argv: list[str]) -> dict[str, float]:
    """Run ``python -m lxbsm_tools.<tool> ...`` of ``tree`` under /usr/bin/time,
    output to /dev/null; print wall-clock and CPU records/s and its peak RSS."""
    env = {**os.environ, "PYTHONPATH": str(tree), "TZ": "UTC"}
    with tempfile.NamedTemporaryFile("r") as rep, open(os.devnull, "wb") as null:
        cmd = ["/usr/bin/time", "-o", rep.name, "-f", "%e %U %S %M", sys.executable, "-m"]
        rc = subprocess.run([*cmd, *argv], stdout=null, env=env, cwd=tree, check=False).returncode
        wall, user, system, kb = rep.read().split()[-4:]
    dt, cpu, rss = float(wall), float(user) + float(system), int(kb) / 1024
    print(
        f"{label:<44} {dt:7.2f} s  {n / dt:>10,.0f} records/s"
        f"  (cpu {cpu:6.2f} s, {n / cpu:>10,.0f} records/cpu-s)  max RSS {rss:4.0f} MB"
        + (f"  EXIT {rc}" if rc else "")
    )
    return {"wall": n / dt, "cpu": n / cpu, "rss_mb": rss}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument(
        "--tree",
        type=Path,
        default=Path(__file__).resolve().parents[1],
        help="the checkout whose tools are timed (default: this one), for before/after",
    )
    ap.add_argument("--only", help="run only the lines whose label contains this")
    args = ap.parse_args()
    os.environ.setdefault("TZ", "UTC")
    time.tzset()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{sys.implementation.name} {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {load}")
    print(f"tools of {args.tree}")
    with tempfile.TemporaryDirectory() as d:
        trail = Path(d) / "bench.trail"
        n = args.records
        t0 = time.perf_counter()
        size = generate(trail, n)
        print(f"generated {n:,} records, {size / 1e6:.1f} MB in {time.perf_counter() - t0:.1f} s")
        data = trail.read_bytes()
        half = len(data) // 2
        offs = 0  # split on a record boundary
        for rec in decode_records(data):
            if rec.offset >= half:
                offs = rec.offset
                break
        a, b = Path(d) / "a.trail", Path(d) / "b.trail"
        a.write_bytes(data[:offs])
        b.write_bytes(data[offs:])
        del data
        t, pa, pr = str(trail), "lxbsm_tools.praudit", "lxbsm_tools.auditreduce"
        # The bench trail starts at 2024-01-02 03:04:05 UTC, one record a ms.
        lines = [
            ("lxbsm-praudit -l", [pa, "-l", t]),
            ("lxbsm-praudit (default)", [pa, t]),
            ("lxbsm-praudit -x", [pa, "-x", t]),
            ("lxbsm-praudit --json", [pa, "--json", t]),
            ("lxbsm-auditreduce (all, one trail)", [pr, t]),
            ("lxbsm-auditreduce -m AUE_EXECVE", [pr, "-m", "AUE_EXECVE", t]),
            ("lxbsm-auditreduce -c ex", [pr, "-c", "ex", t]),
            (
                "lxbsm-auditreduce -a/-b (middle third)",
                [pr, "-a", "20240102031051", "-b", "20240102031737", t],
            ),
            ("lxbsm-auditreduce -v -m AUE_CLOSE", [pr, "-v", "-m", "AUE_CLOSE", t]),
            ("lxbsm-auditreduce (merge 2 trails, all)", [pr, str(b), str(a)]),
            ("lxbsm-auditreduce -m AUE_OPEN_R (merge 2)", [pr, "-m", "AUE_OPEN_R", str(b), str(a)]),
            ("lxbsm-auditreduce -u 1000", [pr, "-u", "1000", t]),
            ("lxbsm-auditreduce -e 0 -m AUE_EXECVE", [pr, "-e", "0", "-m", "AUE_EXECVE", t]),
            ("lxbsm-auditreduce -o file=passwd", [pr, "-o", "file=passwd", t]),
        ]
        if not args.only or "decode" in args.only:
            sys.path.insert(0, str(args.tree))
            _time(
                "decode_records (in process)",
                n,
                lambda: sum(1 for _ in decode_records(trail.read_bytes())),
            )
        for label, argv in lines:
            if args.only and args.only not in label:
                continue
            _run_tool(label, n, args.tree, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
