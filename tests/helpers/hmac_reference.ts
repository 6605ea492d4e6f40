/**
 * HMAC-SHA-256 through WebCrypto: a reference apart from the redaction code
 * (`src/core/redact.ts`), for tests of hashed token text.
 *
 * @module
 */

/**
 * HMAC-SHA-256 of `text` under `key`, lower-case hex (all 64 digits).
 *
 * @example
 * ```ts
 * const mac = await hmacHex("key", "hunter2024");
 * mac.length; // 64
 * ```
 */
export async function hmacHex(key: string, text: string): Promise<string> {
  const k = await crypto.subtle.importKey(
    "raw",
    new TextEncoder().encode(key),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const d = await crypto.subtle.sign("HMAC", k, new TextEncoder().encode(text));
  return [...new Uint8Array(d)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * The first 16 hex digits of {@linkcode hmacHex}: what a hashed token shows.
 *
 * @example
 * ```ts
 * (await hmac16("key", "hunter2024")).length; // 16
 * ```
 */
export async function hmac16(key: string, text: string): Promise<string> {
  return (await hmacHex(key, text)).slice(0, 16);
}
