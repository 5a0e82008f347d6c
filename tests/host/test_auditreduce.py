"""lxbsm-auditreduce: selection options, merging, piping into praudit."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import BSM_SAMPLES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lxbsm_tools import auditreduce
from lxbsm_tools.bsm import decode_records, encode_record, errno_to_bsm, make_token

pytestmark = pytest.mark.usefixtures("bsm_utc", "bsm_openbsm_tables")


def _subj(auid: int, pid: int = 100, euid: int = 0, rgid: int = 0) -> object:
    return make_token(
        "subject32",
        auid=auid,
        euid=euid,
        egid=0,
        ruid=auid,
        rgid=rgid,
        pid=pid,
        sid=1,
        port=0,
        address="10.0.0.1",
    )


def _rec(event: int, sec: int, auid: int, *extra: object, ok: bool = True, pid: int = 100) -> bytes:
    ret = make_token("return32", status=0 if ok else errno_to_bsm(13), value=0 if ok else 2**32 - 1)
    return encode_record(event, 0, [*extra, _subj(auid, pid), ret], time=(sec, 0))  # type: ignore[list-item]


T0 = 1704164645  # 2024-01-02 03:04:05 UTC


@pytest.fixture
def trails(tmp_path: Path) -> tuple[Path, Path]:
    a = tmp_path / "a.trail"
    b = tmp_path / "b.trail"
    a.write_bytes(
        _rec(23, T0, 1000, make_token("path", text="/bin/ls"))
        + _rec(72, T0 + 20, 1001, make_token("path", text="/etc/passwd"), ok=False)
        + _rec(112, T0 + 86400, 1000, pid=777)
    )
    b.write_bytes(
        _rec(
            2,
            T0 + 10,
            1001,
            make_token(
                "process32",
                auid=1,
                euid=1,
                egid=1,
                ruid=1,
                rgid=1,
                pid=4321,
                sid=1,
                port=0,
                address="10.0.0.2",
            ),
        )
        + _rec(6152, T0 + 30, 1000, make_token("zonename", text="jail1"))
        + _rec(
            34,
            T0 + 40,
            1001,
            make_token("sock_inet32", family=2, port=22, address="10.1.1.1"),
            make_token("ipc", ipc_type=1, ipc_id=42),
        )
    )
    return a, b


def _reduce(*args: str) -> list[tuple[int, int]]:
    sel, files, skip = auditreduce.parse_args(list(args))
    out = io.BytesIO()
    assert auditreduce.reduce(files, sel, out, skip_bad=skip) == 0
    return [(r.event, r.time.sec - T0) for r in decode_records(out.getvalue())]


def test_merge_in_time_order(trails: tuple[Path, Path]) -> None:
    a, b = trails
    assert _reduce(str(a), str(b)) == [
        (23, 0),
        (2, 10),
        (72, 20),
        (6152, 30),
        (34, 40),
        (112, 86400),
    ]


def test_identity_bytes(trails: tuple[Path, Path]) -> None:
    a, _ = trails
    sel, files, _ = auditreduce.parse_args([str(a)])
    out = io.BytesIO()
    auditreduce.reduce(files, sel, out)
    assert out.getvalue() == a.read_bytes()


def test_merge_of_equal_times_keeps_file_then_record_order(tmp_path: Path) -> None:
    recs = [encode_record(ev, 0, [_subj(ev)], time=(T0, 5)) for ev in (1, 2, 3, 4)]
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(recs[0] + recs[1])
    b.write_bytes(recs[2] + recs[3])
    assert [e for e, _ in _reduce(str(b), str(a))] == [3, 4, 1, 2]
    assert [e for e, _ in _reduce(str(a), str(b))] == [1, 2, 3, 4]


def test_only_unreadable_inputs(tmp_path: Path) -> None:
    sel, files, _ = auditreduce.parse_args([str(tmp_path / "missing")])
    out, err = io.BytesIO(), io.StringIO()
    assert auditreduce.reduce(files, sel, out, err=err) == 1
    assert out.getvalue() == b""
    assert "cannot open" in err.getvalue()


def test_user_and_id_options(trails: tuple[Path, Path]) -> None:
    a, b = trails
    assert [e for e, _ in _reduce("-u", "1000", str(a), str(b))] == [23, 6152, 112]
    assert [e for e, _ in _reduce("-r", "1001", str(a), str(b))] == [2, 72, 34]
    assert [e for e, _ in _reduce("-e", "0", "-f", "0", "-g", "0", str(b))] == [2, 6152, 34]
    assert [e for e, _ in _reduce("-e", "5", str(b))] == []
    assert [e for e, _ in _reduce("-j", "777", str(a), str(b))] == [112]
    assert [e for e, _ in _reduce("-u", "root", str(a))] == []


def test_event_and_class(trails: tuple[Path, Path]) -> None:
    a, b = trails
    files = [str(a), str(b)]
    assert [e for e, _ in _reduce("-m", "AUE_EXECVE", "-m", "2", *files)] == [23, 2]
    assert [e for e, _ in _reduce("-c", "ex", *files)] == [23]
    assert [e for e, _ in _reduce("-c", "fr,lo", *files)] == [72, 6152]
    assert [e for e, _ in _reduce("-c", "+fr", *files)] == []  # the open failed
    assert [e for e, _ in _reduce("-c", "-fr", *files)] == [72]
    assert [e for e, _ in _reduce("-v", "-c", "pc,nt", *files)] == [72, 6152, 112]


def test_time_options(trails: tuple[Path, Path]) -> None:
    a, b = trails
    files = [str(a), str(b)]
    assert [s for _, s in _reduce("-a", "20240102030425", *files)] == [20, 30, 40, 86400]
    assert [s for _, s in _reduce("-b", "20240102030415", *files)] == [0, 10]
    assert [s for _, s in _reduce("-d", "20240103", *files)] == [86400]
    assert len(_reduce("-A", "-a", "20250101", *files)) == 6


def test_object_options(trails: tuple[Path, Path]) -> None:
    a, b = trails
    files = [str(a), str(b)]
    assert [e for e, _ in _reduce("-o", "file=/etc", *files)] == [72]
    assert [e for e, _ in _reduce("-o", "file=/bin,/etc", *files)] == [23, 72]
    # OpenBSM: the first matching entry decides; a path no entry matches is not selected.
    assert [e for e, _ in _reduce("-o", "file=~/etc", *files)] == []
    assert [e for e, _ in _reduce("-o", "file=~/etc,/", *files)] == [23]
    assert [e for e, _ in _reduce("-o", "pid=4321", *files)] == [2]
    assert [e for e, _ in _reduce("-o", "msgqid=42", *files)] == [34]
    assert [e for e, _ in _reduce("-o", "sock=22", *files)] == [34]
    assert [e for e, _ in _reduce("-o", "sock=10.1.1.1", *files)] == [34]
    assert [e for e, _ in _reduce("-z", "jail1", *files)] == [6152]


def test_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        ["-u", "no-such-user-xyz"],
        ["-m", "AUE_NOPE"],
        ["-c", "zz"],
        ["-o", "bad=1"],
        ["-a", "2024"],
        ["-d", "20240101", "-a", "20240101"],
        ["-q"],
    ):
        assert auditreduce.main(argv) == 1, argv
        assert "usage" in capsys.readouterr().err


def test_malformed_input_reported(tmp_path: Path, trails: tuple[Path, Path]) -> None:
    """A damaged token is found when the selection decodes the tokens (-u here)."""
    a, _ = trails
    bad = tmp_path / "bad.trail"
    data = bytearray(a.read_bytes())
    data[20] ^= 0x55  # the path token's length, inside the first record
    bad.write_bytes(bytes(data))
    sel, files, _ = auditreduce.parse_args(["-u", "1000", str(bad)])
    err = io.StringIO()
    assert auditreduce.reduce(files, sel, io.BytesIO(), err=err) == 1
    assert f"{bad}: offset 18:" in err.getvalue()
    out = io.BytesIO()
    sel, files, skip = auditreduce.parse_args(["--skip-bad", "-u", "1000", str(bad)])
    assert auditreduce.reduce(files, sel, out, skip_bad=skip, err=io.StringIO()) == 1
    assert len(list(decode_records(out.getvalue()))) == 1


def test_header_only_selection_checks_header_and_trailer(
    tmp_path: Path, trails: tuple[Path, Path]
) -> None:
    """Without token selections the tokens are not decoded (as OpenBSM's auditreduce
    copies records by their byte count), but a damaged header or trailer is found."""
    a, _ = trails
    good = a.read_bytes()
    first = int.from_bytes(good[1:5], "big")
    inner = bytearray(good)
    inner[20] ^= 0x55  # inside the first record: passed on byte for byte
    sel, files, _ = auditreduce.parse_args([str(tmp_path / "inner.trail")])
    (tmp_path / "inner.trail").write_bytes(bytes(inner))
    out, err = io.BytesIO(), io.StringIO()
    assert auditreduce.reduce(files, sel, out, err=err) == 0
    assert out.getvalue() == bytes(inner) and err.getvalue() == ""
    for what, offset in (("trailer", first - 1), ("size", 4)):
        bad = bytearray(good)
        bad[offset] ^= 0x01
        f = tmp_path / f"{what}.trail"
        f.write_bytes(bytes(bad))
        for args in ([str(f)], ["-m", "23", str(f)], ["-a", "20240101", str(f)]):
            sel, files, _ = auditreduce.parse_args(args)
            err = io.StringIO()
            assert auditreduce.reduce(files, sel, io.BytesIO(), err=err) == 1, (what, args)
            assert f"lxbsm-auditreduce: {f}: offset " in err.getvalue(), (what, args)
        sel, files, skip = auditreduce.parse_args(["--skip-bad", str(f)])
        out = io.BytesIO()
        assert auditreduce.reduce(files, sel, out, skip_bad=skip, err=io.StringIO()) == 1
        assert out.getvalue() == good[first:], what


def test_pipeline_into_praudit(trails: tuple[Path, Path]) -> None:
    """`lxbsm-auditreduce -u 1000 trails/* | lxbsm-praudit -l` end to end."""
    a, b = trails
    env = {
        "TZ": "UTC",
        "PATH": "/usr/bin:/bin",
        "LXBSM_AUDIT_EVENT": str(BSM_SAMPLES / "openbsm-etc" / "audit_event"),
    }
    cmd = (
        f"{sys.executable} -m lxbsm_tools.auditreduce -u 1000 {a} {b} | "
        f"{sys.executable} -m lxbsm_tools.praudit -ln"
    )
    p = subprocess.run(
        ["bash", "-o", "pipefail", "-c", cmd], capture_output=True, env=env, check=False
    )
    assert p.returncode == 0, p.stderr
    lines = p.stdout.decode().splitlines()
    assert [ln.split(",")[3] for ln in lines] == ["execve(2)", "login - local", "close(2)"]
    assert all(",subject,1000,0,0,1000,0," in ln for ln in lines)
    assert time.ctime(T0) in lines[0]


def test_file_objects_are_unanchored_regular_expressions_as_in_openbsm(tmp_path: Path) -> None:
    t = tmp_path / "f.trail"
    t.write_bytes(
        _rec(23, T0, 1000, make_token("path", text="/bin/ls"))
        + _rec(72, T0 + 1, 1000, make_token("path", text="/etc/passwd"))
        + _rec(72, T0 + 2, 1000, make_token("path", text="/usr/local/etc/passwd.d/x"))
    )
    f = str(t)
    assert [s for _, s in _reduce("-o", "file=passwd", f)] == [1, 2]  # not a prefix: anywhere
    assert [s for _, s in _reduce("-o", "file=^/etc/", f)] == [1]
    assert [s for _, s in _reduce("-o", "file=/etc", f)] == [1, 2]
    assert [s for _, s in _reduce("-o", "file=l.$", f)] == [0]
    assert [s for _, s in _reduce("-o", "file=~passwd", f)] == []  # nothing matched positively
    assert [s for _, s in _reduce("-o", "file=~passwd,.", f)] == [0]
    assert [s for _, s in _reduce("-o", "file=~^/usr,ls|passwd", f)] == [0, 1]
    assert [s for _, s in _reduce("-o", "file=ls|passwd,~^/usr", f)] == [0, 1, 2]  # first wins
    with pytest.raises(auditreduce.UsageError, match=r"-o file=\[: not a regular expression"):
        auditreduce.parse_args(["-o", "file=[", f])


def test_every_path_of_a_record_must_pass_the_file_selection(tmp_path: Path) -> None:
    """As OpenBSM's select_records: a record with a path that fails is not selected."""
    t = tmp_path / "r.trail"
    t.write_bytes(
        _rec(
            42,
            T0,
            1000,
            make_token("path", text="/etc/a"),
            make_token("path", text="/tmp/b,c"),
        )
    )
    assert _reduce("-o", "file=^/etc/", str(t)) == []
    assert _reduce("-o", "file=^/etc/,^/tmp/", str(t)) == [(42, 0)]
    assert _reduce("-o", "file=^/etc/,b\\,c$", str(t)) == [(42, 0)]  # \, is a comma


