"""EMA engine: equality with torch's AveragedModel, buffers, dtypes, wrappers, options, errors."""

from __future__ import annotations

import copy
import re

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ema_core.ema import EMA
from ema_core.exceptions import (
    InvalidDecayError,
    ModelMismatchError,
    NoFloatParametersError,
    UnknownAveragerError,
)
from ema_core.schedules import power_decay, sigma_rel_to_gamma
from ema_core.swap import swap_in


def test_two_decays_equal_averaged_model_over_100_steps(make_mlp, trainer) -> None:
    model = make_mlp()
    step = trainer(model)
    ema = EMA(model, [0.9, 0.99])
    refs = {d: AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(d)) for d in (0.9, 0.99)}
    for ref in refs.values():
        ref.update_parameters(model)  # AveragedModel's first update copies, like our init
    for _ in range(120):
        step()
        ema.update(model)
        for ref in refs.values():
            ref.update_parameters(model)
    for d, ref in refs.items():
        shadow = ema.shadow_state_dict(f"ema_{d!r}")
        for key, value in ref.module.state_dict().items():
            assert (shadow[key] - value).abs().max().item() <= 1e-6, key
    assert ema.averager_names == ("ema_0.9", "ema_0.99")
    assert ema.step == 120 and ema.get_decay("ema_0.99") == 0.99


def test_foreach_path_equals_reference_loop(make_convnet, trainer) -> None:
    model = make_convnet()
    step = trainer(model)
    fast = EMA(model, [0.9, 0.999], schedule="warmup")
    slow = EMA(model, [0.9, 0.999], schedule="warmup", foreach=False)
    for _ in range(20):
        step()
        fast.update(model)
        slow.update(model)
    for name in fast.averager_names:
        torch.testing.assert_close(
            fast.shadow_state_dict(name), slow.shadow_state_dict(name), rtol=0, atol=0
        )


def test_batchnorm_buffers_averaged_and_counter_copied(make_convnet, trainer) -> None:
    model = make_convnet()
    step = trainer(model)
    start = copy.deepcopy(model.bn.running_mean)
    ema = EMA(model, 0.5)
    step()
    ema.update(model)
    shadow = ema.shadow_state_dict()
    expected = torch.lerp(start, model.bn.running_mean, 0.5)
    torch.testing.assert_close(shadow["bn.running_mean"], expected, rtol=0, atol=0)
    assert shadow["bn.num_batches_tracked"].dtype == torch.int64
    assert shadow["bn.num_batches_tracked"].item() == 1


def test_average_buffers_false_copies_float_buffers(make_convnet, trainer) -> None:
    model = make_convnet()
    step = trainer(model)
    ema = EMA(model, 0.5, average_buffers=False)
    step()
    ema.update(model)
    shadow = ema.shadow_state_dict()
    assert torch.equal(shadow["bn.running_var"], model.bn.running_var)
    assert not torch.equal(shadow["conv.weight"], model.conv.weight)


def test_bf16_model_keeps_moving_with_fp32_shadow() -> None:
    model = nn.Linear(32, 32).to(torch.bfloat16)
    with torch.no_grad():
        model.weight.fill_(1.0)
    fp32 = EMA(model, 0.999)
    bf16 = EMA(model, 0.999, shadow_dtype=torch.bfloat16)
    reference = torch.ones(32, 32, dtype=torch.float64)
    with torch.no_grad():
        model.weight.fill_(1.5)  # each update moves the shadow by ≤ 0.0005 < half a bf16 ulp
    for _ in range(50):
        fp32.update(model)
        bf16.update(model)
        reference.lerp_(model.weight.double(), 0.001)
    shadow = fp32.shadow_state_dict()["weight"]
    assert shadow.dtype == torch.float32
    torch.testing.assert_close(shadow.double(), reference, rtol=0, atol=1e-6)
    assert shadow.min().item() > 1.02  # 1 + 0.5·(1 − 0.999⁵⁰) ≈ 1.0244
    stuck = bf16.shadow_state_dict()["weight"]
    assert stuck.dtype == torch.bfloat16 and torch.equal(stuck, torch.ones_like(stuck))


