// Pure URL builders for the REST API, the websockets and the pages (docs/api.md).

/**
 * A same-origin path with a query string; array values repeat the parameter
 * (`keys=a&keys=b`), null/undefined values are left out.
 */
export function withQuery(path, params = {}) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value === null || value === undefined || value === "") continue;
    for (const item of Array.isArray(value) ? value : [value]) query.append(name, String(item));
  }
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

/** `/api/runs/{id}/metrics?...` for the given keys and/or prefix, step range and max_points. */
export function metricsUrl(runId, { keys, prefix, minStep, maxStep, maxPoints } = {}) {
  return withQuery(`/api/runs/${runId}/metrics`, {
    keys, prefix, min_step: minStep, max_step: maxStep, max_points: maxPoints,
  });
}

/** Adds `token=` to a URL for a download link or a websocket (no headers there). */
export function withToken(url, token) {
  if (!token) return url;
  return url + (url.includes("?") ? "&" : "?") + `token=${encodeURIComponent(token)}`;
}

/** `/api/runs/{id}/snapshots/best?averager=&metric=&mode=` (the file itself). */
export function bestSnapshotUrl(runId, { averager, metric, mode }) {
  return withQuery(`/api/runs/${runId}/snapshots/best`, { averager, metric, mode });
}

/** ws:// or wss:// URL on the page's own host for a websocket path such as `/ws/runs/3`. */
export function websocketUrl(location, path, params = {}) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${withQuery(path, params)}`;
}

/** The run page of a run. */
export function runPageUrl(runId) {
  return `/run.html?id=${encodeURIComponent(runId)}`;
}

/** The compare page of several runs. */
export function comparePageUrl(runIds) {
  return `/compare.html?ids=${runIds.map(encodeURIComponent).join(",")}`;
}

/**
 * The run id from a page's query string (`?id=3`).
 * @throws {Error} when it is missing or not a non-negative integer.
 */
export function runIdFromSearch(search) {
  const raw = new URLSearchParams(search).get("id");
  if (raw === null || !/^\d+$/.test(raw)) {
    throw new Error(`Invalid run id ${JSON.stringify(raw)}: open this page as /run.html?id=<run id>`);
  }
  return Number(raw);
}

/**
 * The run ids from a compare page's query string (`?ids=1,2`).
 * @throws {Error} when one is not a non-negative integer or none is given.
 */
export function runIdsFromSearch(search) {
  const raw = new URLSearchParams(search).get("ids") || "";
  const parts = raw.split(",").filter((part) => part !== "");
  const bad = parts.find((part) => !/^\d+$/.test(part));
  if (bad !== undefined || parts.length === 0) {
    throw new Error(`Invalid run ids ${JSON.stringify(raw)}: open this page as /compare.html?ids=1,2`);
  }
  return parts.map(Number);
}

/** `/api/runs/{id}/export/points?keys=…&format=csv|json`: series at full resolution. */
export function exportPointsUrl(runId, keys, format) {
  return withQuery(`/api/runs/${runId}/export/points`, { keys, format });
}

/** `/api/runs/{id}/export`: the whole run as a zip (points CSV, config JSON, snapshot list). */
export function exportRunUrl(runId) {
  return `/api/runs/${runId}/export`;
}
