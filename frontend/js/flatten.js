// Pure helpers for a run's config and summary: nested objects flattened into dotted keys
// (W&B's config table), values written as they were logged.

/**
 * The leaves of a JSON object as [dotted key, value] pairs, in key order: nested objects are
 * walked ("optimizer.lr"), arrays and scalars are leaves.
 * @param {object} object parsed JSON.
 * @param {string} prefix prepended to every key (with a dot), e.g. "config".
 * @returns {Array<[string, any]>}
 */
export function flattenObject(object, prefix = "") {
  const out = [];
  const walk = (value, path, root) => {
    if (value !== null && typeof value === "object" && !Array.isArray(value)) {
      const keys = Object.keys(value);
      if (!keys.length && !root) out.push([path, value]);  // an empty object is a leaf
      for (const key of keys) walk(value[key], path ? `${path}.${key}` : key, false);
    } else {
      out.push([path, value]);
    }
  };
  walk(object ?? {}, prefix, true);
  return out;
}

/**
 * A config or summary value as text: strings as they are (the API's "NaN", "Infinity"
 * included), numbers in JavaScript's shortest exact form, arrays and objects as compact JSON.
 */
export function formatConfigValue(value) {
  if (typeof value === "string") return value;
  if (value === undefined) return "";
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

/**
 * The flattened leaves of several runs, for table columns: every dotted key that some run
 * has under `config.` or `summary.`, sorted, config first.
 * @param {Array<{config: object, summary: object}>} runs
 * @returns {string[]} e.g. ["config.lr", "config.optimizer.name", "summary.primary_metric"].
 */
export function runFieldKeys(runs) {
  const keys = new Set();
  for (const run of runs) {
    for (const [key] of flattenObject(run.config, "config")) keys.add(key);
    for (const [key] of flattenObject(run.summary, "summary")) keys.add(key);
  }
  return [...keys].sort((a, b) => (a.startsWith("config.") === b.startsWith("config.")
    ? a.localeCompare(b, "en", { numeric: true }) : a.startsWith("config.") ? -1 : 1));
}

/** The value of a dotted field key ("config.optimizer.lr") in a run, or undefined. */
export function runField(run, key) {
  const [root, ...path] = key.split(".");
  let value = run[root];
  // Keys may hold dots themselves: try the longest remaining key first at each level.
  let rest = path;
  while (rest.length) {
    if (value === null || typeof value !== "object") return undefined;
    let found = false;
    for (let n = rest.length; n >= 1; n--) {
      const key = rest.slice(0, n).join(".");
      if (Object.hasOwn(value, key)) {
        value = value[key];
        rest = rest.slice(n);
        found = true;
        break;
      }
    }
    if (!found) return undefined;
  }
  return value;
}
