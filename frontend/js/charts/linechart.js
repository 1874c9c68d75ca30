// A live line chart: one trace per matching metric key (two with smoothing: the raw series
// faint under its smoothed line), first drawn with Plotly.react and then grown with
// Plotly.extendTraces (never a full redraw per message). It keeps its series (steps, values,
// wall times) so that the smoothing and the x axis can change without a re-read, and draws
// only while active (an open panel that matches the filter).

import {
  constantRange, extendExtent, lineLayout, lineTrace, singleStepRange,
} from "../figures.js";
import { naturalCompare } from "../keys.js";
import { Smoother } from "../smoothing.js";
import { autoResize, chartTheme, themeRelayout } from "../theme.js";
import { xAxisSpec, xValues } from "../xaxis.js";
import { ChartExport } from "./chartexport.js";

/** Above this many points in one trace the chart asks for a downsampled REST re-read. */
export const MAX_TRACE_POINTS = 4000;
const PLOT_CONFIG = { responsive: true, displaylogo: false };
/** Display settings when the page has none: steps, no smoothing. */
const PLAIN = { smoothing: 0, xMode: "step", axis: () => ({ originS: 0, unit: { name: "s", seconds: 1 } }) };

export class LineChart {
  /**
   * @param {HTMLElement} container where the chart's elements go.
   * @param {{id: string, title: string, yTitle?: string, logY?: boolean, markers?: boolean,
   *   traceName: (key: string) => (string|null), display?: object,
   *   styleOf?: (key: string) => {color?: string, dash?: string, width?: number},
   *   exportUrl?: (keys: string[], format: string) => string, active?: boolean}} spec
   *   traceName says whether a key belongs to this chart (non-null) and under which legend
   *   name; display holds the page's smoothing and x axis (display.js; `axis(key)` gives the
   *   relative axis' origin of a key); styleOf overrides a trace's line; exportUrl adds the
   *   CSV/JSON download links.
   */
  constructor(container, spec) {
    const { id, title, yTitle = "", logY = false, markers = false, traceName } = spec;
    this.slot = document.createElement("div");
    this.slot.className = "chart-slot";
    this.div = document.createElement("div");
    this.div.id = id;
    this.div.className = "chart";
    this.div.setAttribute("role", "img");
    this.div.setAttribute("aria-label", title);
    this.slot.append(this.div);
    container.append(this.slot);
    this.export = spec.exportUrl ? new ChartExport(this.slot, title, spec.exportUrl) : null;
    Object.assign(this, { title, yTitle, logY, markers, traceName });
    this.styleOf = spec.styleOf || (() => ({}));
    this.display = spec.display || PLAIN;
    this.active = spec.active ?? true;
    this.series = new Map();  // key -> {steps, values, walls, smoother, smoothedCount}
    this.index = new Map();   // key -> {raw: trace index, smooth: trace index | null}
    this.extent = null;       // {min, max} of the finite values drawn
    this.drawn = false;       // Plotly has drawn it (with the data held at that time)
    this.dirty = false;       // holds data not drawn yet (inactive while it arrived)
    this.tooBig = false;      // set when a trace outgrew MAX_TRACE_POINTS
    this.resizer = null;
  }

  /** True when `key` is drawn (or would be) by this chart. */
  matches(key) {
    return this.traceName(key) !== null;
  }

  /** The keys drawn, in legend order. */
  keys() {
    return [...this.series.keys()];
  }

  /**
   * Replaces the chart's series (first load or resync) and draws them when active.
   * @param {Object<string, {steps: number[], values: (number|null)[], wall_times?: number[]}>}
   *   seriesByKey any keys; those not matching are ignored.
   */
  render(seriesByKey) {
    const keys = Object.keys(seriesByKey).filter((key) => this.matches(key));
    keys.sort((a, b) => naturalCompare(this.traceName(a), this.traceName(b)));
    this.series = new Map(keys.map((key) => [key, copySeries(seriesByKey[key])]));
    this.tooBig = false;
    this.export?.setKeys(keys);
    return this.redraw();
  }

  /** Draws everything held from scratch (also after a smoothing or x-axis change). */
  redraw() {
    if (!this.active) {
      this.dirty = true;
      return Promise.resolve();
    }
    this.dirty = false;
    const traces = this.buildTraces();
    this.extent = null;
    this.steps = null;
    for (const series of this.series.values()) {
      this.extent = extendExtent(this.extent, series.values);
      this.steps = extendExtent(this.steps, series.steps);
    }
    const x = xAxisSpec(this.display.xMode, this.display.axis().unit);
    const layout = lineLayout({
      title: this.title, yTitle: this.yTitle, logY: this.logY, xTitle: x.title, xType: x.type,
      xRange: this.stepRange(), yRange: constantRange(this.extent, this.logY), theme: chartTheme(),
      legendNames: this.keys().map((key) => this.traceName(key)), width: this.div.clientWidth,
    });
    // The div holds the height too: Plotly's resize (autoResize) sizes the chart to its div.
    this.div.style.height = `${layout.height}px`;
    this.fixed = layout.yaxis.range || null;  // the constant range drawn, if any
    this.xFixed = layout.xaxis.range || null;
    this.drawn = true;
    this.resizer ||= autoResize(this.div);
    this.div.classList.toggle("empty", this.series.size === 0);
    this.div.dataset.smoothing = String(this.display.smoothing);
    this.div.dataset.xMode = this.display.xMode;
    return Plotly.react(this.div, traces, layout, PLOT_CONFIG);
  }

