"""Swap-in evaluation: shadow weights inside, live weights restored bit-exactly."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from ema_core.ema import EMA
from ema_core.exceptions import UnknownAveragerError
from ema_core.swa import SWA
from ema_core.swap import evaluate_all, swap_in


def _trained(make_convnet, trainer, steps: int = 5) -> tuple[nn.Module, EMA, SWA]:
    model = make_convnet()
    step = trainer(model)
    ema, swa = EMA(model, [0.9, 0.99]), SWA(model)
    for _ in range(steps):
        step()
        ema.update(model)
        swa.update(model)
    return model, ema, swa


def test_swap_in_puts_shadow_in_and_restores_bit_exactly(make_convnet, trainer) -> None:
    model, ema, _ = _trained(make_convnet, trainer)
    live = copy.deepcopy(model.state_dict())
    with swap_in(model, ema, "ema_0.99") as inside:
        assert inside is model
        torch.testing.assert_close(model.state_dict(), ema.shadow_state_dict("ema_0.99"))
        assert not torch.is_grad_enabled()
    torch.testing.assert_close(model.state_dict(), live, rtol=0, atol=0)


def test_swap_in_restores_when_evaluation_raises(make_convnet, trainer) -> None:
    model, ema, _ = _trained(make_convnet, trainer)
    live = copy.deepcopy(model.state_dict())
    with pytest.raises(RuntimeError, match="^eval failed$"), swap_in(model, ema):
        model.bn.running_mean.add_(5.0)  # evaluation may even write into the model
        raise RuntimeError("eval failed")
    torch.testing.assert_close(model.state_dict(), live, rtol=0, atol=0)


def test_swap_in_reuses_one_spare_buffer(make_convnet, trainer) -> None:
    model, ema, _ = _trained(make_convnet, trainer)
    with swap_in(model, ema):
        pass
    spare = ema._store.swap_spare
    with swap_in(model, ema, "ema_0.99"):
        pass
    assert spare is not None and ema._store.swap_spare is spare
    assert sum(t.numel() for t in spare) == sum(t.numel() for t in model.state_dict().values())


def test_swap_into_bf16_model_casts_and_restores() -> None:
    torch.manual_seed(0)
    model = nn.Linear(8, 8).to(torch.bfloat16)
    ema = EMA(model, 0.5)
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    live = model.weight.detach().clone()
    with swap_in(model, ema):
        assert torch.equal(model.weight, ema.shadow_state_dict()["weight"].bfloat16())
    assert torch.equal(model.weight, live)


def test_evaluate_all_runs_live_and_every_averager(make_convnet, trainer) -> None:
    model, ema, swa = _trained(make_convnet, trainer)
    x = torch.randn(2, 3, 5, 5, generator=torch.Generator().manual_seed(1))
    live = copy.deepcopy(model.state_dict())

    def eval_fn(m: nn.Module) -> dict[str, float]:
        m.eval()
        return {"mean_out": m(x).mean(), "w00": m.conv.weight[0, 0, 0, 0]}

    results = evaluate_all(model, [ema, swa], eval_fn)
    assert list(results) == ["live", "ema_0.9", "ema_0.99", "swa"]
    for name, averager in (("ema_0.9", ema), ("ema_0.99", ema), ("swa", swa)):
        w00 = averager.shadow_state_dict(name)["conv.weight"][0, 0, 0, 0].item()
        assert results[name]["w00"] == w00
        assert isinstance(results[name]["mean_out"], float)
    assert results["live"]["w00"] == model.conv.weight[0, 0, 0, 0].item()
    torch.testing.assert_close(model.state_dict(), live, rtol=0, atol=0)
    assert list(evaluate_all(model, [swa], eval_fn, include_live=False)) == ["swa"]


def test_swap_errors(make_convnet, trainer) -> None:
    model, ema, _ = _trained(make_convnet, trainer, steps=1)
    with pytest.raises(UnknownAveragerError, match=r"^Unknown averager 'swa': expected one of"):
        with swap_in(model, ema, "swa"):
            pass
    with pytest.raises(ValueError, match=r"^Duplicate averager names \['ema_0.9', 'ema_0.99', "):
        evaluate_all(model, [ema, ema], lambda m: {})


def test_nested_swap_in_of_one_averager_is_refused_and_live_weights_survive(
    make_convnet, trainer
) -> None:
    model, ema, swa = _trained(make_convnet, trainer)
    live = copy.deepcopy(model.state_dict())
    message = (
        r"^swap_in\(EMA, 'ema_0.99'\) inside another swap_in of the same EMA: exit the outer "
        r"swap_in first \(its spare buffer holds the live weights\)$"
    )
    with swap_in(model, ema, "ema_0.9"):
        with pytest.raises(RuntimeError, match=message), swap_in(model, ema, "ema_0.99"):
            pass
        with swap_in(model, swa):  # another averager has its own spare: nesting is fine
            torch.testing.assert_close(model.state_dict(), swa.shadow_state_dict())
        torch.testing.assert_close(model.state_dict(), ema.shadow_state_dict("ema_0.9"))
    torch.testing.assert_close(model.state_dict(), live, rtol=0, atol=0)
    with swap_in(model, ema, "ema_0.99"):  # usable again after the outer block ended
        pass
    torch.testing.assert_close(model.state_dict(), live, rtol=0, atol=0)


class _DropoutFrozenBN(nn.Module):
    """Dropout in train mode and a BatchNorm frozen in eval mode inside a training model."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.drop = nn.Dropout(0.5)
        self.bn = nn.BatchNorm1d(4).eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 4) -> (B, 4)
        return self.bn(self.drop(self.fc(x)))


