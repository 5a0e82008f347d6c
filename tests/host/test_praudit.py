"""lxbsm-praudit against the output OpenBSM's praudit printed for the same records.

The expected text and the input records are the project's fixtures in
tests/data/praudit (see tests/data/README.md).  Names come from
a fixed fake password/group database (uid 0 and gid 0 are root, 2001 has no
entry), TZ=UTC, and OpenBSM's own audit_event, as when the md was made.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import BSM_SAMPLES, bsm_expected, bsm_hex_record

from lxbsm_tools.bsm import decode_records, encode_record, errno_to_bsm, make_token

pytestmark = pytest.mark.usefixtures("bsm_utc", "bsm_openbsm_tables", "bsm_fake_names")

Run = Callable[..., tuple[int, str, str]]


def _write(tmp_path: Path, name: str, data: bytes) -> str:
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


def _md_praudit_commands() -> list[tuple[list[str], str]]:
    """(options, expected output) for each ``$ praudit ... execve.bsm``."""
    block = bsm_expected("execve-modes.txt")
    cmds: list[tuple[list[str], str]] = []
    lines = block.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"^\$ praudit (.*?)execve\.bsm\s*(#.*)?$", line)
        i += 1
        if not m or (m.group(2) and m.group(2).strip() != "# default"):
            continue
        out = []
        while i < len(lines) and lines[i] and not lines[i].startswith("$"):
            out.append(lines[i])
            i += 1
        cmds.append((shlex.split(m.group(1)), "\n".join(out) + "\n"))
    return cmds


MD_EXECVE_CASES = _md_praudit_commands()


def test_md_has_every_mode() -> None:
    opts = {" ".join(o) for o, _ in MD_EXECVE_CASES}
    assert {"", "-l", "-r", "-s", "-x", "-d |", "-rl", "-sl"} <= opts


@pytest.mark.parametrize(("opts", "expected"), MD_EXECVE_CASES, ids=lambda x: repr(x)[:20])
def test_execve_every_mode(tmp_path: Path, bsm_run_praudit: Run, opts: list[str], expected: str):
    f = _write(tmp_path, "execve.bsm", bsm_hex_record("execve"))
    status, out, err = bsm_run_praudit(*opts, f)
    assert (status, err) == (0, "")
    assert out == expected


def test_execve_noresolve(tmp_path: Path, bsm_run_praudit: Run) -> None:
    f = _write(tmp_path, "execve.bsm", bsm_hex_record("execve"))
    _, default, _ = bsm_run_praudit(f)
    _, numeric, _ = bsm_run_praudit("-n", f)
    assert numeric == default.replace(
        "attribute,100755,root,root,", "attribute,100755,0,0,"
    ).replace("subject,2001,root,root,", "subject,2001,0,0,")
    assert "attribute,100755,0,0,2049,131090,0\n" in numeric


def test_execve_xml_variants(tmp_path: Path, bsm_run_praudit: Run) -> None:
    f = _write(tmp_path, "execve.bsm", bsm_hex_record("execve"))
    _, xr, _ = bsm_run_praudit("-xr", f)
    assert 'event="23" modifier="0" time="1704164645" msec="123" >' in xr
    assert 'uid="0" gid="0"' in xr and '<return errval="0" retval="0" />' in xr
    _, xs, _ = bsm_run_praudit("-xs", f)
    assert 'event="AUE_EXECVE"' in xs


def test_partial_skips_garbage_stdin(
    tmp_path: Path, bsm_run_praudit: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    data = b"\1\2\3" + bsm_hex_record("execve")
    expected = dict((" ".join(o), e) for o, e in MD_EXECVE_CASES)[""]

    class _Stdin:
        buffer = io.BytesIO(data)

    monkeypatch.setattr(sys, "stdin", _Stdin)
    status, out, _ = bsm_run_praudit("-p")
    assert out == expected
    assert status == 0  # OpenBSM exits 1 on stdin; see docs/praudit.md


def test_partial_never_spins_without_header(tmp_path: Path, bsm_run_praudit: Run) -> None:
    f = _write(tmp_path, "junk", bytes(range(0x20, 0x70)) * 100)  # no header byte at all
    status, out, _ = bsm_run_praudit("-p", f)
    assert (status, out) == (0, "")


def _open_section() -> str:
    return bsm_expected("open-modes.txt")


def _labelled(section: str, label: str) -> str:
    """Lines after ``label:`` up to the next ``x:`` label line."""
    lines = section.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln == label + ":")
    out = []
    for ln in lines[start + 1 :]:
        if re.match(r"^-[a-z]+( -d '.')?:|^-d|^```", ln):
            break
        out.append(ln)
    return "\n".join(out) + "\n"


def test_open_every_mode(tmp_path: Path, bsm_run_praudit: Run) -> None:
    sec = _open_section()
    f = _write(tmp_path, "open.bsm", bsm_hex_record("open"))
    default = _labelled(sec, "default")
    assert bsm_run_praudit(f)[1] == default
    assert bsm_run_praudit("-r", f)[1] == _labelled(sec, "-r")
    xml = bsm_run_praudit("-x", f)[1]
    assert xml == "<?xml version='1.0' ?>\n<audit>\n" + _labelled(sec, "-x") + "</audit>\n"
    oneline = re.search(r"^-l:\s+(.*)$", sec, re.M)
    assert oneline is not None
    assert bsm_run_praudit("-l", f)[1] == oneline.group(1) + "\n"
    short = re.search(r"^-s:\s+(header,.*?msec)", sec, re.M)
    assert short is not None
    assert bsm_run_praudit("-s", f)[1] == default.replace(default.split("\n")[0], short.group(1))
    numeric = bsm_run_praudit("-n", f)[1]
    n_attr, n_subj = re.search(r"^-n:\s+(\S+) / (\S+)$", sec, re.M).groups()  # type: ignore[union-attr]
    assert n_attr + "\n" in numeric and n_subj + "\n" in numeric
    for label, opts in (
        ("-xr", ["-xr"]),
        ("-d '|'", ["-d", "|"]),
        ("-l -d ' '", ["-l", "-d", " "]),
    ):
        m = re.search(rf"^{re.escape(label)}:\s+(.*?)\s*…", sec, re.M)
        assert m is not None, label
        head = m.group(1)
        got = bsm_run_praudit(*opts, f)[1]
        assert (head in got) if label == "-xr" else got.startswith(head), label
    xr_tail = re.search(r"^-xr:.*… (.*)$", sec, re.M).group(1)  # type: ignore[union-attr]
    assert xr_tail in bsm_run_praudit("-xr", f)[1]


def test_open_rwtc_failure_text(tmp_path: Path, bsm_run_praudit: Run) -> None:
    import errno

    body = [
        make_token("arg32", num=3, value=0o644, text="mode"),
        make_token("arg32", num=2, value=0x242, text="flags"),
        make_token("path", text="/etc/shadow"),
        make_token(
            "subject32",
            auid=2001,
            euid=2001,
            egid=2001,
            ruid=2001,
            rgid=2001,
            pid=4242,
            sid=4200,
            port=0,
            address="192.168.1.10",
        ),
        make_token("return32", status=errno_to_bsm(errno.EACCES), value=0xFFFFFFFF),
    ]
    f = _write(tmp_path, "rwtc.bsm", encode_record(83, 0, body, time=(1704164647, 0)))
    out = bsm_run_praudit(f)[1]
    head, *rest = bsm_expected("open-rwtc.txt").splitlines()
    assert head.startswith("header,110,11,open(2) - read,write,creat,trunc")
    assert out.splitlines()[0].startswith(head.replace("110", str(len(Path(f).read_bytes()))))
    assert len(rest) == 3
    for want in rest:
        assert want + "\n" in out


def test_failing_execve_with_env(tmp_path: Path, bsm_run_praudit: Run) -> None:
    """The recorded failing execve (138 bytes) rebuilt with encode_record."""
    import errno

    block = bsm_expected("execve-fail.txt")
    expected_lines = [ln for ln in block.splitlines() if not ln.startswith("-x:")]
    body = [
        make_token("exec_args", args=["nosuch", "a b"]),
        make_token("exec_env", env=["PATH=/usr/bin:/bin", "HOME=/root"]),
        make_token("path", text="/usr/bin/nosuch"),
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
        make_token("return32", status=errno_to_bsm(errno.ENOENT), value=0xFFFFFFFF),
    ]
    data = encode_record(23, 0, body, time=(1704164646, 456))
    assert len(data) == 138
    f = _write(tmp_path, "fail.bsm", data)
    assert bsm_run_praudit(f)[1] == "\n".join(expected_lines) + "\n"
    xml = bsm_run_praudit("-x", f)[1]
    x_line = next(ln for ln in block.splitlines() if ln.startswith("-x:"))
    for part in x_line[3:].split(" … "):
        assert part.strip() in xml


FREEBSD_ARGS = (
    "grep au_fetch_tok Makefile Makefile.am Makefile.in au_class.3 au_control.3 au_event.3 "
    "au_free_token.3 au_io.3 au_mask.3 au_open.3 au_token.3 au_user.3 audit_submit.3 "
    "bsm_audit.c bsm_audit.lo bsm_audit.o bsm_class.c bsm_class.lo bsm_class.o bsm_control.c "
    "bsm_control.lo bsm_control.o bsm_event.c bsm_event.lo bsm_event.o bsm_flags.c "
    "bsm_flags.lo bsm_flags.o bsm_io.c bsm_io.lo bsm_io.o bsm_mask.c bsm_mask.lo bsm_mask.o "
    "bsm_notify.c bsm_notify.lo bsm_notify.o bsm_token.c bsm_token.lo bsm_token.o bsm_user.c "
    "bsm_user.lo bsm_user.o bsm_wrappers.c bsm_wrappers.lo bsm_wrappers.o libbsm.3 libbsm.la"
).split()
FREEBSD_TRAIL = BSM_SAMPLES / "freebsd-execve-long-args.trail"

# Expected text for the real 2006 FreeBSD record with uid/gid 1000 named
# alice/staff (the fake database), TZ=UTC.
FREEBSD_EXPECTED = {
    (): [
        "header,714,10,execve(2),0,Mon Sep 18 21:13:02 2006, + 608 msec",
        "exec arg," + ",".join(FREEBSD_ARGS),
        "path,/usr/bin/grep",
        "attribute,555,root,root,90,24222,112200",
        "subject,alice,alice,staff,alice,staff,50009,24722,64746,131.111.204.168",
        "return,success,0",
        "trailer,714",
    ],
    ("-r",): [
        "20,714,10,23,0,1158613982,608",
        "60," + ",".join(FREEBSD_ARGS),
        "35,/usr/bin/grep",
        "62,555,0,0,90,24222,112200",
        "36,1000,1000,1000,1000,1000,50009,24722,64746,131.111.204.168",
        "39,0,0",
        "19,714",
    ],
    ("-n",): [
        "header,714,10,execve(2),0,Mon Sep 18 21:13:02 2006, + 608 msec",
        "exec arg," + ",".join(FREEBSD_ARGS),
        "path,/usr/bin/grep",
        "attribute,555,0,0,90,24222,112200",
        "subject,1000,1000,1000,1000,1000,50009,24722,64746,131.111.204.168",
        "return,success,0",
        "trailer,714",
    ],
    ("-x",): [
        "<?xml version='1.0' ?>",
        "<audit>",
        '<record version="10" event="execve(2)" modifier="0" time="Mon Sep 18 21:13:02 2006"'
        ' msec=" + 608 msec" >',
        "<exec_args>" + "".join(f"<arg>{a}</arg>" for a in FREEBSD_ARGS) + "</exec_args>",
        "<path>/usr/bin/grep</path>",
        '<attribute mode="555" uid="root" gid="root" fsid="90" nodeid="24222" device="112200" />',
        '<subject audit-uid="alice" uid="alice" gid="staff" ruid="alice" rgid="staff"'
        ' pid="50009" sid="24722" tid="64746 131.111.204.168" />',
        '<return errval="success" retval="0" />',
        "</record>",
        "</audit>",
    ],
}


@pytest.mark.parametrize("opts", list(FREEBSD_EXPECTED), ids=lambda o: " ".join(o) or "default")
def test_freebsd_trail_modes(bsm_run_praudit: Run, opts: tuple[str, ...]) -> None:
    status, out, err = bsm_run_praudit(*opts, str(FREEBSD_TRAIL))
    assert (status, err) == (0, "")
    assert out == "\n".join(FREEBSD_EXPECTED[opts]) + "\n"


def test_freebsd_trail_derived_modes(bsm_run_praudit: Run) -> None:
    default = FREEBSD_EXPECTED[()]
    f = str(FREEBSD_TRAIL)
    short = [default[0].replace("execve(2)", "AUE_EXECVE"), *default[1:]]
    assert bsm_run_praudit("-s", f)[1] == "\n".join(short) + "\n"
    assert bsm_run_praudit("-l", f)[1] == ",".join(default) + ",\n"
    assert bsm_run_praudit("-rl", f)[1] == ",".join(FREEBSD_EXPECTED[("-r",)]) + ",\n"
    assert (
        bsm_run_praudit("-d", "|", f)[1] == "\n".join(x.replace(",", "|") for x in default) + "\n"
    )
    xl = bsm_run_praudit("-xl", f)[1].splitlines()
    assert xl == [
        "<?xml version='1.0' ?>",
        "<audit>",
        "".join(FREEBSD_EXPECTED[("-x",)][2:-1]),
        "</audit>",
    ]


def test_freebsd_trail_matches_md_block(bsm_run_praudit: Run) -> None:
    """The recorded (abridged) default-mode output, with … as a wildcard."""
    block = bsm_expected("freebsd-default.txt")
    out = bsm_run_praudit(str(FREEBSD_TRAIL))[1].splitlines()
    want = block.strip().splitlines()
    assert len(out) == len(want)
    for got, pattern in zip(out, want, strict=True):
        rx = re.escape(pattern).replace("…", ".*").replace(re.escape("<uid1000>"), "(alice|staff)")
        assert re.fullmatch(rx, got), (pattern, got)


def test_freebsd_trail_real_names_subprocess() -> None:
    """End to end through the console entry point with the host's databases."""
    import grp
    import pwd

    try:
        user = pwd.getpwuid(1000).pw_name
    except KeyError:
        user = "1000"
    try:
        group = grp.getgrgid(1000).gr_name
    except KeyError:
        group = "1000"
    env = {
        "TZ": "UTC",
        "LXBSM_AUDIT_EVENT": str(BSM_SAMPLES / "openbsm-etc" / "audit_event"),
        "PATH": "/usr/bin:/bin",
    }
    p = subprocess.run(
        [sys.executable, "-m", "lxbsm_tools.praudit", str(FREEBSD_TRAIL)],
        capture_output=True,
        env=env,
        check=False,
    )
    assert p.returncode == 0, p.stderr
    lines = p.stdout.decode().splitlines()
    assert (
        lines[4]
        == f"subject,{user},{user},{group},{user},{group},50009,24722,64746,131.111.204.168"
    )


