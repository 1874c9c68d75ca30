"""The part both callbacks share: averagers built once, a new Monitor after a finish."""

from __future__ import annotations

from pathlib import Path

import pytest

from ema_core.ema import EMA
from ema_core.integrations._common import Streamer, StreamSpec, jsonable_config
from ema_core.swa import SWA
from emaboard_server.local_server import free_port
from tests.ema_core.client_utils import tiny_model


def test_a_second_training_keeps_the_averagers_and_opens_a_new_monitor(tmp_path: Path) -> None:
    streamer = Streamer(StreamSpec("p", "r", f"http://127.0.0.1:{free_port()}", decays=(0.9,),
                                   swa_start_step=2,
                                   monitor_kwargs={"run_dir": tmp_path, "finish_timeout_s": 1}))
    model = tiny_model()
    streamer.start(model, {"lr": 0.1})
    first = streamer.monitor
    averagers = list(streamer.averagers)
    streamer.update(model, 1, {"loss": 1.0})
    streamer.finish("finished")
    streamer.update(model, 2, {"loss": 1.0})  # after finish: averages, streams nothing

    streamer.start(model, {"lr": 0.1})

    assert [type(a) for a in averagers] == [EMA, SWA] and streamer.averagers == averagers
    assert averagers[0].step == 2
    assert streamer.monitor is not first and first is not None and first.finished
    assert streamer.monitor is not None and not streamer.monitor.finished
    streamer.finish("finished")


def test_jsonable_config_keeps_json_values_and_reprs_the_rest() -> None:
    assert jsonable_config({"lr": 0.1, "layers": [1, 2], "fn": len, "nan": float("nan")}) == {
        "lr": 0.1, "layers": [1, 2], "fn": "<built-in function len>", "nan": "nan"}


def test_nothing_to_average_is_refused() -> None:
    with pytest.raises(ValueError, match=r"Nothing to average: pass decays=\(0.999,\) and/or"):
        Streamer(StreamSpec("p", "r", decays=()))
