"""Weight statistics against a straightforward float64 reference computation."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ema_core import _shadow_groups as shadow_groups
from ema_core._shadow_groups import BLOCK_NUMEL
from ema_core.ema import EMA
from ema_core.stats import NormStats, WeightStats, cosine
from ema_core.swa import SWA


class MixedNet(nn.Module):
    """Several (device, dtype) groups, a tensor larger than one block, a channels_last conv."""

    def __init__(self) -> None:
        super().__init__()
        self.big = nn.Linear(400, 400)  # 160 000 > BLOCK_NUMEL elements: split across blocks
        self.conv = nn.Conv2d(4, 6, 3).to(memory_format=torch.channels_last)  # non-contiguous
        self.bn = nn.BatchNorm1d(6)
        self.half = nn.Linear(6, 5).to(torch.bfloat16)  # cast path: fp32 shadow
        self.wide = nn.Linear(5, 2).to(torch.float64)


def _perturb(model: nn.Module, gen: torch.Generator, scale: float = 0.01) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen).to(p.dtype) * scale)
        model.bn.running_mean.add_(1.0)


def _reference(model: nn.Module, shadow: dict[str, torch.Tensor]) -> dict[str, tuple[float, ...]]:
    """(‖live‖, ‖shadow‖, drift) per parameter, in float64 from the tensors themselves."""
    out = {}
    for key, p in model.named_parameters():
        a, b = p.detach().double(), shadow[key].double()
        out[key] = (a.norm().item(), b.norm().item(), (a - b).norm().item())
    return out


@pytest.mark.parametrize("block_numel", [4096, BLOCK_NUMEL])
def test_model_layer_and_tensor_stats_match_float64_reference(block_numel, monkeypatch) -> None:
    monkeypatch.setattr(shadow_groups, "BLOCK_NUMEL", block_numel)  # 4096: many blocks and items
    torch.manual_seed(0)
    model, gen = MixedNet(), torch.Generator().manual_seed(0)
    ema = EMA(model, [0.9, 0.99], stats_every=3)
    for _ in range(3):
        _perturb(model, gen)
        ema.update(model)
    stats = ema.last_stats
    assert stats is not None and stats.step == 3
    for name in ema.averager_names:
        ref = _reference(model, ema.shadow_state_dict(name))
        s = stats.averagers[name]
        assert set(s.tensors) == set(ref)
        for key, (a, b, d) in ref.items():
            t = s.tensors[key]
            assert t.live_norm == pytest.approx(a, rel=1e-5)
            assert t.shadow_norm == pytest.approx(b, rel=1e-5)
            assert t.drift == pytest.approx(d, rel=1e-4)
            assert t.rel_drift == pytest.approx(d / a, rel=1e-4)
            # fp32 norms carry ~1e-7 relative error, amplified by d²/(ab) in the cosine
            tolerance = 1e-6 * (1.0 + d * d / (a * b))
            assert t.cos == pytest.approx((a * a + b * b - d * d) / (2 * a * b), abs=tolerance)
        layer = [v for k, v in ref.items() if k.startswith("big.")]
        assert s.layers["big"].drift == pytest.approx(math.hypot(*(v[2] for v in layer)), rel=1e-4)
        assert s.model.live_norm == pytest.approx(math.hypot(*(v[0] for v in ref.values())))
        assert s.model.drift == pytest.approx(math.hypot(*(v[2] for v in ref.values())), rel=1e-4)
    assert set(stats.averagers["ema_0.9"].layers) == {"big", "conv", "bn", "half", "wide"}


@pytest.mark.parametrize("block_numel", [4096, BLOCK_NUMEL])
def test_stats_steps_update_exactly_like_plain_steps(block_numel, monkeypatch) -> None:
    monkeypatch.setattr(shadow_groups, "BLOCK_NUMEL", block_numel)
    torch.manual_seed(0)
    model = MixedNet()
    with_stats, plain = EMA(model, [0.9, 0.99], stats_every=1), EMA(model, [0.9, 0.99])
    gen = torch.Generator().manual_seed(1)
    for _ in range(4):
        _perturb(model, gen)
        with_stats.update(model)
        plain.update(model)
    for name in plain.averager_names:
        torch.testing.assert_close(
            with_stats.shadow_state_dict(name), plain.shadow_state_dict(name), rtol=0, atol=0
        )


def test_drift_is_accurate_when_live_is_close_to_shadow() -> None:
    torch.manual_seed(0)
    model = nn.Linear(1000, 100)
    ema = EMA(model, 0.999)
    with torch.no_grad():
        model.weight.add_(1e-6)  # tiny drift: ‖a‖² + ‖b‖² − 2a·b in fp32 would be noise
    stats = ema.compute_stats(model).averagers["ema_0.999"].tensors["weight"]
    a, b = model.weight.double().flatten(), ema.shadow_state_dict()["weight"].double().flatten()
    assert stats.drift == pytest.approx((a - b).norm().item(), rel=1e-3)
    cos = torch.nn.functional.cosine_similarity(a, b, dim=0).item()  # ≈ 1 − 1.5e-9
    assert stats.cos == pytest.approx(cos, abs=1e-11) and stats.cos < 1.0


def test_compute_stats_does_not_update() -> None:
    model = nn.Linear(4, 4)
    ema = EMA(model, 0.5)
    before = ema.shadow_state_dict()["weight"].clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    stats = ema.compute_stats(model)
    assert torch.equal(ema.shadow_state_dict()["weight"], before)
    assert stats.averagers["ema_0.5"].tensors["weight"].drift == pytest.approx(4.0, rel=1e-6)
    assert ema.last_stats is None and ema.step == 0


def test_stats_only_on_stats_steps_and_to_metrics_keys() -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 1))
    ema, swa = EMA(model, 0.99, stats_every=2), SWA(model, stats_every=2)
    ema.update(model)
    swa.update(model)
    assert ema.last_stats is None
    ema.update(model)
    swa.update(model)
    assert ema.last_stats is not None and swa.last_stats is not None
    metrics = WeightStats.merge([ema.last_stats, swa.last_stats]).to_metrics()
    expected = {"weights/norm/live"}
    for name in ("ema_0.99", "swa"):
        expected |= {f"weights/{m}/{name}" for m in ("norm", "drift", "rel_drift", "cos")}
        expected |= {f"decay/{name}", f"layer/0/rel_drift/{name}", f"layer/1/rel_drift/{name}"}
    assert set(metrics) == expected
    assert all(type(v) is float for v in metrics.values())
    assert metrics["decay/ema_0.99"] == 0.99 and metrics["decay/swa"] == 0.5
    assert metrics["weights/drift/swa"] == 0.0  # the mean of two identical states


def test_merge_rejects_duplicates_and_empty() -> None:
    stats = EMA(nn.Linear(2, 2), 0.9).compute_stats(nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"^Duplicate averager 'ema_0.9' in merge: names must"):
        WeightStats.merge([stats, stats])
    with pytest.raises(ValueError, match=r"^Cannot merge an empty list of WeightStats"):
        WeightStats.merge([])


def test_cosine_and_norm_edge_cases() -> None:
    assert cosine(0.0, 0.0, 0.0) == 1.0
    assert cosine(0.0, 2.0, 2.0) == 0.0
    assert cosine(1.0, 1.0, 2.0) == -1.0  # opposite vectors
    assert cosine(3.0, 4.0, 5.0) == pytest.approx(0.0, abs=1e-15)  # orthogonal
    zero = NormStats.from_squares(0.0, 1.0, 1.0)
    assert zero.rel_drift == 0.0 and zero.cos == 0.0


class TiedNet(nn.Module):
    """Input and output embeddings sharing one weight, as in GPT-2 (two state-dict keys)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.embed.weight
        self.norm = nn.LayerNorm(4)