def test_header32_ex_documented_bug_printed_as_meant(tmp_path: Path, bsm_run_praudit: Run) -> None:
    """OpenBSM bug: -r and -x of header32_ex print what was meant."""
    body = [make_token("return32", status=0, value=0)]
    data = encode_record(112, 0, body, time=(1704164649, 2), header="header32_ex", host="10.0.0.1")
    f = _write(tmp_path, "ex.bsm", data)
    n = len(data)
    assert bsm_run_praudit(f)[1].splitlines()[0] == (
        f"header_ex,{n},11,close(2),0,10.0.0.1,Tue Jan  2 03:04:09 2024, + 2 msec"
    )
    assert bsm_run_praudit("-r", f)[1].splitlines()[0] == f"21,{n},11,112,0,10.0.0.1,1704164649,2"
    assert bsm_run_praudit("-x", f)[1].splitlines()[2] == (
        '<record version="11" event="close(2)" modifier="0" host="10.0.0.1" '
        'time="Tue Jan  2 03:04:09 2024" msec=" + 2 msec" >'
    )


def test_newgroups_and_tid_xml_printed_as_meant(tmp_path: Path, bsm_run_praudit: Run) -> None:
    """OpenBSM bugs: newgroups and the tid in XML print what was meant."""
    body = [
        make_token("newgroups", gids=[0, 5, 2001]),
        make_token(
            "process32_ex",
            auid=2001,
            euid=0,
            egid=0,
            ruid=2001,
            rgid=2001,
            pid=1,
            sid=2,
            port=0,
            address="192.168.1.20",
        ),
        make_token(
            "subject64",
            auid=2001,
            euid=0,
            egid=0,
            ruid=2001,
            rgid=2001,
            pid=1,
            sid=2,
            port=7,
            address="192.168.1.20",
        ),
    ]
    f = _write(tmp_path, "g.bsm", encode_record(26, 0, body, time=(1704164650, 0)))
    xml = bsm_run_praudit("-x", f)[1]
    assert "<group><gid>root</gid><gid>tty</gid><gid>2001</gid></group>\n" in xml
    assert 'tid="0 192.168.1.20" />' in xml and 'tid="7 192.168.1.20" />' in xml
    assert "group,root,tty,2001\n" in bsm_run_praudit(f)[1]


