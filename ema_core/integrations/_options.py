"""The callbacks' three option dicts — EMA, SWA, Monitor — checked when the callback is built.

``EmaboardCallback(..., ema_kwargs={"use_warmup": True}, swa_kwargs={"update_every": 10},
monitor_kwargs={"token": ...})``: each dict goes to one constructor. A key that belongs to
none of them, or is passed at the top level, raises ``TypeError`` naming the key and where
it belongs; values are checked by building the averagers on a one-weight model, so
``warmup_power=-1`` fails at construction, not after ``trainer.fit`` has set up.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from ema_core._sender_config import SenderConfig, check_positive
from ema_core.client import Monitor
from ema_core.ema import EMA
from ema_core.swa import SWA

# Set by the callback itself, not by the user: the model, what is averaged, the run.
_OWN = {
    "ema_kwargs": {"self", "model", "decays", "stats_every"},
    "swa_kwargs": {"self", "model", "start_step", "stats_every"},
    "monitor_kwargs": {"self", "project", "run", "server", "config", "resume"},
}
_TARGETS: dict[str, Callable[..., Any]] = {
    "ema_kwargs": EMA.__init__, "swa_kwargs": SWA.__init__, "monitor_kwargs": Monitor.__init__,
}
_KINDS = {"ema_kwargs": "an EMA", "swa_kwargs": "an SWA", "monitor_kwargs": "a Monitor"}


def allowed(group: str) -> list[str]:
    """The option names ``group`` (``"ema_kwargs"``, ...) accepts, in signature order."""
    return [name for name in inspect.signature(_TARGETS[group]).parameters
            if name not in _OWN[group]]


def check_unknown(owner: str, options: Mapping[str, Any]) -> None:
    """Raise for keyword arguments given at the top level of a callback.

    Raises:
        TypeError: naming the first key and the dict it belongs in (or that it is unknown).
    """
    for key, value in options.items():
        home = [group for group in _TARGETS if key in allowed(group)]
        where = (
            f"it is {' and '.join(_KINDS[g] for g in home)} option: pass "
            + " and/or ".join(f"{g}={{{key!r}: {value!r}}}" for g in home) if home
            else f"expected one of its arguments or a key of ema_kwargs {allowed('ema_kwargs')},"
            f" swa_kwargs {allowed('swa_kwargs')} or monitor_kwargs {allowed('monitor_kwargs')}")
        raise TypeError(f"{owner} got an unknown option {key!r}: {where}")


def check_options(
    group: str, options: Mapping[str, Any], decays: Any = None, start_step: Any = None
) -> dict[str, Any]:
    """``options`` as a dict, after checking its keys and values.

    Raises:
        TypeError: a key ``group`` does not accept (named, with the accepted ones).
        ValueError: a value the constructor refuses (its own message).
    """
    options = dict(options)
    bad = [key for key in options if key not in allowed(group)]
    if bad:
        raise TypeError(f"Unknown {group} key {bad[0]!r}: expected one of {allowed(group)}")
    probe = nn.Linear(1, 1)
    with torch.no_grad():
        if group == "ema_kwargs" and decays:
            EMA(probe, decays=tuple(decays), **options)
        elif group == "swa_kwargs" and start_step is not None:
            SWA(probe, start_step=start_step, **options)
        elif group == "monitor_kwargs":
            fields = {f.name for f in dataclasses.fields(SenderConfig)}
            SenderConfig(**{k: v for k, v in options.items() if k in fields})
            if "finish_timeout_s" in options:
                check_positive("finish_timeout_s", options["finish_timeout_s"])
    return options
