// TensorBoard's scalar smoothing, which W&B copies: a debiased exponential moving average of
// the points as drawn (tensorboard/components/vz_line_chart2/line-chart.ts, resmoothDataset):
//   last ← w·last + (1 − w)·v,  smoothed = last / (1 − wⁿ)   (n finite values so far).
// Dividing by 1 − wⁿ removes the pull towards 0 of the first points (the same debiasing as
// Adam's). Non-finite values (gaps) stay gaps and do not count.

/** The largest smoothing weight the slider offers (w = 1 would freeze the first value). */
export const MAX_SMOOTHING = 0.999;

/** The incremental form, for points appended live: push values in step order. */
export class Smoother {
  /**
   * @param {number} weight 0 ≤ w < 1; 0 returns every value unchanged.
   * @throws {Error} for a weight outside [0, 1).
   */
  constructor(weight) {
    if (!(weight >= 0 && weight < 1)) {
      throw new Error(`Invalid smoothing ${weight}: expected 0 <= smoothing < 1`);
    }
    this.weight = weight;
    this.last = 0;
    this.count = 0;
  }

  /** The smoothed value at the next point; null (a gap) for a missing/non-finite value. */
  push(value) {
    if (value === null || !Number.isFinite(value)) return null;
    const w = this.weight;
    this.last = this.last * w + (1 - w) * value;
    this.count += 1;
    return this.last / (1 - w ** this.count);
  }
}

/**
 * A whole series smoothed.
 * @param {(number|null)[]} values in step order.
 * @param {number} weight 0 ≤ w < 1.
 * @returns {{values: (number|null)[], smoother: Smoother}} the smoother continues the series.
 */
export function smoothSeries(values, weight) {
  const smoother = new Smoother(weight);
  return { values: values.map((value) => smoother.push(value)), smoother };
}
