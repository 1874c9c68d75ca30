// The runs page: every run of a project with its status, last step, last seen and best
// metric per averager, live over /ws/runs; tick runs to compare them.

import { apiJson } from "./api.js";
import { colorFor } from "./figures.js";
import { escapeHtml, swatch } from "./html.js";
import { sortModels } from "./keys.js";
import { LiveSocket } from "./live.js";
import { statusBadge } from "./runheader.js";
import { comparePageUrl, runPageUrl } from "./urls.js";
import { formatAgo, formatValue } from "./values.js";

const $ = (selector) => document.querySelector(selector);
const AGO_REFRESH_MS = 5000;

/** Runs newest first (by creation time, then id). */
export function sortRuns(runs) {
  return runs.slice().sort((a, b) => b.created_at - a.created_at || b.id - a.id);
}

/** The "best per averager" cell: one chip per model, e.g. "ema_0.999 accuracy 0.97 @1200". */
export function bestChips(best) {
  const models = sortModels(Object.keys(best || {}));
  if (!models.length) return '<span class="muted">—</span>';
  return `<span class="chips">${models.map((model) => {
    const { metric, value, step } = best[model];
    return `<span class="chip" data-model="${escapeHtml(model)}">${swatch(colorFor(model))}${escapeHtml(model)}
      ${escapeHtml(metric)} <strong>${escapeHtml(formatValue(value))}</strong> @${step}</span>`;
  }).join("")}</span>`;
}

class RunsPage {
  constructor(project) {
    this.project = project;
    this.runs = new Map();
    this.rows = new Map();   // run id -> its <tr>, kept across updates (focus stays put)
    this.selected = new Set();
  }

  start() {
    const params = this.project ? { project: this.project } : {};
    this.socket = new LiveSocket("/ws/runs", {
      params, indicator: $("#conn"), onMessage: (message) => this.onMessage(message),
    });
    this.socket.start();
    $("#compare").addEventListener("click", () => {
      window.location.href = comparePageUrl([...this.selected]);
    });
    setInterval(() => this.refreshAgo(), AGO_REFRESH_MS);
    this.fillProjects().catch(showError);
  }

  async fillProjects() {
    const runs = await apiJson("/api/runs");
    const projects = [...new Set(runs.map((run) => run.project))].sort();
    const select = $("#project-filter");
    select.append(...projects.map((name) => new Option(name, name)));
    select.value = this.project;
    select.addEventListener("change", () => {
      const url = new URL(window.location.href);
      if (select.value) url.searchParams.set("project", select.value);
      else url.searchParams.delete("project");
      window.location.href = url.toString();
    });
  }

  onMessage(message) {
    if (message.type === "runs") {
      this.runs = new Map(message.runs.map((run) => [run.id, run]));
    } else if (message.type === "run") {
      if (this.project && message.run.project !== this.project) return;
      this.runs.set(message.run.id, message.run);
    } else if (message.type === "run_deleted") {
      this.runs.delete(message.id);
      this.selected.delete(message.id);
    } else {
      return;
    }
    this.render();
  }

  /**
   * Updates the table in place: a run's row is created once and its cells refilled, and the
   * rows are re-inserted only when their order changed, so a live update (≤ 1/s per
   * running run) neither moves keyboard focus off a checkbox nor rebuilds the table.
   */
  render() {
    const body = $("#runs-table tbody");
    for (const [id, tr] of this.rows) {
      if (!this.runs.has(id)) {
        tr.remove();
        this.rows.delete(id);
      }
    }
    const wanted = sortRuns([...this.runs.values()]).map((run) => {
      const tr = this.rows.get(run.id) || this.row(run);
      this.rows.set(run.id, tr);
      fillRow(tr, run);
      return tr;
    });
    const current = [...body.children];
    if (current.length !== wanted.length || wanted.some((tr, i) => current[i] !== tr)) {
      body.replaceChildren(...wanted);
    }
    $("#runs-table").classList.toggle("empty", this.runs.size === 0);
    this.updateCompare();
    document.body.dataset.state = "ready";
  }

  /** A new row for `run`: its checkbox cell and empty cells that fillRow fills. */
  row(run) {
    const tr = document.createElement("tr");
    tr.dataset.runId = String(run.id);
    const label = `select ${run.project}/${run.name} for comparison`;
    tr.innerHTML = `<td><input type="checkbox" aria-label="${escapeHtml(label)}"></td>
      <td class="name"></td><td class="project"></td><td class="status-cell"></td>
      <td class="num last-step"></td><td class="ago"></td><td class="best"></td>`;
    const box = tr.querySelector("input");
    box.checked = this.selected.has(run.id);
    box.addEventListener("change", () => {
      if (box.checked) this.selected.add(run.id);
      else this.selected.delete(run.id);
      this.updateCompare();
    });
    return tr;
  }

  updateCompare() {
    const button = $("#compare");
    button.disabled = this.selected.size < 2;
    button.textContent = `Compare selected (${this.selected.size})`;
  }

  refreshAgo() {
    for (const cell of document.querySelectorAll("td.ago")) {
      cell.textContent = ago(Number(cell.dataset.time) || null);
    }
  }
}

/** Refills a row's cells (all but its checkbox) from `run`. */
function fillRow(tr, run) {
  const cell = (name) => tr.querySelector(`td.${name}`);
  cell("name").innerHTML = `<a href="${runPageUrl(run.id)}">${escapeHtml(run.name)}</a>`;
  cell("project").textContent = run.project;
  cell("status-cell").innerHTML = statusBadge(run.status);
  cell("last-step").textContent = String(run.last_step ?? "—");
  const agoCell = cell("ago");
  agoCell.dataset.time = String(run.last_seen_at ?? "");
  agoCell.textContent = ago(run.last_seen_at);
  cell("best").innerHTML = bestChips(run.best);
}

function showError(error) {
  const banner = $("#error");
  banner.hidden = false;
  banner.textContent = error.message;
}

function ago(time) {
  return time ? formatAgo(time, Date.now() / 1000) : "never";
}

function main() {
  const project = new URLSearchParams(window.location.search).get("project") || "";
  new RunsPage(project).start();
}

main();
