"""The dashboard's pure ES modules (values, urls, keys, figures, series, live backoff), run
by Node.js (no browser, no backend): a test here takes a tenth of a second."""

from __future__ import annotations

import math

import pytest

from tests.frontend.node import call


def test_to_number_converts_the_api_non_finite_strings() -> None:
    got = call(
        "values.js",
        "['NaN', 'Infinity', '-Infinity', 1.5, '2.5', null].map(v => String(m.toNumber(v)))",
    )
    assert got == ["NaN", "Infinity", "-Infinity", "1.5", "2.5", "NaN"]


def test_plot_value_turns_non_finite_into_gaps() -> None:
    got = call("values.js", "['NaN', 'Infinity', '-Infinity', 3].map(m.plotValue)")
    assert got == [None, None, None, 3]


def test_format_helpers() -> None:
    got = call(
        "values.js",
        "[m.formatValue(0.97123), m.formatValue('Infinity'), m.formatValue(1234567),"
        " m.formatBytes(512), m.formatBytes(1536), m.formatAgo(100, 165), m.formatAgo(0, 7200)]",
    )
    assert got == ["0.9712", "∞", "1.235e+6", "512 B", "1.5 KiB", "1 min ago", "2 h ago"]


def test_metrics_url_repeats_keys_and_skips_empty_params() -> None:
    got = call(
        "urls.js",
        "m.metricsUrl(3, {keys: ['weights/norm/live', 'eval/live/accuracy'], minStep: 10,"
        " maxPoints: 2000, prefix: null})",
    )
    assert got == (
        "/api/runs/3/metrics?keys=weights%2Fnorm%2Flive&keys=eval%2Flive%2Faccuracy"
        "&min_step=10&max_points=2000"
    )


def test_best_snapshot_url_with_token() -> None:
    got = call(
        "urls.js",
        "m.withToken(m.bestSnapshotUrl(7, {averager: 'ema_0.999', metric: 'accuracy',"
        " mode: 'max'}), 's3 cret')",
    )
    assert got == (
        "/api/runs/7/snapshots/best?averager=ema_0.999&metric=accuracy&mode=max&token=s3%20cret"
    )


def test_run_id_from_search_rejects_a_bad_id() -> None:
    assert call("urls.js", "m.runIdFromSearch('?id=12')") == 12
    message = call(
        "urls.js",
        "(() => { try { m.runIdFromSearch('?id=abc'); } catch (e) { return e.message; } })()",
    )
    assert message == 'Invalid run id "abc": open this page as /run.html?id=<run id>'


def test_run_ids_from_search() -> None:
    assert call("urls.js", "m.runIdsFromSearch('?ids=4,2')") == [4, 2]
    message = call(
        "urls.js",
        "(() => { try { m.runIdsFromSearch('?ids=4,x'); } catch (e) { return e.message; } })()",
    )
    assert message == 'Invalid run ids "4,x": open this page as /compare.html?ids=1,2'


def test_parse_key_covers_every_design_key() -> None:
    keys = [
        "train/loss", "weights/norm/live", "weights/drift/ema_0.999",
        "layer/encoder.layers.0.attn/rel_drift/swa", "eval/ema_0.9999/top1/acc", "decay/swa",
        "custom",
    ]
    got = call("keys.js", "arg.map(m.parseKey)", keys)
    assert got == [
        {"kind": "train", "name": "loss"},
        {"kind": "norm", "averager": "live"},
        {"kind": "drift", "averager": "ema_0.999"},
        {"kind": "layer", "layer": "encoder.layers.0.attn", "averager": "swa"},
        {"kind": "eval", "model": "ema_0.9999", "metric": "top1/acc"},
        {"kind": "decay", "averager": "swa"},
        {"kind": "other", "name": "custom"},
    ]


