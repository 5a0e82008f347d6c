#!/usr/bin/env python3
"""Host-side: the CPU lxbsm-auditd spends filing protect's journal records.

Builds JWRITE records as the module writes them (kmod/protect.c: header32,
arg64 start/end/size, path, attr32, opaque data, text, subject32, return32,
trailer), packs them into the daemon's 256 KiB batches, and times
protect.Filer's scan and flush of them into a journal in a temporary
directory (on /dev/shm unless TMPDIR says otherwise): CPU seconds per MiB
and per record.  --profile prints cProfile's top functions instead.

    .venv/bin/python bench/filing_bench.py [--chunk 16384] [--mib 64] [--profile]
"""

from __future__ import annotations

import sys
from pathlib import Path

# The tree's lxbsm_tools, not bench/ first on the path (its profile.py is not the stdlib's).
sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse  # noqa: E402
import cProfile  # noqa: E402
import os  # noqa: E402
import pstats  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from lxbsm_tools.auditd import protect  # noqa: E402
from lxbsm_tools.bsm import encode_record, make_token  # noqa: E402
from lxbsm_tools.recover.store import Store  # noqa: E402

BATCH_BYTES = 256 * 1024  # lxbsm_tools/auditd/daemon.py


def jwrite(start: int, data: bytes, when: float) -> bytes:
    toks = [
        make_token("arg64", num=1, value=start, text="start"),
        make_token("arg64", num=2, value=start + len(data), text="end"),
        make_token("arg64", num=3, value=4 << 20, text="size"),
        make_token("path", text="/tmp/lxbsm-bench/write/file"),
        make_token("attr32", mode=0o644, uid=0, gid=0, fsid=0x2F, nodeid=1234, dev=0),
        make_token("opaque", data=data),
        make_token("text", text="write"),
        make_token(
            "subject32",
            auid=0xFFFFFFFF,
            euid=0,
            egid=0,
            ruid=0,
            rgid=0,
            pid=321,
            sid=0xFFFFFFFF,
            port=0,
            address="0.0.0.0",
        ),
        make_token("return32", status=0, value=0),
    ]
    sec = int(when)
    return encode_record(33003, 0, toks, time=(sec, int((when - sec) * 1000)))


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--chunk", type=int, default=16384, help="data bytes per record")
    p.add_argument("--mib", type=int, default=64, help="MiB of data filed")
    p.add_argument("--profile", action="store_true")
    args = p.parse_args()
    n = args.mib * (1 << 20) // args.chunk
    recs = [jwrite(i * args.chunk, os.urandom(args.chunk), 1.7e9 + i / 1000) for i in range(64)]
    batches: list[bytes] = []
    cur: list[bytes] = []
    size = 0
    for i in range(n):
        r = recs[i % len(recs)]
        if size + len(r) > BATCH_BYTES:
            batches.append(b"".join(cur))
            cur, size = [], 0
        cur.append(r)
        size += len(r)
    batches.append(b"".join(cur))
    tmp = Path(tempfile.mkdtemp(dir=os.environ.get("TMPDIR", "/dev/shm")))
    try:
        store = Store(tmp / "journal")
        store.create()
        filer = protect.Filer(store, 0, print)

        def run() -> None:
            for b in batches:
                filer.scan(b, "trail", 0)
                filer.flush()

        cpu0 = time.process_time()
        if args.profile:
            prof = cProfile.Profile()
            prof.runcall(run)
            pstats.Stats(prof).sort_stats("tottime").print_stats(15)
        else:
            run()
        cpu = time.process_time() - cpu0
    finally:
        shutil.rmtree(tmp)
    print(
        f"{n} records of {args.chunk} bytes in {len(batches)} batches: {cpu:.3f} s CPU, "
        f"{cpu / args.mib * 1000:.2f} ms/MiB, {cpu / n * 1e6:.1f} us/record "
        f"(filed {filer.counters['filed']}, malformed {filer.counters['malformed']})"
    )
    return 0 if filer.counters["filed"] == n else 1


if __name__ == "__main__":
    sys.exit(main())
