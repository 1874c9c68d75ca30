// The run page: loads every view over REST, then keeps them live over one websocket
// (/ws/runs/{id}); points are appended with Plotly.extendTraces in batches, a reconnect
// catches up over REST from the last step seen per key, a "resync" re-reads everything.
// The views are built in run_views.js; this module runs the load and the live updates.

import { firstLoad, requestLoad } from "./first_load.js";
import { parseKey, summarizeKeys } from "./keys.js";
import { LiveSocket } from "./live.js";
import { buildViews } from "./run_views.js";
import { fetchSeries, groupNewPoints, plotSeries, seriesToPoints } from "./series.js";
import { onThemeChange } from "./theme.js";
import { runIdFromSearch } from "./urls.js";
import { formatAgo } from "./values.js";

const FLUSH_MS = 50;
const AGO_REFRESH_MS = 5000;
const $ = (selector) => document.querySelector(selector);

/** A User Timing mark, from navigation start, set once per page (bench/first_paint.py). */
function markOnce(name) {
  if (!performance.getEntriesByName(name).length) performance.mark(name);
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
    // The first requests were sent by first_load.js before this module graph had loaded;
    // Plotly.js evaluates once they are out. Subscribing afterwards loses nothing: the
    // hello's latest point of each key tells which keys moved after those reads.
    this.plotly = firstLoad.plotly;
    this.plotly.then(() => markOnce("emaboard:plotly"), showError);
    this.socket = new LiveSocket(`/ws/runs/${this.runId}`, {
      indicator: $("#conn"),
      onRefused: (reason) => showError(new Error(reason)),
      onMessage: (message, info) => {
        if (message.type === "hello") markOnce("emaboard:hello");
        this.onMessage(message, info);
      },
    });
    this.socket.start();
    await this.load(firstLoad);
  }

  /**
   * Reads the run, its keys and every series over REST and draws all views. A load asked
   * for while one runs happens once more after it (its data may predate the request).
   */
  load(requests = null) {
    if (this.loading) {
      this.loadAgain = true;
      return this.loading;
    }
    const attempt = this.loadOnce(requests || requestLoad(this.runId)).then(
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

  /** @param {object} requests first_load.js `requestLoad`: the run, keys, series read. */
  async loadOnce(requests) {
    this.ready = false;
    this.helloDuringLoad = null;
    document.body.dataset.state = "loading";
    const [run, keyRows, fetches] = await Promise.all(
      [requests.run, requests.keyRows, requests.fetches]);
    this.setRun(run);
    this.lastStep = Object.fromEntries(keyRows.map((row) => [row.key, row.step]));
    this.noteDecays(keyRows.map((row) => ({ key: row.key, value: row.value })));
    const keys = keyRows.map((row) => row.key);
    const { scalars, heatmap, snapshots, health, whatif } = this.views;
    scalars.prepare(keys);
    health.reset();
    // Each line view's series come in their own request and are drawn as soon as they
    // arrive: small series need not wait for the longest one. The heatmap's layer requests
    // (the server's costliest after the long series) go out once every line series has
    // arrived, so that they do not share the server's cores with the first chart's; the
    // snapshot table reads in parallel (one cheap request).
    const side = Promise.all([
      Promise.allSettled(fetches.map(([, fetched]) => fetched))
        .then(() => heatmap.setLayers(summarizeKeys(keys).layers)),
      snapshots.load(), this.plotly.then(() => whatif.load())]);
    const drawn = new Set();
    const lineViews = Promise.all(fetches.map(async ([view, fetched]) => {
      const raw = await fetched;
      markOnce("emaboard:first-data");
      await this.drawView(view, raw, drawn);
      markOnce("emaboard:first-chart");
    }));
    await lineViews;
    await this.drawEmptyViews(drawn);
    markOnce("emaboard:line-charts");
    this.ready = true;
    this.flushSoon();
    this.renderLengths();
    await side;
    $("#error").hidden = true;  // an earlier failure (server down) is over
    markOnce("emaboard:all-views");
    document.body.dataset.state = "ready";
    // The socket's hello came while the REST reads ran: catch up what moved since them.
    const hello = this.helloDuringLoad;
    this.helloDuringLoad = null;
    if (hello) {
      this.setRun(hello.run);
      await this.catchUp(hello.latest);
    }
  }

  /** Draws one view from its series (REST answer) and notes the charts drawn in `drawn`. */
  async drawView(view, raw, drawn) {
    await this.plotly;
    for (const [key, series] of Object.entries(raw)) {
      const last = series.steps[series.steps.length - 1] ?? -1;
      this.lastStep[key] = Math.max(this.lastStep[key] ?? -1, last);
    }
    const plot = plotSeries(raw);
    const { lines, scalars, evalView, health } = this.views;
    health.absorb(raw, this.lastStepSeen());
    if (view === "eval") {
      drawn.add(evalView);
      return evalView.render(plot, raw);
    }
    if (view.startsWith("scalars:")) return scalars.render(plot);
    const charts = lines.filter((chart) => Object.keys(plot).some((key) => chart.matches(key)));
    charts.forEach((chart) => drawn.add(chart));
    return Promise.all(charts.map((chart) => chart.render(plot)));
  }

  /** Draws the views without data empty, so that live points can extend them later. */
  async drawEmptyViews(drawn) {
    await this.plotly;
    const { lines, evalView } = this.views;
    const pending = lines.filter((chart) => !drawn.has(chart)).map((chart) => chart.render({}));
    if (!drawn.has(evalView)) pending.push(evalView.render({}, {}));
    return Promise.all(pending);
  }

  onMessage(message, { reconnected }) {
    if (message.type === "hello") {
      // Read before this subscription: what moved since the reads is read again. A hello
      // during a load is caught up at its end (this.lastStep is that load's).
      if (this.loading) this.helloDuringLoad = message;
      else if (this.ready) {
        this.setRun(message.run);
        this.catchUp(message.latest).catch(showError);
      }
      // After a failed load: a page opened while the server was down (its first socket
      // open is no "reconnect") would otherwise never read its data.
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
      this.stop("This run was deleted.");
    }
  }

  /** The run is gone: no more updates, no more actions on it. */
  stop(reason) {
    this.socket.close();
    for (const control of document.querySelectorAll(".run-action")) control.disabled = true;
    this.views.snapshots.button.disabled = true;
    showError(new Error(reason));
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
    const { lines, scalars, evalView, heatmap, health } = this.views;
    for (const chart of lines) chart.append(plot);
    scalars.append(plot);
    evalView.append(plot, raw);
    this.views.whatif.append(raw);
    this.renderLengths();
    heatmap.notify(Object.keys(raw));
    health.absorb(raw, this.lastStepSeen());
    const step = $("#last-step");
    if (step) step.textContent = String(this.lastStepSeen());
    if (this.charts().some((chart) => chart.tooBig)) this.load().catch(showError);
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
      step: this.lastStepSeen() });
  }

  lastStepSeen() {
    return Math.max(...Object.values(this.lastStep), this.run?.last_step ?? -1, -1);
  }

  setRun(run) {
    this.run = run;
    this.views.evalView.setAveragers(run.summary?.averagers);
    for (const view of this.views.runViews) view.setRun(run, this.lastStepSeen());
  }

  /** Every line chart (the heatmap draws itself). */
  charts() {
    const { lines, scalars, evalView } = this.views;
    return [...lines, ...scalars.all(), ...evalView.charts()];
  }

  /** Redraws every line chart (after a smoothing or x-axis change). */
  redrawCharts() {
    return Promise.all(this.charts().map((chart) => chart.redraw()));
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
  markOnce("emaboard:start");
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
  page.views.display.onChange(() => page.redrawCharts().catch(showError));
  onThemeChange((theme) => [...page.charts(), page.views.heatmap, page.views.whatif]
    .forEach((chart) => chart.applyTheme(theme)));
  setInterval(refreshLastSeen, AGO_REFRESH_MS);
  page.start().catch(showError);
}

main();
