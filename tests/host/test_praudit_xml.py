"""lxbsm-praudit -x is well-formed XML for every input, and escapes as vis(3) does."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from conftest import BSM_SAMPLES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_bsm_tokens import records

from lxbsm_tools.bsm import decode_records, encode_record, make_token
from lxbsm_tools.bsm.tables import load_class_table, load_event_table
from lxbsm_tools.bsm.text import PrauditFormatter, xml_string

ETC = BSM_SAMPLES / "openbsm-etc"
EVENTS = load_event_table([ETC / "audit_event"], load_class_table([ETC / "audit_class"]))


def _xml(data: bytes, **mode: Any) -> bytes:
    fmt = PrauditFormatter(EVENTS, xml=True, **mode)
    text = fmt.xml_header() + "".join(fmt.record(r) for r in decode_records(data))
    return (text + fmt.xml_footer()).encode("utf-8", "surrogateescape")


def _parse(doc: bytes) -> ET.Element:
    doc.decode("utf-8")  # strict UTF-8: no raw byte that is not UTF-8
    return ET.fromstring(doc)


def test_vis_meta_characters_as_openbsm() -> None:
    # OpenBSM praudit -x prints exec arg "café" (UTF-8) as caf\M-C\M-) (vis(3)).
    assert xml_string("caf\udcc3\udca9") == "caf\\M-C\\M-)"
    assert xml_string("café") == "caf\\M-C\\M-)"
    assert xml_string("\udca0\udcff\udc80") == "\\240\\M^?\\M^@"
    assert xml_string("\udcbc\udca6") == "\\M-&lt;\\M-&amp;"  # 0xBC '<', 0xA6 '&'
    assert xml_string("a<b&\\") == "a&lt;b&amp;\\\\"


def test_nul_in_a_data_token_and_specials_in_paths(tmp_path: Path) -> None:
    body = [
        make_token("data", how=4, unit=0, data=b"Some\0<Data>&\x01"),
        make_token("path", text="/tmp/a<b>&\"c'\x1b\udcff"),
        make_token("text", text="bell\x07"),
        make_token("zonename", text='z"<'),
        make_token("arg32", num=1, value=2, text="<&>"),
        make_token("exec_args", args=["caf\udcc3\udca9", "\x01"]),
    ]
    data = encode_record(23, 0, body, time=(1704164645, 0))
    root = _parse(_xml(data))
    rec = root[0]
    assert rec.find("arbitrary").text == "Some\\^@<Data>&\\^A"  # type: ignore[union-attr]
    assert rec.find("path").text == "/tmp/a<b>&\"c'\\^[\\M^?"  # type: ignore[union-attr]
    assert rec.find("text").text == "bell\\a"  # vis -c  # type: ignore[union-attr]
    assert rec.find("zone").get("name") == 'z"<'  # type: ignore[union-attr]
    assert rec.find("argument").get("desc") == "<&>"  # type: ignore[union-attr]
    assert [a.text for a in rec.find("exec_args")] == ["caf\\M-C\\M-)", "\\^A"]  # type: ignore[union-attr]


def test_openbsm_reference_records_parse() -> None:
    data = b"".join(
        p.read_bytes() for p in sorted((BSM_SAMPLES / "openbsm-reference").glob("*_record*"))
    )
    data += (BSM_SAMPLES / "freebsd-execve-long-args.trail").read_bytes()
    for mode in ({}, {"raw": True}, {"short": True}, {"oneline": True}):
        root = _parse(_xml(data, **mode))
        assert len(root) == len(list(decode_records(data)))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recs=st.lists(records(), min_size=1, max_size=4), raw=st.booleans(), oneline=st.booleans())
def test_any_record_gives_well_formed_xml(recs: list[Any], raw: bool, oneline: bool) -> None:
    data = b"".join(
        encode_record(
            ev, mod, toks, time=t, header=h, host="10.0.0.1" if h.endswith("_ex") else None
        )
        for ev, mod, t, toks, h in recs
    )
    root = _parse(_xml(data, raw=raw, oneline=oneline))
    assert root.tag == "audit" and len(root) == len(recs)