def test_unknown_event_prints_number(tmp_path: Path, bsm_run_praudit: Run) -> None:
    f = _write(tmp_path, "u.bsm", encode_record(65000, 0, [], time=(0, 0)))
    assert bsm_run_praudit(f)[1].startswith("header,25,11,65000,0,Thu Jan  1 00:00:00 1970,")
    f2 = _write(tmp_path, "d.bsm", encode_record(6171, 0, [], time=(0, 0)))
    assert ",ftp logout," in bsm_run_praudit(f2)[1]
    assert ",AUE_ftpd_logout," in bsm_run_praudit("-s", f2)[1]


def test_reference_records_token_texts(bsm_run_praudit: Run) -> None:
    """Per-token formats of section 1c.3 on OpenBSM's reference records."""
    ref = BSM_SAMPLES / "openbsm-reference"
    expect = {
        "in_addr_record": "ip addr,192.168.100.15",
        "iport_record": "ip port,0x5000",
        "opaque_record": "opaque,4,0xaabbccdd",
        "zonename_record": "zone,testzone",
        "socketex_record": "socket,0x2,0x2,0,127.0.0.1,0,127.0.0.1",
        "ipc_record": "IPC,Message IPC,305419896",
        "seq_record": "sequence,305419896",
        "text_record": "text,This is a test.",
        "arg32_record": "argument,3,0xabcdef00,test_arg32_token",
        "ip_record": "ip,0x40,0x00,20,21624,0,0x40,0x01,0,192.168.100.155,192.168.110.48",
        "process32ex_record-IPv6": "process_ex,305419896,19088743,591751049,-1737075662,"
        "159868227,321140038,2542171492,374945606,fe80::1",
        "ENOSPC_record": "return,failure : No space left on device,4294967295",
        "data_record": "arbitrary,string,byte,10,SomeData\0a",
    }
    for name, line in expect.items():
        out = bsm_run_praudit(str(ref / name))[1].splitlines()
        assert out[1] == line, name


