"""Weight statistics: norms, drift and cosine between the live weights and each shadow.

Statistics cover the floating-point *parameters* (not buffers); a parameter tied under
several state-dict keys (shared input/output embeddings) counts once, under its first key, as
in ``named_parameters()``. For a set of tensors with live values a and shadow values b (after
the step's update):

* ``live_norm`` ‖a‖₂ and ``shadow_norm`` ‖b‖₂;
* ``drift`` d = ‖a − b‖₂, measured directly on the difference (never from
  ‖a‖² + ‖b‖² − 2a·b, which cancels catastrophically when a ≈ b);
* ``rel_drift`` d / ‖a‖₂ (0 when ‖a‖₂ = 0);
* ``cos`` = 1 − (d² − (‖a‖ − ‖b‖)²) / (2‖a‖‖b‖) in float64 (law of cosines), clipped to
  [−1, 1]; 1 when both norms are 0, 0 when exactly one is.

Per-tensor norms come from ``torch._foreach_norm`` in the shadow dtype (in fp32 for an
fp16/bf16 shadow, which would overflow or round); per-layer (module path = key minus its last
component) and whole-model values are aggregated in Python float64 from per-tensor squared
norms.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from ema_core._keys import module_path
from ema_core.metric_keys import decay_key, layer_key, weights_key

__all__ = ["AveragerStats", "NormStats", "WeightStats", "build_weight_stats", "cosine"]


class NormStats(NamedTuple):
    """Norms (L2, in the weights' units) of one tensor, layer or model; plain floats."""

    live_norm: float
    shadow_norm: float
    drift: float
    rel_drift: float
    cos: float

    @classmethod
    def from_squares(cls, live_sq: float, shadow_sq: float, drift_sq: float) -> NormStats:
        """Build from squared norms ‖a‖², ‖b‖², ‖a − b‖² (float64 Python floats)."""
        a, b, d = math.sqrt(live_sq), math.sqrt(shadow_sq), math.sqrt(drift_sq)
        return cls(a, b, d, d / a if a > 0 else 0.0, cosine(a, b, d))


def cosine(a: float, b: float, d: float) -> float:
    """cos(live, shadow) from ‖live‖ = a, ‖shadow‖ = b and drift d, without cancellation.

    1 − (d² − (a − b)²) / (2ab) (law of cosines); clipped to [−1, 1]; 1.0 if a = b = 0;
    0.0 if exactly one of a, b is 0.
    """
    if a == 0.0 or b == 0.0:
        return 1.0 if a == b else 0.0
    value = 1.0 - (d * d - (a - b) ** 2) / (2.0 * a * b)
    return min(1.0, max(-1.0, value))


@dataclass(frozen=True)
class AveragerStats:
    """Statistics of one averager against the live weights.

    Attributes:
        name: Averager name, e.g. ``"ema_0.999"``.
        decay: Decay β of the latest update (``n/(n+1)`` for SWA).
        model: Whole-model aggregate over all float parameters.
        layers: Per module path (``"encoder.0"``), aggregated over its parameters.
        tensors: Per parameter key (``"encoder.0.weight"``).
    """

    name: str
    decay: float
    model: NormStats
    layers: dict[str, NormStats]
    tensors: dict[str, NormStats]


@dataclass(frozen=True)
class WeightStats:
    """All statistics of one stats step.

    Attributes:
        step: The averager's step counter (``update()`` calls) when measured.
        live_norm: ‖live‖₂ over all float parameters.
        averagers: Per averager name.
    """

    step: int
    live_norm: float
    averagers: dict[str, AveragerStats] = field(default_factory=dict)

    def to_metrics(self) -> dict[str, float]:
        """Flatten to emaboard metric keys (:mod:`ema_core.metric_keys`), values plain floats.

        Keys: ``weights/norm/live``; per averager A: ``weights/norm/A``, ``weights/drift/A``,
        ``weights/rel_drift/A``, ``weights/cos/A``, ``decay/A`` and, per module path M,
        ``layer/M/rel_drift/A``.
        """
        out = {weights_key("norm", "live"): self.live_norm}
        for name, s in self.averagers.items():
            out[weights_key("norm", name)] = s.model.shadow_norm
            out[weights_key("drift", name)] = s.model.drift
            out[weights_key("rel_drift", name)] = s.model.rel_drift
            out[weights_key("cos", name)] = s.model.cos
            out[decay_key(name)] = s.decay
            for layer, ls in s.layers.items():
                out[layer_key(layer, name)] = ls.rel_drift
        return out

    @classmethod
    def merge(cls, parts: Sequence[WeightStats]) -> WeightStats:
        """Combine the stats of several averager objects (e.g. an EMA and an SWA) of one model.

        Raises:
            ValueError: ``parts`` is empty or two parts share an averager name.
        """
        if not parts:
            raise ValueError("Cannot merge an empty list of WeightStats: pass at least one")
        merged: dict[str, AveragerStats] = {}
        for part in parts:
            for name, s in part.averagers.items():
                if name in merged:
                    raise ValueError(f"Duplicate averager {name!r} in merge: names must differ")
                merged[name] = s
        return cls(max(p.step for p in parts), parts[0].live_norm, merged)


def build_weight_stats(
    step: int, names: Sequence[str], decays: Sequence[float], keys: Sequence[str],
    live_sq: Sequence[float], shadow_sq: Sequence[Sequence[float]],
    drift_sq: Sequence[Sequence[float]],
) -> WeightStats:
    """Aggregate per-tensor squared norms into per-tensor, per-layer and model statistics.

    Vectorised in NumPy float64 (a few hundred µs for a few hundred tensors).

    Args:
        step: Step to record.
        names: Averager names, one per shadow k.
        decays: Latest decay per shadow.
        keys: Parameter keys, length P.
        live_sq: ‖live_i‖², length P.
        shadow_sq: ``[k][i]`` ‖shadow_k,i‖², K × P.
        drift_sq: ``[k][i]`` ‖live_i − shadow_k,i‖², K × P.
    """
    layer_names, layer_index = np.unique([module_path(k) for k in keys], return_inverse=True)
    live = np.asarray(live_sq, dtype=np.float64)
    live_layers = np.bincount(layer_index, weights=live, minlength=len(layer_names))
    averagers = {}
    for k, name in enumerate(names):
        shadow = np.asarray(shadow_sq[k], dtype=np.float64)
        drift = np.asarray(drift_sq[k], dtype=np.float64)
        layers = [
            np.bincount(layer_index, weights=x, minlength=len(layer_names))
            for x in (shadow, drift)
        ]
        averagers[name] = AveragerStats(
            name=name,
            decay=float(decays[k]),
            model=NormStats.from_squares(
                math.fsum(live_sq), math.fsum(shadow_sq[k]), math.fsum(drift_sq[k])
            ),
            layers=dict(zip(layer_names.tolist(), _norm_stats(live_layers, *layers), strict=True)),
            tensors=dict(zip(keys, _norm_stats(live, shadow, drift), strict=True)),
        )
    return WeightStats(step=step, live_norm=math.sqrt(math.fsum(live_sq)), averagers=averagers)


def _norm_stats(
    live_sq: NDArray[Any], shadow_sq: NDArray[Any], drift_sq: NDArray[Any]
) -> list[NormStats]:
    """Vectorised :meth:`NormStats.from_squares` over arrays of squared norms."""
    a, b, d = np.sqrt(live_sq), np.sqrt(shadow_sq), np.sqrt(drift_sq)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(a > 0, d / a, 0.0)
        cos = 1.0 - (d * d - (a - b) ** 2) / (2.0 * a * b)
    cos = np.where((a == 0) | (b == 0), np.where(a == b, 1.0, 0.0), np.clip(cos, -1.0, 1.0))
    columns = (x.tolist() for x in (a, b, d, rel, cos))
    return list(map(NormStats._make, zip(*columns, strict=True)))