EXTRA: list[tuple[object, ...] | None] = [
    (),
    (make_token("exec_args", args=["/bin/ls", "-l", ""]), make_token("path", text="/bin/ls")),
    (
        make_token("arg32", num=1, value=3, text="fd"),
        make_token("attr32", mode=0o644, uid=0, gid=0, fsid=1, nodeid=2, dev=3),
        make_token("text", text="t"),
    ),
    (make_token("in_addr", address="10.0.0.9"),),  # not walked: the record is decoded
    (make_token("newgroups", gids=[1, 2, 3]), make_token("return64", status=0, value=1)),
    None,
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    spec=st.lists(
        st.lists(
            st.tuples(st.integers(0, 5), st.sampled_from([23, 72, 112]), st.booleans()), max_size=30
        ),
        min_size=1,
        max_size=4,
    ),
    args=st.sampled_from(
        [
            ["-u", "1001"],
            ["-v", "-u", "1000"],
            ["-e", "0", "-m", "23"],
            ["-j", "101"],
            ["-u", "1002", "-a", "20240102030407"],
            [],
            ["-m", "23"],
            ["-m", "72", "-m", "112"],
            ["-v", "-m", "23"],
            ["-c", "ex"],
            ["-a", "20240102030407"],
            ["-b", "20240102030407", "-m", "72"],
            ["-A", "-a", "20240102030406"],
        ]
    ),
    chunk=st.sampled_from([64, 300, 1 << 20]),
)
def test_header_path_and_merge_equal_the_decoding_path(
    spec: list[list[tuple[int, int, bool]]], args: list[str], chunk: int
) -> None:
    """Fast (header-only, chunked, bisecting) merge == decode everything and sort stably."""
    import tempfile

    from lxbsm_tools.bsm import encode_file_token

    with tempfile.TemporaryDirectory() as d:
        files = []
        for n, recs in enumerate(spec):
            data = encode_file_token("prev", time=(T0, 0))
            sec = T0
            for k, (step, ev, ok) in enumerate(sorted(recs, key=lambda r: r[0])):
                sec = T0 + step
                extra = EXTRA[(k + n) % len(EXTRA)]
                if extra is None:  # no subject at all
                    data += encode_record(
                        ev, 0, [make_token("return32", status=0, value=0)], time=(sec, 0)
                    )
                else:
                    data += _rec(ev, sec, 1000 + n, *extra, ok=ok, pid=100 + k % 3)
            p = Path(d) / f"t{n}"
            p.write_bytes(data)
            files.append(str(p))
        sel, _, _ = auditreduce.parse_args(args)
        recs_all = []
        for i, f in enumerate(files):
            for seq, r in enumerate(decode_records(Path(f).read_bytes())):
                recs_all.append((r.sort_key, i, seq, r))
        want = b"".join(r.raw for *_, r in sorted(recs_all, key=lambda x: x[:3]) if sel.match(r))
        old = auditreduce.CHUNK
        auditreduce.CHUNK = chunk
        try:
            out = io.BytesIO()
            assert auditreduce.header_filter(sel) is not None
            assert auditreduce.reduce(files, sel, out) == 0
            assert out.getvalue() == want
        finally:
            auditreduce.CHUNK = old
