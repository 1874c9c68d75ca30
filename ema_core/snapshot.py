"""Snapshots: one averager's weights as a safetensors file with metadata.

A snapshot holds the prefix-stripped ``state_dict`` keys of one shadow (parameters and
averaged buffers) in the shadow's dtype, plus str→str metadata: the averager's name, step,
decay and schedule (from ``averager.averager_info``), eval metrics as JSON text, the tensor
element count and the torch version. Files are written with ``safetensors`` and read back
with it only: nothing is ever pickled or unpickled.

Typical use::

    save_snapshot(ema, "best.safetensors", name="ema_0.999", metrics={"accuracy": 0.97})
    metadata = load_snapshot(model, "best.safetensors")   # strict key and shape checks

The training thread can hand a snapshot to a background uploader cheaply::

    tensors = snapshot_state(ema, "ema_0.999")   # contiguous CPU copies, safe to ship
    metadata = snapshot_metadata(ema, "ema_0.999", metrics=results["ema_0.999"])
    payload = serialize_snapshot(tensors, metadata)          # bytes, on the uploader thread
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import safetensors
import torch
from safetensors.torch import save, save_file
from torch import Tensor, nn

from ema_core._atomic_write import write_atomically
from ema_core._distributed import global_rank, is_dtensor, is_initialized, to_full
from ema_core._snapshot_gather import write_gathered
from ema_core._snapshot_match import (
    check_keys,
    check_shapes,
    model_tensors,
    open_snapshot,
    read_tensors,
)
from ema_core.exceptions import SnapshotFormatError
from ema_core.wire import decode_float, encode_float

__all__ = [
    "FORMAT",
    "SupportsSnapshot",
    "load_snapshot",
    "read_snapshot_metadata",
    "save_snapshot",
    "serialize_snapshot",
    "snapshot_metadata",
    "snapshot_metrics",
    "snapshot_state",
    "write_snapshot",
]

FORMAT = "emaboard.snapshot/1"
"""Value of the ``format`` metadata entry written into every snapshot."""


class SupportsSnapshot(Protocol):
    """What snapshots need from an averager (``EMA``, ``SWA``)."""

    def shadow_state_dict(self, name: str | None = None) -> dict[str, Tensor]: ...

    def averager_info(self, name: str | None = None) -> Mapping[str, str | int | float]: ...


def snapshot_state(averager: SupportsSnapshot, name: str | None = None) -> dict[str, Tensor]:
    """Copy one averager's shadow to contiguous CPU tensors.

    The copies share nothing with the shadow (which keeps changing as training goes on), so
    the training thread can hand them to a background thread that serializes and uploads them.
    A shadow on an accelerator is copied synchronously (the copy waits for that device).

    A sharded shadow (FSDP2) is gathered tensor by tensor (``DTensor.full_tensor``): every
    rank must call this; rank 0 gets the full tensors, the other ranks ``{}`` (as torch's
    ``get_model_state_dict`` with ``full_state_dict=True, cpu_offload=True``).

    Args:
        averager: An ``EMA`` or ``SWA`` (anything with ``shadow_state_dict``).
        name: Which averager, e.g. ``"ema_0.999"``; ``None`` for the only/first one.

    Returns:
        Key → tensor with the shadow's (global) shapes and dtypes, on CPU, contiguous, not
        shared.

    Raises:
        UnknownAveragerError: ``name`` is not one of the averager's names.
    """
    shadow = averager.shadow_state_dict(name)
    if not any(is_dtensor(t) for t in shadow.values()):
        return {key: _cpu_copy(t) for key, t in shadow.items()}
    keep = global_rank() == 0
    out = {}
    for key, tensor in shadow.items():
        full = to_full(tensor)
        if keep:
            out[key] = _cpu_copy(full)
    return out


def _cpu_copy(t: Tensor) -> Tensor:
    return t.detach().to("cpu", copy=True, memory_format=torch.contiguous_format)


def _metrics_json(metrics: Mapping[str, float]) -> str:
    encoded: dict[str, float | str] = {}
    for key, value in metrics.items():
        if not isinstance(key, str) or not isinstance(value, int | float):
            raise TypeError(
                f"Invalid metric {key!r}: {value!r}: expected a str name and a float value"
            )
        encoded[key] = encode_float(float(value))
    return json.dumps(encoded, sort_keys=True, allow_nan=False)


def snapshot_metadata(
    averager: SupportsSnapshot,
    name: str | None = None,
    *,
    metrics: Mapping[str, float] | None = None,
) -> dict[str, str]:
    """Build a snapshot's str→str metadata.

    Entries: everything in ``averager.averager_info(name)`` (``averager``, ``step``, ``decay``,
    ``schedule``, … as text), ``metrics`` (JSON object text; NaN/±Inf as ``"NaN"``/
    ``"Infinity"``/``"-Infinity"``), ``parameter_count`` (as ``averager_info`` reports it,
    else the number of elements in the snapshot's tensors: parameters and buffers),
    ``torch_version``, ``safetensors_version`` and ``format`` (:data:`FORMAT`).

    Raises:
        TypeError: A metric name is not a str or its value is not a real number.
        UnknownAveragerError: ``name`` is not one of the averager's names.
    """
    info = averager.averager_info(name)
    shadow = averager.shadow_state_dict(name)
    metadata = {str(key): str(value) for key, value in info.items()}
    metadata.setdefault("parameter_count", str(sum(t.numel() for t in shadow.values())))
    metadata.update(
        metrics=_metrics_json(metrics or {}),
        torch_version=torch.__version__,
        safetensors_version=safetensors.__version__,
        format=FORMAT,
    )
    return metadata


def _check_metadata(metadata: Mapping[str, str]) -> None:
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(
                f"Invalid metadata entry {key!r}: {value!r}: safetensors metadata maps str to "
                "str; encode other values as text (e.g. json.dumps)"
            )


def serialize_snapshot(tensors: Mapping[str, Tensor], metadata: Mapping[str, str]) -> bytes:
    """Serialize a snapshot to safetensors bytes (what the upload endpoint accepts).

    Args:
        tensors: Key → CPU tensor (from :func:`snapshot_state`): contiguous, not sharing memory.
        metadata: str → str (from :func:`snapshot_metadata`).

    Raises:
        TypeError: A metadata key or value is not a str.
    """
    _check_metadata(metadata)
    return save(dict(tensors), metadata=dict(metadata))


def write_snapshot(
    tensors: Mapping[str, Tensor], metadata: Mapping[str, str], path: str | os.PathLike[str]
) -> Path:
    """Write a snapshot file atomically (a temporary file in the same folder, then a rename).

    Args:
        tensors: Key → CPU tensor (from :func:`snapshot_state`): contiguous, not sharing memory.
        metadata: str → str (from :func:`snapshot_metadata`).
        path: Destination; its folder must exist. Replaced if present.

    Returns:
        The destination path.

    Raises:
        TypeError: A metadata key or value is not a str.
        FileNotFoundError: The destination folder does not exist.
    """
    _check_metadata(metadata)
    return write_atomically(
        Path(path), lambda tmp: save_file(dict(tensors), tmp, metadata=dict(metadata))
    )


def save_snapshot(
    averager: SupportsSnapshot,
    path: str | os.PathLike[str],
    *,
    name: str | None = None,
    metrics: Mapping[str, float] | None = None,
) -> Path:
    """Save one averager's shadow to ``path`` as safetensors with metadata.

    Equivalent to ``write_snapshot(snapshot_state(averager, name),
    snapshot_metadata(averager, name, metrics=metrics), path)``. In a distributed job (a
    torch.distributed process group exists) only rank 0 writes the file: call it on rank 0,
    or on every rank, which a sharded (FSDP2) shadow requires: it is then gathered one tensor
    at a time into one full file on rank 0, so no rank holds more than one full tensor.

    Returns:
        ``path`` (on every rank; the file is on rank 0's file system).

    Raises:
        TypeError: A metric name is not a str or its value is not a real number.
        FileNotFoundError: The destination folder does not exist (on rank 0).
    """
    metadata = snapshot_metadata(averager, name, metrics=metrics)
    shadow = averager.shadow_state_dict(name)
    if any(is_dtensor(t) for t in shadow.values()):
        return write_gathered(shadow, metadata, path)
    if is_initialized() and global_rank() != 0:
        return Path(path)
    return write_snapshot(snapshot_state(averager, name), metadata, path)


def read_snapshot_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read a snapshot's metadata without loading its tensors.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        SnapshotFormatError: The file is not a valid safetensors file.
    """
    with open_snapshot(Path(path)) as handle:
        return dict(handle.metadata() or {})


def snapshot_metrics(metadata: Mapping[str, str]) -> dict[str, float]:
    """Decode the ``metrics`` entry of a snapshot's metadata (``{}`` when absent).

    Raises:
        SnapshotFormatError: The entry is not a JSON object of numbers.
    """
    text = metadata.get("metrics", "{}")
    try:
        decoded = json.loads(text)
        return {str(key): decode_float(value) for key, value in decoded.items()}
    except (ValueError, TypeError, AttributeError) as error:
        raise SnapshotFormatError(
            f"Invalid snapshot metrics {text[:80]!r}: expected a JSON object of numbers"
        ) from error


def load_snapshot(
    model: nn.Module, path: str | os.PathLike[str], *, strict: bool = True
) -> dict[str, str]:
    """Load a snapshot into ``model`` in place, after checking keys and shapes.

    Keys are compared after stripping ``module.``/``_orig_mod.`` parts on the model side,
    so a snapshot loads into a bare, a DDP-wrapped or a ``torch.compile``-d model alike.
    Nothing is copied unless every check passes. Values are ``copy_``-ed into the model's
    tensors: they keep the model's dtype and device (a bf16 shadow is cast to fp32 weights).

    Args:
        model: The module to load into.
        path: A safetensors snapshot file.
        strict: If true, the file and the model must have exactly the same keys; if false,
            only the common keys are loaded and the others are logged. Shapes must match
            either way.

    Returns:
        The snapshot's metadata (str → str); decode metrics with :func:`snapshot_metrics`.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        SnapshotFormatError: (a TypeError, from ``ema_core.exceptions``) The file is not a
            valid safetensors file (e.g. a pickle).
        ModelMismatchError: (a ValueError) Keys differ (with ``strict``) or shapes differ;
            the message lists the first offending keys.
    """
    path = Path(path)
    source, metadata = read_tensors(path)
    target = model_tensors(model)
    missing = sorted(target.keys() - source.keys())
    unexpected = sorted(source.keys() - target.keys())
    check_keys(path, missing, unexpected, strict=strict)
    pairs = [(key, source[key], target[key]) for key in sorted(source.keys() & target.keys())]
    check_shapes(path, pairs)
    with torch.no_grad():
        for _, src, dst in pairs:
            dst.copy_(src)
    return metadata
