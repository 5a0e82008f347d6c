"""lxbsm-praudit: print BSM audit trails as OpenBSM's praudit does.

Usage: ``lxbsm-praudit [-lnpx] [-r | -s] [-d del] [--json | --pretty]
[--skip-bad] [file ...]``

The text is OpenBSM praudit's, character for character, in every mode (see
docs/praudit.md for the few documented praudit bugs printed as meant).
``--json`` prints one JSON object per record; ``--pretty`` colours the
default output when standard output is a terminal (piped output is always
the plain praudit text).  Malformed input is reported with the file, byte
offset and token; ``-p`` and ``--skip-bad`` resynchronise on the next header
and lose only the broken record.  Exit status: 0, or 1 if any input was
malformed or unreadable (usage errors also exit 1, as praudit's do).
"""

from __future__ import annotations

import getopt
import sys
from collections.abc import Iterable
from typing import IO, TextIO

from . import cli
from .bsm import BSMDecodeError, EventTable, Record, TrailReader, load_event_table
from .bsm.text import JsonFormatter, PrauditFormatter

PROG = "lxbsm-praudit"
USAGE = f"usage: {PROG} [-lnpx] [-r | -s] [-d del] [--json | --pretty] [--skip-bad] [file ...]"
_FLUSH_BYTES = 1 << 16


def _events() -> EventTable:
    try:
        return load_event_table()
    except OSError as e:
        print(f"{PROG}: warning: {e}; events print as numbers", file=sys.stderr)
        return EventTable({}, {})


class OutputError(Exception):
    """Standard output refused a write (not a closed pipe: a full disk, EIO...)."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


class _Out:
    """Buffered writer of surrogateescape text to a binary stream."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.parts: list[str] = []
        self.size = 0

    def write(self, s: str) -> None:
        self.parts.append(s)
        self.size += len(s)
        if self.size >= _FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        if self.parts:
            data = "".join(self.parts).encode("utf-8", "surrogateescape")
            self.parts.clear()
            self.size = 0
            try:
                self.stream.write(data)
            except BrokenPipeError:
                raise
            except OSError as e:
                raise OutputError(e) from None
        try:
            self.stream.flush()
        except BrokenPipeError:
            raise
        except OSError as e:
            raise OutputError(e) from None


def _pretty_printer(fmt: PrauditFormatter) -> object:
    from rich.console import Console
    from rich.text import Text

    console = Console(highlight=False)
    styles = {
        "header": "bold cyan",
        "header_ex": "bold cyan",
        "subject": "yellow",
        "subject_ex": "yellow",
        "process": "magenta",
        "process_ex": "magenta",
        "path": "green",
        "exec arg": "bright_white",
        "trailer": "dim",
    }

    def show(rec: Record) -> None:
        failed = rec.success is False
        for tok in rec.tokens:
            line = fmt.token(tok)
            name = line.split(fmt.delim, 1)[0]
            style = styles.get(name, "")
            if name == "return":
                style = "bold red" if failed else "green"
            text = Text(
                line.encode("utf-8", "surrogateescape").decode("utf-8", "replace"), style=style
            )
            if failed and name in ("header", "header_ex"):
                text.append("  FAILED", style="bold white on red")
            console.print(text)
        console.print()

    return show


def _run(
    files: list[str],
    fmt: PrauditFormatter,
    *,
    json_out: bool,
    pretty: bool,
    partial: bool,
    skip_bad: bool,
    out: _Out,
    err: TextIO,
) -> int:
    status = 0
    show = _pretty_printer(fmt) if pretty else None
    to_json = JsonFormatter(fmt.events).record

    def on_error(e: BSMDecodeError) -> None:
        nonlocal status
        status = 1
        out.flush()
        print(f"{PROG}: {e} (skipped)", file=err)

    inputs: Iterable[str] = files or ["-"]
    for name in inputs:
        stream: IO[bytes] | None
        try:
            stream = cli.binary_stdin(PROG) if name == "-" else open(name, "rb")
        except OSError as e:
            print(f"{PROG}: {name}: {e.strerror}", file=err)
            status = 1
            continue
        if stream is None:
            status = 1
            continue
        source = "<stdin>" if name == "-" else name
        reader = TrailReader(
            stream,
            source,
            partial=partial,
            skip_bad=skip_bad,
            include_file_tokens=not json_out,
            on_error=on_error,
        )
        try:
            for item in reader:
                if isinstance(item, Record):
                    if json_out:
                        out.write(to_json(item) + "\n")
                    elif show is not None:
                        show(item)  # type: ignore[operator]
                    else:
                        out.write(fmt.record(item))
                elif not pretty:
                    out.write(fmt.file_token(item))
        except BSMDecodeError as e:
            out.flush()
            print(f"{PROG}: {e}", file=err)
            status = 1
        except BrokenPipeError:
            raise
        except OSError as e:  # reading the input (writes raise OutputError)
            out.flush()
            print(f"{PROG}: {source}: read error: {e.strerror or e}", file=err)
            status = 1
        finally:
            if name != "-":
                stream.close()
    return status


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        opts, files = getopt.getopt(args, "d:lnprsx", ["json", "pretty", "skip-bad", "help"])
    except getopt.GetoptError as e:
        print(f"{PROG}: {e}\n{USAGE}", file=sys.stderr)
        return 1
    o = {k: v for k, v in opts}
    if "--help" in o:
        print(USAGE)
        return 0
    if "-r" in o and "-s" in o:
        print(USAGE, file=sys.stderr)
        return 1
    stdout = cli.binary_stdout(PROG)
    if stdout is None:
        return 1
    json_out = "--json" in o
    pretty = "--pretty" in o and stdout.isatty() and not json_out
    if pretty and ("-l" in o or "-x" in o or "-r" in o):
        pretty = False
    xml = "-x" in o and not json_out
    fmt = PrauditFormatter(
        _events(),
        raw="-r" in o,
        short="-s" in o,
        xml=xml,
        oneline="-l" in o,
        delim=o.get("-d", ","),
        resolve="-n" not in o,
    )
    out = _Out(stdout)
    try:
        if xml:
            out.write(fmt.xml_header())
        status = _run(
            files,
            fmt,
            json_out=json_out,
            pretty=pretty,
            partial="-p" in o,
            skip_bad="--skip-bad" in o,
            out=out,
            err=cli.stderr(),
        )
        if xml:
            out.write(fmt.xml_footer())
        out.flush()
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): stop quietly.
        cli.silence_stdout()
        return 0
    except OutputError as e:
        return cli.write_failed(PROG, e.error)
    except KeyboardInterrupt:
        return 130
    return status


if __name__ == "__main__":
    sys.exit(main())
