"""Helpers shared by the client tests: a tiny model, a training loop, REST reads."""

from __future__ import annotations

from typing import Any

import httpx
import torch
from torch import nn


def tiny_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def fixed_data(seed: int = 1, n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=gen)  # (N, 4)
    return x, (x[:, 0] > 0).long()  # (N,)


def eval_fn(model: nn.Module) -> dict[str, float]:
    """Deterministic loss and accuracy of ``model`` on fixed data."""
    x, y = fixed_data(seed=2)
    with torch.no_grad():
        logits = model(x)
    return {
        "loss": float(nn.functional.cross_entropy(logits, y)),
        "accuracy": float((logits.argmax(1) == y).float().mean()),
    }


def train_step(model: nn.Module, opt: torch.optim.Optimizer) -> float:
    x, y = fixed_data()
    loss = nn.functional.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return float(loss.item())


def find_run(server_url: str, project: str, name: str) -> dict[str, Any]:
    runs = httpx.get(f"{server_url}/api/runs", params={"project": project}).json()
    (run,) = [r for r in runs if r["name"] == name]
    return dict(run)


def series(server_url: str, run_id: int, **params: Any) -> dict[str, Any]:
    answer = httpx.get(f"{server_url}/api/runs/{run_id}/metrics",
                       params={"max_points": 100_000, **params})
    answer.raise_for_status()
    return dict(answer.json()["series"])
