/**
 * The length of a string in UTF-8 bytes, counted from its UTF-16 code units
 * without encoding it (a `TextEncoder.encode` per header value was two
 * fifths of the TypeScript tap's publish, which sizes every frame's headers
 * against the server's `max_payload`).
 *
 * @module
 */

/**
 * Bytes `TextEncoder` would write for `s`: 1 per code unit below U+0080, 2
 * below U+0800, 4 per surrogate pair, 3 otherwise (a lone surrogate is
 * written as U+FFFD, also 3).
 *
 * @example
 * ```ts
 * utf8Length("gpt2"); // 4
 * utf8Length("naïve ✓ 😀"); // 15
 * ```
 */
export function utf8Length(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) {
      n += 1;
      continue;
    }
    // three bytes for one code unit, or four for a surrogate pair's two
    n += 2;
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = s.charCodeAt(i + 1); // NaN past the end
      if (d >= 0xdc00 && d <= 0xdfff) i++;
    }
  }
  return n;
}
