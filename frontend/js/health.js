// Averaging health: warnings computed from the streamed statistics, each naming its cause and
// its remedy. Pure: `healthWarnings(series, lastStep)` takes the series the page holds.

import { decayHalfLife } from "./effective_length.js";
import { parseKey } from "./keys.js";
import { formatValue, toNumber } from "./values.js";

/** Stats steps in a row with drift 0 (while the live weights move) before warning. */
export const STUCK_STEPS = 3;

const fmt = (n) => Math.round(n).toLocaleString("en-US");


/**
 * The weight the shadow still gives the initial weights: ∏ β over the steps run, with each
 * logged decay held until the next stats step (exact for a constant decay: β^(t+1)).
 * @param {{steps: number[], values: number[]}} decay the decay/<averager> series.
 */
export function initialShare(decay) {
  let logShare = 0;
  let previous = -1;
  decay.steps.forEach((step, i) => {
    const beta = decay.values[i];
    if (Number.isFinite(beta) && beta > 0) logShare += Math.log(Math.min(beta, 1)) * (step - previous);
    previous = step;
  });
  return Math.exp(logShare);
}

function numbers(series) {
  return { steps: series.steps, values: series.values.map(toNumber) };
}

/**
 * A shadow whose drift has been exactly 0 for at least its last STUCK_STEPS stats steps while
 * ‖live‖ changed: it moves with the live weights instead of averaging them.
 */
function stuckDrift(averager, drift, liveNorm, decay) {
  let first = drift.values.length;  // the start of the trailing run of exact zeros
  while (first > 0 && drift.values[first - 1] === 0) first -= 1;
  if (drift.values.length - first < STUCK_STEPS || !liveNorm) return null;
  const from = drift.steps[first];
  const norms = liveNorm.values.filter((v, i) => liveNorm.steps[i] >= from && Number.isFinite(v));
  if (norms.length < 2) return null;
  // Decay 0 all along: the averager copies the live weights on purpose (before its
  // update_after_step): drift 0 is expected then.
  const decays = decay ? decay.values.filter((v, i) => decay.steps[i] >= from) : [];
  if (decays.length && decays.every((v) => v === 0)) return null;
  const [lo, hi] = [Math.min(...norms), Math.max(...norms)];
  if (!(hi - lo > 1e-9 * Math.max(Math.abs(hi), 1e-30))) return null;
  return {
    id: "drift-stuck", averager, severity: "error",
    title: `${averager} does not average: its drift has been 0 since step ${fmt(from)}`,
    cause: `‖live − ${averager}‖ was exactly 0 at the last ${drift.values.length - first} stats steps while `
      + `‖live‖ moved from ${formatValue(lo)} to ${formatValue(hi)}: the shadow follows the live `
      + "weights step by step. Usual causes: the averager holds the model's own tensors "
      + "(parameters re-bound after it was built — model.to(device), torch.compile, "
      + "load_state_dict(assign=True) — with an averager that does not re-bind), or a decay "
      + `of 0 (see decay/${averager}).`,
    remedy: "Build the averager after the model is final (moved to its device, weights "
      + "loaded, compiled), or update ema_core (it re-binds moved parameters on every "
      + "update); use a decay above 0.",
  };
}

/** An EMA whose half-life is longer than the steps run so far. */
function longHalfLife(averager, decay, lastStep) {
  const n = decay.steps.length;
  if (!n || averager.startsWith("swa")) return null;
  const beta = decay.values[n - 1];
  const halfLife = beta > 0 ? decayHalfLife(Math.min(beta, 1)) : 0;  // in steps (k = 1)
  const steps = lastStep + 1;
  if (!(halfLife > steps)) return null;
  const share = initialShare(decay);
  const target = Math.max(steps / 4, 1);  // a half-life of a quarter of the run so far
  const smaller = 0.5 ** (1 / target);
  return {
    id: "half-life", averager, severity: "warning",
    title: `${averager} still mostly holds the initial weights`,
    cause: `Its decay ${formatValue(beta)} has a half-life of ${fmt(halfLife)} steps, `
      + `longer than the ${fmt(steps)} steps run so far: the initial weights still make up `
      + `about ${Math.round(100 * share)} % of the shadow, so its drift and its evaluations `
      + "describe the initialisation more than an average of training.",
    remedy: `Compare it only after ~${fmt(halfLife)} steps, or warm the decay up `
      + "(EMA(..., use_warmup=True), or the EDM2 power schedule), or use a smaller decay "
      + `(β = ${formatValue(smaller)} has a half-life of ${fmt(target)} steps).`,
  };
}

/** An SWA evaluated while its BatchNorm statistics were not recomputed for its weights. */
function staleBatchNorm(averager, flags, evalSteps) {
  const n = flags.steps.length;
  if (!n || flags.values[n - 1] !== 0) return null;
  const step = flags.steps[n - 1];
  if (!evalSteps.has(step)) return null;
  return {
    id: "bn-stale", averager, severity: "error",
    title: `${averager} was evaluated with stale BatchNorm statistics (step ${fmt(step)})`,
    cause: `At step ${fmt(step)} ${averager} was evaluated before its BatchNorm running `
      + "means and variances were recomputed: the averaged weights never produced the "
      + "statistics it carries (averages, or copies, of the live model's), so its "
      + "evaluations can be far off, usually too low.",
    remedy: `Call ${averager}.update_bn(train_loader, model) after the last `
      + `${averager}.update() and before evaluating (one pass over training batches, as `
      + "torch.optim.swa_utils.update_bn).",
  };
}

/**
 * The warnings for a run.
 * @param {Object<string, {steps: number[], values: any[]}>} series every series the page holds
 *   (raw API values), by key.
 * @param {number} lastStep the run's last step.
 * @returns {Array<{id: string, averager: string, severity: string, title: string,
 *   cause: string, remedy: string}>} by averager, then rule.
 */
export function healthWarnings(series, lastStep) {
  const byKind = {};
  const evalSteps = {};
  for (const [key, raw] of Object.entries(series)) {
    const info = parseKey(key);
    if (info.kind === "eval") {
      const steps = (evalSteps[info.model] ||= new Set());
      raw.steps.forEach((step) => steps.add(step));
    } else if (["drift", "decay", "bn_recomputed"].includes(info.kind)) {
      (byKind[info.kind] ||= {})[info.averager] = numbers(raw);
    }
  }
  const liveNorm = series["weights/norm/live"] && numbers(series["weights/norm/live"]);
  const warnings = [];
  for (const [averager, drift] of Object.entries(byKind.drift || {})) {
    warnings.push(stuckDrift(averager, drift, liveNorm, byKind.decay?.[averager]));
  }
  for (const [averager, decay] of Object.entries(byKind.decay || {})) {
    warnings.push(longHalfLife(averager, decay, lastStep));
  }
  for (const [averager, flags] of Object.entries(byKind.bn_recomputed || {})) {
    warnings.push(staleBatchNorm(averager, flags, evalSteps[averager] || new Set()));
  }
  return warnings.filter(Boolean)
    .sort((a, b) => a.averager.localeCompare(b.averager) || a.id.localeCompare(b.id));
}
