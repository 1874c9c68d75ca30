// Pure helpers for building HTML text safely.

/** Escapes &, <, >, " and ' for HTML text and attribute values. */
export function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;",
  })[c]);
}

/** A small colored square for a model's legend color. */
export function swatch(color) {
  return `<span class="swatch" style="background:${escapeHtml(color)}" aria-hidden="true"></span>`;
}
