"""Post-hoc EMA snapshot files: read their metadata, check they belong together, solve.

NumPy and safetensors only (no torch): the server uses it on the snapshots a run uploaded;
:mod:`ema_core.posthoc_synthesis` turns a solution into a checkpoint.

A post-hoc snapshot is a safetensors file written by :class:`~ema_core.posthoc_ema.PostHocEMA`
whose metadata holds ``snapshot_kind = "posthoc"`` and the entries listed in
:data:`REQUIRED_FIELDS`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open

from ema_core.exceptions import InvalidDecayError, ModelMismatchError, SnapshotFormatError
from ema_core.posthoc import PosthocSolution, solve_posthoc_coefficients

__all__ = [
    "POSTHOC_KIND",
    "PosthocSnapshot",
    "REQUIRED_FIELDS",
    "list_posthoc_snapshots",
    "parse_posthoc_metadata",
    "read_posthoc_snapshot",
    "solve_for_snapshots",
]

POSTHOC_KIND = "posthoc"
"""Value of the ``snapshot_kind`` metadata entry of a post-hoc EMA snapshot."""

REQUIRED_FIELDS = (
    "averager", "step", "time", "time_unit", "gamma", "sigma_rel", "update_every",
    "update_after_step", "fingerprint",
)
"""Metadata entries every post-hoc snapshot carries (all str, as safetensors requires)."""

@dataclass(frozen=True)
class PosthocSnapshot:
    """One post-hoc snapshot file, described by its metadata (tensors are not loaded).

    Attributes:
        path: The safetensors file.
        averager: Averager name, e.g. ``"ema_sigma_rel_0.05"``.
        step: Optimizer step at which it was taken.
        time: Averaging time of the shadow (``time_unit`` since averaging started, at its
            latest update): what the solver needs.
        time_unit: ``"steps"`` or ``"samples"``.
        gamma, sigma_rel: The EMA's power profile.
        update_every, update_after_step: The EMA's update convention.
        fingerprint: Hash of the model's keys and shapes; equal for snapshots of one model.
        copied_keys: Tensors copied from the live model rather than averaged (integer
            buffers; float buffers with ``average_buffers=False``).
        metadata: The full str → str metadata.
    """

    path: Path
    averager: str
    step: int
    time: float
    time_unit: str
    gamma: float
    sigma_rel: float
    update_every: int
    update_after_step: int
    fingerprint: str
    copied_keys: tuple[str, ...]
    metadata: Mapping[str, str]


def _open(path: Path) -> Any:  # safe_open: validates the file and reads its metadata
    try:
        return safe_open(str(path), framework="numpy")
    except (SafetensorError, OSError) as error:
        if not path.is_file():
            raise FileNotFoundError(f"Snapshot file {str(path)!r} does not exist") from error
        raise SnapshotFormatError(
            f"File {str(path)!r} is not a valid safetensors file ({error}): post-hoc snapshots "
            "are written by ema_core.PostHocEMA"
        ) from error


def parse_posthoc_metadata(metadata: Mapping[str, str], path: Path) -> PosthocSnapshot:
    """Build a :class:`PosthocSnapshot` from str → str metadata (no file access).

    Raises:
        SnapshotFormatError: not a post-hoc snapshot, a missing or unparsable entry.
    """
    if metadata.get("snapshot_kind") != POSTHOC_KIND:
        raise SnapshotFormatError(
            f"{str(path)!r} is not a post-hoc EMA snapshot (snapshot_kind="
            f"{metadata.get('snapshot_kind')!r}): write it with ema_core.PostHocEMA"
        )
    missing = [key for key in REQUIRED_FIELDS if key not in metadata]
    if missing:
        raise SnapshotFormatError(f"Post-hoc snapshot {str(path)!r} lacks metadata {missing}")
    try:
        record = PosthocSnapshot(
            path=path, averager=metadata["averager"], step=int(metadata["step"]),
            time=float(metadata["time"]), time_unit=metadata["time_unit"],
            gamma=float(metadata["gamma"]), sigma_rel=float(metadata["sigma_rel"]),
            update_every=int(metadata["update_every"]),
            update_after_step=int(metadata["update_after_step"]),
            fingerprint=metadata["fingerprint"],
            copied_keys=tuple(json.loads(metadata.get("copied_keys", "[]"))),
            metadata=dict(metadata),
        )
    except (ValueError, TypeError) as error:
        raise SnapshotFormatError(
            f"Post-hoc snapshot {str(path)!r} has unparsable metadata ({error})"
        ) from error
    if record.time_unit not in ("steps", "samples"):
        raise SnapshotFormatError(
            f"Post-hoc snapshot {str(path)!r} has time_unit {record.time_unit!r}: expected "
            "'steps' or 'samples'"
        )
    return record


def read_posthoc_snapshot(path: str | os.PathLike[str]) -> PosthocSnapshot:
    """Read a post-hoc snapshot's metadata (its tensors stay on disk).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        SnapshotFormatError: not a safetensors file, or not a post-hoc snapshot.
    """
    path = Path(path)
    with _open(path) as handle:
        metadata = dict(handle.metadata() or {})
    return parse_posthoc_metadata(metadata, path)


def list_posthoc_snapshots(directory: str | os.PathLike[str]) -> list[PosthocSnapshot]:
    """Every post-hoc snapshot in ``directory`` (``*.safetensors``; others are skipped),
    sorted by (time, σ_rel).

    Raises:
        FileNotFoundError: ``directory`` does not exist.
    """
    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"Snapshot directory {str(root)!r} does not exist")
    found = []
    for path in sorted(root.glob("*.safetensors")):
        try:
            found.append(read_posthoc_snapshot(path))
        except SnapshotFormatError:
            continue  # another kind of file (a best-EMA snapshot, a synthesis)
    return sorted(found, key=lambda s: (s.time, s.sigma_rel))


def _check_same_run(snapshots: Sequence[PosthocSnapshot]) -> None:
    first = snapshots[0]
    for snap in snapshots[1:]:
        if snap.fingerprint != first.fingerprint:
            raise ModelMismatchError(
                f"Snapshot {str(snap.path)!r} is of another model (fingerprint "
                f"{snap.fingerprint!r}, {str(first.path)!r} has {first.fingerprint!r}): "
                "reconstruct from the snapshots of one run"
            )
        for key in ("time_unit", "update_after_step"):
            if getattr(snap, key) != getattr(first, key):
                raise ModelMismatchError(
                    f"Snapshot {str(snap.path)!r} has {key}={getattr(snap, key)!r}, "
                    f"{str(first.path)!r} has {getattr(first, key)!r}: reconstruct from the "
                    "snapshots of one run"
                )


def solve_for_snapshots(
    snapshots: Sequence[PosthocSnapshot], *, sigma_rel: float | None = None,
    gamma: float | None = None, step: int | None = None, warn: bool = True,
) -> PosthocSolution:
    """Coefficients for σ_rel (or γ) at training ``step`` (default: the latest snapshot's).

    Raises:
        InvalidDecayError: no snapshots, no snapshot at ``step``, a σ_rel out of range (see
            :func:`~ema_core.posthoc.solve_posthoc_coefficients`).
        ModelMismatchError: snapshots of different models or conventions.
    """
    if not snapshots:
        raise InvalidDecayError("No post-hoc snapshots to reconstruct from")
    _check_same_run(snapshots)
    if step is None:
        step = max(s.step for s in snapshots)
    at_step = [s.time for s in snapshots if s.step == step]
    if not at_step:
        steps = sorted({s.step for s in snapshots})
        raise InvalidDecayError(
            f"No post-hoc snapshot at step {step!r}: snapshots exist at steps {steps[:5]}"
            f"{' ... ' + str(steps[-5:]) if len(steps) > 5 else ''}; pick one of them"
        )
    return solve_posthoc_coefficients(
        [s.time for s in snapshots], gammas=[s.gamma for s in snapshots],
        target_time=max(at_step), target_sigma_rel=sigma_rel, target_gamma=gamma, warn=warn,
    )
