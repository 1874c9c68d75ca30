// The line charts' display settings — TensorBoard-style smoothing and the x axis (step, wall
// time, relative time) — with their controls. Kept in localStorage for the next page.

import { MAX_SMOOTHING } from "./smoothing.js";
import { X_MODES, relativeUnit } from "./xaxis.js";

const STORAGE_KEY = "emaboard-display";

function stored() {
  try {
    return JSON.parse(localStorage.getItem(STORAGE_KEY) || "{}") || {};
  } catch {
    return {};
  }
}

/** A smoothing weight from the slider or storage: a number in [0, MAX_SMOOTHING], else 0. */
export function clampSmoothing(value) {
  const number = Number(value);
  return Number.isFinite(number) ? Math.min(MAX_SMOOTHING, Math.max(0, number)) : 0;
}

export class DisplaySettings {
  /**
   * @param {(key?: string) => {originS: number, nowS: number}} timeSpan the start and latest
   *   time of the run a key belongs to; without a key, of the page (its longest run): that
   *   span picks the relative axis' unit.
   */
  constructor(timeSpan) {
    const saved = stored();
    this.smoothing = clampSmoothing(saved.smoothing ?? 0);
    this.xMode = saved.xMode in X_MODES ? saved.xMode : "step";
    this.timeSpan = timeSpan;
    this.unit = null;  // the relative axis' unit, chosen at each redraw
    this.listeners = [];
  }

  /** The origin (of `key`'s run) and unit of the relative x axis (the unit is chosen once
   * per redraw). */
  axis(key) {
    if (!this.unit) {
      const { originS, nowS } = this.timeSpan();
      this.unit = relativeUnit(nowS - originS);
    }
    return { originS: this.timeSpan(key).originS, unit: this.unit };
  }

  /** Calls `listener()` after each change. */
  onChange(listener) {
    this.listeners.push(listener);
  }

  set(changes) {
    Object.assign(this, changes);
    this.unit = null;
    localStorage.setItem(STORAGE_KEY, JSON.stringify({ smoothing: this.smoothing, xMode: this.xMode }));
    for (const listener of this.listeners) listener();
  }

  /**
   * Binds the controls: a range input for the smoothing, its output, an x-axis select.
   * @param {{slider: HTMLInputElement, output: HTMLOutputElement, xMode: HTMLSelectElement}} controls
   */
  bind({ slider, output, xMode }) {
    slider.max = String(MAX_SMOOTHING);
    slider.value = String(this.smoothing);
    output.value = this.smoothing.toFixed(3);
    xMode.replaceChildren(...Object.entries(X_MODES).map(([value, label]) => new Option(label, value)));
    xMode.value = this.xMode;
    let timer = null;
    slider.addEventListener("input", () => {
      output.value = clampSmoothing(slider.value).toFixed(3);
      clearTimeout(timer);  // redraw once the slider rests a moment, not at every pixel
      timer = setTimeout(() => this.set({ smoothing: clampSmoothing(slider.value) }), 120);
    });
    xMode.addEventListener("change", () => this.set({ xMode: xMode.value }));
  }
}
