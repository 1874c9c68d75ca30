// Pure figure builders: Plotly traces and layouts, the per-layer heatmap matrix and the
// "dual-model" eval table. No DOM access: every input is passed in, so the functions can
// be tested in the browser without a server (tests/frontend/).

import { colorFor, lineWidthFor } from "./colors.js";
import { lowerIsBetter, sortModels } from "./keys.js";
import { toNumber } from "./values.js";

/** Opacity of the raw series drawn under its smoothed line. */
export const RAW_OPACITY = 0.25;

export { colorFor };

/**
 * One line trace. A series of one point gets a marker (a line needs two points), as does
 * every point of a `markers` chart.
 * @param {{name: string, x: any[], values: (number|null)[], color?: string, dash?: string,
 *   width?: number, markers?: boolean, faint?: boolean,
 *   xLabel?: string}} spec color and width default to the model's (colors.js).
 *   `faint`: the raw series under a smoothed one (translucent, no legend entry, no hover).
 */
export function lineTrace({ name, x, values, color, dash = "solid", width,
  markers = false, faint = false, xLabel = "step" }) {
  const trace = {
    type: "scatter",  // SVG: the pages keep <= 4,000 points a trace; the bundle has no scattergl
    mode: markers || x.length < 2 ? "lines+markers" : "lines",
    name,
    x,
    y: values,
    line: { color: color || colorFor(name), width: width ?? lineWidthFor(name), dash },
    marker: { size: name === "live" ? 7 : 5 },
    connectgaps: false,
    legendgroup: name,
    hovertemplate: `${name}<br>${xLabel} %{x}<br>%{y:.4g}<extra></extra>`,
  };
  if (faint) {
    Object.assign(trace, { opacity: RAW_OPACITY, showlegend: false, hoverinfo: "skip" });
    delete trace.hovertemplate;
  }
  return trace;
}

/**
 * The y range of a chart whose finite values are all equal (a constant learning rate):
 * Plotly would draw it on v − 1 … v + 1, a flat line seemingly at 0 for v = 0.001. Returns
 * v ± 10 % (± 1 for v = 0; a decade either side on a log axis), or null when the values
 * vary or there are none.
 * @param {{min: number, max: number}|null} extent of the finite values.
 */
export function constantRange(extent, logY = false) {
  if (!extent || extent.min !== extent.max) return null;
  const v = extent.min;
  if (logY) return v > 0 ? [Math.log10(v) - 1, Math.log10(v) + 1] : null;
  const pad = v === 0 ? 1 : Math.abs(v) * 0.1;
  return [v - pad, v + pad];
}

/**
 * The x range of a chart whose points all lie at one step (a series of one point): Plotly
 * would draw step ± 1 with half-step ticks; this is step ± max(5, 10 %). Null otherwise.
 * @param {{min: number, max: number}|null} extent of the steps.
 */
export function singleStepRange(extent) {
  if (!extent || extent.min !== extent.max) return null;
  const pad = Math.max(5, Math.abs(extent.min) * 0.1);
  return [extent.min - pad, extent.min + pad];
}

/** The extent {min, max} of the finite numbers in `values` merged into `extent` (or null). */
export function extendExtent(extent, values) {
  let out = extent;
  for (const value of values) {
    if (value === null || !Number.isFinite(value)) continue;
    if (out === null) out = { min: value, max: value };
    else out = { min: Math.min(out.min, value), max: Math.max(out.max, value) };
  }
  return out;
}

const CHART_HEIGHT = 320;
const TITLE_PX = 30;          // the title's band at the top of a chart
const LEGEND_ROW_PX = 29;     // a legend row (measured in Chromium at 12 px font)
const LEGEND_SIDES_PX = 76;   // the margins left and right of the legend
const ENTRY_PX = 40;          // an entry's line sample and gaps
const CHAR_PX = 6;            // a character of its name at 12 px (5.7 measured in Chromium)

/**
 * The horizontal legend under the chart's title, placed from the top of the chart (Plotly
 * then moves the plot down to make room): a legend anchored to the plot's top grew upwards
 * over the title once it took two rows. The chart grows by the rows after the first.
 * @param {string[]} names the legend entries.
 * @param {number} width the chart's width in px (0 when not laid out: one entry a row).
 * @returns {{rows: number, legend: object, height: number}} rows: an estimate (entries packed
 *   left to right, ENTRY_PX + CHAR_PX per character each); height: the chart's, in px.
 */
export function legendPlacement(names, width) {
  const room = Math.max(0, width - LEGEND_SIDES_PX);
  let rows = names.length ? 1 : 0;
  let used = 0;
  for (const name of names) {
    const entry = ENTRY_PX + CHAR_PX * String(name).length;
    if (used > 0 && used + entry > room) {
      rows += 1;
      used = 0;
    }
    used += entry;
  }
  const height = CHART_HEIGHT + Math.max(0, rows - 1) * LEGEND_ROW_PX;
  return { rows, height, legend: { orientation: "h", x: 0, xanchor: "left", yref: "container",
    y: 1 - TITLE_PX / height, yanchor: "top" } };
}

/**
 * A line chart layout in the page's theme. Both axes grow their margins to fit their tick
 * labels (automargin), so long labels of a tiny or one-point series are never clipped.
 * @param {{title: string, yTitle?: string, logY?: boolean, xTitle?: string, xType?: string,
 *   xRange?: number[]|null, yRange?: number[]|null, theme: {fg: string, grid: string, bg: string},
 *   legendNames?: string[], width?: number}} spec legendNames and width place the legend
 *   and size the chart (legendPlacement).
 */
export function lineLayout({ title, yTitle = "", logY = false, xTitle = "step", xType = "linear",
  xRange = null, yRange = null, theme, legendNames = [], width = 0 }) {
  const yaxis = { title: { text: yTitle }, gridcolor: theme.grid, type: logY ? "log" : "linear",
    automargin: true };
  if (yRange) Object.assign(yaxis, { range: yRange, autorange: false });
  const xaxis = { title: { text: xTitle }, type: xType, gridcolor: theme.grid, zeroline: false,
    automargin: true };
  if (xRange) Object.assign(xaxis, { range: xRange, autorange: false });
  const placement = legendPlacement(legendNames, width);
  return {
    title: {
      text: title, x: 0, xanchor: "left", y: 1, yanchor: "top", pad: { t: 8, l: 8 },
      font: { size: 14 },
    },
    paper_bgcolor: theme.bg,
    plot_bgcolor: theme.bg,
    font: { color: theme.fg, size: 12 },
    margin: { l: 60, r: 16, t: 56, b: 44 },
    height: placement.height,
    xaxis,
    yaxis,
    legend: placement.legend,
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
