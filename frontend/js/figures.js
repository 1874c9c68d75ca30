// Pure figure builders: Plotly traces and layouts, the per-layer heatmap matrix and the
// "dual-model" eval table. No DOM access: every input is passed in, so the functions can
// be tested in the browser without a server (tests/frontend/).

import { lowerIsBetter, sortModels } from "./keys.js";
import { toNumber } from "./values.js";

/** Traces with at least this many points use WebGL (scattergl); smaller ones SVG. */
export const GL_MIN_POINTS = 1000;

const FIXED_COLORS = {
  live: "#e4572e", "ema_0.999": "#2e86de", "ema_0.9999": "#17a589", swa: "#8e44ad",
};
const PALETTE = ["#d4a017", "#c0392b", "#16a085", "#2c3e50", "#7f8c8d", "#d35400"];

/** A stable color per model/averager name (fixed for the usual names, hashed otherwise). */
export function colorFor(name) {
  if (name in FIXED_COLORS) return FIXED_COLORS[name];
  let hash = 0;
  for (const char of name) hash = (hash * 31 + char.charCodeAt(0)) >>> 0;
  return PALETTE[hash % PALETTE.length];
}

/**
 * One line trace.
 * @param {{name: string, steps: number[], values: (number|null)[], color?: string,
 *   glAvailable?: boolean, markers?: boolean}} spec
 */
export function lineTrace({ name, steps, values, color, glAvailable = true, markers = false }) {
  const gl = glAvailable && steps.length >= GL_MIN_POINTS;
  return {
    type: gl ? "scattergl" : "scatter",
    mode: markers ? "lines+markers" : "lines",
    name,
    x: steps,
    y: values,
    line: { color: color || colorFor(name), width: 1.6 },
    marker: { size: 5 },
    connectgaps: false,
    hovertemplate: `${name}<br>step %{x}<br>%{y:.4g}<extra></extra>`,
  };
}

/**
 * A line chart layout in the page's theme.
 * @param {{title: string, yTitle?: string, logY?: boolean,
 *   theme: {fg: string, grid: string, bg: string}}} spec
 */
export function lineLayout({ title, yTitle = "", logY = false, theme }) {
  return {
    title: {
      text: title, x: 0, xanchor: "left", y: 1, yanchor: "top", pad: { t: 8, l: 8 },
      font: { size: 14 },
    },
    paper_bgcolor: theme.bg,
    plot_bgcolor: theme.bg,
    font: { color: theme.fg, size: 12 },
    margin: { l: 60, r: 16, t: 56, b: 44 },
    height: 320,
    xaxis: { title: { text: "step" }, gridcolor: theme.grid, zeroline: false },
    yaxis: { title: { text: yTitle }, gridcolor: theme.grid, type: logY ? "log" : "linear" },
    legend: { orientation: "h", x: 0, xanchor: "left", y: 1.02, yanchor: "bottom" },
    hovermode: "closest",
    uirevision: "keep",
  };
}

/**
 * The relative-drift heatmap: one row per layer, one column per step (or step bucket when
 * there are more than maxCols distinct steps; a bucket holds the mean of its finite values).
 * @param {string[]} layers row order (the model's module order).
 * @param {Object<string, {steps: number[], values: (number|string|null)[]}>} seriesByLayer
 * @param {number} maxCols at most this many columns (>= 1).
 * @returns {{x: number[], y: string[], z: (number|null)[][]}} z has shape (layers, columns);
 *   x is each column's first step.
 */
export function heatmapMatrix(layers, seriesByLayer, maxCols) {
  if (!(Number.isInteger(maxCols) && maxCols >= 1)) {
    throw new Error(`Invalid maxCols ${maxCols}: expected an integer >= 1`);
  }
  const allSteps = new Set();
  for (const layer of layers) for (const step of seriesByLayer[layer]?.steps || []) allSteps.add(step);
  const steps = [...allSteps].sort((a, b) => a - b);
  if (steps.length === 0) return { x: [], y: layers.slice(), z: layers.map(() => []) };
  const columnOf = columnIndexer(steps, maxCols);
  const nCols = Math.min(steps.length, maxCols);
  const x = bucketStarts(steps, columnOf, nCols);
  const z = layers.map((layer) => bucketMeans(seriesByLayer[layer], columnOf, nCols));
  return { x, y: layers.slice(), z };
}

function columnIndexer(steps, maxCols) {
  if (steps.length <= maxCols) {
    const index = new Map(steps.map((step, i) => [step, i]));
    return (step) => index.get(step);
  }
  const lo = steps[0];
  const width = (steps[steps.length - 1] - lo + 1) / maxCols;
  return (step) => Math.min(maxCols - 1, Math.floor((step - lo) / width));
}

