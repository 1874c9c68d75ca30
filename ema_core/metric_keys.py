"""The metric-key grammar (``docs/metrics.md``): how keys are built, parsed and ranked.

Keys::

    train/<name>                              a training scalar
    weights/norm/live                         ‖live‖₂
    weights/<norm|drift|rel_drift|cos>/<A>    model-level statistics of averager A
    layer/<module path>/rel_drift/<A>         one layer's relative drift
    eval/<live|A>/<metric>                    an evaluation of the live model or a shadow
    decay/<A>                                 the decay β of averager A
    bn_recomputed/<A>                         1 when A's BatchNorm statistics were recomputed
                                              for its current weights (update_bn) when it
                                              was evaluated, else 0 (averagers of models
                                              with BatchNorm only)
    posthoc/<σ_rel>/<metric>                  an evaluation of a reconstructed EMA

An averager name and an eval model hold no ``/``; a module path, a metric and a training
name may. The producers (:meth:`ema_core.stats.WeightStats.to_metrics`, the Monitor) build
keys with the functions below, the server parses them with :func:`parse_key`, and the
dashboard's ``frontend/js/keys.js`` is its JavaScript twin: a test feeds both the same keys.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "KeyInfo",
    "KeyKind",
    "MAX_KEY_LENGTH",
    "WEIGHT_STATS",
    "bn_recomputed_key",
    "decay_key",
    "default_mode",
    "eval_key",
    "layer_key",
    "lower_is_better",
    "parse_key",
    "posthoc_key",
    "train_key",
    "weights_key",
]

MAX_KEY_LENGTH = 512
"""The longest key the server stores, in characters (docs/api.md)."""

WEIGHT_STATS = ("norm", "drift", "rel_drift", "cos")
"""The model-level statistics under ``weights/``."""

KeyKind = Literal[
    "norm", "drift", "rel_drift", "cos", "layer", "eval", "decay", "bn_recomputed", "train",
    "posthoc", "other",
]


@dataclass(frozen=True)
class KeyInfo:
    """What a metric key means; the fields a kind does not use stay None.

    Attributes:
        kind: ``norm``, ``drift``, ``rel_drift``, ``cos`` (``weights/…``), ``layer``,
            ``eval``, ``decay``, ``bn_recomputed``, ``train``, ``posthoc``, or ``other`` for
            any other key.
        averager: The averager of a statistic, decay or BatchNorm flag (``live`` for
            ``weights/norm/live``).
        layer: The module path of a ``layer`` key.
        model: ``live`` or the averager an ``eval`` key measured.
        metric: The metric of an ``eval`` or ``posthoc`` key.
        name: The name of a ``train`` key; the whole key for ``other``.
        sigma_rel: The σ_rel of a ``posthoc`` key, as written in the key.
    """

    kind: KeyKind
    averager: str | None = None
    layer: str | None = None
    model: str | None = None
    metric: str | None = None
    name: str | None = None
    sigma_rel: str | None = None


# DOTALL: "." takes every character, as the "s" flag does in keys.js (JS and Python
# disagree about which characters end a line).
_LAYER = re.compile(r"layer/(.+)/rel_drift/([^/]+)", re.DOTALL)
_WEIGHTS = re.compile(r"weights/(norm|drift|rel_drift|cos)/([^/]+)", re.DOTALL)
_EVAL = re.compile(r"eval/([^/]+)/(.+)", re.DOTALL)
_DECAY = re.compile(r"decay/([^/]+)", re.DOTALL)
_BN_RECOMPUTED = re.compile(r"bn_recomputed/([^/]+)", re.DOTALL)
_TRAIN = re.compile(r"train/(.+)", re.DOTALL)
_POSTHOC = re.compile(r"posthoc/([^/]+)/(.+)", re.DOTALL)
_LOWER_IS_BETTER = re.compile(r"loss|error", re.IGNORECASE)


def parse_key(key: str) -> KeyInfo:
    """Parse a metric key (the grammar in this module's docstring).

    Args:
        key: A metric key, e.g. ``"layer/encoder.0/rel_drift/ema_0.999"``.

    Returns:
        Its :class:`KeyInfo`; ``kind="other"`` (with ``name=key``) when no rule matches.
    """
    if match := _LAYER.fullmatch(key):
        return KeyInfo("layer", layer=match[1], averager=match[2])
    if match := _WEIGHTS.fullmatch(key):
        kind: KeyKind = match[1]  # type: ignore[assignment]
        return KeyInfo(kind, averager=match[2])
    if match := _EVAL.fullmatch(key):
        return KeyInfo("eval", model=match[1], metric=match[2])
    if match := _DECAY.fullmatch(key):
        return KeyInfo("decay", averager=match[1])
    if match := _BN_RECOMPUTED.fullmatch(key):
        return KeyInfo("bn_recomputed", averager=match[1])
    if match := _TRAIN.fullmatch(key):
        return KeyInfo("train", name=match[1])
    if match := _POSTHOC.fullmatch(key):
        return KeyInfo("posthoc", sigma_rel=match[1], metric=match[2])
    return KeyInfo("other", name=key)


def lower_is_better(metric: str) -> bool:
    """Whether a lower value of ``metric`` is better: its name contains "loss" or "error",
    in any case ("Loss", "val_error")."""
    return _LOWER_IS_BETTER.search(metric) is not None


def default_mode(metric: str | None) -> Literal["max", "min"]:
    """``"min"`` for a metric where lower is better (:func:`lower_is_better`), else ``"max"``
    (also for no metric)."""
    return "min" if metric is not None and lower_is_better(metric) else "max"


def train_key(name: str) -> str:
    """``train/<name>``."""
    return f"train/{name}"


def weights_key(stat: str, averager: str) -> str:
    """``weights/<stat>/<averager>``; ``stat`` is one of :data:`WEIGHT_STATS`.

    Raises:
        ValueError: ``stat`` is not one of :data:`WEIGHT_STATS`.
    """
    if stat not in WEIGHT_STATS:
        raise ValueError(f"Invalid statistic {stat!r}: expected one of {WEIGHT_STATS}")
    return f"weights/{stat}/{averager}"


def layer_key(layer: str, averager: str) -> str:
    """``layer/<module path>/rel_drift/<averager>``."""
    return f"layer/{layer}/rel_drift/{averager}"


def eval_key(model: str, metric: str) -> str:
    """``eval/<model>/<metric>``; ``model`` is ``live`` or an averager name."""
    return f"eval/{model}/{metric}"


def decay_key(averager: str) -> str:
    """``decay/<averager>``."""
    return f"decay/{averager}"


def bn_recomputed_key(averager: str) -> str:
    """``bn_recomputed/<averager>``."""
    return f"bn_recomputed/{averager}"


def posthoc_key(sigma_rel: float, metric: str) -> str:
    """``posthoc/<σ_rel>/<metric>``, σ_rel written with up to 6 significant digits
    (``posthoc_key(0.083, "accuracy") == "posthoc/0.083/accuracy"``)."""
    return f"posthoc/{sigma_rel:g}/{metric}"
