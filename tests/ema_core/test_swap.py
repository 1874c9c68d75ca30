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
