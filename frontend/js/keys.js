// Pure helpers for metric keys: which chart a key belongs to, which averagers, layers and
// eval metrics a run has, and which direction is "better". The grammar is the one of
// ema_core/metric_keys.py (its docstring lists the keys); tests/frontend feeds the same keys
// to both parsers. The "s" flag lets "." take every character, as re.DOTALL does there.

const LAYER_RE = /^layer\/(.+)\/rel_drift\/([^/]+)$/s;
const WEIGHTS_RE = /^weights\/(norm|drift|rel_drift|cos)\/([^/]+)$/s;
const EVAL_RE = /^eval\/([^/]+)\/(.+)$/s;
const DECAY_RE = /^decay\/([^/]+)$/s;
const BN_RECOMPUTED_RE = /^bn_recomputed\/([^/]+)$/s;
const TRAIN_RE = /^train\/(.+)$/s;
const POSTHOC_RE = /^posthoc\/([^/]+)\/(.+)$/s;

/**
 * What a metric key means (ema_core.metric_keys.parse_key).
 * @returns {{kind: string, averager?: string, layer?: string, model?: string, metric?: string,
 *   name?: string, sigmaRel?: string}} kind is one of norm, drift, rel_drift, cos, layer,
 *   eval, decay, bn_recomputed, train, posthoc, other; `weights/norm/live` has averager "live".
 */
export function parseKey(key) {
  let match = LAYER_RE.exec(key);
  if (match) return { kind: "layer", layer: match[1], averager: match[2] };
  match = WEIGHTS_RE.exec(key);
  if (match) return { kind: match[1], averager: match[2] };
  match = EVAL_RE.exec(key);
  if (match) return { kind: "eval", model: match[1], metric: match[2] };
  match = DECAY_RE.exec(key);
  if (match) return { kind: "decay", averager: match[1] };
  match = BN_RECOMPUTED_RE.exec(key);
  if (match) return { kind: "bn_recomputed", averager: match[1] };
  match = TRAIN_RE.exec(key);
  if (match) return { kind: "train", name: match[1] };
  match = POSTHOC_RE.exec(key);
  if (match) return { kind: "posthoc", sigmaRel: match[1], metric: match[2] };
  return { kind: "other", name: key };
}

/** Model names in display order: "live" first, then the averagers sorted by name. */
export function sortModels(names) {
  const unique = [...new Set(names)];
  return unique.sort((a, b) => (a === "live" ? -1 : b === "live" ? 1 : a.localeCompare(b)));
}

/**
 * What a run has, from its key list (`GET /api/runs/{id}/keys`, or any list of keys).
 * @returns {{averagers: string[], layers: Object<string, string[]>, evalMetrics: string[],
 *   evalModels: string[], trainNames: string[]}} layers maps an averager to its layer paths
 *   in natural order ("block2" before "block10").
 */
export function summarizeKeys(keys) {
  const averagers = new Set();
  const layers = {};
  const evalMetrics = new Set();
  const evalModels = new Set();
  const trainNames = new Set();
  for (const key of keys) {
    const info = parseKey(key);
    if (info.kind === "layer") {
      (layers[info.averager] ||= []).push(info.layer);
      averagers.add(info.averager);
    } else if (["norm", "drift", "rel_drift", "cos", "decay"].includes(info.kind)) {
      if (info.averager !== "live") averagers.add(info.averager);
    } else if (info.kind === "eval") {
      evalMetrics.add(info.metric);
      evalModels.add(info.model);
    } else if (info.kind === "train") {
      trainNames.add(info.name);
    }
  }
  for (const paths of Object.values(layers)) paths.sort(naturalCompare);
  return {
    averagers: sortModels([...averagers]),
    layers,
    evalMetrics: [...evalMetrics].sort(),
    evalModels: sortModels([...evalModels]),
    trainNames: [...trainNames].sort(),
  };
}

/**
 * True when a lower value of this metric is better: its name contains "loss" or "error", in
 * any case (ema_core.metric_keys.lower_is_better, which the server uses).
 */
export function lowerIsBetter(metric) {
  return /loss|error/i.test(metric);
}

/** The key of one layer's relative drift for one averager. */
export function layerKey(layer, averager) {
  return `layer/${layer}/rel_drift/${averager}`;
}

/** Compares strings with their digit runs as numbers: "block2" < "block10". */
export function naturalCompare(a, b) {
  return a.localeCompare(b, "en", { numeric: true });
}

const LINE_KINDS = ["norm", "drift", "rel_drift", "cos", "decay"];

/** The panel of the scalar views a key is drawn in: the part before its last "/" ("train"
 * for "train/loss", "val" for "val/acc"), or "scalars" for a key without one ("lr"). */
export function panelOf(key) {
  const slash = key.lastIndexOf("/");
  return slash > 0 ? key.slice(0, slash) : "scalars";
}

/**
 * The view of the run page that draws a key, used to read each view's series in its own
 * request: "norm", "drift", "rel_drift", "cos", "decay", "eval", "scalars:<panel>" for every
 * other scalar (train/*, custom keys), or null for the keys of views that read their own:
 * layer keys (the heatmap) and post-hoc evaluations (the What-if panel).
 */
export function viewOf(key) {
  const info = parseKey(key);
  if (LINE_KINDS.includes(info.kind)) return info.kind;
  if (info.kind === "eval") return "eval";
  if (info.kind === "layer" || info.kind === "posthoc") return null;
  return `scalars:${panelOf(key)}`;
}

/** The keys each view draws, as [view, keys] pairs sorted by view; null views left out. */
export function keysByView(keys) {
  const groups = new Map();
  for (const key of keys) {
    const view = viewOf(key);
    if (view === null) continue;
    if (!groups.has(view)) groups.set(view, []);
    groups.get(view).push(key);
  }
  return [...groups].sort(([a], [b]) => a.localeCompare(b));
}
