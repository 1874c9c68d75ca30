// The CSV and JSON download links of one chart: its series at full resolution (no
// downsampling), from GET /api/runs/{id}/export/points (docs/api.md).

import { getToken } from "../token.js";
import { withToken } from "../urls.js";

const FORMATS = ["csv", "json"];

export class ChartExport {
  /**
   * @param {HTMLElement} slot the chart's slot; the links go on top of it.
   * @param {string} title the chart's title, for the links' accessible names.
   * @param {(keys: string[], format: string) => string} urlOf the download URL.
   */
  constructor(slot, title, urlOf) {
    this.urlOf = urlOf;
    this.keys = [];
    this.element = document.createElement("div");
    this.element.className = "chart-tools";
    this.links = FORMATS.map((format) => {
      const link = document.createElement("a");
      link.className = "chart-export";
      link.dataset.format = format;
      link.textContent = format.toUpperCase();
      link.setAttribute("aria-label", `Download ${title} as ${format.toUpperCase()}`);
      link.setAttribute("download", "");
      // The token may change (typed in later): the address is made at click time.
      link.addEventListener("click", () => { link.href = this.href(format); });
      return link;
    });
    this.element.append(...this.links);
    this.element.hidden = true;
    slot.prepend(this.element);
  }

  /** The chart now draws `keys`: the links download those (hidden while there are none). */
  setKeys(keys) {
    this.keys = keys.slice();
    this.element.hidden = this.keys.length === 0;
    for (const link of this.links) link.href = this.href(link.dataset.format);
  }

  href(format) {
    return withToken(this.urlOf(this.keys, format), getToken());
  }
}