def test_malformed_input_error_and_status(tmp_path: Path, bsm_run_praudit: Run) -> None:
    good = bsm_hex_record("execve")
    bad = bytearray(good)
    bad[41] = 0xFF  # the path token (at 39) gets a length running past the record
    f = _write(tmp_path, "bad.trail", good + bytes(bad) + good)
    status, out, err = bsm_run_praudit(f)
    assert status == 1
    assert out.count("header,129,") == 1
    assert err.strip() == f"lxbsm-praudit: {f}: offset 168: truncated path token (0x23)"
    assert "Traceback" not in err
    status, out, err = bsm_run_praudit("--skip-bad", f)
    assert status == 1 and out.count("header,129,") == 2
    assert "offset 168: truncated path token (0x23) (skipped)" in err


def test_missing_file_and_usage(bsm_run_praudit: Run, tmp_path: Path) -> None:
    status, _, err = bsm_run_praudit(str(tmp_path / "nope"))
    assert status == 1 and "No such file or directory" in err
    status, _, err = bsm_run_praudit("-r", "-s", str(FREEBSD_TRAIL))
    assert status == 1 and "usage" in err
    status, _, err = bsm_run_praudit("-q")
    assert status == 1 and "usage" in err


def test_json_output(bsm_run_praudit: Run) -> None:
    import json

    status, out, _ = bsm_run_praudit("--json", str(FREEBSD_TRAIL))
    assert status == 0
    (obj,) = [json.loads(x) for x in out.splitlines()]
    assert obj["event"] == 23 and obj["event_name"] == "AUE_EXECVE" and obj["success"] is True
    assert obj["tokens"][1]["args"] == FREEBSD_ARGS
    assert obj["tokens"][4]["auid"] == 1000


