"""DDP and ``torch.compile`` wrappers, in one place (private): the key parts they add to a
state dict (``module.``, ``_orig_mod.``), stripped for the averagers and snapshot loading,
and the modules they wrap (:func:`unwrap_model`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from torch import nn

from ema_core.exceptions import ModelMismatchError

T = TypeVar("T")

_WRAPPER_PREFIX = "module"  # torch.nn.parallel.DistributedDataParallel / DataParallel
_COMPILE_COMPONENT = "_orig_mod"  # torch.compile's OptimizedModule


def strip_wrapper_prefixes(key: str) -> str:
    """Return ``key`` without DDP (``module.``) and ``torch.compile`` (``_orig_mod.``) parts.

    Leading ``module.`` components are removed (DDP may be nested) and every ``_orig_mod``
    component is removed wherever it sits (``torch.compile`` may wrap a submodule).

    Example: ``"module._orig_mod.encoder.0.weight"`` → ``"encoder.0.weight"``.
    """
    parts = key.split(".")
    while len(parts) > 1 and parts[0] in (_WRAPPER_PREFIX, _COMPILE_COMPONENT):
        parts.pop(0)
    return ".".join(p for p in parts if p != _COMPILE_COMPONENT)


def strip_state_dict_keys(state: Mapping[str, T], remedy: str) -> dict[str, T]:
    """``state`` keyed by :func:`strip_wrapper_prefixes` names, values unchanged.

    Raises:
        ModelMismatchError: two keys are the same once prefixes are stripped (a model with
            both ``module.x`` and ``x``), which would silently drop one of them; the message
            ends with ``remedy``.
    """
    stripped_state: dict[str, T] = {}
    original: dict[str, str] = {}
    for key, value in state.items():
        stripped = strip_wrapper_prefixes(key)
        if stripped in stripped_state:
            raise ModelMismatchError(
                f"Model keys {original[stripped]!r} and {key!r} are both {stripped!r} once "
                f"wrapper prefixes are stripped: {remedy}"
            )
        stripped_state[stripped], original[stripped] = value, key
    return stripped_state


def module_path(key: str) -> str:
    """The module (layer) a tensor belongs to: its key without the last component.

    A top-level tensor (no dot) belongs to the root module, reported as ``"<root>"``.
    """
    head, sep, _ = key.rpartition(".")
    return head if sep else "<root>"


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside DDP/DataParallel (``.module``) and ``torch.compile`` (``._orig_mod``)."""
    while True:
        inner = getattr(model, _COMPILE_COMPONENT, None)
        if isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel):
            inner = model.module
        if not isinstance(inner, nn.Module):
            return model
        model = inner
