// The "What-if decay" panel: the eval metric of the EMA rebuilt for each σ_rel (posthoc/...
// points) at a step, where the tracked averagers and the live model sit, how the best σ_rel
// moved over training, the run's post-hoc storage, and "Export this EMA", which downloads
// GET /api/runs/{id}/posthoc/file?sigma_rel=&step= (synthesised by the server).

import { apiJson } from "../api.js";
import { sigmaRelToDecay, decayHalfLife } from "../effective_length.js";
import { escapeHtml } from "../html.js";
import { autoResize, chartTheme } from "../theme.js";
import { downloadFile } from "../token.js";
import { metricsUrl, withQuery } from "../urls.js";
import { formatBytes, formatValue } from "../values.js";
import {
  absorbPosthoc, bestFigure, bestOf, bestOverTime, curveAt, trackedMarks, valueAt, whatifFigure,
  whatifSteps,
} from "../whatif.js";

const PLOT_CONFIG = { responsive: true, displaylogo: false };
const STORAGE_REFRESH_MS = 2000;

export class WhatIfView {
  /**
   * @param {Object<string, HTMLElement>} elements chart, bestChart, metric, step, storage,
   *   note, button, empty.
   * @param {number} runId
   * @param {{evalSeries: () => Object, decays: () => Object, averagers: () => Object}} context
   *   the eval series (metric -> model -> series), latest decays and the run's averagers.
   */
  constructor(elements, runId, context) {
    Object.assign(this, elements, { runId, context });
    this.table = {};
    this.listing = null;
    this.selected = null;  // {sigma, value} picked by a click, else the best
    this.pinnedStep = false;
    this.storageTimer = null;
    autoResize(this.chart);
    autoResize(this.bestChart);
    this.metric.addEventListener("change", () => { this.selected = null; this.fillSteps(); });
    this.step.addEventListener("change", () => {
      this.pinnedStep = this.step.value !== this.step.options[this.step.options.length - 1]?.value;
      this.selected = null;
      this.render();
    });
    this.button.addEventListener("click", () => this.exportSelected());
  }

  /** Reads every posthoc point and the storage over REST and draws. */
  async load() {
    this.table = {};
    const raw = await apiJson(metricsUrl(this.runId, { prefix: "posthoc/", maxPoints: 100000 }));
    absorbPosthoc(this.table, raw.series);
    await this.loadStorage();
    this.fillMetrics();
  }

  async loadStorage() {
    this.listing = await apiJson(`/api/runs/${this.runId}/posthoc`);
    const { storage, steps, sigma_rels: tracked } = this.listing;
    const budget = storage.budget_bytes ? ` of a ${formatBytes(storage.budget_bytes)} budget` : "";
    const over = storage.over_budget ? " — over budget: nothing more can be thinned" : "";
    this.storage.textContent = steps.length
      ? `${this.listing.snapshots.length} post-hoc snapshots (σ_rel ${tracked.join(", ")}) at `
        + `${steps.length} steps: ${formatBytes(storage.posthoc_bytes)}${budget}${over}; all `
        + `snapshots of this run: ${formatBytes(storage.snapshot_bytes)}`
      : "No post-hoc snapshots stored (watch a PostHocEMA with the Monitor).";
    this.storage.classList.toggle("warn", storage.over_budget);
  }

  /** New points from the websocket (any keys; posthoc ones are taken). */
  append(rawByKey) {
    if (absorbPosthoc(this.table, rawByKey)) this.fillMetrics();
    else if (this.drawn) this.render();  // eval or decay points move the marks
  }

  /** A snapshot announced on the websocket: a post-hoc one changes the storage line. */
  onSnapshot(snapshot) {
    if (snapshot.kind !== "posthoc" || this.storageTimer !== null) return;
    this.storageTimer = setTimeout(() => {
      this.storageTimer = null;
      this.loadStorage().catch(() => {});  // the next snapshot tries again
    }, STORAGE_REFRESH_MS);
  }

  fillMetrics() {
    const metrics = Object.keys(this.table).sort();
    const current = this.metric.value;
    this.metric.replaceChildren(...metrics.map((name) => new Option(name, name)));
    const preferred = metrics.find((m) => /acc/i.test(m)) || metrics[0];
    this.metric.value = metrics.includes(current) ? current : (preferred || "");
    this.fillSteps();
  }

