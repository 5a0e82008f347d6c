"""Malformed input: errors, resynchronisation, streams, and a mutation fuzz."""

from __future__ import annotations

import io
import random
import time
from pathlib import Path

import pytest
from conftest import BSM_SAMPLES, bsm_hex_record

from lxbsm_tools.bsm import (
    BSMDecodeError,
    TrailReader,
    decode_records,
    encode_record,
    make_token,
)
from lxbsm_tools.bsm.tables import EventTable
from lxbsm_tools.bsm.text import PrauditFormatter

EXECVE = bsm_hex_record("execve")
OPEN = bsm_hex_record("open")


def _err(data: bytes) -> BSMDecodeError:
    with pytest.raises(BSMDecodeError) as ei:
        list(decode_records(data, source="x.trail"))
    return ei.value


def test_error_messages_name_offset_and_token() -> None:
    bad = bytearray(EXECVE)
    bad[-4:] = (128).to_bytes(4, "big")
    e = _err(bytes(bad))
    assert (e.offset, e.token) == (122, "trailer")
    assert "trailer count 128 does not match header size 129" in str(e)

    bad = bytearray(EXECVE)
    bad[-6] = 0x00  # trailer magic
    assert "bad trailer magic 0x0005" in str(_err(bytes(bad)))

    e = _err(b"\x99" + EXECVE)
    assert (e.offset, e.token) == (0, None)
    assert str(e) == "x.trail: offset 0: expected a header or file token, found byte 0x99"

    bad = bytearray(OPEN)
    bad[18 + 1 + 1 + 4 : 18 + 1 + 1 + 4 + 2] = b"\xff\xff"  # arg32 text length
    e = _err(bytes(bad))
    assert str(e) == "x.trail: offset 18: truncated arg32 token (0x2d)"

    sub = make_token(
        "subject32_ex",
        auid=1,
        euid=1,
        egid=1,
        ruid=1,
        rgid=1,
        pid=1,
        sid=1,
        port=1,
        address="10.0.0.1",
    )
    rec = bytearray(encode_record(1, 0, [sub], time=(0, 0)))
    rec[18 + 33 + 3] = 7  # address type 7
    e = _err(bytes(rec))
    assert e.token == "subject32_ex" and "invalid (bad address type 7)" in str(e)

    e = _err(b"\x14\x00\x00\x00\x03")
    assert "implausible record size 3" in str(e)


def test_unknown_token_kept_like_openbsm() -> None:
    body = b"\x34" + b"\x00" * 8  # AUT_GROUPS: not parsed by OpenBSM either
    size = 18 + len(body) + 7
    hdr = make_token("header32", size=size, event=1, sec=0).encode()
    data = hdr + body + make_token("trailer", count=size).encode()
    (rec,) = decode_records(data)
    assert [t.name for t in rec.tokens] == ["header32", "unknown", "trailer"]
    assert rec.tokens[1].id == 0x34 and rec.tokens[1].data == b"\x00" * 8
    fmt = PrauditFormatter(EventTable({}, {}), oneline=True)
    assert "unknown,0x0000000000000000," in fmt.record(rec)


def test_skip_bad_loses_only_the_broken_record() -> None:
    bad = bytearray(OPEN)
    bad[30] ^= 0xFF
    bad[25] = 0xEE  # arg32 length garbage
    data = EXECVE + bytes(bad) + EXECVE + b"\x14\x00" + OPEN
    errors: list[BSMDecodeError] = []
    recs = list(decode_records(data, skip_bad=True, on_error=errors.append))
    assert [r.event for r in recs] == [23, 23, 72]
    assert [e.offset for e in errors] == [129 + 18, 129 + 126 + 129]  # the token; the header


@pytest.mark.parametrize("chunk", [1, 3, 64, 1 << 20])
def test_stream_reader_any_chunking(chunk: int) -> None:
    from lxbsm_tools.bsm import encode_file_token

    data = encode_file_token("a", time=(1, 2)) + EXECVE + OPEN + EXECVE
    items = list(TrailReader(io.BytesIO(data), "s", chunk_size=chunk, include_file_tokens=True))
    assert [i.name if not hasattr(i, "raw") else i.event for i in items] == ["file", 23, 72, 23]
    recs = [i for i in items if hasattr(i, "raw")]
    assert [r.offset for r in recs] == [13, 13 + 129, 13 + 129 + 126]


def test_stream_truncated_at_eof() -> None:
    with pytest.raises(BSMDecodeError) as ei:
        list(TrailReader(io.BytesIO(EXECVE + OPEN[:50]), "s", chunk_size=7))
    assert ei.value.offset == 129 and "truncated record" in str(ei.value)


def test_partial_mode_stream() -> None:
    data = b"\x14\x00\x00" + OPEN[5:40] + EXECVE + OPEN
    recs = list(TrailReader(io.BytesIO(data), "s", partial=True, chunk_size=16))
    assert [r.event for r in recs] == [23, 72]  # type: ignore[union-attr]


def _corpus() -> list[bytes]:
    trails = [EXECVE + OPEN, (BSM_SAMPLES / "freebsd-execve-long-args.trail").read_bytes()]
    ref = sorted((BSM_SAMPLES / "openbsm-reference").glob("*_record*"))
    trails.append(b"".join(p.read_bytes() for p in ref))
    return trails


def _mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        if not b:
            break
        i = rng.randrange(len(b))
        if op == 0:
            b[i] = rng.randrange(256)
        elif op == 1:
            b[i] ^= 1 << rng.randrange(8)
        elif op == 2:
            del b[i : i + rng.randint(1, 8)]
        elif op == 3:
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        else:
            b = b[:i]
    return bytes(b)


def fuzz(n: int, seed: int) -> tuple[int, int, float]:
    """Decode and print ``n`` mutated trails; only BSMDecodeError may escape."""
    rng = random.Random(seed)
    corpus = _corpus()
    fmts = [
        PrauditFormatter(EventTable({}, {}), resolve=False),
        PrauditFormatter(EventTable({}, {}), xml=True, oneline=True, resolve=False),
        PrauditFormatter(EventTable({}, {}), raw=True, resolve=False),
    ]
    errors = ok = 0
    t0 = time.perf_counter()
    for k in range(n):
        data = _mutate(rng, corpus[k % len(corpus)])
        fmt = fmts[k % len(fmts)]
        try:
            for rec in decode_records(data, source="fuzz"):
                fmt.record(rec)
            ok += 1
        except BSMDecodeError:
            errors += 1
        skipped: list[BSMDecodeError] = []
        for rec in decode_records(data, skip_bad=True, on_error=skipped.append):
            fmt.record(rec)
    return ok, errors, time.perf_counter() - t0


def test_fuzz_small() -> None:
    ok, errors, _ = fuzz(3000, seed=1)
    assert ok + errors == 3000 and ok > 0 and errors > 0


def test_fuzz_large() -> None:
    """10^5 mutated trails, fixed seed (about 20 s, so it stays in the normal suite)."""
    ok, errors, elapsed = fuzz(100_000, seed=20240102)
    print(f"fuzz: 100000 mutated trails, {ok} decoded, {errors} rejected, {elapsed:.1f} s")
    assert ok + errors == 100_000


def test_read_trail_file(tmp_path: Path) -> None:
    from lxbsm_tools.bsm import read_trail

    p = tmp_path / "t.trail"
    p.write_bytes(EXECVE * 3)
    assert [r.offset for r in read_trail(str(p))] == [0, 129, 258]
