"""Post-hoc EMA on the server: the run's snapshots, their budget, synthesis (NumPy, no torch).

A run's post-hoc snapshots (``kind = "posthoc"``) are thinned when they exceed
``posthoc_budget_bytes``: the server deletes every file of one snapshot time at a time, the
oldest time t_i whose removal (a) leaves its neighbours within a factor √2 of each other
(t_{i+1} ≤ √2·t_{i−1}) and (b) keeps well-posed every σ_rel that was well-posed, checked at
the latest time every tracked σ_rel has reached, over five σ_rels log-spaced from the
smallest tracked one to 0.2 (relative profile error ≤ 0.05,
:func:`ema_core.posthoc.solve_posthoc_coefficients`). The first time and the latest complete
time (and anything after it) are never deleted. Old snapshots thus end up geometrically
spaced, consecutive times a factor ≤ √2 apart (power profiles are scale-free, so that suits
every later reconstruction), while recent ones stay dense. When no time qualifies,
everything is kept and the run is reported over budget.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from ema_core.exceptions import InvalidDecayError, ModelMismatchError, SnapshotFormatError
from ema_core.posthoc import (
    PosthocSolution,
    posthoc_sigma_rel_grid,
    solve_posthoc_coefficients,
)
from ema_core.posthoc_files import (
    POSTHOC_KIND,
    PosthocSnapshot,
    parse_posthoc_metadata,
    solve_for_snapshots,
)
from ema_core.posthoc_synthesis import synthesis_metadata, synthesize_posthoc, write_synthesis
from emaboard_server.app import crud
from emaboard_server.app.core.config import Settings
from emaboard_server.app.exceptions import (
    InvalidPosthocUpload,
    NoPosthocSnapshots,
    PosthocUnavailable,
)
from emaboard_server.app.models import Snapshot

__all__ = [
    "CHECK_SIGMA_MAX", "POSTHOC_KIND", "StoredPosthoc", "check_posthoc_upload", "discard_file",
    "plan_thinning", "posthoc_listing", "solution_dict", "solve_run", "stored_posthoc",
    "synthesize_run", "thin_posthoc",
]

CHECK_SIGMA_MAX = 0.2
"""Widest σ_rel thinning keeps well-posed (EDM2's widest optimum is 0.205)."""
MAX_RESIDUAL = 0.05
MAX_TRIALS = 16
"""Candidate times checked per call (each costs five solves); the rest waits for the next
upload, so one upload never spends long on thinning."""
MAX_GAP = math.sqrt(2.0)
"""Thinning never leaves two consecutive snapshot times further apart than this factor."""


def check_posthoc_upload(
    file_meta: dict[str, Any], *, averager: str, step: int, name: str
) -> str:
    """The kind of an uploaded file (``name``: its name, for messages): ``"posthoc"``
    (checked) or ``"snapshot"``.

    Raises:
        InvalidPosthocUpload: ``snapshot_kind`` is ``"posthoc"`` but an entry is missing or
            unparsable, or the form's averager/step differ from the file's.
    """
    if file_meta.get("snapshot_kind") != POSTHOC_KIND:
        return "snapshot"
    try:
        record = parse_posthoc_metadata({k: str(v) for k, v in file_meta.items()}, Path(name))
    except SnapshotFormatError as exc:
        raise InvalidPosthocUpload(f"Invalid post-hoc snapshot: {exc}") from None
    if (record.averager, record.step) != (averager, step):
        raise InvalidPosthocUpload(
            f"Invalid post-hoc snapshot: the form says averager {averager!r} step {step}, the "
            f"file's metadata {record.averager!r} step {record.step}; send the file's own"
        )
    return POSTHOC_KIND


def thin_posthoc(session: Session, run_id: int, settings: Settings) -> list[str]:
    """Delete the rows :func:`plan_thinning` picks for ``run_id``; return their file paths
    (the caller unlinks them once the transaction commits)."""
    rows = crud.list_snapshots(session, run_id=run_id, kind=POSTHOC_KIND)
    doomed = plan_thinning(stored_posthoc(rows, settings.data_dir),
                           settings.posthoc_budget_bytes)
    return crud.delete_snapshots(session, run_id=run_id, ids=doomed) if doomed else []


@dataclass(frozen=True)
class StoredPosthoc:
    """A stored post-hoc snapshot: its row's id and size and its parsed metadata."""

    id: int
    size_bytes: int
    record: PosthocSnapshot


def stored_posthoc(rows: Sequence[Snapshot], data_dir: Path) -> list[StoredPosthoc]:
    """The post-hoc rows as :class:`StoredPosthoc`, oldest time first (bad rows skipped)."""
    out = []
    for row in rows:
        if row.kind != POSTHOC_KIND:
            continue
        try:
            record = parse_posthoc_metadata(
                {k: str(v) for k, v in row.meta.items()}, data_dir / row.stored_path
            )
        except (TypeError, ValueError):
            continue  # validated on upload; a row edited since is ignored, not a 500
        out.append(StoredPosthoc(row.id, row.size_bytes, record))
    return sorted(out, key=lambda s: (s.record.time, s.record.sigma_rel, s.id))


def _well_posed(
    times: np.ndarray, gammas: np.ndarray, t_out: float, sigmas: Sequence[float]
) -> list[bool]:
    flags = []
    for sigma in sigmas:
        try:
            solution = solve_posthoc_coefficients(
                times, gammas=gammas, target_time=t_out, target_sigma_rel=sigma, warn=False,
                max_residual=MAX_RESIDUAL,
            )
        except InvalidDecayError:
            flags.append(False)
            continue
        flags.append(solution.residual <= MAX_RESIDUAL)
    return flags


def plan_thinning(snapshots: Sequence[StoredPosthoc], budget_bytes: int) -> list[int]:
    """Ids of the snapshots to delete to get within ``budget_bytes`` (module docstring).

    Args:
        snapshots: One run's post-hoc snapshots.
        budget_bytes: The budget; 0 means none.

    Returns:
        Row ids to delete (possibly too few to reach the budget; then nothing more can go).
    """
    total = sum(s.size_bytes for s in snapshots)
    if budget_bytes <= 0 or total <= budget_bytes:
        return []
    by_time: dict[float, list[StoredPosthoc]] = {}
    for snap in snapshots:
        by_time.setdefault(snap.record.time, []).append(snap)
    tracked = {s.record.sigma_rel for s in snapshots}
    complete = [t for t, group in by_time.items()
                if t > 0 and {s.record.sigma_rel for s in group} >= tracked]
    if not complete:
        return []
    target = max(complete)  # checks at the latest time every tracked profile reached
    kept = sorted(t for t in by_time if 0 < t <= target)
    low = min(tracked)
    sigmas = [float(x) for x in np.geomspace(low, max(low, CHECK_SIGMA_MAX), 5)]

    def well_posed(ts: list[float]) -> list[bool]:
        chosen = [s for t in ts for s in by_time[t]]
        return _well_posed(np.array([s.record.time for s in chosen]),
                           np.array([s.record.gamma for s in chosen]), target, sigmas)

    required = well_posed(kept)
    doomed: list[int] = []
    trials = 0
    while total > budget_bytes and trials < MAX_TRIALS:
        victim = None
        for i in range(1, len(kept) - 1):
            if kept[i + 1] > MAX_GAP * kept[i - 1] or trials >= MAX_TRIALS:
                continue
            trials += 1
            now = well_posed(kept[:i] + kept[i + 1 :])
            if all(n or not r for n, r in zip(now, required, strict=True)):
                victim = kept[i]
                break
        if victim is None:
            break
        kept.remove(victim)
        doomed += [s.id for s in by_time[victim]]
        total -= sum(s.size_bytes for s in by_time[victim])
    return doomed


def solve_run(
    snapshots: Sequence[StoredPosthoc], sigma_rel: float, step: int | None
) -> PosthocSolution:
    """Coefficients for σ_rel at ``step`` (default the latest) from a run's snapshots.

    Raises:
        NoPosthocSnapshots: the run has none.
        InvalidDecayError: σ_rel out of range or no snapshot at ``step``.
        PosthocUnavailable: snapshots of different models in one run.
    """
    if not snapshots:
        raise NoPosthocSnapshots
    try:
        return solve_for_snapshots(
            [s.record for s in snapshots], sigma_rel=sigma_rel, step=step, warn=False
        )
    except ModelMismatchError as exc:
        raise PosthocUnavailable(exc) from exc


def synthesize_run(
    snapshots: Sequence[StoredPosthoc], sigma_rel: float, step: int | None, tmp_dir: Path
) -> tuple[Path, PosthocSolution]:
    """Write the EMA of σ_rel at ``step`` to a new file in ``tmp_dir`` (the caller deletes it).

    Raises:
        NoPosthocSnapshots, InvalidDecayError, PosthocUnavailable: as :func:`solve_run`;
            PosthocUnavailable also for a snapshot file that is missing or unreadable.
    """
    solution = solve_run(snapshots, sigma_rel, step)
    records = [s.record for s in snapshots]
    try:
        tensors = synthesize_posthoc(records, solution)
    except (OSError, SnapshotFormatError, ModelMismatchError) as exc:
        raise PosthocUnavailable(exc) from exc
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=tmp_dir, suffix=".safetensors")
    os.close(fd)
    return write_synthesis(tensors, synthesis_metadata(records, solution), name), solution


