// The filter boxes: a case-insensitive regular expression over names (TensorBoard's tag
// filter), used for the scalar panels and the config table.

/**
 * A name filter from the text typed in.
 * @param {string} text a regular expression; empty (or blanks) matches every name.
 * @returns {{test: (name: string) => boolean, error: string|null}} error says why the text
 *   is no regular expression (then every name matches, so nothing disappears mid-typing).
 */
export function keyFilter(text) {
  const pattern = text.trim();
  if (!pattern) return { test: () => true, error: null };
  try {
    const regex = new RegExp(pattern, "i");
    return { test: (name) => regex.test(name), error: null };
  } catch (error) {
    return {
      test: () => true,
      error: `Invalid regular expression ${JSON.stringify(pattern)}: ${error.message}`,
    };
  }
}