class Wrapper(nn.Module):
    """Stands in for DistributedDataParallel: the model under the attribute ``module``."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_ddp_and_compile_prefixes_are_stripped(make_mlp, trainer) -> None:
    model = make_mlp()
    step = trainer(model)
    compiled = torch.compile(model)  # OptimizedModule: keys "_orig_mod.*", never run here
    ema = EMA(Wrapper(compiled), 0.9)
    plain = EMA(model, 0.9)
    assert list(ema.shadow_state_dict()) == list(model.state_dict())
    for live in (model, compiled, Wrapper(model)):
        step()
        ema.update(live)
        plain.update(model)
    torch.testing.assert_close(ema.shadow_state_dict(), plain.shadow_state_dict(), rtol=0, atol=0)


def test_update_after_step_copies_and_update_every_skips(make_mlp, trainer) -> None:
    model = make_mlp()
    step = trainer(model)
    ema = EMA(model, 0.9, update_after_step=2, update_every=3)
    for _ in range(2):
        step()
        ema.update(model)
        assert torch.equal(ema.shadow_state_dict()["0.weight"], model[0].weight)
        assert ema.get_decay() == 0.0
    before = ema.shadow_state_dict()["0.weight"].clone()
    for _ in range(2):  # t = 1, 2: not multiples of 3
        step()
        ema.update(model)
    assert torch.equal(ema.shadow_state_dict()["0.weight"], before)
    step()
    ema.update(model)  # t = 3
    torch.testing.assert_close(
        ema.shadow_state_dict()["0.weight"], torch.lerp(before, model[0].weight, 0.1)
    )
    assert ema.get_decay() == 0.9


def test_power_schedule_every_k_equals_power_ema_of_subsampled_trajectory(
    make_mlp, trainer
) -> None:
    model = make_mlp()
    step = trainer(model)
    k = 4
    every_k = EMA(model, schedule="power", sigma_rels=[0.1], update_every=k)
    visited = copy.deepcopy(model)
    reference = EMA(visited, schedule="power", sigma_rels=[0.1])  # fed only every k-th state
    for t in range(1, 41):
        step()
        every_k.update(model)
        if t % k == 0:
            visited.load_state_dict(model.state_dict())
            reference.update(visited)
    assert every_k.averager_names == ("ema_sigma_rel_0.1",)
    torch.testing.assert_close(every_k.shadow_state_dict(), reference.shadow_state_dict())
    gamma = sigma_rel_to_gamma(0.1)
    assert every_k.get_decay() == power_decay(40, gamma, interval=k)


def test_bias_correction_is_zero_initialised_ema_over_one_minus_product(make_mlp, trainer) -> None:
    model = make_mlp()
    step = trainer(model)
    ema = EMA(model, 0.9, bias_correction=True)
    v = torch.zeros_like(model[0].weight, dtype=torch.float64)
    for t in range(1, 11):
        step()
        ema.update(model)
        v.mul_(0.9).add_(model[0].weight.detach().double(), alpha=0.1)
        if t == 1:
            assert torch.equal(ema.shadow_state_dict()["0.weight"], model[0].weight)
    torch.testing.assert_close(
        ema.shadow_state_dict()["0.weight"].double(), v / (1 - 0.9**10), rtol=1e-6, atol=1e-7
    )


def test_rebinds_after_model_changes_dtype(make_mlp) -> None:
    model = make_mlp()
    start = model[0].weight.detach().clone()
    ema = EMA(model, 0.5)
    model.double()  # parameters get new storage: the cheap check must notice
    with torch.no_grad():
        model[0].weight.fill_(2.0)
    ema.update(model)
    shadow = ema.shadow_state_dict()["0.weight"]
    assert shadow.dtype == torch.float32
    assert torch.equal(shadow, torch.lerp(start, torch.full_like(start, 2.0), 0.5))


def test_averager_info_and_names() -> None:
    ema = EMA(nn.Linear(2, 2), 0.999, schedule="ramp", ramp_tau=100.0, update_every=2)
    assert ema.averager_info("ema_0.999") == {
        "averager": "ema_0.999",
        "decay": 0.0,
        "schedule": "ramp(decay=0.999, tau=100.0), update_after_step=0, update_every=2",
        "step": 0,
    }
    gammas = EMA(nn.Linear(2, 2), schedule="power", gammas=[7.0])
    assert gammas.averager_names == ("ema_gamma_7.0",)


def test_shadow_state_dict_returns_the_stored_tensors(make_mlp) -> None:
    model = make_mlp()
    ema = EMA(model, 0.9)
    first = ema.shadow_state_dict()["0.weight"]
    first.zero_()
    assert ema.shadow_state_dict()["0.weight"].abs().sum().item() == 0.0


def test_invalid_arguments_raise_named_errors(make_mlp) -> None:
    model = make_mlp()
    with pytest.raises(InvalidDecayError, match=r"^Invalid decay 1.5: expected 0 < decay < 1$"):
        EMA(model, 1.5)
    with pytest.raises(InvalidDecayError, match=r"^Invalid decay 0: expected 0 < decay < 1$"):
        EMA(model, [0.9, 0])
    with pytest.raises(InvalidDecayError, match=r"^Unknown schedule 'cosine': expected one of"):
        EMA(model, 0.9, schedule="cosine")
    with pytest.raises(InvalidDecayError, match=r"^Invalid update_every 0: expected an int >= 1$"):
        EMA(model, 0.9, update_every=0)
    with pytest.raises(InvalidDecayError, match=r"^Invalid power schedule \(sigma_rels=None"):
        EMA(model, schedule="power")
    with pytest.raises(ValueError, match=r"^Duplicate averager names \['ema_0.9', 'ema_0.9'\]"):
        EMA(model, [0.9, 0.9])
    with pytest.raises(ValueError, match=r"^Invalid stats_every -1: expected an int >= 0"):
        EMA(model, 0.9, stats_every=-1)


def test_model_without_float_parameters_is_rejected() -> None:
    model = nn.Module()
    model.register_buffer("counts", torch.zeros(3, dtype=torch.int64))
    with pytest.raises(NoFloatParametersError, match=r"has no floating-point parameters: pass"):
        EMA(model, 0.9)


def test_mismatched_model_is_rejected_with_keys_and_shapes(make_mlp) -> None:
    ema = EMA(make_mlp(width=16), 0.9)
    remedy = (
        "; pass the same architecture the averager was built from (DDP 'module.' and "
        "torch.compile '_orig_mod.' prefixes are ignored)"
    )
    shapes = (
        "Model does not match the shadow: missing keys [], unexpected keys [], shape "
        "differences ['0.weight: shadow (16, 6) vs model (8, 6)', '0.bias: shadow (16,) vs "
        "model (8,)', '2.weight: shadow (3, 16) vs model (3, 8)']"
    )
    with pytest.raises(ModelMismatchError, match=f"^{re.escape(shapes + remedy)}$"):
        ema.update(make_mlp(width=8))
    keys = (
        "Model does not match the shadow: missing keys ['0.weight', '0.bias', '2.weight', "
        "'2.bias'], unexpected keys ['weight', 'bias'], shape differences []"
    )
    with pytest.raises(ModelMismatchError, match=f"^{re.escape(keys + remedy)}$"):
        ema.update(nn.Linear(6, 3))


def test_unknown_averager_is_a_key_error_with_names(make_mlp) -> None:
    ema = EMA(make_mlp(), [0.9, 0.99])
    with pytest.raises(KeyError) as info:
        ema.shadow_state_dict("ema_0.5")
    assert isinstance(info.value, UnknownAveragerError)
    assert str(info.value) == "Unknown averager 'ema_0.5': expected one of ['ema_0.9', 'ema_0.99']"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_model_with_cpu_shadow_matches_cpu_reference(make_mlp) -> None:
    model = make_mlp().cuda()
    ema = EMA(model, 0.9, device="cpu")
    ref = EMA(make_mlp(), 0.9)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
        for p in ref._store.model.parameters():
            p.add_(1.0)
    ema.update(model)
    ref.update(ref._store.model)
    torch.testing.assert_close(ema.shadow_state_dict(), ref.shadow_state_dict())


def test_float64_shadow_of_float32_model_takes_the_cast_path(make_mlp, trainer) -> None:
    model = make_mlp()
    step = trainer(model)
    ema = EMA(model, 0.9, shadow_dtype=torch.float64, device="cpu", stats_every=2)
    reference = {k: v.detach().double().clone() for k, v in model.state_dict().items()}
    for _ in range(4):
        step()
        ema.update(model)
        for key, value in model.state_dict().items():
            reference[key].lerp_(value.double(), 0.1)
    shadow = ema.shadow_state_dict()
    assert all(t.dtype == torch.float64 for t in shadow.values())
    torch.testing.assert_close(shadow, reference, rtol=0, atol=1e-15)
    assert ema.last_stats is not None and ema.last_stats.step == 4


def _timm_get_decay(step: int, decay: float, update_after_step: int, min_decay: float) -> float:
    """timm ``ModelEmaV3.get_decay(step)`` (use_warmup=True, γ = 1, p = 2/3), transcribed.

    diffusers ``EMAModel.get_decay`` is the same: ``step − update_after_step − 1``, 0 at ≤ 0.
    """
    step = max(0, step - update_after_step - 1)
    if step <= 0:
        return 0.0
    value = 1 - (1 + step / 1.0) ** -(2 / 3)
    return max(min(value, decay), min_decay)


@pytest.mark.parametrize(("update_after_step", "min_decay"), [(0, 0.0), (3, 0.0), (0, 0.5)])
def test_warmup_decays_equal_timm_model_ema_v3(update_after_step: int, min_decay: float) -> None:
    model = nn.Linear(2, 2)
    ema = EMA(model, 0.999, use_warmup=True, update_after_step=update_after_step,
              min_decay=min_decay)
    ours, timm = [], []
    for step in range(1, 30):  # timm is called with the optimizer step count, from 1
        ema.update(model)
        ours.append(ema.get_decay())
        timm.append(_timm_get_decay(step, 0.999, update_after_step, min_decay))
    assert ours == timm
    assert ours[update_after_step] == 0.0  # the first update copies, as in timm/diffusers


def test_keys_that_collide_once_prefixes_are_stripped_are_rejected() -> None:
    class Holder(nn.Module):  # a submodule named ``module`` beside a tensor of the same name
        def __init__(self) -> None:
            super().__init__()
            self.module = nn.Linear(2, 2)
            self.weight = nn.Parameter(torch.zeros(3))

    message = (
        "Model keys 'weight' and 'module.weight' are both 'weight' once wrapper prefixes are "
        "stripped: rename the submodule called 'module' or '_orig_mod', or average the "
        "unwrapped model"
    )
    with pytest.raises(ModelMismatchError, match=f"^{re.escape(message)}$"):
        EMA(Holder(), 0.9)


def test_decays_may_be_numpy_or_tensor_scalars_and_bad_containers_are_named() -> None:
    import numpy as np

    model = nn.Linear(2, 2)
    assert EMA(model, np.float64(0.9)).averager_names == ("ema_0.9",)
    assert EMA(model, np.float32(0.5)).averager_names == ("ema_0.5",)
    assert EMA(model, torch.tensor(0.5)).averager_names == ("ema_0.5",)
    power = EMA(model, schedule="power", sigma_rels=0.05)
    assert power.averager_names == ("ema_sigma_rel_0.05",)
    widths = EMA(model, schedule="power", sigma_rels=np.array([0.05, 0.1]))  # was "ambiguous"
    assert widths.averager_names == ("ema_sigma_rel_0.05", "ema_sigma_rel_0.1")
    with pytest.raises(InvalidDecayError,
                       match=r"^Invalid decays '0.9': expected a number or a sequence of numbers$"):
        EMA(model, "0.9")
    with pytest.raises(InvalidDecayError, match=r"^Invalid decay 'x': expected 0 < decay < 1$"):
        EMA(model, [0.9, "x"])
    with pytest.raises(ValueError, match=r"^Invalid update_after_step True: expected an int >= 0$"):
        EMA(model, 0.9, update_after_step=True)


def test_averaged_model_is_a_module_holding_the_shadow(make_convnet, trainer) -> None:
    model = make_convnet()
    step = trainer(model)
    ema = EMA(model, [0.9, 0.99])
    for _ in range(3):
        step()
        ema.update(model)
    averaged = ema.averaged_model("ema_0.99")

    assert isinstance(averaged, type(model)) and averaged is not model
    assert not averaged.training and not any(p.requires_grad for p in averaged.parameters())
    torch.testing.assert_close(averaged.state_dict(), ema.shadow_state_dict("ema_0.99"),
                               rtol=0, atol=0)
    x = torch.randn(2, 3, 5, 5)
    model.eval()
    with swap_in(model, ema, "ema_0.99"):
        expected = model(x)
    torch.testing.assert_close(averaged(x), expected)
    step()
    ema.update(model)  # it is the shadow, not a copy: it follows later updates
    torch.testing.assert_close(averaged.state_dict(), ema.shadow_state_dict("ema_0.99"),
                               rtol=0, atol=0)
    fresh = make_convnet(seed=1)
    fresh.load_state_dict(averaged.state_dict())  # save/load like any module
    torch.testing.assert_close(fresh.state_dict(), ema.shadow_state_dict("ema_0.99"))


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
def test_averaged_model_unwraps_compile_and_keeps_fp32_for_bf16(make_mlp) -> None:
    model = make_mlp().to(torch.bfloat16)
    ema = EMA(torch.compile(model), 0.9)
    averaged = ema.averaged_model()
    assert type(averaged) is type(model)
    assert {p.dtype for p in averaged.parameters()} == {torch.float32}
    with pytest.raises(UnknownAveragerError, match="Unknown averager 'ema_0.5'"):
        ema.averaged_model("ema_0.5")
