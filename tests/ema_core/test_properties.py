"""Hypothesis properties of the averaging engine."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from ema_core.ema import EMA
from ema_core.swa import SWA

SETTINGS = settings(max_examples=40, deadline=None)

values = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, width=32)
vectors = st.lists(values, min_size=1, max_size=6)
decays = st.lists(
    st.floats(min_value=1e-6, max_value=1 - 1e-6, exclude_min=True, exclude_max=True),
    min_size=1, max_size=3, unique=True,
)
ema_options = st.sampled_from([
    {},
    {"use_warmup": True},
    {"schedule": "ramp", "ramp_tau": 3.0},
    {"bias_correction": True},
    {"update_every": 2, "update_after_step": 1},
])


class Vec(nn.Module):
    """A model that is one parameter vector."""

    def __init__(self, data: list[float]) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(data, dtype=torch.float32))

    def set_(self, data: list[float]) -> None:
        with torch.no_grad():
            n = self.w.numel()  # cycle ``data`` to the parameter's length
            self.w.copy_(torch.tensor([data[i % len(data)] for i in range(n)]))


def _ema(model: nn.Module, ds: list[float], options: dict) -> EMA:
    return EMA(model, [float(d) for d in ds], **options)


@SETTINGS
@given(vectors, decays, ema_options, st.integers(1, 8), st.integers(0, 3))
def test_a_constant_model_is_a_fixed_point(data, ds, options, steps, stats_every) -> None:
    model = Vec(data)
    ema = _ema(model, ds, {**options, "stats_every": stats_every})
    for _ in range(steps):
        ema.update(model)
    for name in ema.averager_names:
        assert torch.equal(ema.shadow_state_dict(name)["w"], model.w)


@SETTINGS
@given(st.lists(vectors, min_size=2, max_size=6), decays, st.integers(0, 3))
def test_decay_zero_copies(trajectory, ds, stats_every) -> None:
    # β = 0 while t <= update_after_step, and at the first update of the EDM2 power schedule
    model = Vec(trajectory[0])
    copying = EMA(model, ds, update_after_step=len(trajectory), stats_every=stats_every)
    power = EMA(model, schedule="power", gammas=[1.0, 7.0], update_every=len(trajectory))
    for data in trajectory:
        model.set_(data)
        copying.update(model)
        power.update(model)
        for name in copying.averager_names:
            assert torch.equal(copying.shadow_state_dict(name)["w"], model.w)
            assert copying.get_decay(name) == 0.0
    for name in power.averager_names:
        assert power.get_decay(name) == 0.0
        assert torch.equal(power.shadow_state_dict(name)["w"], model.w)


@SETTINGS
@given(st.lists(vectors, min_size=1, max_size=8), decays, ema_options, st.integers(0, 2))
def test_shadow_stays_within_the_visited_values(trajectory, ds, options, stats_every) -> None:
    model = Vec(trajectory[0])
    ema = _ema(model, ds, {**options, "stats_every": stats_every})
    swa = SWA(model, stats_every=stats_every)
    seen = [model.w.detach().clone()]
    for data in trajectory:
        model.set_(data)
        seen.append(model.w.detach().clone())
        ema.update(model)
        swa.update(model)
    low, high = torch.stack(seen).min(dim=0).values, torch.stack(seen).max(dim=0).values
    for averager in (ema, swa):
        for name in averager.averager_names:
            shadow = averager.shadow_state_dict(name)["w"]
            assert bool(((shadow >= low) & (shadow <= high)).all()), (shadow, low, high)


@SETTINGS
@given(vectors, vectors, decays, st.booleans())
def test_bias_correction_returns_the_first_value_after_one_step(start, first, ds, warmup) -> None:
    model = Vec(start)
    ema = EMA(model, ds, bias_correction=True, use_warmup=warmup)
    model.set_(first)
    ema.update(model)
    for name in ema.averager_names:
        assert torch.equal(ema.shadow_state_dict(name)["w"], model.w)