  buildTraces() {
    const traces = [];
    this.index = new Map();
    for (const [key, series] of this.series) {
      const [raw, smooth] = this.tracesOf(key, series);
      this.index.set(key, { raw: traces.length, smooth: smooth ? traces.length + 1 : null });
      traces.push(raw);
      if (smooth) traces.push(smooth);
    }
    return traces;
  }

  /** The raw trace of one series and, with smoothing on, its smoothed trace. */
  tracesOf(key, series) {
    const { smoothing, xMode } = this.display;
    const x = xValues(xMode, series.steps, series.walls, this.display.axis(key));
    const base = { name: this.traceName(key), x, markers: this.markers,
      xLabel: xMode === "step" ? "step" : "time", ...this.styleOf(key) };
    if (!(smoothing > 0)) return [lineTrace({ ...base, values: series.values }), null];
    series.smoother = new Smoother(smoothing);
    const smoothed = series.values.map((value) => series.smoother.push(value));
    return [lineTrace({ ...base, values: series.values, faint: true }),
      lineTrace({ ...base, values: smoothed })];
  }

  /**
   * Appends new points: extendTraces for keys already drawn, addTraces for new ones.
   * @param {Object<string, {steps: number[], values: (number|null)[], wall_times?: number[]}>}
   *   pointsByKey
   */
  append(pointsByKey) {
    const update = { x: [], y: [] };
    const indices = [];
    const added = [];
    const live = this.drawn && !this.dirty && this.active;
    for (const [key, points] of Object.entries(pointsByKey)) {
      if (!this.matches(key)) continue;
      const series = this.series.get(key);
      if (!series) {
        this.series.set(key, copySeries(points));
        added.push(key);
        continue;
      }
      series.steps.push(...points.steps);
      series.values.push(...points.values);
      series.walls.push(...wallsOf(points));
      if (series.steps.length > MAX_TRACE_POINTS) this.tooBig = true;
      if (live) this.extendOne(key, series, points, update, indices);
    }
    if (added.length) this.export?.setKeys(this.keys());
    if (!live) {
      this.dirty = true;
      if (this.active) this.redraw();  // an active chart not drawn yet
      return;
    }
    if (indices.length) Plotly.extendTraces(this.div, update, indices);
    if (added.length) this.addKeys(added);
    this.checkRange(pointsByKey);
  }

  extendOne(key, series, points, update, indices) {
    const { raw, smooth } = this.index.get(key);
    const x = xValues(this.display.xMode, points.steps, wallsOf(points), this.display.axis(key));
    indices.push(raw);
    update.x.push(x);
    update.y.push(points.values);
    if (smooth !== null) {
      indices.push(smooth);
      update.x.push(x);
      update.y.push(points.values.map((value) => series.smoother.push(value)));
    }
    if (series.steps.length === points.steps.length + 1 && !this.markers) {
      Plotly.restyle(this.div, { mode: "lines" }, [raw]);  // one point had a marker
    }
  }

  addKeys(keys) {
    const traces = [];
    let next = this.div.data.length;
    for (const key of keys) {
      const [raw, smooth] = this.tracesOf(key, this.series.get(key));
      this.index.set(key, { raw: next, smooth: smooth ? next + 1 : null });
      next += smooth ? 2 : 1;
      traces.push(raw);
      if (smooth) traces.push(smooth);
    }
    this.div.classList.remove("empty");
    Plotly.addTraces(this.div, traces);
  }

  /** The x range of a chart whose points all lie at one step (step axis only), or null. */
  stepRange() {
    return this.display.xMode === "step" ? singleStepRange(this.steps) : null;
  }

  /** Keeps a constant chart on a range around its value (and a one-step chart around its
   * step), and frees the axis once values (steps) vary. */
  checkRange(pointsByKey) {
    for (const [key, points] of Object.entries(pointsByKey)) {
      if (!this.matches(key)) continue;
      this.extent = extendExtent(this.extent, points.values);
      this.steps = extendExtent(this.steps, points.steps);
    }
    if (this.xFixed && !this.stepRange()) {
      Plotly.relayout(this.div, { "xaxis.autorange": true });
      this.xFixed = null;
    }
    const range = constantRange(this.extent, this.logY);
    if (range && String(range) !== String(this.fixed)) {
      Plotly.relayout(this.div, { "yaxis.range": range, "yaxis.autorange": false });
    } else if (!range && this.fixed) {
      Plotly.relayout(this.div, { "yaxis.autorange": true });
    }
    this.fixed = range;
  }

  /** Draws (or stops drawing) the chart: an inactive chart only keeps its data. */
  setActive(active) {
    this.active = active;
    if (active && this.dirty) return this.redraw();
    return Promise.resolve();
  }

  /** Removes the chart from the page for good. */
  destroy() {
    this.resizer?.disconnect();
    if (this.drawn) Plotly.purge(this.div);
    this.slot.remove();
  }

  /** Switches the y axis between linear and log. */
  setLogY(logY) {
    this.logY = logY;
    if (this.drawn) this.redraw();
  }

  /** Restyles for a light/dark theme switch. */
  applyTheme(theme) {
    if (this.drawn) Plotly.relayout(this.div, themeRelayout(theme));
  }
}

function wallsOf(series) {
  return series.wall_times || series.steps.map(() => NaN);
}

function copySeries(series) {
  return { steps: series.steps.slice(), values: series.values.slice(),
    walls: wallsOf(series).slice(), smoother: null };
}
