// Pure helpers of the compare page: which chart a key goes to, which keys are drawn by
// default, and the legend name of a run's key.

import { parseKey } from "./keys.js";

const STAT_TITLES = {
  norm: "‖live‖ and ‖shadow‖", drift: "drift ‖live − shadow‖",
  rel_drift: "relative drift ‖live − shadow‖ / ‖live‖", cos: "cosine(live, shadow)",
  decay: "decay in effect",
};

/**
 * The shared chart a key goes to: one per eval metric (every model of every run), one per
 * weight statistic (every averager of every run), and one per key for any other key.
 */
export function compareGroup(key) {
  const info = parseKey(key);
  if (info.kind === "eval") return `eval: ${info.metric}`;
  if (info.kind in STAT_TITLES) return STAT_TITLES[info.kind];
  return key;
}

/** The model (live or averager) a key is about, or null for any other key. */
export function modelOf(key) {
  const info = parseKey(key);
  return info.model || info.averager || null;
}

/** The keys drawn when none are asked for: eval metrics, relative drift and train/loss. */
export function defaultKeys(keys) {
  return keys.filter((key) => {
    const { kind } = parseKey(key);
    return kind === "eval" || kind === "rel_drift" || key === "train/loss";
  });
}

/** Legend name of a key of one run: "<run> · <model>", or "<run>" for a key of no model. */
export function legendName(runName, key) {
  const model = modelOf(key);
  return model ? `${runName} · ${model}` : runName;
}
