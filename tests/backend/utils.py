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
