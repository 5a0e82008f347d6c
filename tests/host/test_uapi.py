"""lxbsm_tools.uapi must match kmod/include/uapi/lxbsm.h byte for byte."""

from __future__ import annotations

import ctypes
import subprocess
from pathlib import Path

from lxbsm_tools import uapi

REPO = Path(__file__).resolve().parents[2]

STRUCTS = {
    "lxbsm_status": uapi.Status,
    "lxbsm_producer_page": uapi.ProducerPage,
    "lxbsm_consumer_page": uapi.ConsumerPage,
    "lxbsm_submit": uapi.Submit,
    "lxbsm_mask": uapi.Mask,
    "lxbsm_event_class": uapi.EventClass,
    "lxbsm_user_mask": uapi.UserMask,
    "lxbsm_config": uapi.Config,
    "lxbsm_hook_info": uapi.HookInfo,
    "lxbsm_hook_cost": uapi.HookCostInfo,
    "lxbsm_xc_rule": uapi.XcRule,
    "lxbsm_xc_config": uapi.XcConfig,
    "lxbsm_file_id": uapi.FileId,
    "lxbsm_copy": uapi.Copy,
    "lxbsm_protect": uapi.Protect,
    "lxbsm_protect_status": uapi.ProtectStatusInfo,
}
CONSTANTS = {
    "LXBSM_ABI_VERSION": uapi.ABI_VERSION,
    "LXBSM_IOC_STATUS": uapi.IOC_STATUS,
    "LXBSM_IOC_SUBMIT": uapi.IOC_SUBMIT,
    "LXBSM_IOC_SET_CONFIG": uapi.IOC_SET_CONFIG,
    "LXBSM_IOC_GET_CONFIG": uapi.IOC_GET_CONFIG,
    "LXBSM_IOC_HOOK_INFO": uapi.IOC_HOOK_INFO,
    "LXBSM_IOC_SET_EXEC_RULES": uapi.IOC_SET_EXEC_RULES,
    "LXBSM_IOC_GET_EXEC_RULES": uapi.IOC_GET_EXEC_RULES,
    "LXBSM_IOC_FILE_ID": uapi.IOC_FILE_ID,
    "LXBSM_IOC_COPY": uapi.IOC_COPY,
    "LXBSM_IOC_HOOK_COST": uapi.IOC_HOOK_COST,
    "LXBSM_IOC_SET_PROTECT": uapi.IOC_SET_PROTECT,
    "LXBSM_IOC_PROTECT_STATUS": uapi.IOC_PROTECT_STATUS,
    "LXBSM_PROTECT_MAX": uapi.PROTECT_MAX,
    "LXBSM_PROTECT_CHUNK": uapi.PROTECT_CHUNK,
    "LXBSM_XC_PATH_LEN": uapi.XC_PATH_LEN,
    "LXBSM_XC_MAX_RULES": uapi.XC_MAX_RULES,
    "LXBSM_XC_INODE": uapi.XC_INODE,
    "LXBSM_XC_MODE_NR": len(uapi.XC_MODES),
    "LXBSM_XC_KILL": uapi.XC_MODES.index("kill"),
    "LXBSM_XC_MONITOR": uapi.XC_MODES.index("monitor"),
    "LXBSM_XC_DENY": uapi.XC_ACTIONS.index("deny"),
    "LXBSM_XC_WHO_NR": len(uapi.XC_WHO),
    "LXBSM_XC_AUID": uapi.XC_WHO.index("auid"),
    "LXBSM_POLICY_CNT": uapi.POLICY_CNT,
    "LXBSM_POLICY_ARGV": uapi.POLICY_ARGV,
    "LXBSM_POLICY_ARGE": uapi.POLICY_ARGE,
    "LXBSM_POLICY_SEQ": uapi.POLICY_SEQ,
    "LXBSM_HOOK_MISSING": uapi.HOOK_STATES.index("missing"),
    "LXBSM_HOOK_IDLE": uapi.HOOK_STATES.index("idle"),
    "LXBSM_REC_BUSY": uapi.REC_BUSY,
    "LXBSM_REC_DISCARD": uapi.REC_DISCARD,
    "LXBSM_REC_LEN_MASK": uapi.REC_LEN_MASK,
    "LXBSM_REC_BSM": uapi.REC_BSM,
    "LXBSM_LOST_NR": uapi.LOST_NR,
    "LXBSM_MAX_RECORD": uapi.MAX_RECORD,
    "LXBSM_MAX_SUBMIT": uapi.MAX_SUBMIT,
    "LXBSM_SUBMITTED_TEXT_MAX": uapi.SUBMITTED_TEXT_MAX,
    "sizeof(LXBSM_SUBMITTED_TEXT) - 1": len(uapi.SUBMITTED_TEXT),
    "sizeof(struct lxbsm_rec_hdr)": uapi.REC_HDR_SIZE,
}


def c_values(tmp_path: Path) -> dict[str, int]:
    """Compile a program against the C header that prints what Python must match."""
    lines = []
    for name, cls in STRUCTS.items():
        lines.append(f'printf("sizeof {name} %zu\\n", sizeof(struct {name}));')
        for field, *_ in cls._fields_:
            lines.append(
                f'printf("offsetof {name}.{field} %zu\\n", offsetof(struct {name}, {field}));'
            )
    for expr in CONSTANTS:
        lines.append(f'printf("const {expr} %llu\\n", (unsigned long long)({expr}));')
    src = tmp_path / "abi.c"
    src.write_text(
        '#include <stddef.h>\n#include <stdio.h>\n#include "uapi/lxbsm.h"\n'
        "int main(void) {\n" + "\n".join(lines) + "\nreturn 0;\n}\n"
    )
    exe = tmp_path / "abi"
    subprocess.run(
        ["cc", "-Wall", "-Werror", "-I", str(REPO / "kmod" / "include"), "-o", str(exe), str(src)],
        check=True,
    )
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    values = {}
    for line in out.splitlines():
        kind, name, value = line.rsplit(" ", 2)
        values[f"{kind} {name}"] = int(value)
    return values


def test_structs_and_constants_match_the_c_header(tmp_path: Path) -> None:
    c = c_values(tmp_path)
    py: dict[str, int] = {}
    for name, cls in STRUCTS.items():
        py[f"sizeof {name}"] = ctypes.sizeof(cls)
        for field, *_ in cls._fields_:
            py[f"offsetof {name}.{field}"] = getattr(cls, field).offset
    for expr, value in CONSTANTS.items():
        py[f"const {expr}"] = value
    assert py == c


def test_split_submitted_gives_back_what_was_submitted() -> None:
    from lxbsm_tools.bsm import encode_record, make_token

    orig = encode_record(
        32800,
        0,
        [make_token("text", text="hello"), make_token("return32", status=0, value=0)],
        time=(1, 2),
    )
    text = f"{uapi.SUBMITTED_TEXT} pid 7 auid 1000 ruid 0 euid 0"
    tok = b"\x28" + (len(text) + 1).to_bytes(2, "big") + text.encode() + b"\x00"
    size = len(orig) + len(tok)
    marked = (
        orig[:1]
        + size.to_bytes(4, "big")
        + orig[5:-7]
        + tok
        + b"\x13\xb1\x05"
        + size.to_bytes(4, "big")
    )
    assert uapi.split_submitted(marked) == (orig, text)
    assert uapi.split_submitted(orig) is None