function bucketStarts(steps, columnOf, nCols) {
  const x = new Array(nCols).fill(null);
  for (const step of steps) {
    const col = columnOf(step);
    if (x[col] === null) x[col] = step;
  }
  // Empty buckets (gaps in the steps) take their left neighbour's step + 1 to stay ordered.
  for (let col = 0; col < nCols; col++) if (x[col] === null) x[col] = col ? x[col - 1] + 1 : 0;
  return x;
}

function bucketMeans(series, columnOf, nCols) {
  const sums = new Array(nCols).fill(0);
  const counts = new Array(nCols).fill(0);
  if (series) {
    series.steps.forEach((step, i) => {
      const value = toNumber(series.values[i]);
      if (!Number.isFinite(value)) return;
      const col = columnOf(step);
      sums[col] += value;
      counts[col] += 1;
    });
  }
  return sums.map((sum, col) => (counts[col] ? sum / counts[col] : null));
}

/** The heatmap trace for heatmapMatrix's output. */
export function heatmapTrace({ x, y, z }, averager) {
  return {
    type: "heatmap", x, y, z,
    colorscale: "Viridis",
    colorbar: { title: { text: "rel. drift" }, thickness: 12 },
    hoverongaps: false,
    hovertemplate: `layer %{y}<br>step %{x}<br>rel. drift (${averager}) %{z:.4g}<extra></extra>`,
  };
}

/**
 * The best of one series: the largest value (or smallest when lower is better), NaN ignored.
 * @returns {{value: number, step: number} | null} null when no finite value.
 */
export function bestPoint(series, lower) {
  let best = null;
  series.steps.forEach((step, i) => {
    const value = toNumber(series.values[i]);
    if (!Number.isFinite(value)) return;
    if (best === null || (lower ? value < best.value : value > best.value)) best = { value, step };
  });
  return best;
}

/**
 * The dual-model table of one eval metric: each model's best value and step, its latest
 * value, and how far it is ahead of the live model's best (positive = better than live,
 * in the metric's own direction: lower is better for "loss"/"error" metrics).
 *
 * `averagers` is the run summary's `averagers` (written by the Monitor): an averager whose
 * `averaged` is false holds no average yet — it gets a row marked `notAveraged` with no
 * value, no "ahead of live" and no part in the winner, even if points exist for it (an
 * older client evaluated the initial weights under its name); points before its
 * `averaged_from` step are left out for the same reason.
 * @param {Object<string, {steps: number[], values: any[]}>} seriesByModel
 * @param {Object<string, {averaged?: boolean, averaged_from?: number}>} [averagers]
 * @returns {{metric: string, lowerIsBetter: boolean, winner: string|null, rows: Array<{model:
 *   string, best: number|null, bestStep: number|null, latest: number|null,
 *   latestStep: number|null, aheadOfLive: number|null, notAveraged: boolean}>}}
 */
export function evalTable(metric, seriesByModel, averagers = {}) {
  const lower = lowerIsBetter(metric);
  const pending = (model) => averagers[model]?.averaged === false;
  const waiting = Object.keys(averagers).filter((m) => pending(m) && !(m in seriesByModel));
  const models = sortModels([...Object.keys(seriesByModel), ...waiting]);
  const usable = Object.fromEntries(models.map((m) => [m, pending(m)
    ? { steps: [], values: [] } : fromStep(seriesByModel[m], averagers[m]?.averaged_from)]));
  const bests = Object.fromEntries(models.map((m) => [m, bestPoint(usable[m], lower)]));
  const live = bests.live;
  const rows = models.map((model) => {
    const series = usable[model];
    const last = series.steps.length - 1;
    const best = bests[model];
    const ahead = best && live ? (lower ? live.value - best.value : best.value - live.value) : null;
    return {
      model,
      best: best ? best.value : null,
      bestStep: best ? best.step : null,
      latest: last >= 0 ? toNumber(series.values[last]) : null,
      latestStep: last >= 0 ? series.steps[last] : null,
      aheadOfLive: model === "live" ? null : ahead,
      notAveraged: pending(model),
    };
  });
  const ranked = rows.filter((row) => row.best !== null);
  ranked.sort((a, b) => (lower ? a.best - b.best : b.best - a.best));
  return { metric, lowerIsBetter: lower, winner: ranked.length ? ranked[0].model : null, rows };
}

/** The points of `series` at `start` or later (all of them when `start` is not a number). */
function fromStep(series, start) {
  if (typeof start !== "number") return series;
  const keep = series.steps.map((step) => step >= start);
  return { steps: series.steps.filter((_, i) => keep[i]),
    values: series.values.filter((_, i) => keep[i]) };
}