def test_summarize_keys() -> None:
    keys = [
        "weights/norm/live", "weights/norm/swa", "weights/norm/ema_0.999",
        "layer/fc2/rel_drift/ema_0.999", "layer/fc10/rel_drift/ema_0.999",
        "layer/fc1/rel_drift/ema_0.999",
        "eval/swa/loss", "eval/live/accuracy", "train/lr", "train/loss",
    ]
    got = call("keys.js", "m.summarizeKeys(arg)", keys)
    assert got == {
        "averagers": ["ema_0.999", "swa"],
        "layers": {"ema_0.999": ["fc1", "fc2", "fc10"]},
        "evalMetrics": ["accuracy", "loss"],
        "evalModels": ["live", "swa"],
        "trainNames": ["loss", "lr"],
    }


def test_heatmap_matrix_uses_steps_as_columns_when_few() -> None:
    series = {
        "a": {"steps": [0, 10, 20], "values": [0.1, 0.2, "NaN"]},
        "b": {"steps": [10, 20], "values": [0.5, 0.6]},
    }
    got = call("figures.js", "m.heatmapMatrix(['a', 'b', 'c'], arg, 10)", series)
    assert got == {
        "x": [0, 10, 20],
        "y": ["a", "b", "c"],
        "z": [[0.1, 0.2, None], [None, 0.5, 0.6], [None, None, None]],
    }


def test_heatmap_matrix_buckets_many_steps_into_means() -> None:
    series = {"a": {"steps": list(range(8)), "values": [1, 3, 5, 7, 9, 11, 13, 15]}}
    got = call("figures.js", "m.heatmapMatrix(['a'], arg, 4)", series)
    assert got == {"x": [0, 2, 4, 6], "y": ["a"], "z": [[2, 6, 10, 14]]}


def test_heatmap_matrix_rejects_bad_columns() -> None:
    message = call(
        "figures.js",
        "(() => { try { m.heatmapMatrix([], {}, 0); } catch (e) { return e.message; } })()",
    )
    assert message == "Invalid maxCols 0: expected an integer >= 1"


def test_eval_table_higher_is_better() -> None:
    series = {
        "swa": {"steps": [100, 200], "values": [0.80, 0.90]},
        "live": {"steps": [100, 200], "values": [0.85, 0.84]},
        "ema_0.999": {"steps": [100, 200], "values": [0.86, "NaN"]},
    }
    got = call("figures.js", "m.evalTable('accuracy', arg)", series)
    assert got["winner"] == "swa"
    assert got["lowerIsBetter"] is False
    rows = {row["model"]: row for row in got["rows"]}
    assert [row["model"] for row in got["rows"]] == ["live", "ema_0.999", "swa"]
    assert rows["swa"]["best"] == 0.90 and rows["swa"]["bestStep"] == 200
    assert math.isclose(rows["swa"]["aheadOfLive"], 0.05)
    assert math.isclose(rows["ema_0.999"]["aheadOfLive"], 0.01)
    assert math.isnan(rows["ema_0.999"]["latest"])  # the latest point is NaN: shown as NaN
    assert rows["live"]["aheadOfLive"] is None


def test_eval_table_lower_is_better_for_loss() -> None:
    series = {
        "live": {"steps": [1, 2], "values": [0.5, 0.4]},
        "ema_0.999": {"steps": [1, 2], "values": [0.45, 0.35]},
    }
    got = call("figures.js", "m.evalTable('val_loss', arg)", series)
    assert got["lowerIsBetter"] is True and got["winner"] == "ema_0.999"
    assert math.isclose(got["rows"][1]["aheadOfLive"], 0.05)


def test_line_traces_are_svg_at_any_length() -> None:
    # The served Plotly bundle (scatter + heatmap) has no scattergl: such a trace is not drawn.
    got = call(
        "figures.js",
        "[m.lineTrace({name: 'live', x: [1, 2], values: [1, 2]}).type,"
        " m.lineTrace({name: 'live', x: Array(50000).fill(0), values: Array(50000).fill(0)}).type]",
    )
    assert got == ["scatter", "scatter"]


