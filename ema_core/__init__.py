"""emaboard's training-side library: EMA/SWA averaging, weight statistics, snapshots, streaming.

Every public name lives in a small single-purpose module and is re-exported here:

- :mod:`ema_core.ema` / :mod:`ema_core.swa` — the averagers (``EMA``, ``SWA``);
- :mod:`ema_core.schedules` — decay schedules (step → decay);
- :mod:`ema_core.stats` — weight statistics (norms, drift, cosine; per tensor, layer, model);
- :mod:`ema_core.swap` — swap-in evaluation of live and shadow models;
- :mod:`ema_core.averager_state` — averager state as safetensors + JSON files (no pickle);
- :mod:`ema_core.compat` — ``ClassicEMA``, the blog-post ``register/update/apply_shadow/restore``
  class, on ``EMA``;
- :mod:`ema_core.snapshot` — safetensors snapshots of one averager;
- :mod:`ema_core.posthoc_ema` / :mod:`ema_core.posthoc` / :mod:`ema_core.posthoc_files` — post-hoc
  EMA (EDM2): the snapshotting averager, the NumPy solver, file synthesis (no torch);
- :mod:`ema_core.whatif` — what-if decay: evaluate EMAs of many σ_rels rebuilt after the fact;
- :mod:`ema_core.client` / :mod:`ema_core.spool` — the streaming ``Monitor`` and its disk spool;
- :mod:`ema_core.exceptions` — the error classes.

Names are imported on first use (PEP 562): ``import ema_core.wire`` or ``ema_core.transport``
costs no torch import, so the server, which shares the wire format, never loads torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ema_core.averager_state import load_averager_state, save_averager_state
    from ema_core.client import Monitor
    from ema_core.compat import ClassicEMA
    from ema_core.effective_length import (
        decay_half_life,
        decay_to_sigma_rel,
        sigma_rel_to_decay,
    )
    from ema_core.ema import EMA, SCHEDULES
    from ema_core.exceptions import (
        EmaCoreError,
        IllPosedReconstructionWarning,
        InvalidDecayError,
        ModelMismatchError,
        NoFloatParametersError,
        SnapshotFormatError,
        StateDictError,
        UnknownAveragerError,
    )
    from ema_core.posthoc import (
        PosthocSolution,
        posthoc_sigma_rel_grid,
        profile_inner_product,
        solve_posthoc_coefficients,
    )
    from ema_core.posthoc_ema import PostHocEMA
    from ema_core.posthoc_files import (
        PosthocSnapshot,
        list_posthoc_snapshots,
        read_posthoc_snapshot,
        solve_for_snapshots,
    )
    from ema_core.posthoc_synthesis import synthesize_posthoc, write_synthesis
    from ema_core.schedules import (
        bias_corrected_weight,
        constant_decay,
        gamma_to_sigma_rel,
        power_decay,
        ramp_decay,
        sigma_rel_to_gamma,
        warmup_decay,
    )
    from ema_core.snapshot import (
        load_snapshot,
        read_snapshot_metadata,
        save_snapshot,
        snapshot_metadata,
        snapshot_state,
        write_snapshot,
    )
    from ema_core.spool import sync_spool
    from ema_core.stats import AveragerStats, NormStats, WeightStats
    from ema_core.swa import SWA
    from ema_core.swap import evaluate_all, swap_in, training_flags_kept
    from ema_core.whatif import evaluate_posthoc, swap_in_weights, sweep_posthoc

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "AveragerStats": "ema_core.stats",
    "ClassicEMA": "ema_core.compat",
    "EMA": "ema_core.ema",
    "EmaCoreError": "ema_core.exceptions",
    "IllPosedReconstructionWarning": "ema_core.exceptions",
    "InvalidDecayError": "ema_core.exceptions",
    "ModelMismatchError": "ema_core.exceptions",
    "Monitor": "ema_core.client",
    "NoFloatParametersError": "ema_core.exceptions",
    "NormStats": "ema_core.stats",
    "PostHocEMA": "ema_core.posthoc_ema",
    "PosthocSnapshot": "ema_core.posthoc_files",
    "PosthocSolution": "ema_core.posthoc",
    "SCHEDULES": "ema_core.ema",
    "SWA": "ema_core.swa",
    "SnapshotFormatError": "ema_core.exceptions",
    "StateDictError": "ema_core.exceptions",
    "UnknownAveragerError": "ema_core.exceptions",
    "WeightStats": "ema_core.stats",
    "bias_corrected_weight": "ema_core.schedules",
    "constant_decay": "ema_core.schedules",
    "decay_half_life": "ema_core.effective_length",
    "decay_to_sigma_rel": "ema_core.effective_length",
    "evaluate_all": "ema_core.swap",
    "evaluate_posthoc": "ema_core.whatif",
    "gamma_to_sigma_rel": "ema_core.schedules",
    "list_posthoc_snapshots": "ema_core.posthoc_files",
    "load_averager_state": "ema_core.averager_state",
    "load_snapshot": "ema_core.snapshot",
    "posthoc_sigma_rel_grid": "ema_core.posthoc",
    "power_decay": "ema_core.schedules",
    "profile_inner_product": "ema_core.posthoc",
    "ramp_decay": "ema_core.schedules",
    "read_posthoc_snapshot": "ema_core.posthoc_files",
    "read_snapshot_metadata": "ema_core.snapshot",
    "save_averager_state": "ema_core.averager_state",
    "save_snapshot": "ema_core.snapshot",
    "sigma_rel_to_decay": "ema_core.effective_length",
    "sigma_rel_to_gamma": "ema_core.schedules",
    "snapshot_metadata": "ema_core.snapshot",
    "snapshot_state": "ema_core.snapshot",
    "solve_for_snapshots": "ema_core.posthoc_files",
    "solve_posthoc_coefficients": "ema_core.posthoc",
    "swap_in": "ema_core.swap",
    "swap_in_weights": "ema_core.whatif",
    "sweep_posthoc": "ema_core.whatif",
    "sync_spool": "ema_core.spool",
    "synthesize_posthoc": "ema_core.posthoc_synthesis",
    "training_flags_kept": "ema_core.swap",
    "warmup_decay": "ema_core.schedules",
    "write_snapshot": "ema_core.snapshot",
    "write_synthesis": "ema_core.posthoc_synthesis",
}

__all__ = [
    "AveragerStats",
    "ClassicEMA",
    "EMA",
    "EmaCoreError",
    "IllPosedReconstructionWarning",
    "InvalidDecayError",
    "ModelMismatchError",
    "Monitor",
    "NoFloatParametersError",
    "NormStats",
    "PostHocEMA",
    "PosthocSnapshot",
    "PosthocSolution",
    "SCHEDULES",
    "SWA",
    "SnapshotFormatError",
    "StateDictError",
    "UnknownAveragerError",
    "WeightStats",
    "bias_corrected_weight",
    "constant_decay",
    "decay_half_life",
    "decay_to_sigma_rel",
    "evaluate_all",
    "evaluate_posthoc",
    "gamma_to_sigma_rel",
    "list_posthoc_snapshots",
    "load_averager_state",
    "load_snapshot",
    "posthoc_sigma_rel_grid",
    "power_decay",
    "profile_inner_product",
    "ramp_decay",
    "read_posthoc_snapshot",
    "read_snapshot_metadata",
    "save_averager_state",
    "save_snapshot",
    "sigma_rel_to_decay",
    "sigma_rel_to_gamma",
    "snapshot_metadata",
    "snapshot_state",
    "solve_for_snapshots",
    "solve_posthoc_coefficients",
    "swap_in",
    "swap_in_weights",
    "sweep_posthoc",
    "sync_spool",
    "synthesize_posthoc",
    "training_flags_kept",
    "warmup_decay",
    "write_snapshot",
    "write_synthesis",
]


def __getattr__(name: str) -> Any:
    """Import a public name's module on first access (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ema_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
