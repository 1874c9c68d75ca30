"""Averager options and Monitor options: separate dicts, checked when a callback is built."""

from __future__ import annotations

from typing import Any

import pytest

from ema_core.exceptions import InvalidDecayError
from ema_core.integrations._common import StreamSpec

pl = pytest.importorskip("lightning.pytorch")
transformers = pytest.importorskip("transformers")
from ema_core.integrations.lightning import EmaboardCallback  # noqa: E402
from ema_core.integrations.transformers import EmaboardTrainerCallback  # noqa: E402

CALLBACKS = [EmaboardCallback, EmaboardTrainerCallback]


@pytest.mark.parametrize("callback", CALLBACKS)
@pytest.mark.parametrize(("options", "message"), [
    ({"use_warmup": True}, r"got an unknown option 'use_warmup': it is an EMA option: pass "
                           r"ema_kwargs=\{'use_warmup': True\}"),
    ({"run_dir": "x"}, r"got an unknown option 'run_dir': it is a Monitor option: pass "
                       r"monitor_kwargs=\{'run_dir': 'x'\}"),
    ({"update_every": 5}, r"got an unknown option 'update_every': it is an EMA and an SWA "
                          r"option: pass ema_kwargs=\{'update_every': 5\} and/or swa_kwargs="),
    ({"learning_rate": 1}, r"got an unknown option 'learning_rate': expected one of its "
                           r"arguments or a key of ema_kwargs \['schedule', "),
])
def test_an_option_outside_its_dict_is_named_with_its_dict(
    callback: Any, options: dict[str, Any], message: str
) -> None:
    # before: EmaboardCallback(..., use_warmup=True) constructed, then fit() raised
    # "TypeError: Monitor.__init__() got an unexpected keyword argument 'use_warmup'"
    with pytest.raises(TypeError, match=f"^{callback.__name__} " + message):
        callback("p", "r", **options)


@pytest.mark.parametrize("callback", CALLBACKS)
@pytest.mark.parametrize(("options", "error", "message"), [
    ({"ema_kwargs": {"use_warmpu": True}}, TypeError,
     r"Unknown ema_kwargs key 'use_warmpu': expected one of \['schedule', 'min_decay'"),
    ({"ema_kwargs": {"decays": (0.5,)}}, TypeError, "Unknown ema_kwargs key 'decays'"),
    ({"swa_kwargs": {"update_every": 0}, "swa_start_step": 3}, InvalidDecayError,
     "Invalid update_every 0: expected an int >= 1"),
    ({"ema_kwargs": {"use_warmup": True, "warmup_power": -1.0}}, InvalidDecayError,
     r"Invalid warm-up gamma=1.0, power=-1.0: expected both > 0"),
    ({"monitor_kwargs": {"flush_interval_ms": 0}}, ValueError,
     "Invalid flush_interval_ms 0: expected a positive number"),
    ({"monitor_kwargs": {"resume": "allow"}}, TypeError, "Unknown monitor_kwargs key 'resume'"),
])
def test_option_dicts_are_checked_at_construction(
    callback: Any, options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        callback("p", "r", **options)


def test_valid_options_are_kept_for_the_averagers_and_the_monitor() -> None:
    spec = StreamSpec("p", "r", decays=(0.999,), swa_start_step=10,
                      ema_kwargs={"use_warmup": True, "update_after_step": 5},
                      swa_kwargs={"update_every": 10}, monitor_kwargs={"token": "t"})
    assert spec.ema_kwargs == {"use_warmup": True, "update_after_step": 5}
    assert (spec.swa_kwargs, spec.monitor_kwargs) == ({"update_every": 10}, {"token": "t"})
