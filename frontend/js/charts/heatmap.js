// The per-layer relative drift heatmap (layers × steps) of one chosen averager. Its data
// come downsampled over REST; live layer points schedule a throttled re-read instead of
// a redraw per message.

import { apiJson } from "../api.js";
import { loadPlotly } from "../plotly.js";
import { heatmapMatrix, heatmapTrace } from "../figures.js";
import { layerKey, naturalCompare, parseKey } from "../keys.js";
import { autoResize, chartTheme, themeRelayout } from "../theme.js";
import { metricsUrl } from "../urls.js";

/** Columns of the heatmap (step buckets) and points fetched per layer series. */
export const HEATMAP_COLUMNS = 200;
const REFRESH_MS = 3000;
const KEYS_PER_REQUEST = 60;

export class LayerHeatmap {
  /**
   * @param {HTMLElement} div the chart element.
   * @param {HTMLSelectElement} select the averager picker.
   * @param {number} runId
   */
  constructor(div, select, runId) {
    Object.assign(this, { div, select, runId });
    this.layers = {};       // averager -> layer paths in module order
    this.timer = null;
    this.drawn = false;
    select.addEventListener("change", () => this.load());
    autoResize(div);
  }

  /** Sets the averagers and layers (from the run's keys) and draws the chosen averager. */
  setLayers(layers) {
    this.layers = {};
    for (const [averager, paths] of Object.entries(layers)) this.layers[averager] = [...paths];
    this.fillSelect();
    return this.load();
  }

  fillSelect() {
    const current = this.select.value;
    const averagers = Object.keys(this.layers).sort();
    this.select.replaceChildren(...averagers.map((name) => new Option(name, name)));
    const preferred = averagers.find((a) => a.startsWith("ema")) || averagers[0];
    this.select.value = averagers.includes(current) ? current : preferred || "";
    this.select.disabled = averagers.length === 0;
  }

  /** Notes live keys; new layers are added and a re-read is scheduled for the chosen one. */
  notify(keys) {
    let touched = false;
    for (const key of keys) {
      const info = parseKey(key);
      if (info.kind !== "layer") continue;
      const paths = (this.layers[info.averager] ||= []);
      if (!paths.includes(info.layer)) {
        paths.push(info.layer);
        paths.sort(naturalCompare);
        if (paths.length === 1) this.fillSelect();
      }
      if (info.averager === this.select.value) touched = true;
    }
    if (touched && this.timer === null) {
      // A failed re-read (server down) keeps the drawn heatmap; the next layer point retries.
      this.timer = setTimeout(() => {
        this.timer = null;
        this.load().catch((error) => console.warn("heatmap re-read failed:", error));
      }, REFRESH_MS);
    }
  }

  /** Fetches the chosen averager's layer series (downsampled; requests of 60 layers, in
   * parallel) and draws the heatmap. */
  async load() {
    const averager = this.select.value;
    const layers = this.layers[averager] || [];
    const seriesByLayer = {};
    const chunks = [];
    for (let i = 0; i < layers.length; i += KEYS_PER_REQUEST) chunks.push(layers.slice(i, i + KEYS_PER_REQUEST));
    await Promise.all(chunks.map(async (chunk) => {
      const keys = chunk.map((layer) => layerKey(layer, averager));
      const url = metricsUrl(this.runId, { keys, maxPoints: HEATMAP_COLUMNS });
      const { series } = await apiJson(url);
      chunk.forEach((layer, j) => { if (series[keys[j]]) seriesByLayer[layer] = series[keys[j]]; });
    }));
    return this.draw(averager, layers, seriesByLayer);
  }

  async draw(averager, layers, seriesByLayer) {
    await loadPlotly();
    const matrix = heatmapMatrix(layers, seriesByLayer, HEATMAP_COLUMNS);
    const theme = chartTheme();
    const layout = {
      title: {
        text: `relative drift per layer: ${averager || "no layer statistics yet"}`,
        x: 0, xanchor: "left", font: { size: 14 },
      },
      paper_bgcolor: theme.bg, plot_bgcolor: theme.bg, font: { color: theme.fg, size: 12 },
      margin: { l: 160, r: 16, t: 36, b: 40 },
      height: Math.min(720, Math.max(320, 60 + 12 * layers.length)),
      xaxis: { title: { text: "step" }, gridcolor: theme.grid },
      // Layer names are categories, also when they look like numbers ("0", "2" of an
      // nn.Sequential): a numeric axis would place them at y = 0 and 2 on a −1…3 scale.
      yaxis: { type: "category", autorange: "reversed", automargin: true, gridcolor: theme.grid },
      uirevision: averager,
    };
    this.drawn = true;
    this.div.classList.toggle("empty", layers.length === 0);
    this.div.dataset.averager = averager;
    this.div.dataset.layers = String(layers.length);
    const config = { responsive: true, displaylogo: false };
    return Plotly.react(this.div, [heatmapTrace(matrix, averager)], layout, config);
  }

  applyTheme(theme) {
    if (this.drawn) Plotly.relayout(this.div, themeRelayout(theme));
  }
}
