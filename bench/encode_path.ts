/**
 * Which encode path an encoder ran and how many tokens fell back to the
 * exact full encode, read duck-typed: an encoder with a faster exact path
 * exposes `readonly path: string` (e.g. `"f32"`, `"int8-candidates"`) and
 * `fallbackTokens: number` (a running count); one without them is the plain
 * f32 encode with no fallbacks. An `int8-candidates` encoder whose
 * `int8Kernel` is `native-vnni` (the native CPU kernels) reports
 * `int8-candidates/native`.
 *
 * @module
 */

/** An encoder's path and its running count of fallback tokens. */
export interface EncodePath {
  path: string;
  fallbackTokens: number;
}

/**
 * `enc.path` (default `"f32"`) and `enc.fallbackTokens` (default 0); a value
 * of the wrong type counts as absent.
 *
 * @example
 * ```ts
 * encodePathOf({ path: "int8-candidates", fallbackTokens: 3 }); // { path: "int8-candidates", fallbackTokens: 3 }
 * encodePathOf({}); // { path: "f32", fallbackTokens: 0 }
 * encodePathOf({ path: "int8-candidates", int8Kernel: "native-vnni" }).path; // "int8-candidates/native"
 * ```
 */
export function encodePathOf(enc: object): EncodePath {
  const { path, fallbackTokens, int8Kernel } = enc as {
    path?: unknown;
    fallbackTokens?: unknown;
    int8Kernel?: unknown;
  };
  const native = path === "int8-candidates" && int8Kernel === "native-vnni";
  return {
    path: native ? "int8-candidates/native" : typeof path === "string" ? path : "f32",
    fallbackTokens: typeof fallbackTokens === "number" && Number.isFinite(fallbackTokens)
      ? fallbackTokens
      : 0,
  };
}
