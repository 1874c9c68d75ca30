"""Test helpers for the server: safetensors payloads."""

from __future__ import annotations

import numpy as np
from safetensors.numpy import save


def safetensors_bytes(metadata: dict[str, str] | None = None, scale: float = 1.0) -> bytes:
    """A small valid safetensors file: two float32 tensors and optional metadata."""
    tensors = {
        "layer.weight": (np.arange(12, dtype=np.float32).reshape(3, 4) * scale),
        "layer.bias": np.ones(3, dtype=np.float32),
    }
    return save(tensors, metadata=metadata)


def posthoc_bytes(
    step: int, sigma_rel: float, *, time: float | None = None, scale: float = 1.0,
    fingerprint: str = "0123456789abcdef", **extra: str,
) -> bytes:
    """A post-hoc EMA snapshot as ``ema_core.PostHocEMA`` writes it (no torch needed)."""
    from ema_core.schedules import sigma_rel_to_gamma

    metadata = {
        "averager": f"ema_sigma_rel_{sigma_rel!r}", "step": str(step),
        "time": repr(float(step if time is None else time)), "time_unit": "steps",
        "gamma": repr(sigma_rel_to_gamma(sigma_rel)), "sigma_rel": repr(sigma_rel),
        "update_every": "1", "update_after_step": "0", "fingerprint": fingerprint,
        "snapshot_kind": "posthoc", "copied_keys": "[]", **extra,
    }
    return safetensors_bytes(metadata, scale=scale)
