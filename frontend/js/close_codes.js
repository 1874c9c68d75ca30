// The server's websocket close codes (backend/emaboard_server/app/api/close_codes.py; a test
// compares the two): application codes 4000 + the HTTP status of the same refusal. The page
// branches on the code; the close reason is only shown to the person.

export const CLOSE_CODES = Object.freeze({
  INVALID_HOST: 4400,
  INVALID_TOKEN: 4401,
  CROSS_ORIGIN: 4403,
  RUN_NOT_FOUND: 4404,
  INVALID_REQUEST: 4422,
});

/**
 * What the page does when its websocket closes with `code`.
 * @returns {"token"|"stop"|"reconnect"} "token": ask for the token, then reconnect; "stop":
 *   show the reason and do not reconnect (the same request would be refused again);
 *   "reconnect": try again with backoff (the server went away, a proxy timed out, ...).
 */
export function closeAction(code) {
  if (code === CLOSE_CODES.INVALID_TOKEN) return "token";
  if (Object.values(CLOSE_CODES).includes(code)) return "stop";
  return "reconnect";
}
