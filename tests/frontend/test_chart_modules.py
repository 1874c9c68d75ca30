"""The line charts' pure helpers — TensorBoard smoothing, x-axis modes, model colors, the
ranges of constant and one-point series, the key filter — run by Node.js."""

from __future__ import annotations

import math

import pytest

from tests.frontend.node import call


def tensorboard_smooth(values: list[float], weight: float) -> list[float]:
    """TensorBoard's resmoothDataset (vz_line_chart2/line-chart.ts), transcribed."""
    last, count, out = 0.0, 0, []
    for value in values:
        if not math.isfinite(value):
            out.append(value)
            continue
        last = last * weight + (1 - weight) * value
        count += 1
        out.append(last / (1 - weight**count))
    return out


@pytest.mark.parametrize("weight", [0.0, 0.6, 0.9, 0.999])
def test_smoothing_matches_tensorboard(weight: float) -> None:
    values = [1.0, 3.0, 2.0, 5.0, 4.0, 8.0, 0.5, 7.0]
    got = call("smoothing.js", "m.smoothSeries(arg.values, arg.weight).values",
               {"values": values, "weight": weight})
    assert got == pytest.approx(tensorboard_smooth(values, weight), rel=1e-12)


def test_smoothing_is_debiased_and_keeps_gaps() -> None:
    # Debiased: the first smoothed point is the first value (no pull towards 0); a gap (null)
    # stays a gap and does not count; a constant stays that constant.
    got = call("smoothing.js", "[m.smoothSeries([10, null, 10, 10], 0.9).values,"
               " m.smoothSeries([0.001, 0.001, 0.001], 0.95).values]")
    assert got[0] == [10, None, pytest.approx(10), pytest.approx(10)]
    assert got[1] == pytest.approx([0.001] * 3, rel=1e-12)


def test_incremental_smoothing_equals_the_whole_series() -> None:
    got = call("smoothing.js", """(() => {
        const whole = m.smoothSeries(arg, 0.8).values;
        const first = m.smoothSeries(arg.slice(0, 3), 0.8);
        const rest = arg.slice(3).map(v => first.smoother.push(v));
        return [whole, first.values.concat(rest)]; })()""", [3.0, 1.0, 4.0, 1.0, 5.0, 9.0])
    assert got[0] == got[1]


def test_smoothing_rejects_a_weight_outside_0_1() -> None:
    message = call("smoothing.js",
                   "(() => { try { new m.Smoother(1); } catch (e) { return e.message; } })()")
    assert message == "Invalid smoothing 1: expected 0 <= smoothing < 1"


def test_x_values_by_step_wall_and_relative_time() -> None:
    got = call("xaxis.js", """(() => {
        const steps = [0, 10], walls = [1000, 1090];
        const axis = {originS: 1000, unit: m.relativeUnit(30)};
        const minutes = {originS: 1000, unit: m.relativeUnit(600)};
        return [m.xValues('step', steps, walls, axis), m.xValues('relative', steps, walls, axis),
                m.xValues('relative', steps, walls, minutes), m.relativeUnit(9000).name,
                m.xAxisSpec('wall', axis.unit).type, m.xAxisSpec('relative', minutes.unit).title];
    })()""")
    assert got == [[0, 10], [0, 90], [0, 1.5], "h", "date", "time since the run started (min)"]


def test_wall_time_is_local_time_for_the_date_axis() -> None:
    got = call("xaxis.js", """(() => { const t = 1700000000.25; const d = new Date(t * 1000);
        return [m.localTimeString(t), d.getHours(), d.getMinutes()]; })()""")
    text, hours, minutes = got
    assert text.endswith(".250") and text[11:16] == f"{hours:02d}:{minutes:02d}"
    message = call("xaxis.js", "(() => { try { m.xValues('epoch', [], [], {}); }"
                   " catch (e) { return e.message; } })()")
    assert message == 'Invalid x-axis mode "epoch": expected one of step, wall, relative'


def srgb_to_lab(hex_color: str) -> tuple[float, float, float]:
    """CIE L*a*b* (D65) of an sRGB hex color."""
    rgb = [int(hex_color[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
    x = (0.4124 * lin[0] + 0.3576 * lin[1] + 0.1805 * lin[2]) / 0.95047
    y = 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]
    z = (0.0193 * lin[0] + 0.1192 * lin[1] + 0.9505 * lin[2]) / 1.08883
    f = [t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116 for t in (x, y, z)]
    return 116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])


