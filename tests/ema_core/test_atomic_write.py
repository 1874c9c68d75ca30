"""One atomic-replace for every file ema_core writes whole (snapshots, averager state,
post-hoc syntheses): the old file or the new one, never a partial one, no leftovers."""

from __future__ import annotations

from pathlib import Path

import pytest

from ema_core._atomic_write import write_atomically


def test_a_write_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(b"old")
    assert write_atomically(path, lambda tmp: Path(tmp).write_bytes(b"new")) == path
    assert path.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(b"old")

    def fail(tmp: str) -> None:
        Path(tmp).write_bytes(b"partial")
        raise OSError("No space left on device")

    with pytest.raises(OSError, match="No space left on device"):
        write_atomically(path, fail)
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]


def test_a_missing_folder_is_a_file_not_found_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_atomically(tmp_path / "nope" / "a.bin", lambda tmp: None)
