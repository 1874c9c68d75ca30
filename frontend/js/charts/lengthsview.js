// Effective length of every averager (the Decay section): half-life in steps and in samples
// and the σ_rel equivalent at the latest step, so that runs with different batch sizes and
// decays compare (EMA scaling rule, Busbridge et al. 2023: β^κ for a κ-times larger batch
// keeps the half-life in samples). Inputs: the run summary's `averagers` and `batch_size`
// (Monitor.watch) or the config's `batch_size`, the latest decay/<averager> values.

import { effectiveLength } from "../effective_length.js";
import { escapeHtml } from "../html.js";

export class LengthsView {
  /** @param {HTMLTableElement} table */
  constructor(table) {
    this.table = table;
  }

  /**
   * @param {{names: string[], decays: Object<string, number>, run: Object, step: number}} spec
   */
  render({ names, decays, run, step }) {
    const summary = run?.summary || {};
    const described = summary.averagers || {};
    const batchSize = Number(summary.batch_size ?? run?.config?.batch_size) || null;
    const rows = names.map((name) => {
      const info = described[name] || {};
      const length = effectiveLength({
        name, decay: decays[name] ?? null, updateEvery: info.update_every || 1, batchSize,
        t: step, kind: info.kind || (name === "swa" ? "swa" : "ema"),
      });
      return { name, info, length };
    });
    const body = this.table.querySelector("tbody");
    body.replaceChildren(...rows.map(({ name, info, length }) => rowElement(name, info, length)));
    this.table.classList.toggle("empty", rows.length === 0);
    this.table.dataset.batchSize = batchSize === null ? "" : String(batchSize);
    this.table.caption.textContent = `Effective length at step ${Math.max(step, 0)}`
      + (batchSize ? ` (batch size ${batchSize})` : " (batch size unknown: pass batch_size to "
        + "Monitor.watch for half-lives in samples)");
  }
}

function fmt(value, digits = 3) {
  if (value === null || !Number.isFinite(value)) return "—";
  return value >= 1000 ? Math.round(value).toLocaleString("en") : value.toPrecision(digits);
}

function rowElement(name, info, length) {
  const tr = document.createElement("tr");
  tr.dataset.averager = name;
  const beta = length.decay === null ? "—" : length.decay.toFixed(5) + (length.power ? "*" : "");
  const cells = [beta, String(info.update_every || 1), fmt(length.halfLifeSteps),
    fmt(length.halfLifeSamples), fmt(length.sigmaRel)];
  tr.innerHTML = `<th scope="row">${escapeHtml(name)}</th>`
    + cells.map((cell, i) => `<td class="num c${i}">${escapeHtml(cell)}</td>`).join("");
  return tr;
}
