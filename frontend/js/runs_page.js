// The runs page: every run of a project with its status, tags, last step, last seen, best
// metric per averager and the config/summary columns picked, live over /ws/runs; filters by
// project (the websocket's), tag, status and name; tick runs to compare them.

import { apiJson } from "./api.js";
import { colorFor } from "./colors.js";
import { escapeHtml, swatch } from "./html.js";
import { sortModels } from "./keys.js";
import { LiveSocket } from "./live.js";
import { RunColumns } from "./runcolumns.js";
import { allTags, filterRuns, filtersFromSearch, searchOfFilters } from "./runfilters.js";
import { statusBadge } from "./runheader.js";
import { comparePageUrl, runPageUrl } from "./urls.js";
import { formatAgo, formatValue } from "./values.js";

const $ = (selector) => document.querySelector(selector);
const AGO_REFRESH_MS = 5000;
const FIXED_COLUMNS = 8;  // select, run, project, status, tags, last step, last seen, best

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
  constructor(filters) {
    this.filters = filters;
    this.runs = new Map();
    this.rows = new Map();   // run id -> its <tr>, kept across updates (focus stays put)
    this.selected = new Set();
    this.columns = new RunColumns($("#column-choices"), filters.project, () => this.render(true));
  }

  start() {
    const params = this.filters.project ? { project: this.filters.project } : {};
    this.socket = new LiveSocket("/ws/runs", {
      params, indicator: $("#conn"), onMessage: (message) => this.onMessage(message),
    });
    this.socket.start();
    this.renderHeader();  // the columns chosen on an earlier visit
    $("#compare").addEventListener("click", () => {
      window.location.href = comparePageUrl([...this.selected]);
    });
    this.bindFilters();
    setInterval(() => this.refreshAgo(), AGO_REFRESH_MS);
    this.fillProjects().catch(showError);
  }

  bindFilters() {
    const { tag, status, q } = this.filters;
    $("#status-filter").value = status;
    $("#name-filter").value = q;
    this.fillTags([tag].filter(Boolean));
    $("#tag-filter").value = tag;
    const update = (name, value) => {
      this.filters[name] = value;
      history.replaceState(null, "", window.location.pathname + searchOfFilters(this.filters));
      this.render();
    };
    $("#tag-filter").addEventListener("change", (event) => update("tag", event.target.value));
    $("#status-filter").addEventListener("change", (event) => update("status", event.target.value));
    $("#name-filter").addEventListener("input", (event) => update("q", event.target.value));
  }

  fillTags(tags) {
    const select = $("#tag-filter");
    const current = select.value || this.filters.tag;
    const wanted = [...new Set([...tags, current].filter(Boolean))].sort();
    const have = [...select.options].slice(1).map((option) => option.value);
    if (wanted.join("\n") === have.join("\n")) return;
    select.replaceChildren(new Option("any tag", ""), ...wanted.map((t) => new Option(t, t)));
    select.value = current;
  }

  async fillProjects() {
    const runs = await apiJson("/api/runs");
    const projects = [...new Set(runs.map((run) => run.project))].sort();
    const select = $("#project-filter");
    select.append(...projects.map((name) => new Option(name, name)));
    select.value = this.filters.project;
    select.addEventListener("change", () => {
      // Another project is another websocket subscription: load the page for it.
      window.location.search = searchOfFilters({ ...this.filters, project: select.value });
    });
  }

  onMessage(message) {
    if (message.type === "runs") {
      this.runs = new Map(message.runs.map((run) => [run.id, run]));
    } else if (message.type === "run") {
      if (this.filters.project && message.run.project !== this.filters.project) return;
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
   * @param {boolean} columnsChanged rebuild the header and every row's extra cells.
   */
  render(columnsChanged = false) {
    const all = [...this.runs.values()];
    this.fillTags(allTags(all));
    this.columns.offer(all);
    if (columnsChanged) this.renderHeader();
    const body = $("#runs-table tbody");
    for (const [id, tr] of this.rows) {
      if (!this.runs.has(id)) {
        tr.remove();
        this.rows.delete(id);
      }
    }
    const kept = filterRuns(sortRuns(all), this.filters);
    const wanted = kept.map((run) => {
      const tr = this.rows.get(run.id) || this.row(run);
      this.rows.set(run.id, tr);
      this.fillRow(tr, run);
      return tr;
    });
    const current = [...body.children];
    if (current.length !== wanted.length || wanted.some((tr, i) => current[i] !== tr)) {
      body.replaceChildren(...wanted);
    }
    $("#runs-table").classList.toggle("empty", wanted.length === 0);
    $("#runs-count").textContent = kept.length === all.length
      ? `${all.length} run${all.length === 1 ? "" : "s"}` : `${kept.length} of ${all.length} runs`;
    this.updateCompare();
    document.body.dataset.state = "ready";
  }

  renderHeader() {
    const head = $("#runs-table thead tr");
    while (head.children.length > FIXED_COLUMNS) head.lastElementChild.remove();
    head.append(...this.columns.headers());
  }

  /** A new row for `run`: its checkbox cell and empty cells that fillRow fills. */
  row(run) {
    const tr = document.createElement("tr");
    tr.dataset.runId = String(run.id);
    const label = `select ${run.project}/${run.name} for comparison`;
    tr.innerHTML = `<td><input type="checkbox" aria-label="${escapeHtml(label)}"></td>
      <td class="name"></td><td class="project"></td><td class="status-cell"></td>
      <td class="tags"></td><td class="num last-step"></td><td class="ago"></td><td class="best"></td>`;
    const box = tr.querySelector("input");
    box.checked = this.selected.has(run.id);
    box.addEventListener("change", () => {
      if (box.checked) this.selected.add(run.id);
      else this.selected.delete(run.id);
      this.updateCompare();
    });
    return tr;
  }

  /** Refills a row's cells (all but its checkbox) from `run`. */
  fillRow(tr, run) {
    const cell = (name) => tr.querySelector(`td.${name}`);
    cell("name").innerHTML = `<a href="${runPageUrl(run.id)}">${escapeHtml(run.name)}</a>`;
    cell("project").textContent = run.project;
    cell("status-cell").innerHTML = statusBadge(run.status);
    cell("tags").innerHTML = (run.tags || []).length
      ? `<span class="chips">${run.tags.map((t) => `<span class="chip tag">${escapeHtml(t)}</span>`).join("")}</span>`
      : '<span class="muted">—</span>';
    cell("last-step").textContent = String(run.last_step ?? "—");
    const agoCell = cell("ago");
    agoCell.dataset.time = String(run.last_seen_at ?? "");
    agoCell.textContent = ago(run.last_seen_at);
    cell("best").innerHTML = bestChips(run.best);
    while (tr.children.length > FIXED_COLUMNS) tr.lastElementChild.remove();
    tr.append(...this.columns.cells(run));
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

function showError(error) {
  const banner = $("#error");
  banner.hidden = false;
  banner.textContent = error.message;
}

function ago(time) {
  return time ? formatAgo(time, Date.now() / 1000) : "never";
}

function main() {
  const params = new URLSearchParams(window.location.search);
  const deleted = params.get("deleted");
  if (deleted) {
    $("#notice").hidden = false;
    $("#notice").textContent = `Run ${deleted} was deleted, with its snapshot files.`;
  }
  new RunsPage(filtersFromSearch(window.location.search)).start();
}

main();