  fillSteps() {
    const steps = whatifSteps(this.table, this.metric.value);
    const current = this.step.value;
    this.step.replaceChildren(...steps.map((s) => new Option(String(s), String(s))));
    const last = steps.length ? String(steps[steps.length - 1]) : "";
    this.step.value = this.pinnedStep && steps.map(String).includes(current) ? current : last;
    this.render();
  }

  render() {
    const metric = this.metric.value;
    const step = Number(this.step.value);
    const curve = metric ? curveAt(this.table, metric, step) : [];
    this.empty.hidden = curve.length > 0;
    this.chart.hidden = this.bestChart.hidden = curve.length === 0;
    this.button.disabled = curve.length === 0;
    if (!curve.length) {
      this.note.textContent = "";
      return Promise.resolve();
    }
    const best = bestOf(curve, metric);
    const selected = (this.selected && curve.find((p) => p.sigma === this.selected.sigma)) || best;
    const evalByModel = this.context.evalSeries()[metric] || {};
    const figure = whatifFigure({
      curve, step, metric, selected, theme: chartTheme(),
      marks: trackedMarks({ evalByModel, step, decays: this.context.decays(),
        averagers: this.context.averagers() }),
      live: valueAt(evalByModel.live, step),
    });
    const best2 = bestFigure({ best: bestOverTime(this.table, metric), metric, theme: chartTheme() });
    this.describe(selected, best, step, metric);
    return Promise.all([Plotly.react(this.chart, figure.data, figure.layout, PLOT_CONFIG),
      Plotly.react(this.bestChart, best2.data, best2.layout, PLOT_CONFIG)]).then(() => {
      if (!this.drawn) this.chart.on("plotly_click", (event) => this.onClick(event));
      this.drawn = true;
      this.chart.dataset.points = String(curve.length);
      this.chart.dataset.selected = String(selected.sigma);
    });
  }

  onClick(event) {
    const point = event.points.find((p) => p.curveNumber === 0);
    if (!point) return;
    this.selected = { sigma: point.x, value: point.y };
    this.render();
  }

  describe(selected, best, step, metric) {
    const beta = sigmaRelToDecay(selected.sigma, step);
    const stored = (this.listing?.steps || []).some((s) => s.step === step);
    this.button.disabled = !stored;
    this.button.dataset.sigmaRel = String(selected.sigma);
    this.button.dataset.step = String(step);
    this.note.innerHTML = `<strong>σ_rel ${selected.sigma}</strong> at step ${step}: ${escapeHtml(
      metric)} ${formatValue(selected.value)}${selected === best ? " (best)" : ""}; as a constant`
      + ` decay β ≈ ${beta.toFixed(6)} (half-life ${Math.round(decayHalfLife(beta))} steps).`
      + (stored ? "" : " Its snapshots are no longer stored (thinned): nothing to export.");
    if (stored) this.describeSolution(selected.sigma, step);
  }

  /** Appends how well the server can rebuild this σ_rel (residual, warnings). */
  async describeSolution(sigma, step) {
    try {
      const url = withQuery(`/api/runs/${this.runId}/posthoc/solve`, { sigma_rel: sigma, step });
      const solution = await apiJson(url);
      if (this.button.dataset.sigmaRel !== String(sigma)) return;  // another pick meanwhile
      const span = document.createElement("span");
      span.className = solution.ill_posed.length ? "warn" : "muted";
      span.textContent = ` Rebuilt from ${solution.coefficients.length} snapshots, profile error `
        + `${(100 * solution.residual).toFixed(2)} %, Σ|coef| ${solution.sum_abs.toFixed(2)}`
        + (solution.ill_posed.length ? `; ill-posed: ${solution.ill_posed.join("; ")}` : ".");
      this.note.append(span);
    } catch (error) {
      this.note.append(` (${error.message})`);
    }
  }

  /** Downloads the checkpoint of the selected σ_rel at the shown step. */
  exportSelected() {
    const url = withQuery(`/api/runs/${this.runId}/posthoc/file`, {
      sigma_rel: this.button.dataset.sigmaRel, step: this.button.dataset.step });
    downloadFile(url);
  }

  applyTheme() {
    if (this.drawn) this.render();
  }
}
