/**
 * The version of latentwatch and of what it runs on, from one place: the
 * `version` of deno.json, and the onnxruntime-node release pinned in its
 * `imports`. Read by `latentwatch --version` and the
 * `latentwatch_build_info` metric.
 *
 * @module
 */
import denoJson from "../../deno.json" with { type: "json" };

/** latentwatch's version (deno.json `version`). */
export const VERSION: string = denoJson.version;

/** Versions of latentwatch and of its runtime. */
export interface BuildInfo {
  version: string;
  deno: string;
  v8: string;
  typescript: string;
  /** The onnxruntime-node release pinned in deno.json. */
  onnxruntime: string;
}

/** The version an `npm:name@x.y.z` specifier pins (`unknown` when it pins none). */
function pinned(specifier: string | undefined): string {
  return /@(\d[^/]*)$/.exec(specifier ?? "")?.[1] ?? "unknown";
}

/**
 * The versions of latentwatch, Deno, V8, TypeScript and onnxruntime-node.
 *
 * @example
 * ```ts
 * const info = buildInfo();
 * console.log(`latentwatch ${info.version} (deno ${info.deno})`);
 * ```
 */
export function buildInfo(): BuildInfo {
  return {
    version: VERSION,
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    typescript: Deno.version.typescript,
    onnxruntime: pinned(denoJson.imports["onnxruntime-node"]),
  };
}
