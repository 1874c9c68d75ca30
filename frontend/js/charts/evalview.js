// Eval metrics, the "dual-model" view: per metric one chart with live vs each EMA vs SWA,
// and a table of each model's best value and step and how far it is ahead of live.

import { colorFor, evalTable } from "../figures.js";
import { escapeHtml, swatch } from "../html.js";
import { parseKey } from "../keys.js";
import { formatValue, toNumber } from "../values.js";
import { ChartGroup } from "./chartgroup.js";

export class EvalView {
  /**
   * @param {HTMLElement} chartsEl @param {HTMLElement} tablesEl
   * @param {{display?: object, exportUrl?: Function}} chartOptions for each LineChart.
   */
  constructor(chartsEl, tablesEl, chartOptions = {}) {
    this.tablesEl = tablesEl;
    this.series = {}; // metric -> model -> {steps, values} (raw numbers, NaN kept)
    this.averagers = {}; // the run summary's averagers: which hold no average yet
    this.group = new ChartGroup(chartsEl, {
      idPrefix: "chart-eval-",
      groupOf: (key) => (parseKey(key).kind === "eval" ? parseKey(key).metric : null),
      traceName: (key) => parseKey(key).model,
      title: (metric) => `eval: ${metric}`,
      markers: true,
      ...chartOptions,
    });
  }

  /** Draws charts and tables from scratch. `rawByKey` holds API series (raw values). */
  render(plotByKey, rawByKey) {
    this.series = {};
    this.absorb(rawByKey);
    this.renderTables();
    return this.group.render(plotByKey);
  }

  /** Appends new points to charts and tables. */
  append(plotByKey, rawByKey) {
    this.group.append(plotByKey);
    if (this.absorb(rawByKey)) this.renderTables();
  }

  absorb(rawByKey) {
    let changed = false;
    for (const [key, series] of Object.entries(rawByKey)) {
      const info = parseKey(key);
      if (info.kind !== "eval") continue;
      const byModel = (this.series[info.metric] ||= {});
      const target = (byModel[info.model] ||= { steps: [], values: [] });
      target.steps.push(...series.steps);
      target.values.push(...series.values.map(toNumber));
      changed = true;
    }
    return changed;
  }

  /** Takes the run summary's `averagers` (from the run, on load and on every run message). */
  setAveragers(averagers) {
    const next = averagers || {};
    if (JSON.stringify(next) === JSON.stringify(this.averagers)) return;
    this.averagers = next;
    if (Object.keys(this.series).length) this.renderTables();
  }

  renderTables() {
    const metrics = Object.keys(this.series).sort();
    this.tablesEl.replaceChildren(...metrics.map(
      (m) => tableElement(evalTable(m, this.series[m], this.averagers))));
    if (!metrics.length) this.tablesEl.textContent = "No eval metrics yet.";
  }

  charts() {
    return this.group.all();
  }
}

function tableElement(table) {
  const element = document.createElement("table");
  element.className = "eval-table";
  element.dataset.metric = table.metric;
  const direction = table.lowerIsBetter ? "lower is better" : "higher is better";
  element.innerHTML = `<caption>${escapeHtml(table.metric)} <span class="muted">(${direction})</span></caption>
    <thead><tr><th scope="col">model</th><th scope="col">best</th><th scope="col">at step</th>
    <th scope="col">latest</th><th scope="col">ahead of live by</th></tr></thead><tbody></tbody>`;
  const body = element.querySelector("tbody");
  for (const row of table.rows) {
    const tr = document.createElement("tr");
    tr.dataset.model = row.model;
    if (row.model === table.winner) tr.className = "winner";
    if (row.notAveraged) tr.className = "not-averaged";
    const ahead = row.notAveraged ? "not averaged yet"
      : row.aheadOfLive === null ? "—" : signed(row.aheadOfLive);
    const cells = [row.best === null ? "—" : formatValue(row.best), row.bestStep ?? "—",
      row.latest === null ? "—" : formatValue(row.latest), ahead];
    tr.innerHTML = `<th scope="row">${swatch(colorFor(row.model))}${escapeHtml(row.model)}</th>`
      + cells.map((cell, i) => `<td class="c${i}">${escapeHtml(String(cell))}</td>`).join("");
    body.append(tr);
  }
  return element;
}

function signed(value) {
  return value > 0 ? `+${formatValue(value)}` : formatValue(value);
}
