"""What of a model's state dict a shadow holds, and how (private).

Every state-dict tensor, keyed by its name without DDP/``torch.compile`` wrapper parts, is
one :class:`Spec`: averaged (floating-point and complex parameters, and such buffers when
``average_buffers``) or copied (integer and bool tensors, or float buffers when not
``average_buffers``). :func:`check_match` tells what differs when a model no longer matches
the shadow; :func:`default_shadow_dtype` says which dtype a shadow of a live dtype keeps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ema_core._keys import strip_state_dict_keys
from ema_core.exceptions import ModelMismatchError, NoFloatParametersError


@dataclass(frozen=True)
class Spec:
    """One state-dict entry: stripped key, shape, whether it is a parameter / averaged."""

    key: str
    shape: torch.Size
    is_param: bool
    averaged: bool
    is_complex: bool = False


def default_shadow_dtype(live_dtype: torch.dtype) -> torch.dtype:
    """fp32 for half-precision live tensors (a bf16 shadow stops moving), else the live dtype."""
    return torch.float32 if live_dtype in (torch.float16, torch.bfloat16) else live_dtype


def gather_live(model: nn.Module) -> dict[str, Tensor]:
    """The model's state-dict tensors (parameters as ``nn.Parameter``), keys prefix-stripped.

    Raises:
        ModelMismatchError: two keys are the same once prefixes are stripped (a model with
            both ``module.x`` and ``x``), which would silently leave one of them un-averaged.
    """
    return strip_state_dict_keys(
        model.state_dict(keep_vars=True),
        "rename the submodule called 'module' or '_orig_mod', or average the unwrapped model",
    )


def build_specs(
    live: dict[str, Tensor], average_buffers: bool
) -> list[Spec]:
    """Classify every state-dict tensor as averaged (float or complex; parameters, and buffers
    when ``average_buffers``) or copied (integer and bool tensors).

    Raises:
        NoFloatParametersError: no floating-point parameter to average.
    """
    specs = []
    for key, t in live.items():
        is_param = isinstance(t, nn.Parameter)
        inexact = t.is_floating_point() or t.is_complex()
        averaged = inexact and (is_param or average_buffers)
        specs.append(Spec(key, t.shape, is_param, averaged, t.is_complex()))
    if not any(s.is_param and s.averaged for s in specs):
        raise NoFloatParametersError(
            f"Model with {len(live)} state-dict tensors has no floating-point parameters: "
            "pass a model with float parameters (after .float()/.half(), not a quantised one)"
        )
    return specs


def check_match(specs: Sequence[Spec], live: dict[str, Tensor]) -> None:
    """Raise ModelMismatchError naming missing/unexpected keys and shape differences."""
    expected = {s.key: s.shape for s in specs}
    missing = [k for k in expected if k not in live]
    unexpected = [k for k in live if k not in expected]
    shapes = [
        f"{k}: shadow {tuple(expected[k])} vs model {tuple(live[k].shape)}"
        for k in expected if k in live and live[k].shape != expected[k]
    ]
    if missing or unexpected or shapes:
        raise ModelMismatchError(
            "Model does not match the shadow: "
            f"missing keys {missing[:5]}, unexpected keys {unexpected[:5]}, "
            f"shape differences {shapes[:5]}; pass the same architecture the averager was "
            "built from (DDP 'module.' and torch.compile '_orig_mod.' prefixes are ignored)"
        )
