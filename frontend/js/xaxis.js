// The x axis of the line charts: the step, the wall time (a date axis in local time) or the
// time since the run started (in s, min or h, chosen from the run's length so far), as
// TensorBoard's "Step / Wall / Relative".

/** The x-axis modes and their labels. */
export const X_MODES = { step: "step", wall: "wall time", relative: "relative time" };

const UNITS = [["s", 1], ["min", 60], ["h", 3600]];

/** The unit of a relative axis spanning `spanS` seconds: s below 2 min, min below 2 h, else h. */
export function relativeUnit(spanS) {
  const [name, seconds] = spanS < 120 ? UNITS[0] : spanS < 7200 ? UNITS[1] : UNITS[2];
  return { name, seconds };
}

function pad(number, width = 2) {
  return String(number).padStart(width, "0");
}

/** A Unix time (s) as a local "YYYY-MM-DD HH:MM:SS.mmm" string, which Plotly's date axis
 * draws as it is (a number would be drawn as UTC). */
export function localTimeString(wallS) {
  const d = new Date(wallS * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} `
    + `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/**
 * The x values of a series in `mode`.
 * @param {string} mode a key of X_MODES.
 * @param {number[]} steps
 * @param {number[]} wallTimes Unix seconds, parallel to steps.
 * @param {{originS: number, unit: {seconds: number}}} axis the run's start and the relative unit.
 * @throws {Error} for an unknown mode.
 */
export function xValues(mode, steps, wallTimes, { originS, unit }) {
  if (mode === "step") return steps.slice();
  if (mode === "wall") return wallTimes.map(localTimeString);
  if (mode === "relative") return wallTimes.map((t) => (t - originS) / unit.seconds);
  throw new Error(`Invalid x-axis mode ${JSON.stringify(mode)}: expected one of ${Object.keys(X_MODES).join(", ")}`);
}

/** The Plotly x-axis title and type of `mode`. */
export function xAxisSpec(mode, unit) {
  if (mode === "wall") return { title: "wall time", type: "date" };
  if (mode === "relative") return { title: `time since the run started (${unit.name})`, type: "linear" };
  return { title: "step", type: "linear" };
}
