/**
 * The V8 settings every launch of the sidecar passes (`deno.json`'s tasks, the
 * systemd unit, the container's entry point, the prepared folder's command).
 *
 * V8 lets the old generation grow to as much as four times what the last full
 * collection kept before it collects again. While every NATS read took a fresh
 * 256 KiB chunk, external memory forced a full collection every 0.25 s; with
 * the chunks reused (`src/bus/read_chunks.ts`) only heap growth starts one, and
 * `serve`'s RSS swung by 100 MB (18%) over two minutes at half load. At 30%
 * growth a full collection comes every 2–3 s there and RSS stays within 3%
 * (docs/performance-history.md, "Thirteenth sitting").
 *
 * Allocation-site pretenuring is off. V8 allocates objects from a site whose
 * objects often survived straight in the old generation; after a burst (a
 * queue of frames that lived through two scavenges) it did so for the
 * per-frame objects, which die within milliseconds once the load is steady.
 * At half load the old generation then grew 1.2 MB per scavenge instead of
 * 0.6, a full collection came every 2–3 s instead of every 4–5, and each one's
 * marking ran for 20–60 ms, V8's helper threads on the second core for 15–35
 * ms of it, which is most of the half-load tail (docs/performance-history.md,
 * "Sixteenth sitting").
 *
 * Collection runs on the sidecar's own thread (`--single-threaded-gc`). On a
 * two-core host V8's helper threads woke on the second core in every round of
 * gated decode steps, where the model server and the broker run: at eight
 * gated requests the sidecar's part of a round fell from 180–194 to 173–185
 * µs at p50, the step from 0.50–0.54 to 0.47–0.50 ms, and CPU per step by 3
 * µs; the end-to-end rows measured the same either way (docs/performance-history.md,
 * "Twenty-seventh sitting").
 *
 * @example
 * ```ts
 * import { SIDECAR_V8_FLAGS } from "./v8_flags.ts";
 * const args = ["run", "-A", SIDECAR_V8_FLAGS, "src/main.ts", "serve"];
 * ```
 *
 * @module
 */

/**
 * `deno run` flag: collect the old generation once it grows 30% past the last
 * collection's, allocate every object young (no pretenuring), and collect on
 * the main thread alone.
 */
export const SIDECAR_V8_FLAGS =
  "--v8-flags=--heap-growing-percent=30,--no-allocation-site-pretenuring,--single-threaded-gc";
