"""One rule, two languages: the dashboard's JS and ema_core or the server get the same input
and must give the same answer — wire values, metric keys, "lower is better", close codes."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import pytest
import torch
from torch import nn

from ema_core.client import Monitor
from ema_core.ema import EMA
from ema_core.metric_keys import (
    bn_recomputed_key,
    eval_key,
    layer_key,
    lower_is_better,
    parse_key,
    posthoc_key,
    train_key,
    weights_key,
)
from ema_core.swa import SWA
from ema_core.wire import decode_float, encode_float, points_json
from emaboard_server.app.api.close_codes import (
    CLOSE_CODES,
    WS_4401_INVALID_TOKEN,
    WS_4404_RUN_NOT_FOUND,
)
from emaboard_server.app.crud import _best_of_run
from emaboard_server.app.models import LatestMetric
from tests.frontend.node import call

FLOATS = [0.0, -0.0, 1.5, -2.25, 0.1, 1e308, -1e308, 5e-324, 1e-7, 123456789.0, 2.0**53 + 1,
          math.nan, math.inf, -math.inf]


def same(a: float, b: float) -> bool:
    """Equal as IEEE doubles, NaN included, -0.0 told from 0.0."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b and math.copysign(1, a) == math.copysign(1, b)


def test_wire_values_decode_alike() -> None:
    text = json.dumps([encode_float(v) for v in FLOATS], allow_nan=False)
    in_js = call("values.js", "JSON.parse(arg).map(m.toNumber)", text)
    in_python = [decode_float(v) for v in json.loads(text)]
    assert all(map(same, in_python, FLOATS))
    assert all(map(same, in_js, FLOATS)), in_js


def test_points_json_decodes_alike() -> None:
    points = [(f"k/{i}", i, value, 1.7e9 + i) for i, value in enumerate(FLOATS)]
    text = "[" + points_json(points) + "]"
    in_js = call("values.js", "JSON.parse(arg).map(p => [p.key, p.step, m.toNumber(p.value), "
                 "p.wall_time])", text)
    assert [p[:2] + [p[3]] for p in in_js] == [[k, s, t] for k, s, _, t in points]
    assert all(same(got[2], want[2]) for got, want in zip(in_js, points, strict=True))


def test_decode_float_refuses_what_the_api_refuses() -> None:
    for bad in ("nan", "inf", "1.5", None, True, [1.0]):
        with pytest.raises(ValueError, match=r"Invalid wire value .*: expected a number or one "
                                             r"of 'NaN', 'Infinity', '-Infinity'"):
            decode_float(bad)


def produced_keys() -> list[str]:
    """Every key the producers write: WeightStats.to_metrics of an EMA and an SWA on a model
    with nested modules and a root parameter, and the Monitor's train/eval keys."""
    model = nn.Sequential(nn.Linear(3, 4), nn.Sequential(nn.Linear(4, 2)))
    model.register_parameter("scale", nn.Parameter(torch.ones(1)))
    ema, swa = EMA(model, decays=(0.999,), stats_every=1), SWA(model, stats_every=1)
    ema.update(model)
    swa.update(model)
    assert ema.last_stats is not None and swa.last_stats is not None
    keys = [*ema.last_stats.to_metrics(), *swa.last_stats.to_metrics()]
    keys += [train_key("loss"), eval_key("live", "accuracy"), eval_key("swa", "top1/acc"),
             bn_recomputed_key("swa"),
             posthoc_key(0.083, "accuracy"), posthoc_key(0.05, "val/loss")]
    return keys


ODD_KEYS = [
    "custom", "", "eval//x", "eval/a/", "eval/a", "layer//rel_drift/a", "layer/a/rel_drift/",
    "layer/a/b/rel_drift/c", "weights/norm/", "weights/norm/a/b", "weights/size/a", "train/",
    "decay/a/b", "posthoc/0.083/", "posthoc//acc", "eval/live/val/acc", "eval/live/a\nb",
    "train/a\u2028b", "layer/x\r/rel_drift/a", "decay/\n", "eval/ema_0.999/ünïcode ✓",
    "Eval/live/acc", " train/x", "weights/norm/live ", "bn_recomputed/", "bn_recomputed/a/b",
    "bn_recomputed/swa\n",
]


def as_js(key: str) -> dict[str, Any]:
    """parse_key's answer as keys.js writes it: unused fields absent, camelCase."""
    fields = dataclasses.asdict(parse_key(key))
    names = {"sigma_rel": "sigmaRel"}
    return {names.get(name, name): value for name, value in fields.items() if value is not None}


def test_metric_keys_parse_alike() -> None:
    keys = produced_keys() + ODD_KEYS
    assert call("keys.js", "arg.map(m.parseKey)", keys) == [as_js(key) for key in keys]


