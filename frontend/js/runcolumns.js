// The runs table's extra columns: values from the runs' config and summary, picked in a
// list of checkboxes (every flattened key some run has), kept per project in localStorage.

import { formatConfigValue, runField, runFieldKeys } from "./flatten.js";

const STORAGE_PREFIX = "emaboard-columns:";

export class RunColumns {
  /**
   * @param {HTMLElement} choices where the checkboxes go.
   * @param {string} project the columns are remembered per project.
   * @param {() => void} onChange called after a column was added or removed.
   */
  constructor(choices, project, onChange) {
    Object.assign(this, { choices, onChange });
    this.storageKey = STORAGE_PREFIX + project;
    this.keys = [];
    try {
      this.chosen = JSON.parse(localStorage.getItem(this.storageKey) || "[]");
    } catch {
      this.chosen = [];
    }
  }

  /** Offers the fields of `runs` (the list is rebuilt only when the set of keys changed). */
  offer(runs) {
    const keys = runFieldKeys(runs);
    if (keys.join("\n") === this.keys.join("\n")) return;
    this.keys = keys;
    this.choices.replaceChildren(...keys.map((key) => {
      const label = document.createElement("label");
      const box = document.createElement("input");
      box.type = "checkbox";
      box.value = key;
      box.checked = this.chosen.includes(key);
      box.addEventListener("change", () => this.toggle(key, box.checked));
      label.append(box, ` ${key}`);
      return label;
    }));
    if (!keys.length) this.choices.textContent = "These runs have no config or summary yet.";
  }

  toggle(key, on) {
    this.chosen = on ? [...this.chosen, key] : this.chosen.filter((k) => k !== key);
    localStorage.setItem(this.storageKey, JSON.stringify(this.chosen));
    this.onChange();
  }

  /** The header cells of the chosen columns. */
  headers() {
    return this.chosen.map((key) => {
      const th = document.createElement("th");
      th.scope = "col";
      th.className = "field";
      th.dataset.field = key;
      th.textContent = key;
      return th;
    });
  }

  /** The cells of the chosen columns for `run` ("—" where it has no such field). */
  cells(run) {
    return this.chosen.map((key) => {
      const td = document.createElement("td");
      const value = runField(run, key);
      td.className = "field";
      td.dataset.field = key;
      td.textContent = value === undefined ? "—" : formatConfigValue(value);
      if (typeof value === "number") td.classList.add("num");
      return td;
    });
  }
}
