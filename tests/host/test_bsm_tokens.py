"""The token table: OpenBSM reference bytes, property round trips, errno."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pytest
from conftest import BSM_SAMPLES, bsm_hex_record
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lxbsm_tools.bsm import (
    TOKEN_BY_ID,
    TOKEN_BY_NAME,
    TOKEN_TABLE,
    BSMDecodeError,
    bsm_to_errno,
    decode_records,
    encode_record,
    errno_to_bsm,
    make_token,
)
from lxbsm_tools.bsm.errors import _Malformed
from lxbsm_tools.bsm.tokens import _classify, _fields

REFERENCE = BSM_SAMPLES / "openbsm-reference"
REF_FILES = sorted(p.name for p in REFERENCE.iterdir()) if REFERENCE.is_dir() else []


def test_reference_directory_present() -> None:
    assert len(REF_FILES) > 50


@pytest.mark.parametrize("name", REF_FILES)
def test_reference_file_round_trip(name: str) -> None:
    data = (REFERENCE / name).read_bytes()
    if "_token" in name:
        spec = TOKEN_BY_ID[data[0]]
        values, end = spec.decode(data, 1, len(data))
        assert end == len(data)
        assert spec.parse_construct(data[1:]) == values
        assert spec.encode(*values) == data
        assert spec.build(values) == data
    else:
        (rec,) = decode_records(data, source=name)
        assert rec.raw == data
        assert rec.tokens[0].name == "header32" and rec.tokens[-1].name == "trailer"
        assert rec.tokens[-1].count == rec.size == len(data)
        again = encode_record(
            rec.event, rec.modifier, rec.tokens[1:-1], time=rec.time, version=rec.version
        )
        assert again == data


def test_reference_values() -> None:
    """Spot values of the token layouts (OpenBSM sys/bsm/audit_record.h)."""
    (rec,) = decode_records((REFERENCE / "subject32ex_record").read_bytes())
    s = rec.first("subject32_ex")
    assert s is not None and s.address == "fe80::1" and s.addr_type == 16
    hdr = (REFERENCE / "header32_token").read_bytes()
    v, _ = TOKEN_BY_NAME["header32"].decode(hdr, 1, len(hdr))
    assert v == (0x12345678, 11, 3, 0x4567, 0x12345, 0x1A8)
    assert make_token("iport", port=22).encode() == bytes.fromhex("2c0016")
    assert make_token("return32", status=13, value=0xFFFFFFFF).encode() == bytes.fromhex(
        "270dffffffff"
    )
    assert make_token("zonename", text="testzone").encode() == b"\x60\x00\x09testzone\0"


def test_md_annotated_records() -> None:
    """tests/data/praudit/execve.hex and open.hex: API view and re-encoding."""
    data = bsm_hex_record("execve")
    (rec,) = decode_records(data)
    assert (rec.event, rec.modifier, rec.time) == (23, 0, (1704164645, 123))
    assert rec.first("exec_args").args == ["/bin/ls", "-l", "/tmp"]  # type: ignore[union-attr]
    assert [t.text for t in rec.all("path")] == ["/bin/ls"]
    a = rec.first("attr32")
    assert a is not None and (a.mode, a.uid, a.fsid, a.nodeid) == (0o100755, 0, 2049, 131090)
    s = rec.subject
    assert s is not None and (s.auid, s.pid, s.sid, s.port, s.address) == (
        2001,
        4242,
        4200,
        0,
        "192.168.1.10",
    )
    assert rec.success is True and rec.return_token.value == 0  # type: ignore[union-attr]
    tokens = [
        make_token("exec_args", args=["/bin/ls", "-l", "/tmp"]),
        make_token("path", text="/bin/ls"),
        make_token("attr32", mode=0o100755, uid=0, gid=0, fsid=2049, nodeid=131090, dev=0),
        make_token(
            "subject32",
            auid=2001,
            euid=0,
            egid=0,
            ruid=2001,
            rgid=2001,
            pid=4242,
            sid=4200,
            port=0,
            address="192.168.1.10",
        ),
        make_token("return32", status=0, value=0),
    ]
    assert encode_record(23, 0, tokens, time=(1704164645, 123)) == data
    (o,) = decode_records(bsm_hex_record("open"))
    arg = o.first("arg32")
    assert arg is not None and (arg.num, arg.value, arg.text) == (2, 0, "flags")


# ---------------------------------------------------------------------------
# Property tests: strategies derived from the same table.
# ---------------------------------------------------------------------------

_INT = {"B": 0xFF, "H": 0xFFFF, "I": 0xFFFFFFFF, "L": 0xFFFFFFFF, "Q": 0xFFFFFFFFFFFFFFFF}
_nonul_bytes = st.binary(max_size=40).map(lambda b: b.replace(b"\0", b"x"))
_text = _nonul_bytes.map(lambda b: b.decode("utf-8", "surrogateescape"))
_ip4 = st.binary(min_size=4, max_size=4).map(lambda b: ".".join(str(x) for x in b))


def _ip6(b: bytes) -> str:
    import socket

    return socket.inet_ntop(socket.AF_INET6, b)


def _field_strategy(kind: tuple[Any, ...]) -> st.SearchStrategy[Any]:
    if kind[0] == "fixed":
        fmt, post = kind[1], kind[2]
        if post == "_ip4":
            return _ip4
        if post == "_ip6":
            return st.binary(min_size=16, max_size=16).map(_ip6)
        if post == "_uuid_str":
            import uuid

            return st.binary(min_size=16, max_size=16).map(lambda b: str(uuid.UUID(bytes=b)))
        return st.integers(0, _INT[fmt])
    v = kind[1]
    return {
        "nultext": _text,
        "strlist": st.lists(_text, max_size=6),
        "gids": st.lists(st.integers(0, 0xFFFFFFFF), max_size=20),
        "sized": st.binary(max_size=60),
        "sunpath": st.binary(max_size=108).map(
            lambda b: b.replace(b"\0", b"x").decode("utf-8", "surrogateescape")
        ),
    }[v]


@st.composite
def token_values(draw: st.DrawFn, name: str) -> tuple[Any, ...]:
    spec = TOKEN_BY_NAME[name]
    values: dict[str, Any] = {}
    for fname, sub in _fields(spec.struct):
        kind = _classify(sub)
        if fname == "addr_type":
            values[fname] = draw(st.sampled_from([4, 16]))
        elif kind[0] == "var" and kind[1] == "addr":
            t = values[kind[2][0]]
            values[fname] = draw(_ip4 if t == 4 else st.binary(min_size=16, max_size=16).map(_ip6))
        elif fname == "unit" and name == "data":
            values[fname] = draw(st.integers(0, 3))
        elif kind[0] == "var" and kind[1] == "arb":
            size = {0: 1, 1: 2, 2: 4, 3: 8}[values["unit"]]
            n = draw(st.integers(0, 20))
            values[fname] = draw(st.binary(min_size=n * size, max_size=n * size))
        else:
            values[fname] = draw(_field_strategy(kind))
    return tuple(values[f] for f in spec.fields)


BODY_TOKENS = [
    s.name for s in TOKEN_TABLE if not s.name.startswith("header") and s.name != "trailer"
]


@pytest.mark.parametrize("name", [s.name for s in TOKEN_TABLE])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_token_round_trip(name: str, data: st.DataObject) -> None:
    spec = TOKEN_BY_NAME[name]
    values = data.draw(token_values(name))
    fast = spec.encode(*values)
    assert fast == spec.build(values)  # generated encoder == construct
    decoded, end = spec.decode(fast, 1, len(fast))
    assert end == len(fast)
    assert decoded == values
    assert spec.parse_construct(fast[1:]) == values  # generated decoder == construct


@st.composite
def records(draw: st.DrawFn) -> tuple[int, int, tuple[int, int], list[Any], str]:
    names = draw(st.lists(st.sampled_from([n for n in BODY_TOKENS if n != "file"]), max_size=8))
    toks = []
    for n in names:
        spec = TOKEN_BY_NAME[n]
        from lxbsm_tools.bsm import Token

        toks.append(Token(spec, draw(token_values(n))))
    header = draw(st.sampled_from(["header32", "header64", "header32_ex", "header64_ex"]))
    return (
        draw(st.integers(0, 0xFFFF)),
        draw(st.integers(0, 0xFFFF)),
        (draw(st.integers(0, 0xFFFFFFFF)), draw(st.integers(0, 999))),
        toks,
        header,
    )


@settings(max_examples=300, deadline=None)
@given(recs=st.lists(records(), min_size=1, max_size=5))
def test_record_round_trip(recs: list[Any]) -> None:
    blobs = [
        encode_record(
            ev, mod, toks, time=t, header=h, host="10.0.0.1" if h.endswith("_ex") else None
        )
        for ev, mod, t, toks, h in recs
    ]
    trail = b"".join(blobs)
    out = list(decode_records(trail))
    assert len(out) == len(recs)
    for rec, blob, (ev, mod, t, toks, _h) in zip(out, blobs, recs, strict=True):
        assert rec.raw == blob
        assert (rec.event, rec.modifier, rec.time) == (ev, mod, t)
        assert rec.tokens[1:-1] == toks
        assert rec.tokens[-1].count == len(blob)


# ---------------------------------------------------------------------------
# Errno.
# ---------------------------------------------------------------------------


def test_errno_table_matches_md() -> None:
    """BSM numbers that differ from Linux (OpenBSM sys/bsm/audit_errno.h)."""
    expected = {
        "EDEADLK": 45,
        "ENOLCK": 46,
        "ENOSYS": 89,
        "ENOTEMPTY": 93,
        "ELOOP": 90,
        "ENAMETOOLONG": 78,
        "EOVERFLOW": 79,
        "ENOTSOCK": 95,
        "EADDRINUSE": 125,
        "ECONNREFUSED": 146,
        "ETIMEDOUT": 145,
        "EINPROGRESS": 150,
        "ESTALE": 151,
    }
    for name, bsm in expected.items():
        linux = getattr(errno, name)
        assert errno_to_bsm(linux) == bsm, name
        assert bsm_to_errno(bsm) == linux, name
    for n in range(1, 35):
        assert errno_to_bsm(n) == n and bsm_to_errno(n) == n
    assert errno_to_bsm(-errno.ENOENT) == 2
    assert errno_to_bsm(100000) == 250 and bsm_to_errno(250) is None
    assert bsm_to_errno(190) is None  # EPROCLIM: FreeBSD only


def test_errno_round_trip_every_linux_errno() -> None:
    for name, code in vars(errno).items():
        if not name.startswith("E") or not isinstance(code, int):
            continue
        b = errno_to_bsm(code)
        if b != 250:
            assert bsm_to_errno(b) == code, name


def test_reference_errno_records_print_linux_strerror() -> None:
    import os

    for p in sorted(REFERENCE.glob("E*_record")):
        (rec,) = decode_records(p.read_bytes())
        r = rec.return_token
        assert r is not None
        local = bsm_to_errno(int(r.status))
        assert local == getattr(errno, p.name.split("_")[0]), p.name
        assert os.strerror(local)


def test_decode_error_attributes(tmp_path: Path) -> None:
    data = bsm_hex_record("execve")[:-3]
    with pytest.raises(BSMDecodeError) as ei:
        list(decode_records(data, source="t.trail"))
    e = ei.value
    assert (e.source, e.offset, e.token) == ("t.trail", 0, "header32")
    assert str(e) == "t.trail: offset 0: truncated record: header32 token says 129 bytes, 126 left"


# ---------------------------------------------------------------------------
# The generated decoders' value cache (fixed-size tokens with addresses).
# ---------------------------------------------------------------------------

CACHED_TOKENS = [s.name for s in TOKEN_TABLE if "_cache" in s.decode.__globals__]


def test_cached_tokens_are_the_fixed_ones_with_conversions() -> None:
    expected = []
    for spec in TOKEN_TABLE:
        kinds = [_classify(sub) for _, sub in _fields(spec.struct)]
        if all(k[0] == "fixed" for k in kinds) and any(k[2] is not None for k in kinds):
            expected.append(spec.name)
    assert CACHED_TOKENS == expected
    assert {"subject32", "process32", "socket", "sock_inet32"} <= set(CACHED_TOKENS)


@pytest.mark.parametrize("name", CACHED_TOKENS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_value_cache_gives_construct_values(name: str, data: st.DataObject) -> None:
    spec = TOKEN_BY_NAME[name]
    values = data.draw(token_values(name))
    raw = spec.encode(*values)
    first, end = spec.decode(raw, 1, len(raw))
    # Again from a bytearray at another offset: a cache hit, same values.
    buf = bytearray(b"\xaa" * 3) + raw + b"\xbb"
    again, end2 = spec.decode(buf, 4, len(buf) - 1)
    assert again is first
    assert (end, end2) == (len(raw), len(buf) - 1)
    assert first == values == spec.parse_construct(raw[1:])
    # The bounds check comes before the cache: a cut token is still refused.
    with pytest.raises(_Malformed, match="truncated"):
        spec.decode(raw, 1, len(raw) - 1)


def test_value_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = TOKEN_BY_NAME["subject32"]
    env = spec.decode.__globals__
    monkeypatch.setitem(env, "_CACHE_SIZE", 2)
    monkeypatch.setitem(env, "_cache", {})
    toks = [
        make_token(
            "subject32",
            auid=a,
            euid=0,
            egid=0,
            ruid=a,
            rgid=a,
            pid=a,
            sid=1,
            port=0,
            address=f"10.0.0.{a}",
        )
        for a in range(5)
    ]
    for _ in range(2):
        for t in toks:
            raw = t.encode()
            values, _ = spec.decode(raw, 1, len(raw))
            assert values == t.values
            assert len(env["_cache"]) <= 2
