// The run page: loads every view over REST, then keeps them live over one websocket
// (/ws/runs/{id}); points are appended with Plotly.extendTraces in batches, a reconnect
// catches up over REST from the last step seen per key, a "resync" re-reads everything.

import { apiJson } from "./api.js";
import { ChartGroup } from "./charts/chartgroup.js";
import { EvalView } from "./charts/evalview.js";
import { LayerHeatmap } from "./charts/heatmap.js";
import { LengthsView } from "./charts/lengthsview.js";
import { LineChart } from "./charts/linechart.js";
import { WhatIfView } from "./charts/whatifview.js";
import { keysByView, parseKey, summarizeKeys } from "./keys.js";
import { LiveSocket } from "./live.js";
import { renderRunHeader } from "./runheader.js";
import { fetchSeries, groupNewPoints, plotSeries, seriesToPoints } from "./series.js";
import { SnapshotsView } from "./snapshots.js";
import { onThemeChange } from "./theme.js";
import { runIdFromSearch } from "./urls.js";
import { formatAgo } from "./values.js";

const FLUSH_MS = 50;
const HELLO_WAIT_MS = 2000;
const AGO_REFRESH_MS = 5000;
const $ = (selector) => document.querySelector(selector);

function byKind(kind) {
  return (key) => {
    const info = parseKey(key);
    return info.kind === kind ? info.averager : null;
  };
}

function buildViews(runId, page) {
  // [container, id, title, key kind]; drift and relative drift (indices 1, 2) follow the log toggle.
  const specs = [
    ["#norms", "chart-norms", "‖live‖ and ‖shadow‖ (global L2 norm)", "norm"],
    ["#drift-charts", "chart-drift", "drift ‖live − shadow‖", "drift"],
    ["#drift-charts", "chart-rel-drift", "relative drift ‖live − shadow‖ / ‖live‖", "rel_drift"],
    ["#decay", "chart-decay", "decay in effect", "decay"],
    ["#cos-chart", "chart-cos", "cosine(live, shadow)", "cos"],
  ];
  const lines = specs.map(([container, id, title, kind]) =>
    new LineChart($(container), { id, title, traceName: byKind(kind) }));
  const train = new ChartGroup($("#train-charts"), {
    idPrefix: "chart-train-",
    groupOf: (key) => (parseKey(key).kind === "train" ? parseKey(key).name : null),
    traceName: (key) => parseKey(key).name,
    title: (name) => `train/${name}`,
  });
  const evalView = new EvalView($("#eval-charts"), $("#eval-tables"));
  const heatmap = new LayerHeatmap($("#chart-heatmap"), $("#heatmap-averager"), runId);
  const snapshots = new SnapshotsView({
    table: $("#snapshots-table"), averager: $("#export-averager"), metric: $("#export-metric"),
    button: $("#export-best"), note: $("#export-note"),
  }, runId);
  const whatif = new WhatIfView({
    chart: $("#chart-whatif"), bestChart: $("#chart-whatif-best"), metric: $("#whatif-metric"),
    step: $("#whatif-step"), storage: $("#whatif-storage"), note: $("#whatif-note"),
    button: $("#whatif-export"), empty: $("#whatif-empty"),
  }, runId, {
    evalSeries: () => evalView.series,
    decays: () => page.decays,
    averagers: () => page.run?.summary?.averagers || {},
  });
  const lengths = new LengthsView($("#lengths-table"));
  return { lines, train, evalView, heatmap, snapshots, whatif, lengths };
}

class RunPage {
  constructor(runId) {
    this.runId = runId;
    this.decays = {};  // averager -> latest decay/<averager> value
    this.run = null;
    this.views = buildViews(runId, this);
    this.lastStep = {};
    this.pending = [];
    this.flushTimer = null;
    this.ready = false;
    this.loading = null;
    this.loadAgain = false;
    this.loadFailed = false;  // the last load failed (server down): the next hello retries
  }

