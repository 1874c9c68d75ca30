// Every logged scalar that no dedicated view draws (train/*, custom keys such as "lr" and
// "val/acc", the HF callback's hf/*): one chart per key, in collapsible
// panels grouped by key prefix (keys.js panelOf), with a regular-expression filter over the
// key names as TensorBoard's. Charts of a closed panel or filtered out are not drawn.

import { keyFilter } from "../filter.js";
import { naturalCompare, panelOf, viewOf } from "../keys.js";
import { LineChart } from "./linechart.js";

const CLOSED_KEY = "emaboard-closed-panels";

/** True when the scalar panels draw `key`. */
export function isScalarKey(key) {
  return viewOf(key)?.startsWith("scalars:") ?? false;
}

/** A chart id for a key, unique in the document: "chart-train-loss" for "train/loss". */
function chartId(key) {
  const base = `chart-${key.replace(/\//g, "-").replace(/[^A-Za-z0-9_.-]/g, "_")}`;
  let id = base;
  for (let n = 2; document.getElementById(id); n++) id = `${base}-${n}`;
  return id;
}

function closedPanels() {
  try {
    return new Set(JSON.parse(localStorage.getItem(CLOSED_KEY) || "[]"));
  } catch {
    return new Set();
  }
}

export class ScalarPanels {
  /**
   * @param {HTMLElement} container
   * @param {{filter: HTMLInputElement, note: HTMLElement, display: object,
   *   exportUrl: (keys: string[], format: string) => string}} options
   */
  constructor(container, { filter, note, display, exportUrl }) {
    Object.assign(this, { container, filter, note, display, exportUrl });
    this.panels = new Map();   // panel name -> {details, grid, count}
    this.charts = new Map();   // key -> LineChart
    this.match = keyFilter("");
    filter.addEventListener("input", () => this.setFilter(filter.value));
  }

  /** The chart of `key`, created (with its panel) in sorted order when new. */
  chartFor(key) {
    let chart = this.charts.get(key);
    if (chart) return chart;
    const panel = this.panelFor(panelOf(key));
    const name = key.slice(key.lastIndexOf("/") + 1);
    chart = new LineChart(panel.grid, {
      id: chartId(key), title: key, traceName: (k) => (k === key ? name : null),
      display: this.display, exportUrl: this.exportUrl, active: false,
    });
    chart.div.dataset.key = key;
    chart.slot.dataset.key = key;
    const after = [...panel.grid.children].find((slot) => naturalCompare(slot.dataset.key, key) > 0);
    if (after) panel.grid.insertBefore(chart.slot, after);
    this.charts.set(key, chart);
    this.refresh(key);
    return chart;
  }

  panelFor(name) {
    let panel = this.panels.get(name);
    if (panel) return panel;
    const details = document.createElement("details");
    details.className = "scalar-panel";
    details.dataset.panel = name;
    details.open = !closedPanels().has(name);
    details.innerHTML = `<summary><span class="panel-name"></span> <span class="muted count"></span></summary>
      <div class="grid2 panel-charts"></div>`;
    details.querySelector(".panel-name").textContent = name;
    panel = { details, grid: details.querySelector(".panel-charts"), count: details.querySelector(".count") };
    details.addEventListener("toggle", () => this.onToggle(name, details.open));
    const after = [...this.container.children].find((el) => naturalCompare(el.dataset.panel, name) > 0);
    this.container.insertBefore(details, after || null);
    this.panels.set(name, panel);
    this.container.classList.remove("empty");
    return panel;
  }

  onToggle(name, open) {
    const closed = closedPanels();
    if (open) closed.delete(name);
    else closed.add(name);
    localStorage.setItem(CLOSED_KEY, JSON.stringify([...closed]));
    this.refresh();
  }

  /** Creates the charts of `keys` (drawn when their data come) in sorted order. */
  prepare(keys) {
    for (const key of keys.filter(isScalarKey).sort(naturalCompare)) this.chartFor(key);
  }

  /** Draws the scalar keys of `seriesByKey` from scratch. */
  render(seriesByKey) {
    const keys = Object.keys(seriesByKey).filter(isScalarKey);
    return Promise.all(keys.map((key) => this.chartFor(key).render({ [key]: seriesByKey[key] })));
  }

  /** Appends points; a key seen for the first time gets its chart (and panel). */
  append(pointsByKey) {
    for (const [key, points] of Object.entries(pointsByKey)) {
      if (!isScalarKey(key)) continue;
      const known = this.charts.has(key);
      const chart = this.chartFor(key);
      if (known) chart.append({ [key]: points });
      else chart.render({ [key]: points });
    }
  }

  setFilter(text) {
    this.match = keyFilter(text.trim());
    this.filter.setAttribute("aria-invalid", String(this.match.error !== null));
    this.note.textContent = this.match.error || "";
    this.refresh();
  }

  /** Shows, hides and (de)activates charts and panels after a filter, toggle or new key. */
  refresh(onlyKey = null) {
    for (const [name, panel] of this.panels) {
      let shown = 0;
      let total = 0;
      for (const [key, chart] of this.charts) {
        if (panelOf(key) !== name) continue;
        const visible = this.match.test(key);
        total += 1;
        shown += visible ? 1 : 0;
        if (onlyKey !== null && key !== onlyKey) continue;
        chart.slot.hidden = !visible;
        chart.setActive(visible && panel.details.open);
      }
      panel.details.hidden = shown === 0;
      panel.count.textContent = shown === total ? `${total}` : `${shown} of ${total}`;
    }
  }

  /** Every chart, in panel and key order. */
  all() {
    return [...this.charts.values()];
  }
}
