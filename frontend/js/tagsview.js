// The run's tags in the header: chips, and an editor (comma-separated) that saves them with
// PATCH /api/runs/{id} {"tags": [...]}; other tabs' edits arrive as "run" messages.

import { apiJson } from "./api.js";

/** Tags typed in a text field: split at commas, trimmed, blanks dropped, repeats removed. */
export function parseTags(text) {
  return [...new Set(text.split(",").map((tag) => tag.trim()).filter(Boolean))];
}

export class TagsView {
  /**
   * @param {{list: HTMLElement, edit: HTMLButtonElement, form: HTMLFormElement,
   *   input: HTMLInputElement, error: HTMLElement}} elements
   * @param {number} runId
   */
  constructor(elements, runId) {
    Object.assign(this, elements, { runId });
    this.tags = [];
    this.form.hidden = true;
    this.edit.addEventListener("click", () => this.open());
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (event.submitter?.value === "cancel") this.close();
      else this.save().catch((error) => { this.error.textContent = error.message; });
    });
    this.form.addEventListener("keydown", (event) => {
      if (event.key === "Escape") this.close();
    });
  }

  setRun(run) {
    this.tags = run.tags || [];
    this.list.replaceChildren(...this.tags.map((tag) => {
      const chip = document.createElement("span");
      chip.className = "chip tag";
      chip.textContent = tag;
      return chip;
    }));
    this.list.classList.toggle("empty", this.tags.length === 0);
  }

  open() {
    this.input.value = this.tags.join(", ");
    this.error.textContent = "";
    this.form.hidden = false;
    this.edit.hidden = true;
    this.input.focus();
  }

  close() {
    this.form.hidden = true;
    this.edit.hidden = false;
    this.edit.focus();
  }

  async save() {
    const run = await apiJson(`/api/runs/${this.runId}`, {
      method: "PATCH", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ tags: parseTags(this.input.value) }),
    });
    this.setRun(run);
    this.close();
  }
}
