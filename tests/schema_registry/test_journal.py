"""Durability: the journal survives torn writes and refuses real corruption."""

from __future__ import annotations

from pathlib import Path

import pytest
from eddy.services.schema_registry.journal import Journal, JournalError

pytestmark = pytest.mark.timeout(30)


def test_round_trip(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    assert journal.open() == []
    journal.append([{"op": "a"}, {"op": "b"}])
    journal.append([{"op": "c"}])
    journal.close()
    again = Journal(tmp_path)
    assert again.open() == [{"op": "a"}, {"op": "b"}, {"op": "c"}]
    again.close()


@pytest.mark.parametrize("tail", [b'{"ts":1,"ops":[{"op":"x"', b'{"ts":1,"ops":[{"op":"x"}]}', b"\x00\x00garbage\n"])
def test_torn_tail_is_dropped_and_truncated(tmp_path: Path, tail: bytes) -> None:
    journal = Journal(tmp_path)
    journal.open()
    journal.append([{"op": "kept"}])
    journal.close()
    good = journal.path.read_bytes()
    with journal.path.open("ab") as f:
        f.write(tail)
    again = Journal(tmp_path)
    assert again.open() == [{"op": "kept"}]
    assert again.path.read_bytes() == good
    again.append([{"op": "next"}])
    again.close()
    third = Journal(tmp_path)
    assert third.open() == [{"op": "kept"}, {"op": "next"}]
    third.close()


def test_corruption_in_the_middle_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "journal.jsonl").write_bytes(b'{"ops":[{"op":"a"}]}\nnot json\n{"ops":[{"op":"b"}]}\n')
    with pytest.raises(JournalError, match="corrupt at line 2"):
        Journal(tmp_path).open()


def test_second_process_is_locked_out(tmp_path: Path) -> None:
    first = Journal(tmp_path)
    first.open()
    with pytest.raises(JournalError, match="in use"):
        Journal(tmp_path).open()
    first.close()
    second = Journal(tmp_path)
    second.open()
    second.close()
