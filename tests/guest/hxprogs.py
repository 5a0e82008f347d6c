"""hxprobe (tests/guest/progs/hxprobe.c) and tiny static programs, compiled in the guest."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .conftest import REPO

EXIT_X = 42  # what the program X exits with when it runs


def build(d: Path) -> Path:
    """In @d (readable by everyone): hxprobe, and X, Y, Y2 of one size.

    X exits EXIT_X, Y and Y2 exit 0; Y and Y2 differ only in their padding.
    """
    d.chmod(0o755)
    src = REPO / "tests" / "guest" / "progs" / "hxprobe.c"
    subprocess.run(["cc", "-O2", "-Wall", "-Werror", "-o", d / "hxprobe", src], check=True)
    for name, code in (("x", EXIT_X), ("y", 0)):
        c = d / f"{name}.c"
        c.write_text(
            "void _start(void)\n{\n"
            f'\tasm volatile("mov $60, %eax\\n\\tmov ${code}, %edi\\n\\tsyscall");\n'
            "}\n"
        )
        subprocess.run(
            ["cc", "-O2", "-static", "-nostdlib", "-Wl,--build-id=none", "-o", d / name, c],
            check=True,
        )
    size = max((d / n).stat().st_size for n in ("x", "y")) + 64
    for name, src_name, pad in (("X", "x", b"\0"), ("Y", "y", b"a"), ("Y2", "y", b"b")):
        data = (d / src_name).read_bytes()
        (d / name).write_bytes(data + pad * (size - len(data)))
        (d / name).chmod(0o755)
    return d / "hxprobe"
