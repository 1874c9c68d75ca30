// A live line chart: one trace per matching metric key, first drawn with Plotly.react and
// then grown with Plotly.extendTraces (never a full redraw per message).

import { lineLayout, lineTrace } from "../figures.js";
import { autoResize, chartTheme, themeRelayout, webglAvailable } from "../theme.js";

/** Above this many points in one trace the chart asks for a downsampled REST re-read. */
export const MAX_TRACE_POINTS = 4000;
const PLOT_CONFIG = { responsive: true, displaylogo: false };
const GL = webglAvailable();

export class LineChart {
  /**
   * @param {HTMLElement} container where the chart's <div> goes.
   * @param {{id: string, title: string, yTitle?: string, logY?: boolean, markers?: boolean,
   *   traceName: (key: string) => (string|null)}} spec traceName says whether a key
   *   belongs to this chart (non-null) and under which legend name.
   */
  constructor(container, { id, title, yTitle = "", logY = false, markers = false, traceName }) {
    this.div = document.createElement("div");
    this.div.id = id;
    this.div.className = "chart";
    this.div.setAttribute("role", "img");
    this.div.setAttribute("aria-label", title);
    container.append(this.div);
    autoResize(this.div);
    Object.assign(this, { title, yTitle, logY, markers, traceName });
    this.keys = [];          // trace index -> metric key
    this.counts = [];        // trace index -> number of points drawn
    this.drawn = false;
    this.tooBig = false;     // set when a trace outgrew MAX_TRACE_POINTS
  }

  /** True when `key` is drawn (or would be) by this chart. */
  matches(key) {
    return this.traceName(key) !== null;
  }

  /**
   * Draws the chart from scratch (first load or resync).
   * @param {Object<string, {steps: number[], values: (number|null)[]}>} seriesByKey
   *   any keys; those not matching are ignored.
   */
  render(seriesByKey) {
    const keys = Object.keys(seriesByKey).filter((key) => this.matches(key));
    keys.sort((a, b) => this.traceName(a).localeCompare(this.traceName(b), "en", { numeric: true }));
    this.keys = keys;
    this.counts = keys.map((key) => seriesByKey[key].steps.length);
    const traces = keys.map((key) => this.trace(key, seriesByKey[key]));
    const { title, yTitle, logY } = this;
    const layout = lineLayout({ title, yTitle, logY, theme: chartTheme() });
    this.tooBig = false;
    this.drawn = true;
    this.div.classList.toggle("empty", keys.length === 0);
    return Plotly.react(this.div, traces, layout, PLOT_CONFIG);
  }

  trace(key, series) {
    return lineTrace({
      name: this.traceName(key), steps: series.steps, values: series.values,
      glAvailable: GL, markers: this.markers,
    });
  }

  /**
   * Appends new points: extendTraces for keys already drawn, addTraces for new ones.
   * @param {Object<string, {steps: number[], values: (number|null)[]}>} pointsByKey
   */
  append(pointsByKey) {
    if (!this.drawn) return;
    const indices = [];
    const update = { x: [], y: [] };
    for (const [key, points] of Object.entries(pointsByKey)) {
      if (!this.matches(key)) continue;
      const index = this.keys.indexOf(key);
      if (index === -1) {
        this.keys.push(key);
        this.counts.push(points.steps.length);
        this.div.classList.remove("empty");
        Plotly.addTraces(this.div, this.trace(key, points));
        continue;
      }
      indices.push(index);
      update.x.push(points.steps);
      update.y.push(points.values);
      this.counts[index] += points.steps.length;
      if (this.counts[index] > MAX_TRACE_POINTS) this.tooBig = true;
    }
    if (indices.length) Plotly.extendTraces(this.div, update, indices);
  }

  /** Switches the y axis between linear and log. */
  setLogY(logY) {
    this.logY = logY;
    if (this.drawn) Plotly.relayout(this.div, { "yaxis.type": logY ? "log" : "linear" });
  }

  /** Restyles for a light/dark theme switch. */
  applyTheme(theme) {
    if (this.drawn) Plotly.relayout(this.div, themeRelayout(theme));
  }
}