def test_produced_keys_parse_back_to_what_built_them() -> None:
    keys = set(produced_keys())
    assert {"weights/norm/live", "weights/cos/ema_0.999", "decay/swa", "layer/<root>/rel_drift/swa",
            "layer/1.0/rel_drift/ema_0.999"} <= keys
    assert {parse_key(k).kind for k in keys} == {
        "norm", "drift", "rel_drift", "cos", "layer", "decay", "train", "eval", "posthoc",
        "bn_recomputed"}
    assert parse_key(layer_key("1.0", "swa")) == parse_key("layer/1.0/rel_drift/swa")
    assert parse_key(weights_key("rel_drift", "swa")).averager == "swa"
    assert parse_key(posthoc_key(0.083, "accuracy")).sigma_rel == "0.083"
    with pytest.raises(ValueError, match="Invalid statistic 'size': expected one of"):
        weights_key("size", "swa")


def test_the_servers_best_reads_the_eval_keys_the_page_reads() -> None:
    keys = produced_keys() + ODD_KEYS
    page = call("keys.js", "arg.map(m.parseKey).filter(i => i.kind === 'eval')"
                ".map(i => [i.model, i.metric])", keys)
    rows = [LatestMetric(key=k, max_value=1.0, max_step=1, min_value=0.0, min_step=0)
            for k in keys if k.startswith("eval/")]
    for model, metric in page:
        best = _best_of_run(rows, {"primary_metric": metric})
        assert best[model]["metric"] == metric
    server = {(model, b["metric"]) for metric in {m for _, m in page}
              for model, b in _best_of_run(rows, {"primary_metric": metric}).items()}
    assert server == {tuple(pair) for pair in page}


METRIC_NAMES = ["loss", "Loss", "VAL_LOSS", "val/loss", "error_rate", "top1Error", "ERROR",
                "accuracy", "Accuracy", "f1", "lossless", "", "erro", "los", "bleu", "ünï loss"]


def test_lower_is_better_alike() -> None:
    in_js = call("keys.js", "arg.map(m.lowerIsBetter)", METRIC_NAMES)
    assert in_js == [lower_is_better(name) for name in METRIC_NAMES]
    assert lower_is_better("Loss") and not lower_is_better("Accuracy")


def test_monitor_track_best_defaults_to_the_same_rule(tmp_path: Any) -> None:
    model = nn.Linear(2, 2)
    ema = EMA(model, decays=(0.9,))
    mon = Monitor("p", "r", "http://127.0.0.1:9", run_dir=tmp_path, request_timeout_s=0.1)
    try:
        mon.watch(ema)
        for metric, mode in (("Val_Loss", "min"), ("accuracy", "max")):
            mon.track_best(metric)
            summary = {"primary_metric": metric, "primary_mode": mode,
                       "averagers": {"ema_0.9": {"kind": "ema", "update_every": 1,
                                               "averaged": False}}}
            assert json.loads(mon.spool.meta()["summary"]) == summary
    finally:
        mon.finish(timeout_s=0.2)


def test_effective_length_formulas_agree_with_ema_core() -> None:
    from ema_core.effective_length import decay_half_life, decay_to_sigma_rel, sigma_rel_to_decay
    from ema_core.schedules import gamma_to_sigma_rel

    cases = [(0.05, 100, 1), (0.1, 10_000, 1), (0.07, 20_000, 10), (0.28, 3, 1)]
    got = call("effective_length.js",
               "JSON.parse(arg).map(([s, t, k]) => [m.sigmaRelToDecay(s, t, k),"
               " m.decayToSigmaRel(m.sigmaRelToDecay(s, t, k), t, k),"
               " m.decayHalfLife(m.sigmaRelToDecay(s, t, k), k)])", json.dumps(cases))
    for (sigma, t, k), (beta, back, half) in zip(cases, got, strict=True):
        assert beta == pytest.approx(sigma_rel_to_decay(sigma, t, k), rel=1e-14)
        assert back == pytest.approx(decay_to_sigma_rel(beta, t, k), rel=1e-12)
        assert back == pytest.approx(sigma, rel=1e-9)
        assert half == pytest.approx(decay_half_life(beta, k), rel=1e-12)
    assert call("effective_length.js", "m.gammaToSigmaRel(6.94)") == pytest.approx(
        gamma_to_sigma_rel(6.94), rel=1e-14)


def test_close_codes_are_the_servers() -> None:
    assert call("close_codes.js", "m.CLOSE_CODES") == CLOSE_CODES
    assert all(4000 <= code <= 4999 for code in CLOSE_CODES.values())


@pytest.mark.parametrize(
    ("code", "action"),
    [(WS_4401_INVALID_TOKEN, "token"), (WS_4404_RUN_NOT_FOUND, "stop"),
     (CLOSE_CODES["CROSS_ORIGIN"], "stop"), (CLOSE_CODES["INVALID_HOST"], "stop"),
     (CLOSE_CODES["INVALID_REQUEST"], "stop"), (1006, "reconnect"), (1001, "reconnect"),
     (1008, "reconnect"), (4999, "reconnect")],
)
def test_the_page_acts_on_the_code_not_the_reason(code: int, action: str) -> None:
    assert call("close_codes.js", "m.closeAction(arg)", code) == action
