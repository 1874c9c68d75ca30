// The run's config and summary as two searchable tables (nested keys flattened: W&B's
// overview). The search box takes a regular expression matched against keys and values.

import { keyFilter } from "./filter.js";
import { flattenObject, formatConfigValue } from "./flatten.js";

export class ConfigView {
  /**
   * @param {{search: HTMLInputElement, note: HTMLElement, config: HTMLTableElement,
   *   summary: HTMLTableElement}} elements
   */
  constructor(elements) {
    Object.assign(this, elements);
    this.rows = { config: [], summary: [] };
    this.shown = "";  // the config and summary last drawn, as JSON: redraw only on change
    this.search.addEventListener("input", () => this.applyFilter());
  }

  setRun(run) {
    const text = JSON.stringify([run.config, run.summary]);
    if (text === this.shown) return;
    this.shown = text;
    this.rows = { config: flattenObject(run.config), summary: flattenObject(run.summary) };
    for (const name of ["config", "summary"]) fillTable(this[name], this.rows[name]);
    this.applyFilter();
  }

  applyFilter() {
    const match = keyFilter(this.search.value);
    this.search.setAttribute("aria-invalid", String(match.error !== null));
    this.note.textContent = match.error || "";
    for (const name of ["config", "summary"]) {
      const table = this[name];
      let shown = 0;
      for (const tr of table.tBodies[0].rows) {
        const visible = match.test(tr.dataset.key) || match.test(tr.dataset.value);
        tr.hidden = !visible;
        shown += visible ? 1 : 0;
      }
      const total = this.rows[name].length;
      table.querySelector(".count").textContent = shown === total ? `${total}` : `${shown} of ${total}`;
      table.classList.toggle("empty", shown === 0);
    }
  }
}

function fillTable(table, rows) {
  const body = table.tBodies[0];
  body.replaceChildren(...rows.map(([key, value]) => {
    const tr = document.createElement("tr");
    const text = formatConfigValue(value);
    tr.dataset.key = key;
    tr.dataset.value = text;
    const th = document.createElement("th");
    th.scope = "row";
    th.textContent = key;
    const td = document.createElement("td");
    td.textContent = text;
    tr.append(th, td);
    return tr;
  }));
}