def test_a_tied_parameter_counts_once_in_the_model_norms() -> None:
    torch.manual_seed(0)
    model = TiedNet()
    assert {"embed.weight", "head.weight"} <= set(model.state_dict())
    ema = EMA(model, 0.5)
    with torch.no_grad():
        model.embed.weight.add_(0.1)
    stats = ema.compute_stats(model)
    shadow = ema.shadow_state_dict()
    params = dict(model.named_parameters())  # deduplicated: head.weight is not listed
    live = math.sqrt(sum(p.double().square().sum().item() for p in params.values()))
    drift = math.sqrt(sum((p.double() - shadow[k].double()).square().sum().item()
                          for k, p in params.items()))
    assert stats.live_norm == pytest.approx(live, rel=1e-6)
    assert stats.averagers["ema_0.5"].model.drift == pytest.approx(drift, rel=1e-6)
    assert set(stats.averagers["ema_0.5"].tensors) == set(params)


@pytest.mark.parametrize("shadow_dtype", [torch.float16, torch.bfloat16])
def test_half_precision_shadows_are_measured_without_overflow(shadow_dtype) -> None:
    model = nn.Sequential(nn.Linear(300, 300), nn.Linear(3, 3))
    with torch.no_grad():
        model[0].weight.fill_(400.0)  # ‖w‖ = 120 000 > 65 504, the largest fp16 value
    ema = EMA(model, 0.9, shadow_dtype=shadow_dtype)
    stats = ema.compute_stats(model).averagers["ema_0.9"]
    weight = stats.tensors["0.weight"]
    assert weight.shadow_norm == pytest.approx(120_000.0, rel=1e-6)
    assert weight.live_norm == pytest.approx(120_000.0, rel=1e-6)
    assert weight.drift == 0.0 and weight.cos == 1.0
    assert math.isfinite(stats.model.live_norm)
