// The run page's first requests, sent before the rest of the page loads: run.html runs this
// small module (`async`, its few imports preloaded) as soon as it arrives. It takes the run
// and its keys (asked for by run.html's inline script before any module loaded), sends each
// line view's series in its own request, and only then loads the rest of the page (~30
// modules, which would otherwise hold the browser's 6 connections to the server) and lets
// Plotly.js (preloaded) evaluate: its script holds the main thread, which the requests must
// not wait behind. run_page.js takes over these requests (`firstLoad`) and subscribes to the
// run's websocket; a point written between these reads and its hello is caught up from the
// hello.

import { apiJson } from "./api.js";
import { keysByView } from "./keys.js";
import { loadPlotly } from "./plotly.js";
import { fetchSeries } from "./series.js";
import { runIdFromSearch } from "./urls.js";

/**
 * Sends the requests of a run page's load: the run, its keys with their latest points, then
 * one request per line view (keys.js `keysByView`).
 * @param {number} runId
 * @param {{run: Promise<Response|null>, keys: Promise<Response|null>}|null} sent the run
 *   and keys requests already sent (run.html's inline script), or null.
 * @returns {{run: Promise<object>, keyRows: Promise<object[]>,
 *   fetches: Promise<Array<[string, Promise<object>]>>}} `fetches` resolves once every
 *   series request is sent, to [view, series by key] pairs (series.js `fetchSeries`).
 */
export function requestLoad(runId, sent = null) {
  const options = { priority: "high" };  // before the page's modules (run.html)
  // An answer the page's inline script asked for (`sent`, a promise of a Response or null)
  // when it is a 200; else asked for now, through api.js.
  const read = (path, response) => (response || Promise.resolve(null)).then((answer) =>
    answer?.ok ? answer.json() : apiJson(path, options));
  const run = read(`/api/runs/${runId}`, sent?.run);
  const keyRows = read(`/api/runs/${runId}/keys`, sent?.keys);
  const fetches = keyRows.then((rows) => keysByView(rows.map((row) => row.key))
    .map(([view, keys]) => [view, quiet(fetchSeries(runId, keys, options))]));
  return { run: quiet(run), keyRows: quiet(keyRows), fetches: quiet(fetches) };
}

/** `promise` itself, marked handled: the page reads it later (a rejection is shown then). */
function quiet(promise) {
  promise.catch(() => {});
  return promise;
}

/** This page's first load, requested at once; null when the page's URL holds no valid run id
 * (run_page.js says why). */
export const firstLoad = startFirstLoad();
(firstLoad ? firstLoad.fetches.catch(() => null) : Promise.resolve()).then(loadPage);

/** Loads the rest of the page: its modules (run.html's template of preloads) and run_page.js. */
function loadPage() {
  const modules = document.getElementById("page-modules");
  if (modules) document.head.append(modules.content.cloneNode(true));
  return import("./run_page.js");
}

function startFirstLoad() {
  let runId;
  try {
    runId = runIdFromSearch(window.location.search);
  } catch {
    return null;
  }
  performance.mark("emaboard:requests");
  const sent = window.emaboardFirstRequests;
  const load = requestLoad(runId, sent?.id === runId ? sent : null);
  // Plotly evaluates once the series requests are out (or failed): the answers need it.
  load.fetches.then(() => performance.mark("emaboard:series-requests"), () => {});
  load.plotly = quiet(load.fetches.catch(() => null).then(loadPlotly));
  return load;
}
