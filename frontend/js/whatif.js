// Pure helpers of the "What-if decay" panel: posthoc/<σ_rel>/<metric> points grouped by
// metric and step, the best σ_rel, where the tracked averagers and the live model sit, and
// the Plotly figures (the eval metric against σ_rel, with the constant decay β of each σ_rel
// at that step on a second axis; the best σ_rel over training). No DOM access.

import { decayToSigmaRel, SIGMA_REL_MAX, sigmaRelOfName, sigmaRelToDecay } from "./effective_length.js";
import { colorFor } from "./figures.js";
import { lowerIsBetter, parseKey } from "./keys.js";
import { toNumber } from "./values.js";

/**
 * Adds posthoc points of `rawByKey` (API series) to `table` (metric -> step -> σ -> value).
 * @returns {boolean} whether any point was added.
 */
export function absorbPosthoc(table, rawByKey) {
  let changed = false;
  for (const [key, series] of Object.entries(rawByKey)) {
    const info = parseKey(key);
    if (info.kind !== "posthoc") continue;
    const sigma = Number(info.sigmaRel);
    if (!(sigma > 0)) continue;
    const byStep = (table[info.metric] ||= {});
    series.steps.forEach((step, i) => {
      (byStep[step] ||= {})[sigma] = toNumber(series.values[i]);
      changed = true;
    });
  }
  return changed;
}

/** Steps with what-if results for `metric`, increasing. */
export function whatifSteps(table, metric) {
  return Object.keys(table[metric] || {}).map(Number).sort((a, b) => a - b);
}

/** The curve at one step: [{sigma, value}] by increasing σ_rel, finite values only. */
export function curveAt(table, metric, step) {
  const values = (table[metric] || {})[step] || {};
  return Object.entries(values).map(([sigma, value]) => ({ sigma: Number(sigma), value }))
    .filter((point) => Number.isFinite(point.value)).sort((a, b) => a.sigma - b.sigma);
}

/** The best point of a curve (lowest for a loss/error, else highest), or null. */
export function bestOf(curve, metric) {
  const lower = lowerIsBetter(metric);
  let best = null;
  for (const point of curve) {
    if (best === null || (lower ? point.value < best.value : point.value > best.value)) {
      best = point;
    }
  }
  return best;
}

/** How the best σ_rel moved over training: {steps, sigmas, values}. */
export function bestOverTime(table, metric) {
  const out = { steps: [], sigmas: [], values: [] };
  for (const step of whatifSteps(table, metric)) {
    const best = bestOf(curveAt(table, metric, step), metric);
    if (best === null) continue;
    out.steps.push(step);
    out.sigmas.push(best.sigma);
    out.values.push(best.value);
  }
  return out;
}

/** The value of an API-style series at `step` exactly, else null. */
export function valueAt(series, step) {
  if (!series) return null;
  const i = series.steps.lastIndexOf(step);
  const value = i === -1 ? NaN : toNumber(series.values[i]);
  return Number.isFinite(value) ? value : null;
}

/**
 * Where the evaluated averagers sit on the σ_rel axis at `step`: a power EMA at its own σ_rel,
 * a constant decay β (updated every k steps) at k·√β/(1−β)/step; SWA and averagers wider
 * than any power profile are left out.
 * @param {{evalByModel: Object, step: number, decays: Object<string, number>,
 *   averagers: Object<string, {kind?: string, update_every?: number}>}} spec
 * @returns {{name: string, sigma: number, value: number}[]}
 */
export function trackedMarks({ evalByModel, step, decays, averagers }) {
  const marks = [];
  for (const [name, series] of Object.entries(evalByModel || {})) {
    if (name === "live") continue;
    const value = valueAt(series, step);
    const info = averagers[name] || {};
    if (value === null || info.kind === "swa" || name === "swa") continue;
    let sigma = sigmaRelOfName(name);
    const decay = decays[name];
    if (sigma === null && decay > 0 && decay < 1) {
      sigma = decayToSigmaRel(decay, step, info.update_every || 1);
    }
    if (sigma !== null && sigma > 0 && sigma < SIGMA_REL_MAX) marks.push({ name, sigma, value });
  }
  return marks.sort((a, b) => a.sigma - b.sigma);
}

function baseLayout(title, theme) {
  return {
    title: { text: title, x: 0, xanchor: "left", y: 1, yref: "container", yanchor: "top",
      pad: { t: 8, l: 8 }, font: { size: 14 } },
    paper_bgcolor: theme.bg, plot_bgcolor: theme.bg, font: { color: theme.fg, size: 12 },
    margin: { l: 60, r: 16, t: 92, b: 110 }, height: 410, showlegend: true,
    legend: { orientation: "h", x: 0, y: -0.3, yanchor: "top" }, hovermode: "closest",
  };
}