def test_pretty_falls_back_to_plain_when_piped(bsm_run_praudit: Run) -> None:
    assert (
        bsm_run_praudit("--pretty", str(FREEBSD_TRAIL))[1] == bsm_run_praudit(str(FREEBSD_TRAIL))[1]
    )


def test_broken_pipe_no_traceback(tmp_path: Path) -> None:
    big = tmp_path / "big.trail"
    big.write_bytes(FREEBSD_TRAIL.read_bytes() * 2000)
    p = subprocess.run(
        f"{shlex.quote(sys.executable)} -m lxbsm_tools.praudit {big} | head -c 100 >/dev/null",
        shell=True,
        capture_output=True,
        check=False,
    )
    assert b"Traceback" not in p.stderr
    assert p.stderr == b""


def test_file_tokens_between_records(tmp_path: Path, bsm_run_praudit: Run) -> None:
    from lxbsm_tools.bsm import encode_file_token

    rec = bsm_hex_record("execve")
    data = encode_file_token("prev.trail", time=(1704164600, 5)) + rec
    f = _write(tmp_path, "f.trail", data)
    out = bsm_run_praudit(f)[1].splitlines()
    assert out[0] == "file,Tue Jan  2 03:03:20 2024, + 5 msec,prev.trail"
    assert out[1].startswith("header,129,")
    xml = bsm_run_praudit("-x", f)[1].splitlines()
    assert xml[2] == '<file time="Tue Jan  2 03:03:20 2024" msec=" + 5 msec" >prev.trail</file>'
    assert len(list(decode_records(data))) == 1


