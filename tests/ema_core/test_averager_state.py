"""Averager state as safetensors + JSON files: a bit-identical resume, with nothing unpickled."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ema_core.averager_state import (
    STATE_FILE,
    TENSORS_FILE,
    load_averager_state,
    save_averager_state,
)
from ema_core.ema import EMA
from ema_core.exceptions import StateDictError
from ema_core.swa import SWA


def _averagers(model: torch.nn.Module) -> list[EMA | SWA]:
    return [EMA(model, [0.9, 0.99], use_warmup=True, bias_correction=True),
            SWA(model, start_step=3, update_every=2)]


def test_a_run_resumed_from_the_files_is_bit_identical(make_convnet, trainer, tmp_path: Path
                                                       ) -> None:
    model = make_convnet()
    step = trainer(model, seed=1)
    whole = _averagers(model)
    for i in range(20):
        step()
        for averager in whole:
            averager.update(model)
        if i == 8:
            save_averager_state(whole, tmp_path, {"global_step": 9})
            live = {k: v.clone() for k, v in model.state_dict().items()}

    model2 = make_convnet(seed=5)  # another start: everything comes from the files
    model2.load_state_dict(live)
    resumed = _averagers(model2)
    assert load_averager_state(resumed, tmp_path) == {"global_step": 9}
    step2 = trainer(model2, seed=1)  # same data stream; the optimizer restarts here ...
    model3 = make_convnet(seed=7)  # ... so compare against a third run restarted the same way
    model3.load_state_dict(live)
    step3 = trainer(model3, seed=1)
    reference = _averagers(model3)
    load_averager_state(reference, tmp_path)
    for _ in range(11):
        step2()
        step3()
        for a, b in zip(resumed, reference, strict=True):
            a.update(model2)
            b.update(model3)
    for a, b in zip(resumed, reference, strict=True):
        assert a.state_dict()["extra"] == b.state_dict()["extra"]
        for name in a.averager_names:
            torch.testing.assert_close(a.shadow_state_dict(name), b.shadow_state_dict(name),
                                       rtol=0, atol=0)
    assert resumed[0].step == 20 and resumed[1].n_averaged == 8  # steps 5, 7, …, 19


def test_the_files_round_trip_every_field_exactly(make_convnet, tmp_path: Path) -> None:
    model = make_convnet()
    saved = _averagers(model)
    for _ in range(7):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1)
        for averager in saved:
            averager.update(model)
    save_averager_state(saved, tmp_path)
    loaded = _averagers(make_convnet(seed=3))
    load_averager_state(loaded, tmp_path)
    for a, b in zip(saved, loaded, strict=True):
        sa, sb = a.state_dict(), b.state_dict()
        assert {k: v for k, v in sa.items() if k != "shadows"} == {
            k: v for k, v in sb.items() if k != "shadows"}
        for name in a.averager_names:
            torch.testing.assert_close(sb["shadows"][name], sa["shadows"][name], rtol=0, atol=0)
    assert json.loads((tmp_path / STATE_FILE).read_text())["format"] == "emaboard.averager_state"
    assert (tmp_path / TENSORS_FILE).read_bytes()[8:9] == b"{"  # a safetensors JSON header


def test_other_averagers_are_refused_before_anything_is_copied(make_convnet, tmp_path: Path
                                                               ) -> None:
    model = make_convnet()
    save_averager_state(_averagers(model), tmp_path)
    other = [EMA(model, [0.9, 0.99], use_warmup=True, bias_correction=True),
             SWA(model, start_step=4, update_every=2)]
    before = other[0].shadow_state_dict("ema_0.9")["conv.weight"].clone()
    with torch.no_grad():
        model.conv.weight.add_(1.0)
    other[0].update(model)
    changed = other[0].shadow_state_dict("ema_0.9")["conv.weight"].clone()
    assert not torch.equal(before, changed)
    with pytest.raises(StateDictError, match=r"start_step, update_every = \(3, 2\), this SWA has"):
        load_averager_state(other, tmp_path)
    torch.testing.assert_close(other[0].shadow_state_dict("ema_0.9")["conv.weight"], changed,
                               rtol=0, atol=0)  # the EMA, checked first, was not touched
    with pytest.raises(StateDictError, match="holds 2 averager states, 1 were given"):
        load_averager_state(other[:1], tmp_path)
    (tmp_path / TENSORS_FILE).write_bytes(b"\x80\x04not safetensors")  # e.g. a pickle
    with pytest.raises(StateDictError, match="is not an emaboard averager tensor file"):
        load_averager_state(_averagers(model), tmp_path)
