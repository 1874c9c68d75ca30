// The REST client: same-origin fetch with the tab's token; a 401 asks for the token and
// retries. Errors carry the server's message (docs/api.md error shape).

import { askTokenAgain, getToken } from "./token.js";

/** An HTTP error answered by the server: `status` and the server's `message`. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.name = "ApiError";
    this.status = status;
  }
}

/**
 * fetch() a same-origin API path with `Authorization: Bearer <token>` when the tab has one.
 * @returns {Promise<Response>} a response with a 2xx status.
 * @throws {ApiError} for any other status than 401 (which asks for a token and retries).
 */
export async function apiFetch(path, options = {}) {
  for (;;) {
    const token = getToken();
    const headers = { ...(options.headers || {}) };
    if (token) headers.Authorization = `Bearer ${token}`;
    const response = await fetch(path, { ...options, headers });
    if (response.status === 401) {
      await askTokenAgain(token);
      continue;
    }
    if (!response.ok) throw new ApiError(response.status, await errorMessage(response));
    return response;
  }
}

/** GET (or any method) a JSON answer; see apiFetch for errors. */
export async function apiJson(path, options = {}) {
  const response = await apiFetch(path, options);
  return response.status === 204 ? null : response.json();
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    return body?.error?.message || `${response.status} ${response.statusText}`;
  } catch {
    return `${response.status} ${response.statusText}`;
  }
}
