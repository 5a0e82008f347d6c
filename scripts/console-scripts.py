#!/usr/bin/env python3
"""Print the commands a package installs, from pyproject.toml's [project.scripts].

One word per command, ``NAME:MODULE`` (MODULE relative to lxbsm_tools, whose
``main()`` the command runs), for debian/rules; the developers' lxbsm-vm is left
out.  Exits 1, naming the entry, if one does not have that form.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

LEFT_OUT = {"lxbsm-vm"}


def commands(pyproject: Path) -> list[str]:
    with pyproject.open("rb") as f:
        scripts: dict[str, str] = tomllib.load(f)["project"]["scripts"]
    out = []
    for name, target in scripts.items():
        if name in LEFT_OUT:
            continue
        module, _, func = target.partition(":")
        if not module.startswith("lxbsm_tools.") or func != "main":
            raise ValueError(
                f"{pyproject}: [project.scripts] {name} = {target!r}: "
                "expected 'lxbsm_tools.<module>:main'"
            )
        out.append(f"{name}:{module.removeprefix('lxbsm_tools.')}")
    return out


def main() -> int:
    here = Path(__file__).resolve().parent.parent
    try:
        print(" ".join(commands(here / "pyproject.toml")))
    except ValueError as e:
        print(e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
