// The snapshots table and the "Export best EMA snapshot" button, which downloads
// GET /api/runs/{id}/snapshots/best for the chosen averager and metric (a safetensors
// file named <project>-<run>-<averager>-step<step>.safetensors by the server).

import { apiJson } from "./api.js";
import { escapeHtml } from "./html.js";
import { lowerIsBetter } from "./keys.js";
import { downloadFile, getToken } from "./token.js";
import { bestSnapshotUrl, withQuery, withToken } from "./urls.js";
import { formatBytes, formatValue } from "./values.js";

/**
 * The averager the export button proposes first: the EMA with a snapshot (slowest decay
 * wins a tie of names), else any averager with a snapshot.
 */
export function defaultAverager(averagers) {
  const emas = averagers.filter((name) => name.startsWith("ema"));
  return (emas.length ? emas : averagers).slice().sort().pop() ?? "";
}

export class SnapshotsView {
  /**
   * @param {{table: HTMLTableElement, averager: HTMLSelectElement, metric: HTMLSelectElement,
   *   button: HTMLButtonElement, note: HTMLElement}} elements
   * @param {number} runId
   */
  constructor(elements, runId) {
    Object.assign(this, elements, { runId });
    this.snapshots = [];
    this.averager.addEventListener("change", () => this.fillMetrics());
    this.metric.addEventListener("change", () => this.describe());
    this.button.addEventListener("click", () => this.exportBest());
  }

  /** Reads the run's snapshots (not the post-hoc EMA ones) over REST and redraws. */
  async load() {
    this.snapshots = await apiJson(
      withQuery(`/api/runs/${this.runId}/snapshots`, { kind: "snapshot" }));
    this.render();
  }

  /** Adds (or replaces) one snapshot announced on the websocket (post-hoc ones: no). */
  add(snapshot) {
    if (snapshot.kind === "posthoc") return;
    this.snapshots = this.snapshots.filter((s) => s.id !== snapshot.id).concat([snapshot]);
    this.render();
  }

  render() {
    const rows = this.snapshots.slice()
      .sort((a, b) => a.averager.localeCompare(b.averager) || a.step - b.step);
    const body = this.table.querySelector("tbody");
    body.replaceChildren(...rows.map((snapshot) => rowElement(snapshot)));
    this.table.classList.toggle("empty", rows.length === 0);
    this.fillAveragers();
  }

  fillAveragers() {
    const averagers = [...new Set(this.snapshots.map((s) => s.averager))].sort();
    const current = this.averager.value;
    this.averager.replaceChildren(...averagers.map((name) => new Option(name, name)));
    this.averager.value = averagers.includes(current) ? current : defaultAverager(averagers);
    this.fillMetrics();
  }

  fillMetrics() {
    const metrics = [...new Set(this.snapshots
      .filter((s) => s.averager === this.averager.value && s.metric)
      .map((s) => s.metric))].sort();
    const current = this.metric.value;
    this.metric.replaceChildren(...metrics.map((name) => new Option(name, name)));
    if (metrics.includes(current)) this.metric.value = current;
    this.describe();
  }

  /** The snapshot the button would download (same rule as the server), or null. */
  bestChoice() {
    const metric = this.metric.value;
    const lower = lowerIsBetter(metric);
    const candidates = this.snapshots.filter((s) => s.averager === this.averager.value
      && s.metric === metric && typeof s.value === "number");
    // Same rule as the server: best value, a later step wins a tie.
    candidates.sort((a, b) => (lower ? a.value - b.value : b.value - a.value) || b.step - a.step);
    return candidates[0] || null;
  }

  describe() {
    const best = this.bestChoice();
    this.button.disabled = best === null;
    this.note.textContent = best
      ? `best ${best.metric} ${formatValue(best.value)} at step ${best.step} (${formatBytes(best.size_bytes)})`
      : "No snapshot with a metric value yet.";
  }

  /** Downloads the best snapshot of the chosen averager and metric. */
  exportBest() {
    const metric = this.metric.value;
    const mode = lowerIsBetter(metric) ? "min" : "max";
    const url = bestSnapshotUrl(this.runId, { averager: this.averager.value, metric, mode });
    downloadFile(url);
  }
}

function rowElement(snapshot) {
  const tr = document.createElement("tr");
  tr.dataset.snapshotId = String(snapshot.id);
  const value = snapshot.value === null || snapshot.value === undefined ? "—" : formatValue(snapshot.value);
  const href = withToken(snapshot.download_url, getToken());
  tr.innerHTML = `<td>${escapeHtml(snapshot.averager)}</td><td class="num">${snapshot.step}</td>
    <td>${escapeHtml(snapshot.metric || "—")}</td><td class="num">${escapeHtml(value)}</td>
    <td class="num">${formatBytes(snapshot.size_bytes)}</td>
    <td><code title="${escapeHtml(snapshot.sha256)}">${escapeHtml(snapshot.sha256.slice(0, 12))}…</code></td>
    <td><a href="${escapeHtml(href)}" download>download</a></td>`;
  return tr;
}