def posthoc_listing(
    stored: Sequence[StoredPosthoc], usage: dict[str, int], budget_bytes: int
) -> dict[str, Any]:
    """The run-level part of ``GET .../posthoc``: time unit, tracked σ_rels, steps, the
    well-posed σ_rel grid at the latest step, storage (``usage``: bytes by snapshot kind)."""
    grid: list[float] = []
    if stored:
        last = max(s.record.time for s in stored)
        used = [s for s in stored if 0 < s.record.time <= last]
        try:
            grid = posthoc_sigma_rel_grid([s.record.time for s in used],
                                          sigma_rels=[s.record.sigma_rel for s in used],
                                          target_time=last)
        except InvalidDecayError:
            grid = []  # e.g. the latest time has no snapshot of some σ_rel yet: none to offer
    posthoc_bytes = usage.get(POSTHOC_KIND, 0)
    return {
        "time_unit": stored[0].record.time_unit if stored else None,
        "sigma_rels": sorted({s.record.sigma_rel for s in stored}),
        "steps": [{"step": step, "time": time}
                  for step, time in sorted({(s.record.step, s.record.time) for s in stored})],
        "grid": grid,
        "storage": {"posthoc_bytes": posthoc_bytes, "snapshot_bytes": sum(usage.values()),
                    "budget_bytes": budget_bytes,
                    "over_budget": 0 < budget_bytes < posthoc_bytes},
    }


def discard_file(path: Path) -> None:
    """Remove a synthesised file once its download has been sent."""
    path.unlink(missing_ok=True)


def solution_dict(
    snapshots: Sequence[StoredPosthoc], solution: PosthocSolution
) -> dict[str, Any]:
    """A solution in API form: coefficients by snapshot id (used ones only)."""
    used = [(s, float(c)) for s, c, u in zip(
        snapshots, solution.coefficients, solution.used, strict=True) if u]
    step = max(s.record.step for s, _ in used)
    return {
        "sigma_rel": solution.target_sigma_rel, "gamma": solution.target_gamma,
        "step": step, "time": solution.target_time,
        "condition_number": _finite(solution.condition_number),
        "sum_abs": solution.sum_abs, "residual": solution.residual,
        "ill_posed": list(solution.ill_posed),
        "coefficients": [{"snapshot_id": s.id, "averager": s.record.averager,
                          "step": s.record.step, "coefficient": c} for s, c in used],
    }


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