def test_group_new_points_drops_points_already_seen() -> None:
    points = [
        {"key": "a", "step": 3, "value": 1},
        {"key": "a", "step": 1, "value": 0},
        {"key": "b", "step": 5, "value": "NaN"},
        {"key": "a", "step": 4, "value": 2},
    ]
    got = call(
        "series.js",
        "(() => { const last = {a: 3}; const out = m.groupNewPoints(arg, last);"
        " return {out, last}; })()",
        points,
    )
    assert got["last"] == {"a": 4, "b": 5}
    assert got["out"]["a"]["steps"] == [4] and got["out"]["a"]["values"] == [2]
    assert got["out"]["b"]["steps"] == [5] and got["out"]["b"]["values"] == ["NaN"]
    assert all(math.isnan(t) for s in got["out"].values() for t in s["wall_times"])


def test_backoff_doubles_up_to_the_cap() -> None:
    got = call("live.js", "[0, 1, 2, 3, 10].map(a => m.backoffMs(a, 0.5))")
    assert got == [500, 1000, 2000, 4000, 5000]


def test_keys_by_view_groups_what_each_view_draws() -> None:
    # Every key but the layer ones (the heatmap reads those) and the post-hoc ones (the
    # What-if panel) goes to a view: the scalar panels take all that no dedicated view draws,
    # one request per panel (key prefix).
    keys = [
        "train/loss", "weights/norm/live", "weights/norm/swa", "eval/live/accuracy",
        "eval/swa/loss", "layer/fc/rel_drift/swa", "decay/swa", "weights/cos/swa", "custom",
        "train/lr", "val/acc", "hf/eval_loss", "lr", "posthoc/0.083/accuracy",
    ]
    got = call("keys.js", "m.keysByView(arg)", keys)
    assert got == [
        ["cos", ["weights/cos/swa"]],
        ["decay", ["decay/swa"]],
        ["eval", ["eval/live/accuracy", "eval/swa/loss"]],
        ["norm", ["weights/norm/live", "weights/norm/swa"]],
        ["scalars:hf", ["hf/eval_loss"]],
        ["scalars:scalars", ["custom", "lr"]],
        ["scalars:train", ["train/loss", "train/lr"]],
        ["scalars:val", ["val/acc"]],
    ]


def test_effective_length_of_averagers() -> None:
    got = call(
        "effective_length.js",
        "[m.effectiveLength({name: 'ema_0.999', decay: 0.999, updateEvery: 1, batchSize: 256,"
        " t: 10000}), m.effectiveLength({name: 'ema_sigma_rel_0.1', decay: 0.9993,"
        " updateEvery: 1, batchSize: null, t: 10000}), m.effectiveLength({name: 'swa',"
        " decay: 0.99, updateEvery: 1, batchSize: 8, t: 100, kind: 'swa'})]",
    )
    assert got[0]["halfLifeSteps"] == pytest.approx(692.8, abs=0.1)
    assert got[0]["halfLifeSamples"] == pytest.approx(692.8 * 256, abs=30)
    assert got[0]["sigmaRel"] == pytest.approx(0.09995, abs=1e-5) and got[0]["power"] is False
    assert got[1]["sigmaRel"] == 0.1 and got[1]["power"] is True
    assert got[1]["decay"] == pytest.approx(0.999, abs=1e-5)  # the width of σ_rel 0.1 at 10k
    assert got[1]["halfLifeSamples"] is None
    assert got[2] == {"sigmaRel": None, "decay": None, "halfLifeSteps": None,
                      "halfLifeSamples": None, "power": False}


