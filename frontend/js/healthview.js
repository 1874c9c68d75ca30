// The "Averaging health" panel: the warnings of health.js, recomputed as statistics stream
// in; hidden while there are none.

import { healthWarnings } from "./health.js";
import { parseKey } from "./keys.js";

const KINDS = new Set(["drift", "norm", "decay", "bn_recomputed", "eval"]);

export class HealthView {
  /** @param {{section: HTMLElement, list: HTMLElement}} elements */
  constructor({ section, list }) {
    Object.assign(this, { section, list });
    this.series = {};
    this.shown = "";
  }

  /** Forgets every series (a full re-read follows). */
  reset() {
    this.series = {};
  }

  /**
   * Takes in new points (REST series or live batches, raw API values) and redraws the
   * warnings when they changed.
   * @param {Object<string, {steps: number[], values: any[]}>} rawByKey
   * @param {number} lastStep the run's last step.
   */
  absorb(rawByKey, lastStep) {
    for (const [key, raw] of Object.entries(rawByKey)) {
      const info = parseKey(key);
      if (!KINDS.has(info.kind) || (info.kind === "norm" && info.averager !== "live")) continue;
      const held = (this.series[key] ||= { steps: [], values: [] });
      held.steps.push(...raw.steps);
      held.values.push(...raw.values);
    }
    this.render(healthWarnings(this.series, lastStep));
  }

  render(warnings) {
    const text = JSON.stringify(warnings);
    if (text === this.shown) return;
    this.shown = text;
    this.section.hidden = warnings.length === 0;
    this.list.replaceChildren(...warnings.map((warning) => {
      const item = document.createElement("li");
      item.className = `health-warning ${warning.severity}`;
      item.dataset.warning = warning.id;
      item.dataset.averager = warning.averager;
      item.innerHTML = `<strong class="title"></strong><p class="cause"></p>
        <p class="remedy"><span class="label">Remedy:</span> <span class="text"></span></p>`;
      item.querySelector(".title").textContent = warning.title;
      item.querySelector(".cause").textContent = warning.cause;
      item.querySelector(".remedy .text").textContent = warning.remedy;
      return item;
    }));
  }
}
