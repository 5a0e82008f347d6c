"""BSM (Sun/OpenBSM) audit token library.

Public API (used by the daemon, the tools and the tests):

Decoding
    ``decode_records(data, *, offset=0, source="<bytes>", include_file_tokens=False,
    skip_bad=False, partial=False, on_error=None) -> Iterator[Record]``
        Records in a bytes-like trail.  Stand-alone file tokens (0x11) between
        records are skipped unless ``include_file_tokens=True``, in which case
        they are yielded as :class:`Token` items (``tok.name == "file"``).
    ``read_trail(path, *, include_file_tokens=False, skip_bad=False) -> Iterator[Record]``
        The same over a file, streamed in chunks.
    ``TrailReader(stream, source, ...)``
        The same over any binary stream (pipes, ``tail -f``).

    Every byte is accounted for: a record's tokens must exactly fill the
    byte count of its header, a trailer (when present) must be last, carry
    the magic 0xb105 and repeat the header's count.  Anything else raises
    :class:`BSMDecodeError` (``.source``, ``.offset``, ``.token``), e.g.
    ``"x.trail: offset 1234: truncated path token (0x23)"``.  With
    ``skip_bad=True`` the error goes to ``on_error`` and decoding resumes at
    the next header that decodes, losing only the broken record.
    Unknown token IDs inside a record are kept as ``unknown`` tokens that
    span the rest of the record up to its trailer (OpenBSM's rule).

Records and tokens
    ``Record``: ``.event``, ``.modifier``, ``.version``, ``.size``,
    ``.time`` (``BSMTime(sec, msec)``), ``.tokens`` (header first),
    ``.raw`` (exact bytes), ``.offset``, ``.source``, ``.first(*names)``,
    ``.all(*names)``, ``.subject``, ``.return_token``, ``.success``.
    ``Token``: ``.name`` (``"header32"``, ``"subject32_ex"``, ``"exec_args"``,
    ``"return32"``...), ``.id`` and one attribute per field, e.g.

    * subject*/process*: ``auid euid egid ruid rgid pid sid port address``
      (+ ``addr_type`` for the ``_ex`` forms);
    * return32/64: ``status`` (BSM errno) ``value``; exit: ``status value``;
    * path/text/zonename: ``text``; exec_args: ``args``; exec_env: ``env``;
    * arg32/64: ``num value text``; attr32/64: ``mode uid gid fsid nodeid dev``;
    * header*: ``size version event modifier sec msec`` (+ ``addr_type address``);
    * trailer: ``magic count``; file: ``sec msec name``;
    * in_addr: ``address``; in_addr_ex: ``addr_type address``; iport: ``port``;
    * sock_inet32/128: ``family port address``; sock_unix: ``family path``;
    * socket_ex: ``domain sock_type addr_type lport laddr rport raddr``;
    * newgroups: ``gids``; opaque: ``data``; data: ``how unit data``;
      seq: ``seq``; ipc: ``ipc_type ipc_id``; arg_uuid/ret_uuid: ``num uuid text``.

    The full list is :data:`TOKEN_TABLE` (one ``construct`` Struct per token).

Encoding
    ``make_token(name, **fields) -> Token`` and ``Token.encode() -> bytes``;
    ``encode_record(event, modifier, tokens, *, time=(sec, msec), version=11,
    header="header32", host=None, trailer=True) -> bytes`` builds the header
    and trailer with the right byte counts.

Errno and tables
    ``errno_to_bsm(linux_errno) -> int`` / ``bsm_to_errno(bsm) -> int | None``;
    ``load_event_table(paths=None)``, ``load_class_table(paths=None)``,
    ``parse_flags("lo,+ex,-fr,^fw") -> (success_mask, failure_mask)``.
"""

from .bsmerrno import BSM_ERRNO_UNKNOWN, bsm_to_errno, errno_to_bsm
from .errors import BSMDecodeError
from .record import (
    BSMTime,
    Record,
    TrailReader,
    decode_records,
    encode_file_token,
    encode_record,
    read_trail,
)
from .tables import (
    ClassTable,
    EventEntry,
    EventTable,
    load_class_table,
    load_event_table,
    parse_flags,
)
from .tokens import TOKEN_BY_ID, TOKEN_BY_NAME, TOKEN_TABLE, Token, TokenSpec, make_token

__all__ = [
    "BSM_ERRNO_UNKNOWN",
    "TOKEN_BY_ID",
    "TOKEN_BY_NAME",
    "TOKEN_TABLE",
    "BSMDecodeError",
    "BSMTime",
    "ClassTable",
    "EventEntry",
    "EventTable",
    "Record",
    "Token",
    "TokenSpec",
    "TrailReader",
    "bsm_to_errno",
    "decode_records",
    "encode_file_token",
    "encode_record",
    "errno_to_bsm",
    "load_class_table",
    "load_event_table",
    "make_token",
    "parse_flags",
    "read_trail",
]