  async start() {
    let helloSeen;
    const hello = new Promise((resolve) => { helloSeen = resolve; });
    this.socket = new LiveSocket(`/ws/runs/${this.runId}`, {
      indicator: $("#conn"),
      onRefused: (reason) => { helloSeen(); showError(new Error(reason)); },
      onMessage: (message, info) => {
        if (message.type === "hello") helloSeen();
        this.onMessage(message, info);
      },
    });
    this.socket.start();
    // Subscribe first, then read over REST: no point falls between the two.
    await Promise.race([hello, new Promise((resolve) => setTimeout(resolve, HELLO_WAIT_MS))]);
    await this.load();
  }

  /**
   * Reads the run, its keys and every series over REST and draws all views. A load asked
   * for while one runs happens once more after it (its data may predate the request).
   */
  load() {
    if (this.loading) {
      this.loadAgain = true;
      return this.loading;
    }
    const attempt = this.loadOnce().then(
      () => { this.loadFailed = false; },
      (error) => { this.loadFailed = true; throw error; });
    this.loading = attempt.finally(() => {
      this.loading = null;
      if (this.loadAgain) {
        this.loadAgain = false;
        this.load().catch(showError);
      }
    });
    return this.loading;
  }

  async loadOnce() {
    const started = performance.now();
    const elapsed = () => String(Math.round(performance.now() - started));
    this.ready = false;
    document.body.dataset.state = "loading";
    const [run, keyRows] = await Promise.all([
      apiJson(`/api/runs/${this.runId}`), apiJson(`/api/runs/${this.runId}/keys`)]);
    this.setRun(run);
    this.lastStep = Object.fromEntries(keyRows.map((row) => [row.key, row.step]));
    this.noteDecays(keyRows.map((row) => ({ key: row.key, value: row.value })));
    const keys = keyRows.map((row) => row.key);
    const groups = keysByView(keys);
    this.views.train.prepare(groups.map(([view]) => view)
      .filter((view) => view.startsWith("train/")).map((view) => view.slice("train/".length)));
    // One request per view, drawn as soon as it arrives: small series need not wait for
    // the longest one.
    const drawn = new Set();
    await Promise.all(groups.map(async ([view, viewKeys]) => {
      const raw = await fetchSeries(this.runId, viewKeys);
      document.body.dataset.fetchMs = elapsed();
      await this.drawView(view, raw, drawn);
      document.body.dataset.firstChartMs ||= elapsed();
    }));
    await this.drawEmptyViews(drawn);
    document.body.dataset.firstPaintMs = elapsed();
    this.ready = true;
    this.flushSoon();
    const { heatmap, snapshots, whatif } = this.views;
    this.renderLengths();
    await Promise.all([heatmap.setLayers(summarizeKeys(keys).layers), snapshots.load(),
      whatif.load()]);
    $("#error").hidden = true;  // an earlier failure (server down) is over
    document.body.dataset.state = "ready";
  }

  /** Draws one view from its series (REST answer) and notes the charts drawn in `drawn`. */
  drawView(view, raw, drawn) {
    for (const [key, series] of Object.entries(raw)) {
      const last = series.steps[series.steps.length - 1] ?? -1;
      this.lastStep[key] = Math.max(this.lastStep[key] ?? -1, last);
    }
    const plot = plotSeries(raw);
    const { lines, train, evalView } = this.views;
    if (view === "eval") {
      drawn.add(evalView);
      return evalView.render(plot, raw);
    }
    if (view.startsWith("train/")) return train.render(plot);
    const charts = lines.filter((chart) => Object.keys(plot).some((key) => chart.matches(key)));
    charts.forEach((chart) => drawn.add(chart));
    return Promise.all(charts.map((chart) => chart.render(plot)));
  }

  /** Draws the views without data empty, so that live points can extend them later. */
  drawEmptyViews(drawn) {
    const { lines, evalView } = this.views;
    const pending = lines.filter((chart) => !drawn.has(chart)).map((chart) => chart.render({}));
    if (!drawn.has(evalView)) pending.push(evalView.render({}, {}));
    return Promise.all(pending);
  }

