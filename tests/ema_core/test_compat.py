"""ClassicEMA keeps the blog-post class's four methods and its numbers."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from ema_core.compat import ClassicEMA


class BlogPostEMA:
    """The classic class, verbatim in behaviour (parameters only, constant decay)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.model, self.decay = model, decay
        self.shadow: dict[str, torch.Tensor] = {}
        self.backup: dict[str, torch.Tensor] = {}

    def register(self) -> None:
        for name, param in self.model.named_parameters():
            if param.requires_grad:
                self.shadow[name] = param.data.clone()

    def update(self) -> None:
        for name, param in self.model.named_parameters():
            if param.requires_grad:
                average = (1.0 - self.decay) * param.data + self.decay * self.shadow[name]
                self.shadow[name] = average.clone()


def test_classic_ema_matches_the_blog_post_class_and_restores_bit_exactly(
    make_mlp, trainer
) -> None:
    model = make_mlp()
    step = trainer(model)
    ours, theirs = ClassicEMA(model, 0.9), BlogPostEMA(model, 0.9)
    ours.register()
    theirs.register()
    for _ in range(10):
        step()
        ours.update()
        theirs.update()
    live = copy.deepcopy(model.state_dict())

    ours.apply_shadow()
    for name, param in model.named_parameters():
        torch.testing.assert_close(param.detach(), theirs.shadow[name])
    model.train()
    ours.restore()

    torch.testing.assert_close(model.state_dict(), live, rtol=0, atol=0)


def test_classic_ema_names_the_missing_call(make_mlp) -> None:
    ema = ClassicEMA(make_mlp(), 0.9)
    with pytest.raises(RuntimeError, match=r"used before register\(\): call ema.register"):
        ema.update()
    ema.register()
    with pytest.raises(RuntimeError, match=r"restore\(\) without apply_shadow\(\)"):
        ema.restore()
    ema.apply_shadow()
    with pytest.raises(RuntimeError, match=r"apply_shadow\(\) called twice"):
        ema.apply_shadow()
    ema.restore()
