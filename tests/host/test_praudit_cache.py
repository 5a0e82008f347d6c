"""praudit's text caches change nothing: cached text == freshly formatted text.

:meth:`PrauditFormatter.record` reuses the text of tokens it has already
formatted (by token values) and the part of a header before the time.  A
formatter that has seen every record before must print exactly what fresh
formatters print token by token, in every mode, on OpenBSM's reference
records, the FreeBSD trail and random records.
"""

from __future__ import annotations

import itertools
from typing import Any

from conftest import BSM_SAMPLES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_bsm_tokens import records

from lxbsm_tools.bsm import Record, decode_records, encode_record, load_event_table
from lxbsm_tools.bsm.tables import EventTable, load_class_table
from lxbsm_tools.bsm.text import PrauditFormatter

ETC = BSM_SAMPLES / "openbsm-etc"
MODES: list[dict[str, Any]] = [
    dict(raw=r, short=s, xml=x, oneline=o, delim=d, resolve=n)
    for r, s, x, o, d, n in itertools.product(
        (False, True), (False, True), (False, True), (False, True), (",", ":"), (True, False)
    )
    if not (r and s)
]


def _events() -> EventTable:
    return load_event_table([ETC / "audit_event"], load_class_table([ETC / "audit_class"]))


def _fresh_text(rec: Record, events: EventTable, mode: dict[str, Any]) -> str:
    """The record's text with a new formatter (empty caches) for each token."""
    after = "" if (mode["oneline"] and mode["xml"]) else mode["delim"] if mode["oneline"] else "\n"
    parts = [PrauditFormatter(events, **mode).token(t) for t in rec.tokens]
    return after.join(parts) + after + ("\n" if mode["oneline"] else "")


def _check(recs: list[Record], events: EventTable) -> None:
    for mode in MODES:
        hot = PrauditFormatter(events, **mode)
        for rec in recs:  # fill the caches
            hot.record(rec)
        for rec in recs:
            assert hot.record(rec) == _fresh_text(rec, events, mode), (mode, rec)


def _reference_records() -> list[Record]:
    ref = BSM_SAMPLES / "openbsm-reference"
    recs = []
    for p in sorted(ref.glob("*_record*")):
        recs.extend(decode_records(p.read_bytes(), source=p.name))
    trail = BSM_SAMPLES / "freebsd-execve-long-args.trail"
    recs.extend(decode_records(trail.read_bytes()))
    return recs


def test_cached_text_on_reference_records(bsm_utc: None) -> None:
    recs = _reference_records()
    assert len(recs) > 50
    _check(recs, _events())


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(recs=st.lists(records(), min_size=1, max_size=4))
def test_cached_text_on_random_records(bsm_utc: None, recs: list[Any]) -> None:
    trail = b"".join(
        encode_record(
            ev, mod, toks, time=t, header=h, host="10.0.0.1" if h.endswith("_ex") else None
        )
        for ev, mod, t, toks, h in recs
    )
    _check(list(decode_records(trail)), _events())


def test_header_cache_keeps_time_and_event_apart(bsm_utc: None) -> None:
    a = encode_record(23, 0, [], time=(1704164645, 1))
    b = encode_record(23, 0, [], time=(1704164646, 2))
    c = encode_record(72, 0, [], time=(1704164646, 2))
    ra, rb, rc = (next(decode_records(x)) for x in (a, b, c))
    fmt = PrauditFormatter(_events(), oneline=True)
    lines = [fmt.record(r) for r in (ra, rb, rc, ra)]
    assert lines[0] == lines[3] != lines[1] != lines[2]
    assert lines[1] == "header,25,11,execve(2),0,Tue Jan  2 03:04:06 2024, + 2 msec,trailer,25,\n"
    assert "open(2) - read" in lines[2]