def test_json_is_strict_utf8_and_lossless_for_any_bytes(
    tmp_path: Path, bsm_run_praudit: Run
) -> None:
    """Bytes that are not UTF-8 become {"base64": ...} of the exact bytes; UTF-8 stays text."""
    import base64
    import json

    latin1 = "/tmp/caf\udce9"  # b"/tmp/caf\xe9": Latin-1, not UTF-8
    body = [
        make_token("exec_args", args=["ls", "\udcff\udcfe", "café"]),
        make_token("path", text=latin1),
        make_token("text", text="café ☕"),
        make_token("return32", status=0, value=0),
    ]
    f = _write(tmp_path, "nonutf8.bsm", encode_record(23, 0, body, time=(1704164645, 0)))
    status, out, _ = bsm_run_praudit("--json", f)
    assert status == 0
    raw = out.encode("utf-8", "surrogateescape")
    raw.decode("utf-8")  # strict: no lone surrogate reached the output
    assert b"\\ud" not in raw.lower()  # nor as a JSON escape
    obj = json.loads(raw)
    toks = obj["tokens"]
    assert toks[1]["args"] == ["ls", {"base64": base64.b64encode(b"\xff\xfe").decode()}, "café"]
    assert toks[2]["text"] == {"base64": "L3RtcC9jYWbp"}
    assert base64.b64decode(toks[2]["text"]["base64"]) == b"/tmp/caf\xe9"
    assert toks[3]["text"] == "café ☕"


def test_every_group_is_printed(tmp_path: Path, bsm_run_praudit: Run) -> None:
    """OpenBSM's praudit prints every gid of a newgroups token (no limit of 16)."""
    gids = list(range(100, 140))
    f = _write(
        tmp_path, "g40.bsm", encode_record(26, 0, [make_token("newgroups", gids=gids)], time=(0, 0))
    )
    assert "group," + ",".join(map(str, gids)) + "\n" in bsm_run_praudit("-n", f)[1]
    assert "".join(f"<gid>{g}</gid>" for g in gids) in bsm_run_praudit("-xn", f)[1]
