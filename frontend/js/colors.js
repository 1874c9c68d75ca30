// Model colors: a stable color per model or averager name. The live model owns a warm
// vermilion that no shadow color comes near (every shadow color is a cool or neutral hue,
// ΔE*ab ≥ 40 from it: tests/frontend checks the whole palette), and live is drawn wider.

/** The live model's color. */
export const LIVE_COLOR = "#e4572e";

const FIXED_COLORS = {
  live: LIVE_COLOR, "ema_0.999": "#2e86de", "ema_0.9999": "#17a589", swa: "#8e44ad",
};

/** Colors for every other name, hashed: blues, teals, greens, purples, gold, gray (each
 * readable on the light and the dark panel). */
export const SHADOW_PALETTE = [
  "#2e86de", "#17a589", "#8e44ad", "#3a9d23", "#5b6abf", "#0f8fb0", "#d4a017", "#7f8c8d",
  "#1abc9c", "#a05fd0",
];

/** A stable color per model/averager name (fixed for the usual names, hashed otherwise). */
export function colorFor(name) {
  if (name in FIXED_COLORS) return FIXED_COLORS[name];
  let hash = 0;
  for (const char of name) hash = (hash * 31 + char.charCodeAt(0)) >>> 0;
  return SHADOW_PALETTE[hash % SHADOW_PALETTE.length];
}

/** Line width of a model's trace: the live model's is wider than any shadow's. */
export function lineWidthFor(name) {
  return name === "live" ? 2.6 : 1.6;
}
