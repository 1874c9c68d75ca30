// The compare page: the eval metrics, relative drift and train loss of several runs on
// shared charts (one trace per run and model). Read over REST; "Refresh" re-reads.

import { apiJson } from "./api.js";
import { colorFor, lineLayout, lineTrace } from "./figures.js";
import { escapeHtml } from "./html.js";
import { parseKey } from "./keys.js";
import { fetchSeries, plotSeries } from "./series.js";
import { autoResize, chartTheme, onThemeChange, themeRelayout, webglAvailable } from "./theme.js";
import { runIdsFromSearch, runPageUrl } from "./urls.js";

const $ = (selector) => document.querySelector(selector);
const GL = webglAvailable();
const DASHES = ["solid", "dash", "dot", "dashdot"];

/** The shared chart a key goes to on the compare page, or null. */
export function compareGroup(key) {
  const info = parseKey(key);
  if (info.kind === "eval") return `eval: ${info.metric}`;
  if (info.kind === "rel_drift") return "relative drift ‖live − shadow‖ / ‖live‖";
  if (info.kind === "train" && info.name === "loss") return "train/loss";
  return null;
}

function modelOf(key) {
  const info = parseKey(key);
  return info.model || info.averager || info.name;
}

/** Legend name of a key of one run: "<run> · <model>". */
function legendName(run, key) {
  return `${run.name} · ${modelOf(key)}`;
}

async function loadRun(runId) {
  const [run, keyRows] = await Promise.all([
    apiJson(`/api/runs/${runId}`), apiJson(`/api/runs/${runId}/keys`)]);
  const keys = keyRows.map((row) => row.key).filter((key) => compareGroup(key) !== null);
  return { run, series: plotSeries(await fetchSeries(runId, keys)) };
}

async function render(runIds) {
  document.body.dataset.state = "loading";
  const loaded = await Promise.all(runIds.map(loadRun));
  $("#compare-title").innerHTML = "Compare " + loaded.map(({ run }) =>
    `<a href="${runPageUrl(run.id)}">${escapeHtml(run.name)}</a>`).join(", ");
  const groups = new Map();
  loaded.forEach(({ run, series }, runIndex) => {
    for (const [key, data] of Object.entries(series)) {
      const group = compareGroup(key);
      if (!groups.has(group)) groups.set(group, []);
      const trace = lineTrace({
        name: legendName(run, key), steps: data.steps, values: data.values,
        color: colorFor(modelOf(key)), glAvailable: GL, markers: parseKey(key).kind === "eval",
      });
      trace.line.dash = DASHES[runIndex % DASHES.length];  // one dash style per run
      groups.get(group).push(trace);
    }
  });
  const container = $("#compare-charts");
  container.replaceChildren();
  for (const [title, traces] of [...groups].sort()) {
    const div = document.createElement("div");
    div.className = "chart";
    div.setAttribute("role", "img");
    div.setAttribute("aria-label", title);
    container.append(div);
    autoResize(div);
    const layout = lineLayout({ title, theme: chartTheme() });
    await Plotly.react(div, traces, layout, { responsive: true, displaylogo: false });
  }
  if (!groups.size) container.textContent = "These runs have no eval metrics, drift or loss yet.";
  document.body.dataset.state = "ready";
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
  $("#refresh").addEventListener("click", () => render(runIds).catch(showError));
  onThemeChange((theme) => {
    for (const div of document.querySelectorAll(".chart")) Plotly.relayout(div, themeRelayout(theme));
  });
  render(runIds).catch(showError);
}

main();
