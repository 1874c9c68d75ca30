"""SWA: arithmetic mean of the visited weights, start/interval, BatchNorm refresh, SWALR."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.optim.swa_utils import SWALR, AveragedModel

from ema_core.ema import EMA
from ema_core.exceptions import InvalidDecayError
from ema_core.swa import SWA


def test_swa_is_the_arithmetic_mean_of_the_visited_weights(make_mlp, trainer) -> None:
    model = make_mlp()
    step = trainer(model)
    swa = SWA(model, start_step=5, update_every=3)
    visited = []
    for t in range(1, 30):
        step()
        swa.update(model)
        if t > 5 and (t - 5) % 3 == 0:
            visited.append({k: v.detach().double().clone() for k, v in model.state_dict().items()})
    assert swa.n_averaged == len(visited) == 8
    shadow = swa.shadow_state_dict()
    for key in ("0.weight", "0.bias", "2.weight"):
        mean = torch.stack([v[key] for v in visited]).mean(dim=0)
        torch.testing.assert_close(shadow[key].double(), mean, rtol=0, atol=1e-6)
    assert swa.get_decay("swa") == pytest.approx(7 / 8)
    assert swa.averager_info()["n_averaged"] == 8


def test_swa_reports_no_statistics_before_averaging_starts(make_mlp, trainer) -> None:
    model = make_mlp()
    step = trainer(model)
    swa = SWA(model, start_step=4, stats_every=1)
    for _ in range(4):
        step()
        swa.update(model)
        assert swa.last_stats is None
    step()
    swa.update(model)
    assert swa.last_stats is not None and swa.last_stats.step == 5
    metrics = swa.last_stats.to_metrics()
    assert metrics["weights/drift/swa"] == pytest.approx(0.0, abs=1e-6)  # first average = copy
    assert metrics["decay/swa"] == 0.0


def test_swa_equals_torch_averaged_model(make_mlp, trainer) -> None:
    model = make_mlp()
    step = trainer(model)
    swa = SWA(model)
    ref = AveragedModel(model)
    for _ in range(25):
        step()
        swa.update(model)
        ref.update_parameters(model)
    for key, value in ref.module.state_dict().items():
        assert (swa.shadow_state_dict()[key] - value).abs().max().item() <= 1e-6


def test_swa_runs_beside_ema_with_swalr_and_refreshes_batchnorm(make_convnet) -> None:
    model = make_convnet()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = SWALR(opt, swa_lr=0.05, anneal_epochs=2)  # torch's SWA learning rate
    ema, swa = EMA(model, 0.9), SWA(model, start_step=1)
    loader = [torch.randn(4, 3, 5, 5, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    for _epoch in range(4):
        for x in loader:
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
            ema.update(model)
        swa.update(model)  # epoch-wise SWA: one update per epoch
        scheduler.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)
    live_before = copy.deepcopy(model.state_dict())
    reference = copy.deepcopy(model)
    reference.load_state_dict(swa.shadow_state_dict())
    torch.optim.swa_utils.update_bn(loader, reference)
    swa.update_bn(loader, model)
    shadow = swa.shadow_state_dict()
    torch.testing.assert_close(shadow["bn.running_mean"], reference.bn.running_mean)
    torch.testing.assert_close(shadow["bn.running_var"], reference.bn.running_var)
    torch.testing.assert_close(model.state_dict(), live_before, rtol=0, atol=0)
    assert swa.n_averaged == 3


def test_batchnorm_recomputed_follows_averaging_and_update_bn(make_convnet, make_mlp) -> None:
    # The flag Monitor.log_eval streams as bn_recomputed/<name>: stale after each averaged
    # step, fresh after update_bn, None for a model without BatchNorm; kept by state_dict.
    assert SWA(make_mlp()).batchnorm_recomputed is None
    model = make_convnet()
    swa = SWA(model, start_step=1)
    loader = [torch.randn(4, 3, 5, 5, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    assert swa.has_batchnorm and swa.batchnorm_recomputed is False
    swa.update(model)  # step 1: not averaged yet (start_step=1)
    swa.update(model)
    assert swa.n_averaged == 1 and swa.batchnorm_recomputed is False
    swa.update_bn(loader, model)
    assert swa.batchnorm_recomputed is True
    restored = SWA(model, start_step=1)
    restored.load_state_dict(swa.state_dict())
    assert restored.batchnorm_recomputed is True
    swa.update(model)
    assert swa.batchnorm_recomputed is False


def test_swa_invalid_arguments(make_mlp) -> None:
    with pytest.raises(InvalidDecayError, match=r"^Invalid update_every 0: expected an int >= 1$"):
        SWA(make_mlp(), update_every=0)
    with pytest.raises(ValueError, match=r"^Invalid start_step -1: expected an int >= 0$"):
        SWA(make_mlp(), start_step=-1)
