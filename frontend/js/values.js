// Pure helpers for metric values and series: JSON has no NaN, so the server sends
// non-finite floats as the strings "NaN", "Infinity" and "-Infinity" (docs/api.md).

const NON_FINITE = { NaN: NaN, Infinity: Infinity, "-Infinity": -Infinity };

/** A metric value from the API as a JS number ("NaN" -> NaN, "Infinity" -> Infinity, ...). */
export function toNumber(value) {
  if (typeof value === "number") return value;
  if (typeof value === "string" && value in NON_FINITE) return NON_FINITE[value];
  if (value === null || value === undefined) return NaN;
  const number = Number(value);
  return Number.isNaN(number) ? NaN : number;
}

/** A value for a Plotly trace: finite numbers pass, NaN/±Infinity become null (a gap). */
export function plotValue(value) {
  const number = toNumber(value);
  return Number.isFinite(number) ? number : null;
}

/**
 * One API series ({steps, values, wall_times}) as plain arrays for plotting.
 * @returns {{steps: number[], values: (number|null)[]}}
 */
export function seriesForPlot(series) {
  return { steps: series.steps.slice(), values: series.values.map(plotValue) };
}

/** Human format of a metric value: 4 significant digits, "NaN", "∞", "−∞". */
export function formatValue(value) {
  const number = toNumber(value);
  if (Number.isNaN(number)) return "NaN";
  if (number === Infinity) return "∞";
  if (number === -Infinity) return "−∞";
  if (number !== 0 && (Math.abs(number) >= 1e5 || Math.abs(number) < 1e-3)) {
    return number.toExponential(3);
  }
  return String(Number(number.toPrecision(4)));
}

/** Human size in bytes: "512 B", "1.5 KiB", "3.2 MiB". */
export function formatBytes(size) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = size;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** "12 s ago", "3 min ago", "2 h ago", "4 d ago" between two Unix times (seconds). */
export function formatAgo(thenS, nowS) {
  const seconds = Math.max(0, Math.round(nowS - thenS));
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86400)} d ago`;
}
