"""State-dict key normalisation shared by the averagers (private)."""

from __future__ import annotations

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


def module_path(key: str) -> str:
    """The module (layer) a tensor belongs to: its key without the last component.

    A top-level tensor (no dot) belongs to the root module, reported as ``"<root>"``.
    """
    head, sep, _ = key.rpartition(".")
    return head if sep else "<root>"