def _flags(model: nn.Module) -> list[bool]:
    return [m.training for m in model.modules()]


def test_evaluate_all_restores_every_modules_training_flag() -> None:
    model = _DropoutFrozenBN()
    ema, swa = EMA(model, 0.9), SWA(model)
    ema.update(model)
    swa.update(model)
    before = _flags(model)
    assert before == [True, True, True, False]

    def eval_fn(m: nn.Module) -> dict[str, float]:
        m.eval()  # as the docs tell eval functions to
        return {"x": 1.0}

    results = evaluate_all(model, [ema, swa], eval_fn)

    assert sorted(results) == ["ema_0.9", "live", "swa"]
    assert _flags(model) == before  # was [False] * 4: dropout off for the rest of training


def test_training_flags_are_restored_when_eval_fn_raises() -> None:
    model = _DropoutFrozenBN()
    ema = EMA(model, 0.9)
    ema.update(model)
    calls: list[str] = []

    def eval_fn(m: nn.Module) -> dict[str, float]:
        m.eval()
        calls.append("x")
        if len(calls) == 2:  # the live evaluation passes, the shadow's raises
            raise RuntimeError("eval failed")
        return {"x": 1.0}

    with pytest.raises(RuntimeError, match="^eval failed$"):
        evaluate_all(model, [ema], eval_fn)
    assert _flags(model) == [True, True, True, False]
    with pytest.raises(RuntimeError, match="^eval failed$"), swap_in(model, ema):
        model.train()  # the frozen BatchNorm too
        raise RuntimeError("eval failed")
    assert _flags(model) == [True, True, True, False]


def test_averagers_with_nothing_averaged_are_not_evaluated(make_mlp, trainer) -> None:
    model = make_mlp()
    step = trainer(model)
    swa = SWA(model, start_step=3)
    every = EMA(model, 0.9, update_every=2)
    seen: list[int] = []
    for _ in range(4):
        names = sorted(evaluate_all(model, [swa, every], lambda m: {"x": 1.0}))
        seen.append(len(names))
        assert (swa.has_averaged, every.has_averaged) == ("swa" in names, "ema_0.9" in names)
        step()
        swa.update(model)
        every.update(model)
    assert seen == [1, 1, 2, 2]  # live; live; live + EMA (step 2); live + EMA (step 3)
    assert sorted(evaluate_all(model, [swa, every], lambda m: {"x": 1.0})) == [
        "ema_0.9", "live", "swa"]  # step 4: SWA's first average
    assert EMA(model, 0.9, update_after_step=5).has_averaged is False