/**
 * The what-if figure: metric against σ_rel (log axis) at one step; the top axis shows the
 * constant decay β with the same width at that step; tracked averagers as diamonds, the
 * live model as a dashed line, the selected σ_rel ringed.
 */
export function whatifFigure({ curve, step, metric, marks = [], live = null, selected = null,
  theme }) {
  const sigmas = [...curve.map((p) => p.sigma), ...marks.map((m) => m.sigma)];
  const lo = Math.log10(Math.min(...sigmas)) - 0.08;
  const hi = Math.log10(Math.max(...sigmas)) + 0.08;
  const ticks = curve.filter((_, i) => curve.length <= 6 || i % Math.ceil(curve.length / 6) === 0)
    .map((p) => p.sigma);
  const data = [{
    type: "scatter", mode: "lines+markers", name: "rebuilt EMA", x: curve.map((p) => p.sigma),
    y: curve.map((p) => p.value), customdata: curve.map((p) => sigmaRelToDecay(p.sigma, step)),
    line: { color: "#2e86de", width: 2 }, marker: { size: 8 },
    hovertemplate: "σ_rel %{x:.3g}<br>β ≈ %{customdata:.6f}<br>%{y:.4g}<extra></extra>",
  }, {
    type: "scatter", mode: "markers", x: ticks, y: ticks.map(() => null), xaxis: "x2",
    showlegend: false, hoverinfo: "skip",
  }];
  for (const mark of marks) {
    data.push({
      type: "scatter", mode: "markers", name: mark.name, x: [mark.sigma], y: [mark.value],
      marker: { symbol: "diamond", size: 12, color: colorFor(mark.name) },
      hovertemplate: `${mark.name}<br>σ_rel ≈ %{x:.3g}<br>%{y:.4g}<extra></extra>`,
    });
  }
  if (selected !== null) {
    data.push({
      type: "scatter", mode: "markers", name: `selected σ_rel ${selected.sigma}`,
      x: [selected.sigma], y: [selected.value], hoverinfo: "skip",
      marker: { size: 18, color: "rgba(0,0,0,0)", line: { color: "#e67e22", width: 3 } },
    });
  }
  const layout = baseLayout(`${metric} of the EMA rebuilt for each σ_rel, step ${step}`, theme);
  layout.xaxis = { type: "log", range: [lo, hi], title: { text: "σ_rel" },
    gridcolor: theme.grid, zeroline: false };
  layout.xaxis2 = { type: "log", range: [lo, hi], overlaying: "x", side: "top",
    tickvals: ticks, ticktext: ticks.map((s) => sigmaRelToDecay(s, step).toFixed(5)),
    title: { text: `constant decay β with that width at step ${step}`, standoff: 2,
      font: { size: 11 } },
    showgrid: false, zeroline: false };
  layout.yaxis = { title: { text: metric }, gridcolor: theme.grid, zeroline: false };
  if (live !== null) {
    layout.shapes = [{ type: "line", xref: "paper", x0: 0, x1: 1, y0: live, y1: live,
      line: { color: colorFor("live"), dash: "dash", width: 2 } }];
    layout.annotations = [{ xref: "paper", x: 1, y: live, xanchor: "right", yanchor: "bottom",
      text: `live ${live.toPrecision(4)}`, showarrow: false, font: { color: colorFor("live") } }];
  }
  return { data, layout };
}

/** The best σ_rel at each step with what-if results (log y axis). */
export function bestFigure({ best, metric, theme }) {
  const layout = baseLayout(`best σ_rel for ${metric} over training`, theme);
  layout.margin = { l: 60, r: 16, t: 56, b: 44 };
  layout.xaxis = { title: { text: "step" }, gridcolor: theme.grid, zeroline: false };
  layout.yaxis = { type: "log", title: { text: "best σ_rel" }, gridcolor: theme.grid };
  layout.showlegend = false;
  return {
    data: [{ type: "scatter", mode: "lines+markers", name: "best σ_rel", x: best.steps,
      y: best.sigmas, customdata: best.values, line: { color: "#e67e22" },
      hovertemplate: "step %{x}<br>σ_rel %{y:.3g}<br>" + metric + " %{customdata:.4g}<extra></extra>" }],
    layout,
  };
}