  onMessage(message, { reconnected }) {
    if (message.type === "hello") {
      this.setRun(message.run);
      if (reconnected && this.ready) this.catchUp(message.latest).catch(showError);
      // Also after a failed load: a page opened while the server was down (its first
      // socket open is no "reconnect") would otherwise never read its data.
      else if (reconnected || this.loadFailed) this.load().catch(showError);
    } else if (message.type === "points") {
      this.pending.push(...message.points);
      this.flushSoon();
    } else if (message.type === "run") {
      this.setRun(message.run);
    } else if (message.type === "snapshot") {
      this.views.snapshots.add(message.snapshot);
      this.views.whatif.onSnapshot(message.snapshot);
    } else if (message.type === "resync") {
      this.load().catch(showError);
    } else if (message.type === "run_deleted") {
      this.socket.close();
      this.views.snapshots.button.disabled = true;
      showError(new Error("This run was deleted."));
    }
  }

  /** After a reconnect: re-read, from the last step seen, the keys that moved meanwhile. */
  async catchUp(latest) {
    const moved = latest.filter((point) => point.step > (this.lastStep[point.key] ?? -1));
    this.views.heatmap.notify(moved.map((point) => point.key));
    const keys = moved.map((point) => point.key).filter((key) => parseKey(key).kind !== "layer");
    if (keys.length) {
      const minStep = Math.min(...keys.map((key) => (this.lastStep[key] ?? -1) + 1));
      const raw = await fetchSeries(this.runId, keys, { minStep });
      this.pending.push(...seriesToPoints(raw));
      this.flushSoon();
    }
    await this.views.snapshots.load();
  }

  flushSoon() {
    if (this.flushTimer === null) this.flushTimer = setTimeout(() => this.flush(), FLUSH_MS);
  }

  /** Appends every pending point to the views in one batch per chart. */
  flush() {
    this.flushTimer = null;
    if (!this.ready || !this.pending.length) return;
    this.noteDecays(this.pending);
    const raw = groupNewPoints(this.pending, this.lastStep);
    this.pending = [];
    const plot = plotSeries(raw);
    const { lines, train, evalView, heatmap } = this.views;
    for (const chart of lines) chart.append(plot);
    train.append(plot);
    evalView.append(plot, raw);
    this.views.whatif.append(raw);
    this.renderLengths();
    heatmap.notify(Object.keys(raw));
    const step = $("#last-step");
    if (step) step.textContent = String(Math.max(...Object.values(this.lastStep), -1));
    const tooBig = [...lines, ...train.all(), ...evalView.charts()].some((chart) => chart.tooBig);
    if (tooBig) this.load().catch(showError);
  }

  /** Keeps the latest value of every decay/<averager> key among `points` ({key, value}). */
  noteDecays(points) {
    for (const point of points) {
      const info = parseKey(point.key);
      if (info.kind === "decay") this.decays[info.averager] = Number(point.value);
    }
  }

  renderLengths() {
    const described = Object.keys(this.run?.summary?.averagers || {});
    const names = [...new Set([...Object.keys(this.decays), ...described])].sort();
    this.views.lengths.render({ names, decays: this.decays, run: this.run,
      step: Math.max(...Object.values(this.lastStep), -1) });
  }

  setRun(run) {
    this.run = run;
    this.views.evalView.setAveragers(run.summary?.averagers);
    renderRunHeader($("#run-header"), run, Math.max(...Object.values(this.lastStep), -1));
  }

  charts() {
    const { lines, train, evalView, heatmap, whatif } = this.views;
    return [...lines, ...train.all(), ...evalView.charts(), heatmap, whatif];
  }
}

/** Refreshes the "seen … ago" text of the header. */
function refreshLastSeen() {
  const element = $("#last-seen");
  const time = Number(element?.dataset.time);
  if (time) element.textContent = `seen ${formatAgo(time, Date.now() / 1000)}`;
}

function showError(error) {
  const banner = $("#error");
  banner.hidden = false;
  banner.textContent = error.message;
  document.body.dataset.state = "error";
}

function main() {
  let runId;
  try {
    runId = runIdFromSearch(window.location.search);
  } catch (error) {
    showError(error);
    return;
  }
  const page = new RunPage(runId);
  $("#drift-log").addEventListener("change", (event) => {
    for (const chart of page.views.lines.slice(1, 3)) chart.setLogY(event.target.checked);
  });
  onThemeChange((theme) => page.charts().forEach((chart) => chart.applyTheme(theme)));
  setInterval(refreshLastSeen, AGO_REFRESH_MS);
  page.start().catch(showError);
}

main();
