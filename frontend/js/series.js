// Reading series over REST (downsampled by the server) and reshaping them for the views.

import { apiJson } from "./api.js";
import { metricsUrl } from "./urls.js";
import { plotValue } from "./values.js";

/** At most this many points per trace, downsampled by the server (docs/api.md). */
export const MAX_POINTS = 2000;
const KEYS_PER_REQUEST = 60;

/**
 * The series of `keys` (several requests of at most 60 keys, in parallel).
 * @param {number} runId
 * @param {string[]} keys
 * @param {{minStep?: number, maxPoints?: number, priority?: string}} options priority:
 *   fetch()'s ("high", "low", "auto").
 * @returns {Promise<Object<string, {steps: number[], values: any[], wall_times: number[]}>>}
 */
export async function fetchSeries(runId, keys, { minStep, maxPoints = MAX_POINTS, priority } = {}) {
  const chunks = [];
  for (let i = 0; i < keys.length; i += KEYS_PER_REQUEST) {
    chunks.push(keys.slice(i, i + KEYS_PER_REQUEST));
  }
  const answers = await Promise.all(chunks.map((chunk) =>
    apiJson(metricsUrl(runId, { keys: chunk, minStep, maxPoints }), priority ? { priority } : {})));
  return Object.assign({}, ...answers.map((answer) => answer.series));
}

/** Series with plot-ready values (non-finite -> null), same keys, wall times kept. */
export function plotSeries(rawByKey) {
  const out = {};
  for (const [key, series] of Object.entries(rawByKey)) {
    out[key] = { steps: series.steps, values: series.values.map(plotValue),
      wall_times: series.wall_times };
  }
  return out;
}

/**
 * Groups points by key, keeping only steps after `lastStep[key]` (a point seen twice, e.g.
 * over the websocket and in a REST catch-up, is drawn once), and advances `lastStep`.
 * @param {Array<{key: string, step: number, value: any, wall_time?: number}>} points
 * @param {Object<string, number>} lastStep mutated.
 * @returns {Object<string, {steps: number[], values: any[], wall_times: number[]}>} raw
 *   values, steps ascending (a missing wall time is NaN).
 */
export function groupNewPoints(points, lastStep) {
  const sorted = points.slice().sort((a, b) => a.step - b.step);
  const out = {};
  for (const { key, step, value, wall_time: wallTime } of sorted) {
    if (step <= (lastStep[key] ?? -1)) continue;
    lastStep[key] = step;
    const series = (out[key] ||= { steps: [], values: [], wall_times: [] });
    series.steps.push(step);
    series.values.push(value);
    series.wall_times.push(wallTime ?? NaN);
  }
  return out;
}

/** Flattens {key: {steps, values, wall_times}} into [{key, step, value, wall_time}]. */
export function seriesToPoints(seriesByKey) {
  const points = [];
  for (const [key, series] of Object.entries(seriesByKey)) {
    series.steps.forEach((step, i) => points.push(
      { key, step, value: series.values[i], wall_time: series.wall_times?.[i] }));
  }
  return points;
}
