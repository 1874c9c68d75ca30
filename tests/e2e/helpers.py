"""REST helpers for the browser tests: create runs, post points, upload real safetensors."""

from __future__ import annotations

import hashlib
import math
import uuid
from typing import Any

import httpx
import torch
from safetensors.torch import save

from emaboard_server.local_server import LocalServer

AVERAGERS = ("ema_0.999", "ema_0.9999", "swa")
LAYERS = ("conv1", "layer1.0.conv1", "layer1.0.conv2", "layer2.0.conv1", "fc")


def create_run(server: LocalServer, project: str = "e2e", name: str | None = None
               ) -> dict[str, Any]:
    """POST /api/runs (name: a fresh random one by default); returns the Run."""
    name = name or f"run-{uuid.uuid4().hex[:8]}"
    response = httpx.post(server.url + "/api/runs", json={"project": project, "name": name},
                          headers=server.headers, timeout=30)
    response.raise_for_status()
    return dict(response.json())


def post_points(server: LocalServer, run_id: int, points: list[dict[str, Any]],
                batch: int = 50_000) -> None:
    """POST points in batches of at most ``batch`` (the server's max_points_per_request)."""
    with httpx.Client(timeout=120, headers=server.headers) as client:
        for start in range(0, len(points), batch):
            response = client.post(f"{server.url}/api/runs/{run_id}/metrics",
                                   json={"points": points[start:start + batch]})
            response.raise_for_status()


def training_points(steps: range, *, layers: tuple[str, ...] = LAYERS,
                    averagers: tuple[str, ...] = AVERAGERS) -> list[dict[str, Any]]:
    """Plausible stats-step points (train, norms, drift, decay, per-layer drift) for ``steps``."""
    points: list[dict[str, Any]] = []
    for step in steps:
        norm = 40.0 + step / 300
        points.append({"key": "train/loss", "step": step, "value": 2.3 * math.exp(-step / 1500)})
        points.append({"key": "train/lr", "step": step, "value": 0.1 / (1 + step / 1000)})
        points.append({"key": "weights/norm/live", "step": step, "value": norm})
        for i, averager in enumerate(averagers):
            drift = (1.0 + i) * math.exp(-step / 2000) + 0.2
            points += [
                {"key": f"weights/norm/{averager}", "step": step, "value": norm - 0.5 * (i + 1)},
                {"key": f"weights/drift/{averager}", "step": step, "value": drift},
                {"key": f"weights/rel_drift/{averager}", "step": step, "value": drift / norm},
                {"key": f"weights/cos/{averager}", "step": step,
                 "value": 1 - (drift / norm) ** 2 / 2},
                {"key": f"decay/{averager}", "step": step, "value": 1 - 1 / (10 ** (3 + i))},
            ]
            points += [
                {"key": f"layer/{layer}/rel_drift/{averager}", "step": step,
                 "value": (0.01 + 0.01 * j) * (1 + i) * math.exp(-step / 3000)}
                for j, layer in enumerate(layers)
            ]
    return points


def eval_points(step: int, accuracy: dict[str, float]) -> list[dict[str, Any]]:
    """``eval/<model>/accuracy`` points, one per model."""
    return [{"key": f"eval/{model}/accuracy", "step": step, "value": value}
            for model, value in accuracy.items()]


def safetensors_file(seed: int) -> bytes:
    """A tiny but real safetensors file (two tensors) whose content depends on ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return save({"fc.weight": torch.randn(4, 3, generator=generator), "fc.bias": torch.zeros(4)},
                metadata={"seed": str(seed)})


def upload_snapshot(server: LocalServer, run_id: int, data: bytes, *, averager: str, step: int,
                    metric: str, value: float) -> dict[str, Any]:
    """POST /api/runs/{id}/snapshots (multipart); returns the Snapshot."""
    response = httpx.post(
        f"{server.url}/api/runs/{run_id}/snapshots", headers=server.headers, timeout=30,
        files={"file": ("snapshot.safetensors", data, "application/octet-stream")},
        data={"averager": averager, "step": str(step), "metric": metric, "value": str(value)},
    )
    response.raise_for_status()
    return dict(response.json())


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
