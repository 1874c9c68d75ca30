"""emaboard's training-side library: EMA/SWA averaging, weight statistics, snapshots, streaming.

Every public name lives in a small single-purpose module and is re-exported here:

- :mod:`ema_core.ema` / :mod:`ema_core.swa` — the averagers (``EMA``, ``SWA``);
- :mod:`ema_core.schedules` — decay schedules (step → decay);
- :mod:`ema_core.stats` — weight statistics (norms, drift, cosine; per tensor, layer, model);
- :mod:`ema_core.swap` — swap-in evaluation of live and shadow models;
- :mod:`ema_core.snapshot` — safetensors snapshots of one averager;
- :mod:`ema_core.client` / :mod:`ema_core.spool` — the streaming ``Monitor`` and its disk spool;
- :mod:`ema_core.exceptions` — the error classes.
"""

from ema_core.client import Monitor
from ema_core.ema import EMA, SCHEDULES
from ema_core.exceptions import (
    EmaCoreError,
    InvalidDecayError,
    ModelMismatchError,
    NoFloatParametersError,
    SnapshotFormatError,
    StateDictError,
    UnknownAveragerError,
)
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
from ema_core.swap import evaluate_all, swap_in

__version__ = "0.1.0"

__all__ = [
    "EMA",
    "SCHEDULES",
    "SWA",
    "AveragerStats",
    "EmaCoreError",
    "InvalidDecayError",
    "ModelMismatchError",
    "Monitor",
    "NoFloatParametersError",
    "NormStats",
    "SnapshotFormatError",
    "StateDictError",
    "UnknownAveragerError",
    "WeightStats",
    "bias_corrected_weight",
    "constant_decay",
    "evaluate_all",
    "gamma_to_sigma_rel",
    "load_snapshot",
    "power_decay",
    "ramp_decay",
    "read_snapshot_metadata",
    "save_snapshot",
    "sigma_rel_to_gamma",
    "snapshot_metadata",
    "snapshot_state",
    "swap_in",
    "sync_spool",
    "warmup_decay",
    "write_snapshot",
]
