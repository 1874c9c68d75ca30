// The run's title line: project / name, status with a live dot, last step, last seen.

import { escapeHtml } from "./html.js";
import { formatAgo } from "./values.js";

/** A status badge: a dot (pulsing while running) and the status word. */
export function statusBadge(status) {
  const known = ["running", "finished", "crashed"].includes(status) ? status : "unknown";
  return `<span class="status status-${known}"><span class="dot" aria-hidden="true"></span>${escapeHtml(status)}</span>`;
}

/** Fills the header element with a Run (docs/api.md) and the last step seen by the page. */
export function renderRunHeader(element, run, lastStep) {
  const step = Math.max(run.last_step ?? -1, lastStep ?? -1);
  document.title = `${run.name} · ${run.project} · emaboard`;
  element.innerHTML = `<h1><span class="muted">${escapeHtml(run.project)} /</span> ${escapeHtml(run.name)}</h1>
    ${statusBadge(run.status)}
    <span class="meta">last step <strong id="last-step">${step >= 0 ? step : "—"}</strong></span>
    <span class="meta" id="last-seen" data-time="${run.last_seen_at ?? ""}">seen ${
      run.last_seen_at ? formatAgo(run.last_seen_at, Date.now() / 1000) : "never"}</span>`;
}
