"""Small models and training helpers for the ema_core engine tests (CPU, fast)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn


class SmallConvNet(nn.Module):
    """Conv + BatchNorm + Linear: parameters, float buffers and an integer buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, 4)
        h = torch.relu(self.bn(self.conv(x)))
        return self.head(h.mean(dim=(2, 3)))


def _make_mlp(seed: int = 0, width: int = 16) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, width), nn.Tanh(), nn.Linear(width, 3))


def _make_convnet(seed: int = 0) -> SmallConvNet:
    torch.manual_seed(seed)
    return SmallConvNet()


def sgd_step(model: nn.Module, opt: torch.optim.Optimizer, gen: torch.Generator) -> None:
    """One optimizer step on random data (inputs shaped for the model)."""
    if isinstance(model, SmallConvNet):
        x = torch.randn(4, 3, 5, 5, generator=gen)
    else:
        x = torch.randn(8, 6, generator=gen)
    loss = model(x).square().mean()
    opt.zero_grad()
    loss.backward()
    opt.step()


@pytest.fixture
def trainer() -> Callable[[nn.Module, int], Callable[[], None]]:
    """Factory: ``step = trainer(model, seed)``; each ``step()`` is one seeded SGD step."""

    def factory(model: nn.Module, seed: int = 0) -> Callable[[], None]:
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        return lambda: sgd_step(model, opt, gen)

    return factory


@pytest.fixture
def make_mlp() -> Callable[..., nn.Module]:
    """Factory ``make_mlp(seed=0, width=16)``: Linear(6, w) → Tanh → Linear(w, 3)."""
    return _make_mlp


@pytest.fixture
def make_convnet() -> Callable[..., nn.Module]:
    """Factory ``make_convnet(seed=0)``: Conv2d + BatchNorm2d + Linear."""
    return _make_convnet
