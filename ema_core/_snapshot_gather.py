"""A sharded shadow as one full safetensors file on rank 0, gathered tensor by tensor (private).

The safetensors library writes only from a dict holding every tensor at once; a sharded
model's shadow is gathered here one tensor at a time (``DTensor.full_tensor``, a collective
every rank joins) and streamed into the file, so no rank ever holds more than one full tensor.
The layout is the safetensors format (https://github.com/huggingface/safetensors#format): an
8-byte little-endian header length, the JSON header (dtype, shape and byte range of each
tensor, plus ``__metadata__``) padded with spaces to 8 bytes, then the raw little-endian
data. Tensors are laid out in the library's order (by dtype, item sizes decreasing, then
name), so each starts at a multiple of its own item size and the data bytes are the ones the
library writes; files are read back with the library only.
"""

from __future__ import annotations

import json
import math
import os
import struct
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

import torch
from torch import Tensor

from ema_core._distributed import global_rank, to_full

__all__ = ["safetensors_header", "write_gathered"]

DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}


# the library's order: its Dtype enum, descending (item sizes never increase along it)
_ORDER = ("I64", "F64", "F32", "I32", "BF16", "F16", "I16", "I8", "U8", "BOOL")


def _layout(tensors: Mapping[str, Tensor]) -> list[str]:
    """Keys in the order the safetensors library lays tensors out: dtype, then name."""
    return sorted(tensors, key=lambda k: (_ORDER.index(DTYPES[tensors[k].dtype])
                                          if tensors[k].dtype in DTYPES else -1, k))


def safetensors_header(tensors: Mapping[str, Tensor], metadata: Mapping[str, str]) -> bytes:
    """Length prefix and JSON header for ``tensors`` (global shapes; DTensors are fine).

    Raises:
        TypeError: a dtype safetensors has no name for here (complex, float8).
    """
    header: dict[str, object] = {"__metadata__": dict(metadata)}
    offset = 0
    for key in _layout(tensors):
        t = tensors[key]
        if t.dtype not in DTYPES:
            raise TypeError(f"Cannot write {key!r} of dtype {t.dtype} to a snapshot: "
                            f"expected one of {sorted(map(str, DTYPES))}")
        size = math.prod(t.shape) * t.dtype.itemsize
        header[key] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape),
                       "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text


def write_gathered(
    tensors: Mapping[str, Tensor], metadata: Mapping[str, str], path: str | os.PathLike[str]
) -> Path:
    """Gather ``tensors`` one at a time and write them on rank 0 (atomically, then rename).

    Every rank must call this with the same keys: each DTensor is all-gathered in turn. A
    write error on rank 0 (missing folder, full disk) is raised on rank 0 after the last
    gather, so the other ranks are never left waiting in a collective.

    Returns:
        ``path`` (written on rank 0 only).

    Raises:
        TypeError: a dtype safetensors cannot hold (on every rank, before any gather).
        FileNotFoundError, OSError: on rank 0, the file could not be written.
    """
    path = Path(path)
    header = safetensors_header(tensors, metadata)  # on every rank: a bad dtype fails them all
    writer = _Writer(path, header) if global_rank() == 0 else None
    for key in _layout(tensors):
        full = to_full(tensors[key])
        if writer is not None:
            writer.write(full)
    if writer is not None:
        writer.close()
    return path


class _Writer:
    """Streams tensor bytes into a temporary file next to ``path``; keeps the first error."""

    def __init__(self, path: Path, header: bytes) -> None:
        self.path = path
        self.tmp: Path | None = None
        self.fh: BinaryIO | None = None
        self.error: OSError | None = None
        try:
            fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            self.tmp, self.fh = Path(name), os.fdopen(fd, "wb")
            self.fh.write(header)
        except OSError as error:
            self.error = error

    def write(self, t: Tensor) -> None:
        if self.fh is None or self.error is not None:
            return
        data = t.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy()
        try:
            self.fh.write(data.data)
        except OSError as error:
            self.error = error

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
        if self.tmp is not None:
            if self.error is None:
                os.replace(self.tmp, self.path)
            else:
                self.tmp.unlink(missing_ok=True)
        if self.error is not None:
            raise self.error
