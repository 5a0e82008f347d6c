"""The journal of protected files and what is rebuilt from it (lxbsm_tools.recover).

The scenario is the one issue 17 asks of the guest suite, as journal entries:
a trusted session edits a configuration file, appends to a log and makes a
file; an untrusted one (another user, another address) appends a backdoor
line, overwrites bytes in the middle of a binary file, truncates, deletes and
renames files and writes through a mapping; then the trusted user changes
another part of the configuration with an editor that writes a new file and
renames it over the old one.  Every expected state below is written out by
hand, not computed by the code under test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lxbsm_tools.recover import history, journal
from lxbsm_tools.recover.history import FileState, Tree
from lxbsm_tools.recover.journal import Entry, Kind

TRUSTED: dict[str, Any] = {"auid": 1000, "asid": 11, "terminal": "192.0.2.10 port 40000"}
INTRUDER: dict[str, Any] = {"auid": 1001, "asid": 66, "terminal": "198.51.100.66 port 50000"}
SITE = b"/srv/site/"
CONF_0 = b"# app\nlisten 80\nroot /srv/site\nworkers 4\nlog /var/log/app\n"
BIN_0 = bytes(range(256)) * 16  # 4096 bytes, no line structure to speak of
MAP_0 = b"M" * 8192


def base_tree() -> Tree:
    files = {
        b"app.conf": CONF_0,
        b"access.log": b"GET / 200\n",
        b"app.bin": BIN_0,
        b"trunc.txt": b"keep this whole file\n" * 10,
        b"gone.txt": b"deleted by the intruder\n",
        b"moved.txt": b"renamed by the intruder\n",
        b"mapped.dat": MAP_0,
    }
    t = Tree()
    for i, (name, data) in enumerate(files.items()):
        t.paths[SITE + name] = 100 + i
        t.files[100 + i] = FileState(data)
    return t


class Journal:
    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self.clock = 1_000_000_000_000_000_000

    def add(self, who: dict[str, Any], kind: Kind, fid: int, path: bytes, **kw: Any) -> int:
        self.clock += 1_000_000_000
        self.entries.append(
            Entry(
                seq=len(self.entries) + 1,
                time_ns=self.clock,
                kind=kind,
                fid=fid,
                path=SITE + path,
                **who,
                **kw,
            )
        )
        return self.clock

    def write(
        self, who: dict[str, Any], fid: int, path: bytes, start: int, data: bytes, size: int
    ) -> int:
        return self.add(
            who,
            Kind.WRITE,
            fid,
            path,
            start=start,
            end=start + len(data),
            data=data,
            size=size,
            event="AUE_WRITE",
        )


CONF_1 = b"# app\nlisten 8080\nroot /srv/site\nworkers 4\nlog /var/log/app\n"  # trusted edit
BACKDOOR = b"include /tmp/.x/evil.conf\n"
CONF_2 = CONF_1 + BACKDOOR  # the intruder's append
CONF_3 = CONF_2.replace(b"workers 4", b"workers 16")  # trusted editor, new file renamed over
CONF_TRUSTED = CONF_1.replace(b"workers 4", b"workers 16")  # what undoing the intruder gives
EVIL = b"\xcc" * 64


def scenario() -> tuple[Journal, list[int]]:
    j = Journal()
    moments = []
    # The trusted session.
    j.write(TRUSTED, 100, b"app.conf", 0, CONF_1, len(CONF_1))
    j.write(TRUSTED, 101, b"access.log", 10, b"GET /a 200\n", 21)
    j.add(TRUSTED, Kind.CREATE, 200, b"new.txt", mode=0o100640, uid=1000, gid=1000)
    moments.append(j.write(TRUSTED, 200, b"new.txt", 0, b"made by the admin\n", 18))
    # The intruder.
    j.write(INTRUDER, 100, b"app.conf", len(CONF_1), BACKDOOR, len(CONF_2))
    j.write(INTRUDER, 102, b"app.bin", 2000, EVIL, 4096)
    j.add(INTRUDER, Kind.TRUNCATE, 103, b"trunc.txt", size=5, event="AUE_TRUNCATE")
    moments.append(j.add(INTRUDER, Kind.UNLINK, 104, b"gone.txt", event="AUE_UNLINK"))
    j.add(INTRUDER, Kind.RENAME, 105, b"moved.txt", path2=SITE + b".hidden", event="AUE_RENAME")
    moments.append(j.write(INTRUDER, 106, b"mapped.dat", 4096, b"X" * 100, 8192))
    # The trusted user's editor: a new file with the whole text, renamed over.
    j.add(TRUSTED, Kind.CREATE, 300, b".app.conf.swp", mode=0o100644)
    j.write(TRUSTED, 300, b".app.conf.swp", 0, CONF_3, len(CONF_3))
    moments.append(j.add(TRUSTED, Kind.RENAME, 300, b".app.conf.swp", path2=SITE + b"app.conf"))
    moments.append(j.write(TRUSTED, 101, b"access.log", 21, b"GET /b 200\n", 32))
    return j, moments


def contents(view: dict[bytes, FileState]) -> dict[bytes, bytes]:
    return {p[len(SITE) :]: f.data for p, f in view.items()}


LOG_1 = b"GET / 200\nGET /a 200\n"
LOG_2 = LOG_1 + b"GET /b 200\n"
UNTOUCHED = {
    b"trunc.txt": b"keep this whole file\n" * 10,
    b"gone.txt": b"deleted by the intruder\n",
    b"moved.txt": b"renamed by the intruder\n",
}


def expected_at() -> list[dict[bytes, bytes]]:
    bin_evil = BIN_0[:2000] + EVIL + BIN_0[2064:]
    after_trusted = {
        b"app.conf": CONF_1,
        b"access.log": LOG_1,
        b"app.bin": BIN_0,
        **UNTOUCHED,
        b"mapped.dat": MAP_0,
        b"new.txt": b"made by the admin\n",
    }
    after_unlink = {
        **after_trusted,
        b"app.conf": CONF_2,
        b"app.bin": bin_evil,
        b"trunc.txt": b"keep ",
    }
    del after_unlink[b"gone.txt"]
    after_map = dict(after_unlink)
    after_map[b".hidden"] = after_map.pop(b"moved.txt")
    after_map[b"mapped.dat"] = b"M" * 4096 + b"X" * 100 + b"M" * 3996
    after_editor = {**after_map, b"app.conf": CONF_3}
    final = {**after_editor, b"access.log": LOG_2}
    return [after_trusted, after_unlink, after_map, after_editor, final]


def test_restore_at_five_moments_gives_each_state_exactly() -> None:
    j, moments = scenario()
    for t, want in zip(moments, expected_at(), strict=True):
        got = contents(history.replay(base_tree(), j.entries, until_ns=t).view())
        assert got == want
    # Before anything: the baseline.
    got = contents(history.replay(base_tree(), j.entries, until_ns=0).view())
    assert got == contents(base_tree().view())


def test_undoing_the_untrusted_terminal_keeps_every_trusted_change() -> None:
    j, _ = scenario()
    got, conflicts = history.revert(
        base_tree(), j.entries, lambda e: e.terminal.startswith("198.51.100.66")
    )
    want = {
        b"app.conf": CONF_TRUSTED,  # the editor's copy of the backdoor line is gone too
        b"access.log": LOG_2,
        b"app.bin": BIN_0,
        **UNTOUCHED,
        b"mapped.dat": MAP_0,
        b"new.txt": b"made by the admin\n",
    }
    assert contents(got) == want
    assert conflicts == []
    assert got[SITE + b"new.txt"].mode == 0o100640


def test_a_trusted_change_to_the_intruders_own_line_is_a_conflict_and_kept() -> None:
    j = Journal()
    j.write(INTRUDER, 100, b"app.conf", len(CONF_0), BACKDOOR, len(CONF_0) + len(BACKDOOR))
    fixed = CONF_0 + b"include /etc/app/ok.conf\n"  # the admin rewrote that very line
    j.write(TRUSTED, 100, b"app.conf", 0, fixed, len(fixed))
    got, conflicts = history.revert(base_tree(), j.entries, lambda e: e.auid == 1001)
    assert got[SITE + b"app.conf"].data == fixed
    assert len(conflicts) == 1
    c = conflicts[0]
    assert c.path == SITE + b"app.conf"
    assert [e.auid for e in c.undone] == [1001] and [e.auid for e in c.kept] == [1000]
    assert c.undone_range == (len(CONF_0), len(CONF_0) + len(BACKDOOR))
    assert c.kept_range == (len(CONF_0), len(fixed))


def test_undoing_a_file_the_intruder_made_removes_it_unless_trusted_users_kept_using_it() -> None:
    j = Journal()
    j.add(INTRUDER, Kind.CREATE, 400, b"shell.php")
    j.write(INTRUDER, 400, b"shell.php", 0, b"<?php system($_GET[c]);\n", 24)
    j.add(INTRUDER, Kind.CREATE, 401, b"notes.txt")
    j.write(INTRUDER, 401, b"notes.txt", 0, b"intruder line\n", 14)
    j.write(TRUSTED, 401, b"notes.txt", 14, b"admin line\n", 25)
    got, conflicts = history.revert(base_tree(), j.entries, lambda e: e.asid == 66)
    assert SITE + b"shell.php" not in got
    assert got[SITE + b"notes.txt"].data == b"admin line\n"
    assert conflicts == []


def test_hard_links_are_one_file_and_a_write_through_one_name_shows_in_both() -> None:
    j = Journal()
    j.add(TRUSTED, Kind.LINK, 100, b"app.conf", path2=SITE + b"app.conf.link")
    j.write(INTRUDER, 100, b"app.conf.link", len(CONF_0), BACKDOOR, len(CONF_0) + len(BACKDOOR))
    after = history.replay(base_tree(), j.entries).view()
    assert after[SITE + b"app.conf"].data == CONF_0 + BACKDOOR
    got, _ = history.revert(base_tree(), j.entries, lambda e: e.asid == 66)
    assert got[SITE + b"app.conf"].data == CONF_0
    assert got[SITE + b"app.conf.link"].data == CONF_0


def test_metadata_changes_are_undone_and_kept_field_by_field() -> None:
    j = Journal()
    j.add(INTRUDER, Kind.META, 100, b"app.conf", mode=0o104777, uid=0, gid=0, event="AUE_CHMOD")
    j.add(TRUSTED, Kind.META, 101, b"access.log", mode=0o100600, uid=0, gid=4, event="AUE_CHMOD")
    got, _ = history.revert(base_tree(), j.entries, lambda e: e.asid == 66)
    assert got[SITE + b"app.conf"].mode == 0o100644
    assert got[SITE + b"access.log"].mode == 0o100600 and got[SITE + b"access.log"].gid == 4


ODD_PATHS = [
    b"/srv/site/new\nline",
    b"/srv/site/latin1-\xe9\xff",
    b"/srv/" + b"d" * 200 + b"/" + b"f" * (4096 - 206),
]


@pytest.mark.parametrize("path", ODD_PATHS, ids=["newline", "non-utf8", "4096-bytes"])
def test_paths_of_any_bytes_round_trip_and_replay(tmp_path: Path, path: bytes) -> None:
    assert len(path) <= journal.PATH_MAX
    es = [
        Entry(seq=1, time_ns=5, kind=Kind.CREATE, fid=7, path=path, mode=0o100600),
        Entry(
            seq=2, time_ns=6, kind=Kind.WRITE, fid=7, path=path, start=0, end=3, size=3, data=b"abc"
        ),
        Entry(
            seq=3,
            time_ns=7,
            kind=Kind.RENAME,
            fid=7,
            path=path,
            path2=path + b".old"[: 4096 - len(path)],
        ),
    ]
    f = tmp_path / "j"
    journal.append(f, es)
    damages: list[journal.Damage] = []
    assert list(journal.read(f, damages)) == es and damages == []
    t = history.replay(Tree(), es)
    assert [(p, s.data) for p, s in t.view().items()] == [(es[2].path2, b"abc")]


def test_a_path_too_long_is_refused_before_it_is_written() -> None:
    e = Entry(seq=1, time_ns=1, kind=Kind.UNLINK, fid=1, path=b"/" + b"x" * 4096)
    with pytest.raises(journal.JournalError, match="longer than 4096"):
        journal.encode(e)


def test_a_damaged_journal_names_file_and_offset_and_keeps_the_rest(tmp_path: Path) -> None:
    j, _ = scenario()
    f = tmp_path / "journal"
    journal.append(f, j.entries)
    raw = bytearray(f.read_bytes())
    frames = [len(journal.encode(e)) for e in j.entries]
    third = sum(frames[:2])  # the offset of the third frame
    raw[third + 20] ^= 0xFF  # one byte of its body
    raw += journal.encode(j.entries[0])[:30]  # and a frame cut short by a crash
    f.write_bytes(bytes(raw))
    damages: list[journal.Damage] = []
    got = list(journal.read(f, damages))
    assert got == j.entries[:2] + j.entries[3:] + []
    assert [(d.offset, d.reason) for d in damages] == [
        (third, "checksum mismatch"),
        (sum(frames), "frame runs past the end of the file (a write cut short)"),
    ]
    assert damages[0].length == frames[2]
    assert str(damages[0]).startswith(f"{f}: offset {third}: {frames[2]} bytes skipped")


def test_a_write_whose_range_does_not_hold_its_data_is_refused() -> None:
    e = Entry(
        seq=1, time_ns=1, kind=Kind.WRITE, fid=1, path=b"/a", start=0, end=5, size=5, data=b"abc"
    )
    with pytest.raises(journal.JournalError, match=r"\[0, 5\) does not hold 3 bytes"):
        journal.encode(e)
