"""The streaming safetensors writer behind gathered (FSDP2) snapshots, checked in one process
against the safetensors library (the multi-process gather itself: test_fsdp.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save

from ema_core._snapshot_gather import safetensors_header, write_gathered


def _tensors() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {
        "b.weight": torch.randn(3, 5, generator=gen).to(torch.bfloat16),
        "a.weight": torch.randn(7, 2, generator=gen, dtype=torch.float64),
        "norm.num_batches_tracked": torch.tensor(12),
        "z.empty": torch.zeros(0, 4),
        "m.mask": torch.tensor([True, False, True]),
        "f.half": torch.randn(5, generator=gen).half(),
        "c.bias": torch.randn(5, generator=gen),
    }


def test_written_file_reads_back_like_the_librarys(tmp_path: Path) -> None:
    tensors, meta = _tensors(), {"averager": "ema_0.9", "step": "10"}
    path = write_gathered(tensors, meta, tmp_path / "snap.safetensors")
    got = load_file(path)
    assert sorted(got) == sorted(tensors)
    for key, value in tensors.items():
        assert got[key].dtype == value.dtype and torch.equal(got[key], value), key
    with safe_open(str(path), framework="pt") as handle:
        assert handle.metadata() == meta
    # same tensors, same bytes after the header as the library writes (same order, no padding)
    library = save(tensors, metadata=meta)
    ours = path.read_bytes()
    ours_header = int.from_bytes(ours[:8], "little") + 8
    library_header = int.from_bytes(library[:8], "little") + 8
    assert ours[ours_header:] == library[library_header:]


def test_header_is_aligned_and_names_each_dtype() -> None:
    header = safetensors_header(_tensors(), {"k": "v"})
    assert (len(header) - 8) % 8 == 0 and int.from_bytes(header[:8], "little") == len(header) - 8
    with pytest.raises(TypeError, match=r"Cannot write 'x' of dtype torch.complex64"):
        safetensors_header({"x": torch.zeros(2, dtype=torch.complex64)}, {})


def test_a_missing_folder_raises_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_gathered(_tensors(), {}, tmp_path / "missing" / "snap.safetensors")
    assert list(tmp_path.iterdir()) == []
