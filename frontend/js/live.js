// One websocket per page, reconnected with exponential backoff, and the visible
// connection indicator. What a close means comes from its code (close_codes.js): 4401 (bad
// or missing token) asks for the token before reconnecting; the other refusals (4404 run
// not found, 4403 cross-site, 4400 host) stop reconnecting and show the server's reason.

import { closeAction } from "./close_codes.js";
import { askTokenAgain, getToken } from "./token.js";
import { websocketUrl } from "./urls.js";

/**
 * Backoff delay before reconnect attempt `attempt` (0-based): 0.5 s doubling up to maxMs,
 * with ±20 % jitter from `random` (a number in [0, 1)).
 */
export function backoffMs(attempt, random = Math.random(), maxMs = 5000) {
  const base = Math.min(maxMs, 500 * 2 ** attempt);
  return Math.round(base * (0.8 + 0.4 * random));
}

/** A self-reconnecting websocket; `onMessage(object, {reconnected})` gets parsed JSON. */
export class LiveSocket {
  /**
   * @param {string} path e.g. "/ws/runs/3".
   * @param {{params?: object, onMessage: Function, indicator?: HTMLElement,
   *   onRefused?: (reason: string) => void}} options onRefused is called when the server
   *   refuses the socket for another reason than the token (no reconnect then).
   */
  constructor(path, { params = {}, onMessage, indicator = null, onRefused = () => {} }) {
    this.path = path;
    this.params = params;
    this.onMessage = onMessage;
    this.onRefused = onRefused;
    this.indicator = indicator;
    this.attempt = 0;
    this.everOpened = false;
    this.socket = null;
    this.timer = null;
    this.closed = false;
  }

  /** Opens the connection (and keeps it open until close()). */
  start() {
    this.closed = false;
    this.connect();
  }

  /** Closes for good (no reconnect). */
  close() {
    this.closed = true;
    clearTimeout(this.timer);
    if (this.socket) this.socket.close();
    this.setState("offline", "closed");
  }

  connect() {
    const token = getToken();
    const params = token ? { ...this.params, token } : this.params;
    this.setState(this.everOpened ? "reconnecting" : "connecting", "connecting…");
    const socket = new WebSocket(websocketUrl(window.location, this.path, params));
    socket.token = token;
    this.socket = socket;
    let reconnected = false;
    socket.onopen = () => {
      reconnected = this.everOpened;
      this.everOpened = true;
      this.attempt = 0;
      this.setState("live", "live");
    };
    socket.onmessage = (event) => this.onMessage(JSON.parse(event.data), { reconnected });
    socket.onclose = (event) => this.handleClose(socket, event);
  }

  async handleClose(socket, event) {
    if (socket !== this.socket || this.closed) return;
    const action = closeAction(event.code);
    if (action === "stop") {
      this.setState("offline", event.reason);
      this.closed = true;
      this.onRefused(event.reason);
      return;
    }
    if (action === "token") {
      this.setState("offline", "token needed");
      await askTokenAgain(socket.token);
      this.connect();
      return;
    }
    const delay = backoffMs(this.attempt);
    this.attempt += 1;
    this.setState("reconnecting", `reconnecting in ${Math.ceil(delay / 1000)} s…`);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  setState(state, text) {
    this.state = state;
    if (!this.indicator) return;
    this.indicator.dataset.state = state;
    this.indicator.querySelector(".conn-text").textContent = text;
    this.indicator.title = `Live updates: ${text}`;
  }
}