def test_whatif_tables_best_sigma_and_marks() -> None:
    series = {
        "posthoc/0.05/accuracy": {"steps": [100, 200], "values": [0.90, 0.91]},
        "posthoc/0.1/accuracy": {"steps": [100, 200], "values": [0.92, 0.90]},
        "posthoc/0.2/accuracy": {"steps": [100], "values": ["NaN"]},
        "posthoc/0.1/loss": {"steps": [100], "values": [0.3]},
        "eval/live/accuracy": {"steps": [100], "values": [0.8]},
    }
    got = call(
        "whatif.js",
        "(() => { const t = {}; m.absorbPosthoc(t, arg);"
        " return {steps: m.whatifSteps(t, 'accuracy'), curve: m.curveAt(t, 'accuracy', 100),"
        " best: m.bestOverTime(t, 'accuracy'),"
        " marks: m.trackedMarks({evalByModel: {live: {steps: [100], values: [0.8]},"
        "   'ema_sigma_rel_0.05': {steps: [100], values: [0.9]},"
        "   'ema_0.999': {steps: [100], values: [0.95]}, swa: {steps: [100], values: [0.9]}},"
        "   step: 100, decays: {'ema_0.999': 0.999}, averagers: {}})}; })()",
        series,
    )
    assert got["steps"] == [100, 200]
    assert got["curve"] == [{"sigma": 0.05, "value": 0.9}, {"sigma": 0.1, "value": 0.92}]
    assert got["best"] == {"steps": [100, 200], "sigmas": [0.1, 0.05], "values": [0.92, 0.91]}
    # ema_0.999 at step 100 is wider than any power profile (σ_rel 10): left out
    assert got["marks"] == [{"name": "ema_sigma_rel_0.05", "sigma": 0.05, "value": 0.9}]


def test_eval_table_marks_averagers_with_nothing_averaged() -> None:
    # An SWA evaluated before its first average scored the initial weights: 0.1058 "ahead
    # of" live's 0.0982 at step 0. The run summary says which averagers hold no average yet.
    series = {
        "live": {"steps": [0, 100], "values": [0.0982, 0.50]},
        "swa": {"steps": [0], "values": [0.1058]},
        "ema_0.99": {"steps": [0, 100], "values": [0.2, 0.45]},
    }
    averagers = {"swa": {"averaged": False}, "ema_0.99": {"averaged": True, "averaged_from": 100},
                 "ema_0.999": {"averaged": False}}
    got = call("figures.js", "m.evalTable('accuracy', arg.series, arg.averagers)",
               {"series": series, "averagers": averagers})
    rows = {row["model"]: row for row in got["rows"]}
    assert [row["model"] for row in got["rows"]] == ["live", "ema_0.99", "ema_0.999", "swa"]
    assert rows["swa"]["notAveraged"] and rows["swa"]["best"] is None
    assert rows["swa"]["aheadOfLive"] is None  # was +0.0076: "ahead of live"
    assert rows["ema_0.999"]["notAveraged"] and rows["ema_0.999"]["latest"] is None
    assert (rows["ema_0.99"]["best"], rows["ema_0.99"]["bestStep"]) == (0.45, 100)  # not 0.2
    assert got["winner"] == "live"
    at_start = {"live": {"steps": [0], "values": [0.0982]},
                "swa": {"steps": [0], "values": [0.1058]}}
    before = call("figures.js", "m.evalTable('accuracy', arg)", at_start)  # no summary
    assert before["winner"] == "swa" and math.isclose(before["rows"][1]["aheadOfLive"], 0.0076)
    now = call("figures.js", "m.evalTable('accuracy', arg.s, arg.a)",
               {"s": at_start, "a": {"swa": {"averaged": False}}})
    assert now["winner"] == "live" and now["rows"][1]["aheadOfLive"] is None


def test_panel_of_is_the_part_before_the_last_slash() -> None:
    keys = ["train/loss", "val/acc", "lr", "a/b/c", "/odd", "hf/eval_loss"]
    assert call("keys.js", "arg.map(m.panelOf)", keys) == [
        "train", "val", "scalars", "a/b", "scalars", "hf"]
