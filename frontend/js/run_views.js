// The run page's views, one module each, built on the page's elements. A view that follows
// the run itself (header, tags, config, …) goes in `runViews` and gets `setRun(run, step)`.

import { LineChart } from "./charts/linechart.js";
import { EvalView } from "./charts/evalview.js";
import { LayerHeatmap } from "./charts/heatmap.js";
import { LengthsView } from "./charts/lengthsview.js";
import { ScalarPanels } from "./charts/scalarpanels.js";
import { WhatIfView } from "./charts/whatifview.js";
import { ConfigView } from "./configview.js";
import { DeleteRunView } from "./deleterun.js";
import { DisplaySettings } from "./display.js";
import { HealthView } from "./healthview.js";
import { parseKey } from "./keys.js";
import { renderRunHeader } from "./runheader.js";
import { SnapshotsView } from "./snapshots.js";
import { TagsView } from "./tagsview.js";
import { getToken } from "./token.js";
import { exportPointsUrl, exportRunUrl, withToken } from "./urls.js";

const $ = (selector) => document.querySelector(selector);

function byKind(kind) {
  return (key) => {
    const info = parseKey(key);
    return info.kind === kind ? info.averager : null;
  };
}

/** The run header (title, status, last step, last seen). */
class HeaderView {
  setRun(run, lastStep) {
    renderRunHeader($("#run-header"), run, lastStep);
  }
}

/**
 * Builds every view of the run page.
 * @param {number} runId
 * @param {{run: object|null, decays: object}} page the page, whose `run` and latest decays
 *   the views read when they need them.
 */
export function buildViews(runId, page) {
  const display = new DisplaySettings(() => ({
    originS: page.run?.created_at ?? 0,
    nowS: Math.max(page.run?.last_seen_at ?? 0, page.run?.created_at ?? 0),
  }));
  display.bind({ slider: $("#smoothing"), output: $("#smoothing-value"), xMode: $("#x-mode") });
  const exportUrl = (keys, format) => exportPointsUrl(runId, keys, format);
  const chartOptions = { display, exportUrl };
  // [container, id, title, key kind]; drift and relative drift (indices 1, 2) follow the log toggle.
  const specs = [
    ["#norms", "chart-norms", "‖live‖ and ‖shadow‖ (global L2 norm)", "norm"],
    ["#drift-charts", "chart-drift", "drift ‖live − shadow‖", "drift"],
    ["#drift-charts", "chart-rel-drift", "relative drift ‖live − shadow‖ / ‖live‖", "rel_drift"],
    ["#decay", "chart-decay", "decay in effect", "decay"],
    ["#cos-chart", "chart-cos", "cosine(live, shadow)", "cos"],
  ];
  const lines = specs.map(([container, id, title, kind]) =>
    new LineChart($(container), { id, title, traceName: byKind(kind), ...chartOptions }));
  const scalars = new ScalarPanels($("#scalar-panels"), {
    filter: $("#scalar-filter"), note: $("#scalar-filter-note"), ...chartOptions,
  });
  const evalView = new EvalView($("#eval-charts"), $("#eval-tables"), chartOptions);
  const heatmap = new LayerHeatmap($("#chart-heatmap"), $("#heatmap-averager"), runId);
  const snapshots = new SnapshotsView({
    table: $("#snapshots-table"), averager: $("#export-averager"), metric: $("#export-metric"),
    button: $("#export-best"), note: $("#export-note"),
  }, runId);
  const zip = $("#export-run");
  zip.href = exportRunUrl(runId);
  zip.addEventListener("click", () => { zip.href = withToken(exportRunUrl(runId), getToken()); });
  const deleter = new DeleteRunView({ button: $("#delete-run"), dialog: $("#delete-dialog") }, runId);
  const tags = new TagsView({
    list: $("#tag-list"), edit: $("#edit-tags"), form: $("#tags-form"), input: $("#tags-input"),
    error: $("#tags-error"),
  }, runId);
  const config = new ConfigView({
    search: $("#config-search"), note: $("#config-search-note"), config: $("#config-table"),
    summary: $("#summary-table"),
  });
  const health = new HealthView({ section: $("#sec-health"), list: $("#health-list") });
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
  const runViews = [new HeaderView(), tags, config, deleter];
  return { display, lines, scalars, evalView, heatmap, snapshots, health, whatif, lengths,
    runViews };
}
