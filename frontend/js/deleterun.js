// "Delete run…": a confirmation dialog that names the run and what goes with it (its points,
// its snapshot files), then DELETE /api/runs/{id} and back to the runs page of its project.

import { apiJson } from "./api.js";
import { formatBytes } from "./values.js";

export class DeleteRunView {
  /**
   * @param {{button: HTMLButtonElement, dialog: HTMLDialogElement}} elements the dialog holds
   *   a `.delete-what` paragraph, a `.delete-error` one and a form whose submitter is
   *   `value="delete"` (or "cancel").
   * @param {number} runId
   */
  constructor({ button, dialog }, runId) {
    Object.assign(this, { button, dialog, runId });
    this.run = null;
    button.addEventListener("click", () => this.open().catch((error) => this.fail(error)));
    dialog.querySelector("form").addEventListener("submit", (event) => {
      event.preventDefault();
      if (event.submitter?.value === "delete") this.confirm().catch((error) => this.fail(error));
      else dialog.close();
    });
  }

  setRun(run) {
    this.run = run;
  }

  async open() {
    const snapshots = await apiJson(`/api/runs/${this.runId}/snapshots`);
    const bytes = snapshots.reduce((sum, s) => sum + s.size_bytes, 0);
    const { project, name } = this.run;
    this.dialog.querySelector(".delete-name").textContent = `${project} / ${name}`;
    this.dialog.querySelector(".delete-what").textContent = `Every metric point, the config and `
      + `${snapshots.length} snapshot file${snapshots.length === 1 ? "" : "s"} (${formatBytes(bytes)}) `
      + "are removed from the server. This cannot be undone.";
    this.dialog.querySelector(".delete-error").textContent = "";
    this.dialog.showModal();
    this.dialog.querySelector("button[value='cancel']").focus();
  }

  async confirm() {
    const confirmButton = this.dialog.querySelector("button[value='delete']");
    confirmButton.disabled = true;
    try {
      await apiJson(`/api/runs/${this.runId}`, { method: "DELETE" });
    } finally {
      confirmButton.disabled = false;
    }
    this.dialog.close();
    window.location.href = `/?project=${encodeURIComponent(this.run.project)}&deleted=${encodeURIComponent(this.run.name)}`;
  }

  fail(error) {
    if (!this.dialog.open) this.dialog.showModal();
    this.dialog.querySelector(".delete-error").textContent = `Not deleted: ${error.message}`;
  }
}