def test_live_is_distinct_from_every_shadow() -> None:
    # ema_0.9 used to hash to a red next to live's vermilion. Every color a shadow can get
    # (the fixed ones and the whole hashed palette) must be ΔE*ab >= 40 from live's, and live
    # is drawn wider than any shadow.
    names = ["ema_0.9", "ema_0.99", "ema_0.999", "ema_0.9999", "swa", "ema_0.95", "posthoc"]
    names += [f"ema_{i}" for i in range(200)]
    got = call("colors.js", """({live: m.colorFor('live'), palette: m.SHADOW_PALETTE,
        shadows: arg.map(m.colorFor), widths: [m.lineWidthFor('live'), m.lineWidthFor('swa')]})""",
               names)
    live = srgb_to_lab(got["live"])
    for color in set(got["palette"]) | set(got["shadows"]):
        distance = math.dist(live, srgb_to_lab(color))
        assert distance >= 40, f"{color} is ΔE {distance:.1f} from live {got['live']}"
    assert got["widths"][0] > got["widths"][1]


def test_constant_and_one_step_ranges() -> None:
    got = call("figures.js", """[m.constantRange({min: 0.001, max: 0.001}),
        m.constantRange({min: 0, max: 0}), m.constantRange({min: 1, max: 2}),
        m.constantRange(null), m.constantRange({min: 100, max: 100}, true),
        m.singleStepRange({min: 1200, max: 1200}), m.singleStepRange({min: 0, max: 0}),
        m.singleStepRange({min: 0, max: 10}),
        m.extendExtent(null, [null, 3, NaN, -1, Infinity])]""")
    assert got[0] == pytest.approx([0.0009, 0.0011])
    assert got[1] == [-1, 1]
    assert got[2] is None and got[3] is None
    assert got[4] == pytest.approx([1, 3])
    assert got[5] == [1080, 1320] and got[6] == [-5, 5] and got[7] is None
    assert got[8] == {"min": -1, "max": 3}


def test_one_point_gets_a_marker_and_raw_under_smoothing_is_faint() -> None:
    got = call("figures.js", """[m.lineTrace({name: 'lr', x: [5], values: [1]}).mode,
        m.lineTrace({name: 'lr', x: [5, 6], values: [1, 2]}).mode,
        m.lineTrace({name: 'lr', x: [5, 6], values: [1, 2], faint: true})]""")
    assert got[0] == "lines+markers" and got[1] == "lines"
    assert got[2]["opacity"] == 0.25 and got[2]["showlegend"] is False
    assert got[2]["hoverinfo"] == "skip"


def test_key_filter_is_a_case_insensitive_regex() -> None:
    keys = ["train/loss", "train/lr", "val/acc", "hf/eval_loss"]
    got = call("filter.js", """[m.keyFilter('LOSS$'), m.keyFilter(''), m.keyFilter('(')]
        .map(f => ({kept: arg.filter(f.test), error: f.error}))""", keys)
    assert got[0] == {"kept": ["train/loss", "hf/eval_loss"], "error": None}
    assert got[1] == {"kept": keys, "error": None}
    assert got[2]["kept"] == keys
    assert got[2]["error"].startswith('Invalid regular expression "(": ')


def test_the_legend_hangs_under_the_title_and_the_chart_grows_by_its_rows() -> None:
    names = [f"digits-seed{r} · {m}" for r in (0, 1)
             for m in ("live", "ema_0.99", "ema_0.999", "ema_sigma_rel_0.05", "swa")]
    got = call("figures.js", "[m.legendPlacement([], 600), m.legendPlacement(['live', 'swa'], 600),"
               " m.legendPlacement(arg, 1400), m.legendPlacement(arg, 400),"
               " m.legendPlacement(arg, 0)]", names)
    empty, short, wide, narrow, unlaid = got
    assert (empty["rows"], empty["height"]) == (0, 320)
    assert (short["rows"], short["height"]) == (1, 320)
    assert 2 <= wide["rows"] < narrow["rows"] <= unlaid["rows"] == len(names)
    for placed in got:
        legend = placed["legend"]
        assert placed["height"] == 320 + max(0, placed["rows"] - 1) * 29
        # from the top of the chart, under a 30 px title band: Plotly moves the plot down
        assert (legend["yref"], legend["yanchor"]) == ("container", "top")
        assert legend["y"] * placed["height"] == pytest.approx(placed["height"] - 30)
