// Pure helpers of the runs page: which runs the filters keep, and the filters in the URL.

/** The filters the runs page offers besides the project (the websocket's own filter). */
export const FILTER_PARAMS = ["tag", "status", "q"];

/**
 * The runs that pass every filter: holding `tag`, with `status`, whose name contains `q`
 * (case-insensitive); an empty filter keeps every run.
 * @param {Array<{name: string, status: string, tags?: string[]}>} runs
 * @param {{tag?: string, status?: string, q?: string}} filters
 */
export function filterRuns(runs, { tag = "", status = "", q = "" } = {}) {
  const needle = q.trim().toLowerCase();
  return runs.filter((run) => (!tag || (run.tags || []).includes(tag))
    && (!status || run.status === status)
    && (!needle || run.name.toLowerCase().includes(needle)));
}

/** Every tag of `runs`, sorted. */
export function allTags(runs) {
  return [...new Set(runs.flatMap((run) => run.tags || []))].sort();
}

/** The filters read from a query string ("?project=p&tag=t&q=res"). */
export function filtersFromSearch(search) {
  const params = new URLSearchParams(search);
  return Object.fromEntries(["project", ...FILTER_PARAMS].map((name) => [name, params.get(name) || ""]));
}

/** A query string holding the non-empty filters, in a fixed order. */
export function searchOfFilters(filters) {
  const params = new URLSearchParams();
  for (const name of ["project", ...FILTER_PARAMS]) if (filters[name]) params.set(name, filters[name]);
  const text = params.toString();
  return text ? `?${text}` : "";
}
