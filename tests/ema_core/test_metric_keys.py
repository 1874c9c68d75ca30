"""ema_core.metric_keys: the grammar's builders and parser, and the "lower is better" rule
(the JavaScript twin is checked against it in tests/frontend/test_shared_rules.py)."""

from __future__ import annotations

import pytest

from ema_core.metric_keys import (
    KeyInfo,
    decay_key,
    default_mode,
    eval_key,
    layer_key,
    lower_is_better,
    parse_key,
    posthoc_key,
    train_key,
    weights_key,
)


@pytest.mark.parametrize(
    ("key", "info"),
    [
        ("train/loss", KeyInfo("train", name="loss")),
        ("train/a/b", KeyInfo("train", name="a/b")),
        ("weights/norm/live", KeyInfo("norm", averager="live")),
        ("weights/rel_drift/ema_0.999", KeyInfo("rel_drift", averager="ema_0.999")),
        ("layer/enc.0.attn/rel_drift/swa", KeyInfo("layer", layer="enc.0.attn", averager="swa")),
        ("eval/ema_0.9999/top1/acc", KeyInfo("eval", model="ema_0.9999", metric="top1/acc")),
        ("decay/swa", KeyInfo("decay", averager="swa")),
        ("posthoc/0.083/accuracy", KeyInfo("posthoc", sigma_rel="0.083", metric="accuracy")),
        ("eval//acc", KeyInfo("other", name="eval//acc")),
        ("weights/norm/a/b", KeyInfo("other", name="weights/norm/a/b")),
        ("decay/a\n", KeyInfo("decay", averager="a\n")),  # fullmatch: no "$ before newline"
        ("lr", KeyInfo("other", name="lr")),
    ],
)
def test_parse_key(key: str, info: KeyInfo) -> None:
    assert parse_key(key) == info


def test_builders_write_the_documented_keys() -> None:
    assert train_key("loss") == "train/loss"
    assert weights_key("cos", "swa") == "weights/cos/swa"
    assert layer_key("<root>", "swa") == "layer/<root>/rel_drift/swa"
    assert eval_key("live", "accuracy") == "eval/live/accuracy"
    assert decay_key("ema_0.999") == "decay/ema_0.999"
    assert posthoc_key(0.083, "accuracy") == "posthoc/0.083/accuracy"
    with pytest.raises(ValueError, match=r"Invalid statistic 'l2': expected one of \('norm'"):
        weights_key("l2", "swa")


@pytest.mark.parametrize(
    ("metric", "lower"),
    [("loss", True), ("Loss", True), ("val/LOSS", True), ("top1_error", True),
     ("Error", True), ("accuracy", False), ("f1", False), ("", False)],
)
def test_lower_is_better_ignores_case(metric: str, lower: bool) -> None:
    assert lower_is_better(metric) is lower
    assert default_mode(metric) == ("min" if lower else "max")


def test_default_mode_without_a_metric_is_max() -> None:
    assert default_mode(None) == "max"
