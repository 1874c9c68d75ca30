"""Zero-copy NumPy views of the tensors in a safetensors file (private; no torch).

``safetensors.numpy`` copies every tensor it returns and cannot return bfloat16 (NumPy has
no such dtype). Post-hoc synthesis reads each snapshot tensor in cache-sized blocks, so it
maps the file and views its data section directly, following the format's specification
(8-byte little-endian header length, a JSON header of ``dtype``/``shape``/``data_offsets``,
then the data; https://github.com/huggingface/safetensors#format). bfloat16 blocks are
widened to float32 exactly (a bf16 value is the top half of the float32 with the same bits).
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

import numpy as np

from ema_core.exceptions import SnapshotFormatError

_DTYPES = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4",
    "I16": "<i2", "I8": "i1", "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?",
}
_MAX_HEADER_BYTES = 100_000_000  # the format's own limit


class MappedTensors:
    """A safetensors file mapped read-only; tensors as flat views, by key.

    Raises:
        SnapshotFormatError: a truncated file, a header that is not the format's JSON, an
            unsupported dtype, or offsets that do not match a tensor's shape.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            with path.open("rb") as fh:
                (size,) = struct.unpack("<Q", fh.read(8))
                if size > _MAX_HEADER_BYTES:
                    raise ValueError(f"header of {size} bytes")
                header: dict[str, Any] = json.loads(fh.read(size))
            header.pop("__metadata__", None)
            self.specs = {key: self._spec(key, value) for key, value in header.items()}
            self.size = max((s[3] for s in self.specs.values()), default=0)
            self.data = (np.memmap(path, dtype=np.uint8, mode="r", offset=8 + size,
                                   shape=(self.size,)) if self.size else np.empty(0, np.uint8))
        except (OSError, ValueError, KeyError, TypeError, struct.error) as error:
            if isinstance(error, FileNotFoundError):
                raise
            raise SnapshotFormatError(
                f"File {str(path)!r} is not a readable safetensors file ({error})"
            ) from error

    def _spec(self, key: str, value: dict[str, Any]) -> tuple[str, tuple[int, ...], int, int]:
        dtype = str(value["dtype"])
        if dtype not in _DTYPES:
            raise ValueError(f"tensor {key!r} has unsupported dtype {dtype}")
        shape = tuple(int(d) for d in value["shape"])
        start, stop = (int(x) for x in value["data_offsets"])
        if stop - start != math.prod(shape) * np.dtype(_DTYPES[dtype]).itemsize:
            raise ValueError(f"tensor {key!r} has offsets {start}..{stop} for shape {shape}")
        return dtype, shape, start, stop

    @property
    def keys(self) -> list[str]:
        """Tensor keys in file order."""
        return sorted(self.specs, key=lambda k: self.specs[k][2])

    def shape(self, key: str) -> tuple[int, ...]:
        return self.specs[key][1]

    def is_float(self, key: str) -> bool:
        return self.specs[key][0] in ("F64", "F32", "F16", "BF16")

    def flat(self, key: str) -> np.ndarray:
        """The tensor as a 1-D view into the mapped file (bf16 as its uint16 bits)."""
        dtype, _, start, stop = self.specs[key]
        return self.data[start:stop].view(_DTYPES[dtype])

    def decoded(self, key: str, block: np.ndarray) -> np.ndarray:
        """A block of :meth:`flat` as numbers (bf16 widened to float32; others as is)."""
        if self.specs[key][0] != "BF16":
            return block
        return (block.astype(np.uint32) << 16).view(np.float32)

    def array(self, key: str) -> np.ndarray:
        """The whole tensor, decoded and shaped (a copy)."""
        return np.array(self.decoded(key, self.flat(key))).reshape(self.shape(key))
