// The access token: asked once in a dialog when the server answers 401 (or closes a
// websocket with 4401), then kept in sessionStorage for the tab's session.

import { withToken } from "./urls.js";

const STORAGE_KEY = "emaboard-token";
let pending = null;

/** The token of this tab session, or null. */
export function getToken() {
  return sessionStorage.getItem(STORAGE_KEY);
}

/**
 * Starts the browser's download of a same-origin API file (a snapshot, a rebuilt EMA):
 * through a link, which sends no headers, so the token goes in its query.
 */
export function downloadFile(url) {
  const link = document.createElement("a");
  link.href = withToken(url, getToken());
  link.download = "";
  document.body.append(link);
  link.click();
  link.remove();
}

/** Forgets the token (after the server refused it). */
export function clearToken() {
  sessionStorage.removeItem(STORAGE_KEY);
}

/**
 * Asks the person for the token (one dialog at a time, whoever asks) and stores it.
 * @param {string} reason shown above the field, e.g. "This server requires a token."
 * @returns {Promise<string>} the token typed in.
 */
export function askToken(reason) {
  if (pending) return pending;
  pending = documentParsed().then(() => new Promise((resolve) => {
    const dialog = tokenDialog();
    dialog.querySelector(".token-reason").textContent = reason;
    const form = dialog.querySelector("form");
    const input = dialog.querySelector("input");
    input.value = "";
    form.onsubmit = (event) => {
      event.preventDefault();
      const token = input.value.trim();
      if (!token) return;
      sessionStorage.setItem(STORAGE_KEY, token);
      dialog.close();
      pending = null;
      resolve(token);
    };
    dialog.addEventListener("cancel", (event) => event.preventDefault(), { once: true });
    dialog.showModal();
    input.focus();
  }));
  return pending;
}

/** Resolves once the page's body is parsed (a module may ask before it is: first_load.js). */
function documentParsed() {
  if (document.readyState !== "loading") return Promise.resolve();
  return new Promise((resolve) => document.addEventListener("DOMContentLoaded", resolve, { once: true }));
}

/**
 * After the server refused a request: asks again, saying why, unless a newer token was
 * typed in meanwhile (two requests refused with the same old token ask only once).
 * @param {string|null} refusedToken the token the refused request carried.
 * @returns {Promise<string>} the token to retry with.
 */
export function askTokenAgain(refusedToken) {
  const current = getToken();
  if (current && current !== refusedToken) return Promise.resolve(current);
  clearToken();
  return askToken(refusedToken ? "That token was refused: try again." : "This server requires a token.");
}

function tokenDialog() {
  let dialog = document.getElementById("token-dialog");
  if (dialog) return dialog;
  dialog = document.createElement("dialog");
  dialog.id = "token-dialog";
  dialog.setAttribute("aria-labelledby", "token-title");
  dialog.innerHTML = `
    <form method="dialog">
      <h2 id="token-title">Access token</h2>
      <p class="token-reason"></p>
      <label for="token-input">Token</label>
      <input id="token-input" name="token" type="password" autocomplete="current-password" required>
      <div class="dialog-actions"><button type="submit">Continue</button></div>
    </form>`;
  document.body.append(dialog);
  return dialog;
}
