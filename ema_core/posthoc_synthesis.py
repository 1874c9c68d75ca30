"""Post-hoc EMA synthesis: Σ c_i·snapshot_i written as a checkpoint, streaming (no torch).

The files are memory-mapped (:mod:`ema_core._safetensors_mmap`) and combined block by
block into a float64 accumulator that stays in cache, so memory holds the output checkpoint
and two small blocks, never the inputs, and each input byte is read once. The server uses
this to answer "give me σ_rel X at step S" without torch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file

from ema_core._atomic_write import write_atomically
from ema_core._safetensors_mmap import MappedTensors
from ema_core.exceptions import ModelMismatchError
from ema_core.posthoc import PosthocSolution
from ema_core.posthoc_files import PosthocSnapshot

__all__ = [
    "BLOCK_NUMEL",
    "NEGLIGIBLE",
    "synthesis_metadata",
    "synthesize_posthoc",
    "write_synthesis",
]

BLOCK_NUMEL = 1 << 18
"""Elements per synthesis block (two float64 blocks: 4 MiB, in cache; 2^16–2^20 measure alike,
2^14 is 1.6× slower, 2^22 1.3×)."""

_OUTPUT_DTYPES: dict[str, type[np.floating[Any]]] = {
    "float32": np.float32, "float16": np.float16, "float64": np.float64,
}


NEGLIGIBLE = 1e-12
"""Snapshots whose |coefficient| is below this share of Σ|c| are not read: they would change
the result by less than float64 rounding of the accumulation."""


def _open_mapped(
    snapshots: Sequence[PosthocSnapshot], cache: dict[Path, MappedTensors] | None
) -> list[MappedTensors]:
    cache = {} if cache is None else cache
    mapped = []
    for snap in snapshots:
        if snap.path not in cache:
            cache[snap.path] = MappedTensors(snap.path)
        mapped.append(cache[snap.path])
    first = mapped[0]
    shapes = {k: first.shape(k) for k in first.keys}
    for other in mapped[1:]:
        theirs = {k: other.shape(k) for k in other.keys}
        if theirs != shapes:
            diff = sorted(set(theirs.items()) ^ set(shapes.items()))[:3]
            raise ModelMismatchError(
                f"Snapshot {str(other.path)!r} holds other tensors than {str(first.path)!r} "
                f"(first differences {diff}): reconstruct from the snapshots of one model"
            )
    return mapped


def synthesize_posthoc(
    snapshots: Sequence[PosthocSnapshot], solution: PosthocSolution, *,
    dtype: str = "float32", cache: dict[Path, MappedTensors] | None = None,
) -> dict[str, np.ndarray]:
    """Σ c_i·snapshot_i, tensor by tensor, streaming over the files.

    Each averaged tensor is combined in blocks of ``BLOCK_NUMEL`` elements: a float64
    accumulator block stays in cache while the matching block of every file is read from
    the memory-mapped files, so memory holds the output and two blocks, and each input byte
    is read once. The result is cast to ``dtype``. Copied tensors (integer buffers,
    ``copied_keys``) are taken from the latest snapshot used. Snapshots whose coefficient is
    below :data:`NEGLIGIBLE` of Σ|c| (long-past ones, for a narrow σ_rel) are not read.

    Args:
        snapshots: The snapshots ``solution`` was solved for, in the same order.
        solution: From :func:`solve_for_snapshots`.
        dtype: Output dtype of the averaged tensors: ``"float32"`` (default), ``"float16"``
            or ``"float64"``.
        cache: Opened files by path, filled and reused across calls (a sweep over many
            σ_rels maps each file once); None opens them for this call only.

    Returns:
        Key → array, keyed like the model's state dict.

    Raises:
        ValueError: ``snapshots`` and ``solution`` differ in length, or an unknown ``dtype``.
        ModelMismatchError: the files hold different keys or shapes.
        SnapshotFormatError: a file that is not a readable safetensors file.
    """
    if len(snapshots) != solution.coefficients.size:
        raise ValueError(
            f"{len(snapshots)} snapshots for {solution.coefficients.size} coefficients: pass the "
            "snapshots the solution was solved for"
        )
    if dtype not in _OUTPUT_DTYPES:
        raise ValueError(f"Invalid dtype {dtype!r}: expected one of {sorted(_OUTPUT_DTYPES)}")
    floor = NEGLIGIBLE * solution.sum_abs
    used = [(s, float(c)) for s, c, u in zip(
        snapshots, solution.coefficients, solution.used, strict=True) if u]
    last = max(used, key=lambda pair: (pair[0].time, pair[0].step))
    chosen = [pair for pair in used if abs(pair[1]) >= floor or pair is last]
    latest = chosen.index(last)
    copied = set(last[0].copied_keys)
    mapped = _open_mapped([s for s, _ in chosen], cache)
    coefs = [c for _, c in chosen]
    out: dict[str, np.ndarray] = {}
    for key in mapped[0].keys:
        if key in copied or not mapped[latest].is_float(key):
            out[key] = mapped[latest].array(key)
        else:
            out[key] = _combine(key, mapped, coefs, _OUTPUT_DTYPES[dtype])
    return out


def _combine(
    key: str, mapped: list[MappedTensors], coefs: list[float], dtype: type[np.floating[Any]],
) -> np.ndarray:
    flats = [m.flat(key) for m in mapped]
    n = flats[0].size
    out = np.empty(n, dtype=dtype)
    acc = np.empty(min(BLOCK_NUMEL, n), dtype=np.float64)
    term = np.empty_like(acc)
    for a in range(0, n, BLOCK_NUMEL):
        b = min(a + BLOCK_NUMEL, n)
        acc_b, term_b = acc[: b - a], term[: b - a]
        for i, (m, flat, c) in enumerate(zip(mapped, flats, coefs, strict=True)):
            block = m.decoded(key, flat[a:b])
            # in float64 (an fp32 product would round c·x before the sum)
            np.multiply(block, c, out=acc_b if i == 0 else term_b, dtype=np.float64)
            if i:
                acc_b += term_b
        out[a:b] = acc_b
    return out.reshape(mapped[0].shape(key))


def synthesis_metadata(
    snapshots: Sequence[PosthocSnapshot], solution: PosthocSolution
) -> dict[str, str]:
    """str → str metadata for a synthesised checkpoint: averager ``posthoc_sigma_rel_<σ>``,
    step, time, σ_rel, γ, the solution's figures and the snapshot count."""
    used = [s for s, u in zip(snapshots, solution.used, strict=True) if u]
    last = max(used, key=lambda s: (s.time, s.step))
    sigma = float(f"{solution.target_sigma_rel:.6g}")
    return {
        "averager": f"posthoc_sigma_rel_{sigma!r}", "snapshot_kind": "posthoc_synthesis",
        "step": str(last.step), "time": repr(solution.target_time), "time_unit": last.time_unit,
        "sigma_rel": repr(solution.target_sigma_rel), "gamma": repr(solution.target_gamma),
        "update_after_step": str(last.update_after_step), "fingerprint": last.fingerprint,
        "condition_number": repr(solution.condition_number),
        "sum_abs_coefficients": repr(solution.sum_abs), "residual": repr(solution.residual),
        "snapshots_used": str(len(used)), "ill_posed": json.dumps(list(solution.ill_posed)),
        "metrics": "{}", "format": "emaboard.snapshot/1",
    }


def write_synthesis(
    tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str],
    path: str | os.PathLike[str],
) -> Path:
    """Write a synthesised checkpoint atomically (temporary file, then rename); it loads with
    :func:`ema_core.snapshot.load_snapshot`.

    Raises:
        FileNotFoundError: the destination folder does not exist.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"Folder {str(path.parent)!r} does not exist")
    arrays = {k: np.require(v, requirements="C") for k, v in tensors.items()}
    return write_atomically(path, lambda tmp: save_file(arrays, tmp, metadata=dict(metadata)))
