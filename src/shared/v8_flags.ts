/**
 * The V8 setting every launch of the sidecar passes (`deno.json`'s tasks, the
 * systemd unit, the container's entry point, the prepared folder's command).
 *
 * V8 lets the old generation grow to as much as four times what the last full
 * collection kept before it collects again. While every NATS read took a fresh
 * 256 KiB chunk, external memory forced a full collection every 0.25 s; with
 * the chunks reused (`src/bus/read_chunks.ts`) only heap growth starts one, and
 * `serve`'s RSS swung by 100 MB (18%) over two minutes at half load. At 30%
 * growth a full collection comes every 2–3 s there and RSS stays within 3%
 * (docs/performance.md, "Thirteenth sitting").
 *
 * @example
 * ```ts
 * import { SIDECAR_V8_FLAGS } from "./v8_flags.ts";
 * const args = ["run", "-A", SIDECAR_V8_FLAGS, "src/main.ts", "serve"];
 * ```
 *
 * @module
 */

/** `deno run` flag: collect the old generation once it grows 30% past the last collection's. */
export const SIDECAR_V8_FLAGS = "--v8-flags=--heap-growing-percent=30";
