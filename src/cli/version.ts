/**
 * `latentwatch --version` (or `latentwatch version`): the version of
 * latentwatch (deno.json `version`, via `src/shared/version.ts`) and of what
 * it runs on: Deno, V8, TypeScript and the onnxruntime-node actually loaded.
 *
 * @module
 */
import ort from "onnxruntime-node";
import { buildInfo } from "../shared/version.ts";

/**
 * The lines `--version` prints, the first `latentwatch <version>`.
 *
 * @example
 * ```ts
 * const lines = versionLines();
 * lines[0]; // "latentwatch 0.14.0"
 * ```
 */
export function versionLines(): string[] {
  const b = buildInfo();
  // the binding loaded says its own version; the pin is what deno.json asked for
  const loaded = ort.env.versions?.node ?? b.onnxruntime;
  return [
    `latentwatch ${b.version}`,
    `deno ${b.deno}`,
    `v8 ${b.v8}`,
    `typescript ${b.typescript}`,
    `onnxruntime-node ${loaded}`,
  ];
}

/**
 * Print the versions; exit code 0 (2 for arguments, which it takes none of).
 *
 * @example
 * ```ts
 * await runVersionCommand([]); // prints "latentwatch 0.14.0", "deno …", …
 * ```
 */
export function runVersionCommand(args: string[]): Promise<number> {
  if (args.length > 0) {
    console.error(`latentwatch version: expected no arguments, found ${args.join(" ")}`);
    return Promise.resolve(2);
  }
  console.log(versionLines().join("\n"));
  return Promise.resolve(0);
}
