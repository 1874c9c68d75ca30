// The chart colors of the current light/dark system theme, read from the CSS variables,
// and a hook to restyle charts when the system theme changes.

const DARK = window.matchMedia("(prefers-color-scheme: dark)");

/** {fg, grid, bg} for Plotly layouts, from the CSS custom properties of <body>. */
export function chartTheme() {
  const style = getComputedStyle(document.body);
  const read = (name, fallback) => style.getPropertyValue(name).trim() || fallback;
  return {
    fg: read("--fg", "#1d2330"),
    grid: read("--grid", "#dfe3ea"),
    bg: read("--panel", "#ffffff"),
  };
}

/** Calls `callback(theme)` whenever the system switches between light and dark. */
export function onThemeChange(callback) {
  DARK.addEventListener("change", () => callback(chartTheme()));
}

/** Layout changes that restyle an existing Plotly figure for `theme`. */
export function themeRelayout(theme) {
  return {
    paper_bgcolor: theme.bg, plot_bgcolor: theme.bg, "font.color": theme.fg,
    "xaxis.gridcolor": theme.grid, "yaxis.gridcolor": theme.grid,
  };
}

/**
 * Keeps a Plotly chart as wide as its element: Plotly's `responsive` follows window resizes
 * only, not a grid column that narrows when a sibling chart appears.
 */
export function autoResize(div) {
  let frame = 0;
  const observer = new ResizeObserver(() => {
    cancelAnimationFrame(frame);
    frame = requestAnimationFrame(() => {
      // A chart removed from the page (or not drawn yet) has nothing to resize.
      if (div.isConnected && div._fullLayout) Plotly.Plots.resize(div).catch(() => {});
    });
  });
  observer.observe(div);
  return observer;
}
