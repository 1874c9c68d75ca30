// Effective length of an EMA, the JavaScript twin of ema_core/effective_length.py (a test
// feeds both the same numbers): half-life, σ_rel of a constant decay, the constant decay
// with the width of a σ_rel. Width = standard deviation of the averaged weights' age:
// k·√β/(1−β) steps for a constant β applied every k steps, σ_rel·t for an EDM2 power profile.

/** Largest σ_rel (the uniform average): √(1/12). */
export const SIGMA_REL_MAX = Math.sqrt(1 / 12);

/** Constant β whose EMA has the width of the σ_rel profile at step t (updates every k). */
export function sigmaRelToDecay(sigmaRel, t, k = 1) {
  const s = (sigmaRel * t) / k;
  const u = (2 * s) / (Math.sqrt(1 + 4 * s * s) + 1);
  return u * u;
}

/** σ_rel of a constant-β EMA (updated every k steps) read at step t: k·√β/(1−β)/t. */
export function decayToSigmaRel(decay, t, k = 1) {
  return (k * Math.sqrt(decay)) / (1 - decay) / t;
}

/** Steps after which a constant-β EMA's weight on a state has halved: k·ln 2/(−ln β). */
export function decayHalfLife(decay, k = 1) {
  return (k * Math.LN2) / -Math.log(decay);
}

/** σ_rel of the EDM2 power exponent γ: √((γ+1)/((γ+2)²(γ+3))). */
export function gammaToSigmaRel(gamma) {
  return Math.sqrt((gamma + 1) / ((gamma + 2) ** 2 * (gamma + 3)));
}

/** σ_rel named by a power-EMA averager (`ema_sigma_rel_0.05`, `ema_gamma_6.94`), or null. */
export function sigmaRelOfName(name) {
  let match = /^ema_sigma_rel_([0-9.e+-]+)$/.exec(name);
  if (match) return Number(match[1]);
  match = /^ema_gamma_([0-9.e+-]+)$/.exec(name);
  return match ? gammaToSigmaRel(Number(match[1])) : null;
}

/**
 * One averager's effective length at step t.
 * @param {{name: string, decay: (number|null), updateEvery: number, batchSize: (number|null),
 *   t: number, kind?: string}} spec
 * @returns {{sigmaRel: (number|null), decay: (number|null), halfLifeSteps: (number|null),
 *   halfLifeSamples: (number|null), power: boolean}} a power EMA's decay is the constant
 *   equivalent at t; null where it cannot be said (SWA, no decay yet).
 */
export function effectiveLength({ name, decay, updateEvery, batchSize, t, kind = "ema" }) {
  const k = updateEvery || 1;
  const power = sigmaRelOfName(name);
  let sigmaRel = null;
  let beta = null;
  if (power !== null && t > 0) {
    sigmaRel = power;
    beta = sigmaRelToDecay(power, t, k);
  } else if (kind !== "swa" && decay !== null && decay > 0 && decay < 1 && t > 0) {
    beta = decay;
    sigmaRel = decayToSigmaRel(decay, t, k);
  }
  const halfLifeSteps = beta === null ? null : decayHalfLife(beta, k);
  return {
    sigmaRel, decay: beta, halfLifeSteps, power: power !== null,
    halfLifeSamples: halfLifeSteps === null || !batchSize ? null : halfLifeSteps * batchSize,
  };
}
