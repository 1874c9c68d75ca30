"""Snapshot files on disk: received into a temporary file, hashed, validated, renamed.

Names are generated here (``snapshots/<run_id>/<uuid4 hex>.safetensors``, relative to
``data_dir``); nothing a client sends ever becomes part of a path.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from safetensors import safe_open

from emaboard_server.app.exceptions import SnapshotNotFound

CHUNK_BYTES = 1 << 20
MAX_HEADER_BYTES = 100 * (1 << 20)  # the safetensors format's own header limit


class InvalidSnapshot(ValueError):
    """The uploaded file is not a valid safetensors file."""


class SnapshotTooLarge(ValueError):
    """The uploaded file is larger than ``max_upload_bytes``."""


def _copy_hashing(src: IO[bytes], dst: IO[bytes], max_bytes: int) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    while chunk := src.read(CHUNK_BYTES):
        size += len(chunk)
        if size > max_bytes:
            raise SnapshotTooLarge(f"File larger than max_upload_bytes {max_bytes}")
        digest.update(chunk)
        dst.write(chunk)
    return digest.hexdigest(), size


def read_header(path: Path) -> dict[str, Any]:
    """Parse and check a safetensors file; return its ``__metadata__`` (str → str).

    Raises:
        InvalidSnapshot: with the reason, when the header or the data layout is broken.
    """
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise InvalidSnapshot("shorter than the 8-byte header length")
        (length,) = struct.unpack("<Q", head)
        if length > MAX_HEADER_BYTES or length > path.stat().st_size - 8:
            raise InvalidSnapshot(f"header length {length} exceeds the file")
        try:
            header = json.loads(f.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InvalidSnapshot(f"header is not JSON ({exc})") from exc
        except RecursionError:  # e.g. 100,000 nested '[': no header nests beyond 3 levels
            raise InvalidSnapshot("header is not a safetensors header (nested too deeply)") \
                from None
    if not isinstance(header, dict):
        raise InvalidSnapshot("header is not a JSON object")
    try:  # the safetensors library checks dtypes, shapes and that offsets tile the data
        with safe_open(str(path), framework="numpy") as handle:
            metadata = handle.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types (SafetensorError, ...)
        raise InvalidSnapshot(str(exc)) from exc
    return dict(metadata)


def store_upload(
    src: IO[bytes], *, data_dir: Path, run_id: int, max_bytes: int
) -> tuple[str, str, int, dict[str, Any]]:
    """Write an upload under ``data_dir``, validated.

    Args:
        src: The uploaded file, at its start.
        data_dir: The server's data directory.
        run_id: The run the snapshot belongs to (names its folder).
        max_bytes: ``max_upload_bytes``.

    Returns:
        (stored path relative to ``data_dir``, sha256 hex, size in bytes, file metadata).

    Raises:
        InvalidSnapshot: not a safetensors file. SnapshotTooLarge: over ``max_bytes``.
    """
    relative = Path("snapshots") / str(run_id) / f"{uuid.uuid4().hex}.safetensors"
    final = data_dir / relative
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=final.parent, suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as dst:
            sha256, size = _copy_hashing(src, dst, max_bytes)
        metadata = read_header(tmp)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return relative.as_posix(), sha256, size, metadata


def stored_file(data_dir: Path, stored_path: str) -> Path:
    """The file of a stored snapshot (``stored_path`` relative to ``data_dir``).

    Raises:
        SnapshotNotFound: The file is gone (removed by hand, or a lost volume).
    """
    path = data_dir / stored_path
    if not path.is_file():
        raise SnapshotNotFound
    return path


def remove_files(data_dir: Path, stored_paths: Iterable[str]) -> None:
    """Remove snapshot files (paths relative to ``data_dir``); missing ones are no error."""
    for stored_path in stored_paths:
        (data_dir / stored_path).unlink(missing_ok=True)


def remove_run_folder(data_dir: Path, run_id: int) -> None:
    """Remove the run's ``snapshots/<run_id>`` folder when it is empty (else leave it)."""
    try:
        (data_dir / "snapshots" / str(run_id)).rmdir()
    except OSError:
        pass  # absent or not empty
