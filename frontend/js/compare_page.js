// The compare page: any keys of several runs overlaid on shared charts (one per eval metric,
// one per weight statistic, one per other key; color = model, dash = run), picked from every
// key the runs have, with the run page's smoothing and x axis; live over one websocket per run.

import { apiJson } from "./api.js";
import { LineChart } from "./charts/linechart.js";
import { colorFor } from "./colors.js";
import { compareGroup, defaultKeys, legendName, modelOf } from "./comparekeys.js";
import { DisplaySettings } from "./display.js";
import { keyFilter } from "./filter.js";
import { escapeHtml } from "./html.js";
import { naturalCompare } from "./keys.js";
import { LiveSocket } from "./live.js";
import { fetchSeries, groupNewPoints, plotSeries } from "./series.js";
import { onThemeChange } from "./theme.js";
import { runIdsFromSearch, runPageUrl } from "./urls.js";

const $ = (selector) => document.querySelector(selector);
const DASHES = ["solid", "dash", "dot", "dashdot", "longdash", "longdashdot"];
// A chart's series key is "<run id>\u0000<metric key>": split at the first U+0000 (the run id
// is digits only, so a metric key holding U+0000 still splits right).
const SEP = "\u0000";
const FLUSH_MS = 100;

function seriesKey(runId, key) {
  return `${runId}${SEP}${key}`;
}

function splitKey(composite) {
  const at = composite.indexOf(SEP);
  return [Number(composite.slice(0, at)), composite.slice(at + 1)];
}

class ComparePage {
  constructor(runIds) {
    this.runIds = runIds;
    this.runs = new Map();     // id -> run
    this.keys = new Map();     // id -> Set of its keys
    this.lastStep = new Map(); // id -> {key: last step drawn}
    this.pending = new Map();  // id -> points not drawn yet
    this.charts = new Map();   // group -> LineChart
    this.selected = new Set();
    this.flushTimer = null;
    this.display = new DisplaySettings((composite) => this.timeSpan(composite));
    this.display.bind({ slider: $("#smoothing"), output: $("#smoothing-value"), xMode: $("#x-mode") });
    this.display.onChange(() => this.charts.forEach((chart) => chart.redraw()));
    $("#key-filter").addEventListener("input", () => this.filterChoices());
  }

  timeSpan(composite) {
    const runs = composite === undefined ? [...this.runs.values()]
      : [this.runs.get(splitKey(composite)[0])].filter(Boolean);
    const origin = Math.min(...runs.map((run) => run.created_at));
    const spans = runs.map((run) => Math.max(run.last_seen_at, run.created_at) - run.created_at);
    return { originS: runs.length === 1 ? origin : 0, nowS: Math.max(0, ...spans) };
  }

  async start() {
    document.body.dataset.state = "loading";
    await Promise.all(this.runIds.map(async (id) => {
      const [run, keyRows] = await Promise.all([
        apiJson(`/api/runs/${id}`), apiJson(`/api/runs/${id}/keys`)]);
      this.runs.set(id, run);
      this.keys.set(id, new Set(keyRows.map((row) => row.key)));
      this.lastStep.set(id, {});
      this.pending.set(id, []);
    }));
    $("#compare-title").innerHTML = "Compare " + this.runIds.map((id) =>
      `<a href="${runPageUrl(id)}">${escapeHtml(this.runs.get(id).name)}</a>`).join(", ");
    const all = this.allKeys();
    const asked = new URLSearchParams(window.location.search).getAll("keys");
    const chosen = asked.length ? asked.filter((key) => all.includes(key)) : defaultKeys(all);
    this.renderChoices(all, chosen);
    for (const id of this.runIds) this.listen(id);
    await this.select(chosen);
    if (!this.charts.size) $("#compare-charts").textContent = "Pick keys above to compare them.";
    document.body.dataset.state = "ready";
  }

  allKeys() {
    const keys = new Set();
    for (const set of this.keys.values()) set.forEach((key) => keys.add(key));
    return [...keys].sort(naturalCompare);
  }

  renderChoices(keys, chosen) {
    const list = $("#key-choices");
    list.replaceChildren(...keys.map((key) => {
      const label = document.createElement("label");
      label.dataset.key = key;
      const box = document.createElement("input");
      box.type = "checkbox";
      box.value = key;
      box.checked = chosen.includes(key);
      box.addEventListener("change", () => {
        const next = box.checked ? [...this.selected, key] : [...this.selected].filter((k) => k !== key);
        this.select(next).catch(showError);
      });
      label.append(box, ` ${key}`);
      return label;
    }));
  }

