// A set of LineCharts created on demand, one per group (one per eval metric, one per
// train scalar): a key's group decides its chart, a chart appears when its first key does.

import { LineChart } from "./linechart.js";

export class ChartGroup {
  /**
   * @param {HTMLElement} container
   * @param {{idPrefix: string, groupOf: (key: string) => (string|null),
   *   traceName: (key: string) => string, title: (group: string) => string,
   *   markers?: boolean, display?: object, exportUrl?: Function,
   *   onCreate?: (group: string, chart: LineChart) => void}} spec display and exportUrl
   *   go to each LineChart.
   */
  constructor(container, spec) {
    this.container = container;
    this.spec = spec;
    this.charts = new Map();
  }

  chartFor(group) {
    let chart = this.charts.get(group);
    if (chart) return chart;
    const { idPrefix, groupOf, traceName, title, markers = false, onCreate } = this.spec;
    chart = new LineChart(this.container, {
      id: `${idPrefix}${group.replace(/[^A-Za-z0-9_-]/g, "_")}`,
      title: title(group),
      markers,
      display: this.spec.display,
      exportUrl: this.spec.exportUrl,
      traceName: (key) => (groupOf(key) === group ? traceName(key) : null),
    });
    this.charts.set(group, chart);
    if (onCreate) onCreate(group, chart);
    return chart;
  }

  /** Creates the charts of `groups` (not drawn yet) in sorted order, so the page layout
   * does not depend on which series arrives first. */
  prepare(groups) {
    for (const group of [...groups].sort()) this.chartFor(group);
  }

  /** Draws every group found in seriesByKey from scratch. */
  render(seriesByKey) {
    const groups = new Set(Object.keys(seriesByKey).map(this.spec.groupOf).filter((g) => g !== null));
    return Promise.all([...groups].sort().map((group) => this.chartFor(group).render(seriesByKey)));
  }

  /** Appends points; a group seen for the first time gets its chart drawn. */
  append(pointsByKey) {
    const byGroup = new Map();
    for (const [key, points] of Object.entries(pointsByKey)) {
      const group = this.spec.groupOf(key);
      if (group === null) continue;
      if (!byGroup.has(group)) byGroup.set(group, {});
      byGroup.get(group)[key] = points;
    }
    for (const [group, subset] of byGroup) {
      const chart = this.charts.get(group);
      if (chart) chart.append(subset);
      else this.chartFor(group).render(subset);
    }
  }

  /** All charts of the group, in creation order. */
  all() {
    return [...this.charts.values()];
  }
}
