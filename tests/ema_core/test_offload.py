"""Offloaded shadows (``device="cpu"`` for a CUDA model): the pipeline of ema_core._offload.

No GPU here: ``wants_offload`` is patched so that a CPU model takes the same pipeline (staging
buffer, worker thread, joins, optimizer fence) with plain copies instead of a side stream;
the CUDA-only parts (pinned memory, non-blocking copies, events) are in test_offload_cuda.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

import ema_core._offload as offload
import ema_core._shadow_store as shadow_store
from ema_core.ema import EMA
from ema_core.swa import SWA
from ema_core.swap import swap_in


@pytest.fixture
def force_offload(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shadow_store, "wants_offload", lambda live, shadow: True)


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert sorted(a) == sorted(b)
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_offloaded_updates_equal_in_place_updates(
    force_offload: None, make_convnet: Callable[..., nn.Module], dtype: torch.dtype,
) -> None:
    model = make_convnet().to(dtype)
    plain = EMA(model, [0.9, 0.99], device="cpu", stats_every=3)  # patched: offloaded
    assert isinstance(plain._store.groups[0], offload.OffloadedGroup)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(shadow_store, "wants_offload", lambda live, shadow: False)
        reference = EMA(model, [0.9, 0.99], device="cpu", stats_every=3)
    swa, swa_ref = SWA(model, device="cpu"), None
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(shadow_store, "wants_offload", lambda live, shadow: False)
        swa_ref = SWA(model, device="cpu")
    gen = torch.Generator().manual_seed(1)
    for _ in range(7):
        with torch.no_grad():  # a training step's worth of change, in the model's dtype
            for p in model.parameters():
                p.add_(0.1 * torch.randn(p.shape, generator=gen).to(dtype))
        for averager in (plain, reference, swa, swa_ref):
            averager.update(model)
    for name in plain.averager_names:
        _same(plain.shadow_state_dict(name), reference.shadow_state_dict(name))
    _same(swa.shadow_state_dict(), swa_ref.shadow_state_dict())
    assert plain.last_stats == reference.last_stats  # stats step 6, synchronous
    assert plain.compute_stats(model) == reference.compute_stats(model)


def test_update_returns_before_the_background_lerp_and_readers_wait(
    force_offload: None, make_mlp: Callable[..., nn.Module], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = make_mlp()
    ema = EMA(model, 0.5, device="cpu")
    gate = __import__("threading").Event()
    real_lerp = offload.Group.lerp_

    def slow_lerp(self: Any, weights: Any, foreach: bool = True) -> None:
        gate.wait(5)
        real_lerp(self, weights, foreach)

    monkeypatch.setattr(offload.Group, "lerp_", slow_lerp)
    before = {k: v.clone() for k, v in ema.shadow_state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model)  # returns while the worker waits at the gate
    assert ema._store.offloader is not None and not ema._store.offloader.jobs[0].done()
    gate.set()
    after = ema.shadow_state_dict()  # joins the worker
    assert all(torch.allclose(after[k], before[k] + 0.5) for k in before if "weight" in k)


def test_a_failed_background_update_is_raised_by_the_next_call(
    force_offload: None, make_mlp: Callable[..., nn.Module], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = make_mlp()
    ema = EMA(model, 0.5, device="cpu")

    def broken(self: Any, weights: Any, foreach: bool = True) -> None:
        raise RuntimeError("host out of memory")

    monkeypatch.setattr(offload.Group, "lerp_", broken)
    ema.update(model)
    with pytest.raises(RuntimeError, match="host out of memory"):
        ema.synchronize()
    monkeypatch.undo()
    ema.update(model)  # the error was reported once; the pipeline goes on
    ema.synchronize()


def test_swap_in_and_state_dict_see_finished_updates(
    force_offload: None, make_convnet: Callable[..., nn.Module],
    trainer: Callable[..., Callable[[], None]],
) -> None:
    model = make_convnet()
    ema = EMA(model, 0.9, device="cpu")
    step = trainer(model, seed=2)
    for _ in range(3):
        step()
        ema.update(model)
    live = {k: v.clone() for k, v in model.state_dict().items()}
    state = ema.state_dict()
    with swap_in(model, ema):
        _same({k: v.to(state["shadows"]["ema_0.9"][k].dtype)
               for k, v in model.state_dict().items()}, state["shadows"]["ema_0.9"])
    _same(model.state_dict(), live)
    resumed = EMA(model, 0.9, device="cpu")
    resumed.load_state_dict(state)
    _same(resumed.shadow_state_dict(), ema.shadow_state_dict())


def test_an_optimizer_step_fences_the_pending_copy(
    force_offload: None, make_mlp: Callable[..., nn.Module], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = make_mlp()
    ema = EMA(model, 0.9, device="cpu")
    fenced = []
    monkeypatch.setattr(offload.Offloader, "fence", lambda self: fenced.append(self))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(torch.randn(2, 6)).sum().backward()
    opt.step()
    assert ema._store.offloader in fenced
