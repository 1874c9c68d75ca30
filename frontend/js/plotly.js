// Plotly.js, loaded once by the page that needs it: the run page sends its REST reads first
// (first_load.js) and draws when both the data and Plotly are in (run.html preloads the
// file, so its download starts with the page's).

export const PLOTLY_URL = "/vendor/plotly.min.js";
let loading = null;

/**
 * Plotly, loaded on the first call (a <script> added to <head>), from then on at once.
 * @returns {Promise<object>} window.Plotly.
 * @throws {Error} (the promise rejects) when the script cannot be loaded.
 */
export function loadPlotly() {
  if (window.Plotly) return Promise.resolve(window.Plotly);
  loading ||= new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = PLOTLY_URL;
    script.onload = () => resolve(window.Plotly);
    script.onerror = () => {
      loading = null;
      reject(new Error(`Could not load ${PLOTLY_URL}: reload the page`));
    };
    document.head.append(script);
  });
  return loading;
}
