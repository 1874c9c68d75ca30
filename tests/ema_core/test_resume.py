"""Resume: a run stopped at step N and resumed gives bit-identical shadows."""

from __future__ import annotations

import copy
import io
from collections.abc import Callable

import pytest
import torch
from torch import nn

from ema_core.ema import EMA
from ema_core.exceptions import StateDictError
from ema_core.swa import SWA

Factory = Callable[[nn.Module], EMA | SWA]

CASES: dict[str, Factory] = {
    "constant": lambda m: EMA(m, [0.9, 0.99], stats_every=4),
    "warmup+bias": lambda m: EMA(m, 0.999, use_warmup=True, bias_correction=True),
    "ramp": lambda m: EMA(m, 0.99, schedule="ramp", ramp_tau=5.0, update_after_step=3),
    "power/k=3": lambda m: EMA(m, schedule="power", sigma_rels=[0.05, 0.1], update_every=3),
    "swa": lambda m: SWA(m, start_step=4, update_every=2, stats_every=3),
}


def _round_trip(state: dict) -> dict:
    """Through torch.save/torch.load (weights_only) as a checkpoint would go."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("case", list(CASES))
def test_resumed_run_is_bit_identical(case: str, make_convnet, trainer) -> None:
    make = CASES[case]
    model = make_convnet()
    step = trainer(model)
    straight = make(model)
    for _ in range(11):
        step()
        straight.update(model)
    checkpoint = {
        "model": copy.deepcopy(model.state_dict()),
        "avg": _round_trip(straight.state_dict()),
    }
    for _ in range(9):
        step()
        straight.update(model)

    resumed_model = make_convnet(seed=123)  # different init: everything must come from the state
    resumed_model.load_state_dict(checkpoint["model"])
    resumed = make(resumed_model)
    resumed.load_state_dict(checkpoint["avg"])
    replay = make_convnet()
    replay_step = trainer(replay)
    for _ in range(11):
        replay_step()  # the optimizer trajectory (same seed) up to the checkpoint
    for _ in range(9):
        replay_step()
        resumed.update(replay)
    assert resumed.step == straight.step == 20
    for name in straight.averager_names:
        torch.testing.assert_close(
            resumed.shadow_state_dict(name), straight.shadow_state_dict(name), rtol=0, atol=0
        )
        assert resumed.get_decay(name) == straight.get_decay(name)


def test_state_dict_carries_counters() -> None:
    model = nn.Linear(3, 3)
    swa = SWA(model)
    for _ in range(3):
        swa.update(model)
    state = swa.state_dict()
    assert (state["kind"], state["step"], state["extra"]["n_averaged"]) == ("swa", 3, 3)
    fresh = SWA(model)
    fresh.load_state_dict(state)
    assert fresh.n_averaged == 3 and fresh.step == 3


@pytest.mark.parametrize(
    ("other", "message"),
    [
        (lambda m: SWA(m), r"^Not a ema state \(format='ema_core.averager', kind='swa'\)"),
        (lambda m: EMA(m, 0.99), r"^State holds averagers \['ema_0.99'\], this object "),
        (lambda m: EMA(m, 0.9, schedule="ramp"), r"^State was saved with schedules \['ramp"),
        (lambda m: EMA(nn.Linear(4, 3), 0.9),
         r"^Shadow 'ema_0.9' in the state differs from this model at keys \['weight'\]"),
    ],
)
def test_load_state_dict_errors_name_the_problem(other, message: str) -> None:
    model = nn.Linear(3, 3)
    ema = EMA(model, 0.9)
    with pytest.raises(StateDictError, match=message):
        ema.load_state_dict(other(model).state_dict())


def test_failed_load_changes_nothing() -> None:
    model = nn.Linear(3, 3)
    swa = SWA(model, start_step=2)
    swa.update(model)
    before = {k: v.clone() for k, v in swa.shadow_state_dict().items()}
    other = SWA(nn.Linear(3, 3), start_step=5)
    for _ in range(7):
        other.update(model)
    with pytest.raises(StateDictError, match=r"^State was saved with start_step, update_every = "
                       r"\(5, 1\), this SWA has \(2, 1\): construct the SWA with the same"):
        swa.load_state_dict(other.state_dict())
    assert swa.step == 1 and swa.n_averaged == 0
    torch.testing.assert_close(swa.shadow_state_dict(), before, rtol=0, atol=0)