  filterChoices() {
    const match = keyFilter($("#key-filter").value);
    $("#key-filter").setAttribute("aria-invalid", String(match.error !== null));
    $("#key-filter-note").textContent = match.error || "";
    for (const label of $("#key-choices").children) label.hidden = !match.test(label.dataset.key);
  }

  /** Draws exactly the keys `keys` (reading the series of the ones not drawn yet). */
  async select(keys) {
    const added = keys.filter((key) => !this.selected.has(key));
    this.selected = new Set(keys);
    const url = new URL(window.location.href);
    url.searchParams.delete("keys");
    for (const key of keys) url.searchParams.append("keys", key);
    history.replaceState(null, "", url);
    for (const [group, chart] of this.charts) {
      if (!keys.some((key) => compareGroup(key) === group)) {
        chart.destroy();
        this.charts.delete(group);
      }
    }
    if ($("#compare-charts").firstChild?.nodeType === Node.TEXT_NODE) $("#compare-charts").replaceChildren();
    await Promise.all(this.runIds.map(async (id) => {
      const wanted = added.filter((key) => this.keys.get(id).has(key));
      if (!wanted.length) return;
      const raw = await fetchSeries(id, wanted);
      const last = this.lastStep.get(id);
      const plot = {};
      for (const [key, series] of Object.entries(plotSeries(raw))) {
        last[key] = series.steps.at(-1) ?? -1;
        plot[seriesKey(id, key)] = series;
      }
      this.chartsFor(Object.keys(plot)).forEach((chart) => chart.append(plot));
    }));
    // Charts keep their series across selections: drop those of keys no longer selected,
    // and draw the rest run by run (in the page's order), key by key.
    const order = (composite) => {
      const [id, key] = splitKey(composite);
      return [this.runIds.indexOf(id), key];
    };
    for (const chart of this.charts.values()) {
      const kept = [...chart.series].filter(([c]) => this.selected.has(splitKey(c)[1]));
      kept.sort(([a], [b]) => {
        const [ra, ka] = order(a);
        const [rb, kb] = order(b);
        return ra - rb || naturalCompare(ka, kb);
      });
      chart.series = new Map(kept);
      chart.redraw();
    }
  }

  /** The charts of these series keys, created (empty, drawn) when missing. */
  chartsFor(composites) {
    const groups = new Set(composites.map((c) => compareGroup(splitKey(c)[1])));
    return [...groups].sort().map((group) => {
      let chart = this.charts.get(group);
      if (!chart) {
        chart = new LineChart($("#compare-charts"), {
          id: `compare-${this.charts.size}`, title: group, display: this.display,
          markers: group.startsWith("eval: "),
          traceName: (c) => (compareGroup(splitKey(c)[1]) === group && this.selected.has(splitKey(c)[1])
            ? legendName(this.runs.get(splitKey(c)[0]).name, splitKey(c)[1]) : null),
          styleOf: (c) => this.styleOf(c),
        });
        chart.render({});
        this.charts.set(group, chart);
      }
      return chart;
    });
  }

  /** Color by model (or by run for a key of no model), dash by run. */
  styleOf(composite) {
    const [id, key] = splitKey(composite);
    const index = this.runIds.indexOf(id);
    const model = modelOf(key);
    return { color: colorFor(model ?? this.runs.get(id).name), dash: DASHES[index % DASHES.length] };
  }

  listen(id) {
    const socket = new LiveSocket(`/ws/runs/${id}`, {
      onMessage: (message) => {
        if (message.type === "points") {
          this.pending.get(id).push(...message.points);
          this.flushSoon();
        } else if (message.type === "run" || message.type === "hello") {
          this.runs.set(id, message.run);
        }
      },
    });
    socket.start();
  }

  flushSoon() {
    if (this.flushTimer === null) this.flushTimer = setTimeout(() => this.flush(), FLUSH_MS);
  }

  flush() {
    this.flushTimer = null;
    for (const id of this.runIds) {
      const points = this.pending.get(id).filter((p) => this.selected.has(p.key));
      this.pending.set(id, []);
      if (!points.length) continue;
      const raw = groupNewPoints(points, this.lastStep.get(id));
      const plot = {};
      for (const [key, series] of Object.entries(plotSeries(raw))) plot[seriesKey(id, key)] = series;
      this.chartsFor(Object.keys(plot)).forEach((chart) => chart.append(plot));
    }
  }
}

function showError(error) {
  $("#error").hidden = false;
  $("#error").textContent = error.message;
  document.body.dataset.state = "error";
}

function main() {
  let runIds;
  try {
    runIds = runIdsFromSearch(window.location.search);
  } catch (error) {
    showError(error);
    return;
  }
  const page = new ComparePage(runIds);
  onThemeChange((theme) => page.charts.forEach((chart) => chart.applyTheme(theme)));
  page.start().catch(showError);
}

main();
