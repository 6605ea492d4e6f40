/**
 * Latent labels from Neuronpedia explanation exports (reference
 * sae-formats.md §7). The bulk export of one SAE, `v1/{modelId}/{sourceId}/`,
 * holds `explanations/batch-{n}.jsonl.gz`, one JSON row per explanation:
 * `{id, modelId, layer, index, description, typeName, explanationModelName, ...}`
 * where `layer` is the source id and `index` is the latent index **as a
 * string**. Batches are paged by `ORDER BY index` on that text column
 * ("0", "1", "10", "100", ...), so a batch number says nothing about the
 * indices inside it: every row is keyed by its own `index`.
 *
 * @module
 */

import { dirname, join } from "node:path";
import type { SaeWeights } from "../core/sae.ts";

/** An explanation export that cannot be read, or labels that do not fit an SAE. */
export class LabelFormatError extends TypeError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "LabelFormatError";
  }
}

/** Options for {@linkcode readNeuronpediaExplanations} and {@linkcode loadNeuronpediaLabels}. */
export interface NeuronpediaLabelOptions {
  /**
   * `modelId/sourceId` of the SAE the labels are for (SAELens
   * `metadata.neuronpedia_id`). Rows of another model or source are left out
   * and counted. When null, the first row's `modelId/layer` is taken as the
   * export's own id and rows of any other are left out and counted.
   */
  neuronpediaId?: string | null;
  /** Called once with a summary when rows were left out (default: nothing). */
  onWarning?: (message: string) => void;
}

/** What {@linkcode readNeuronpediaExplanations} found. */
export interface NeuronpediaExplanations {
  /** Latent index → description (one per latent, the first in file order). */
  labels: Map<number, string>;
  /** The export files read, in the order they were read. */
  files: string[];
  /** Rows read (excluding blank lines). */
  rows: number;
  /** Further explanations of a latent that already had one (not used). */
  duplicates: number;
  /** Rows of another `modelId/layer` than the SAE's (not used). */
  mismatched: number;
  /** `modelId/layer` the labels were taken from, or null when the export is empty. */
  neuronpediaId: string | null;
}

const EXPORT_FILE = /\.jsonl(\.gz)?$/;

/** `batch-10.jsonl.gz` → 10; names without a number sort after every batch. */
function batchNumber(name: string): number {
  const m = /(\d+)\.jsonl(\.gz)?$/.exec(name);
  return m ? Number(m[1]) : Number.POSITIVE_INFINITY;
}

async function statOrNull(path: string): Promise<Deno.FileInfo | null> {
  try {
    return await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

/**
 * The export files behind `path`: the file itself, or the `*.jsonl[.gz]`
 * files of a folder (its `explanations/` subfolder when it has one), in
 * numeric batch order (`batch-2` before `batch-10`) so that "first in file
 * order" means the same on every file system.
 */
async function exportFiles(path: string): Promise<string[]> {
  const info = await statOrNull(path);
  if (!info) throw new LabelFormatError(`${path}: no such explanation export (file or folder)`);
  if (info.isFile) return [path];
  const sub = join(path, "explanations");
  const dir = (await statOrNull(sub))?.isDirectory ? sub : path;
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (entry.isFile && EXPORT_FILE.test(entry.name)) names.push(entry.name);
  }
  if (names.length === 0) {
    throw new LabelFormatError(
      `${dir}: expected Neuronpedia explanation batches (explanations/batch-<n>.jsonl.gz or *.jsonl), found none`,
    );
  }
  names.sort((a, b) => batchNumber(a) - batchNumber(b) || (a < b ? -1 : a > b ? 1 : 0));
  return names.map((n) => join(dir, n));
}

async function readText(file: string): Promise<string> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(file);
  } catch (e) {
    throw new LabelFormatError(`${file}: cannot read: ${(e as Error).message}`, { cause: e });
  }
  // Gzip by content (magic 1f 8b), not by name: S3 downloads sometimes drop or add `.gz`.
  if (bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b) {
    try {
      const stream = new Blob([bytes as Uint8Array<ArrayBuffer>]).stream()
        .pipeThrough(new DecompressionStream("gzip"));
      bytes = new Uint8Array(await new Response(stream).arrayBuffer());
    } catch (e) {
      throw new LabelFormatError(
        `${file}: corrupt or truncated gzip data: ${(e as Error).message}`,
        { cause: e },
      );
    }
  } else if (file.endsWith(".gz")) {
    throw new LabelFormatError(`${file}: expected gzip data (magic 1f 8b), found other bytes`);
  }
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch (e) {
    throw new LabelFormatError(`${file}: not UTF-8 text`, { cause: e });
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** The row's latent index: a decimal string (as exported) or a non-negative integer. */
function rowIndex(v: unknown): number | null {
  if (typeof v === "string" && /^\d+$/.test(v)) {
    const n = Number(v);
    return Number.isSafeInteger(n) ? n : null;
  }
  if (typeof v === "number" && Number.isSafeInteger(v) && v >= 0) return v;
  return null;
}

/**
 * Read a Neuronpedia explanation export and keep one label per latent.
 *
 * Rules:
 * - every row is keyed by its own `index` field, never by its position;
 * - several explanations of one latent (other `typeName` or
 *   `explanationModelName`): the first in file order is kept, files taken in
 *   numeric batch order, lines top to bottom; the others are counted in
 *   `duplicates`;
 * - rows of another `modelId/layer` than the SAE's are left out and counted
 *   in `mismatched`; if no row matches the SAE at all, that is an error (the
 *   export belongs to another SAE);
 * - blank lines are skipped; any other line that is not a JSON object with a
 *   string/integer `index` and a string `description` is an error naming `file:line`.
 *
 * @param path a `.jsonl` / `.jsonl.gz` file, a folder of batches, or a folder holding `explanations/`
 * @throws {LabelFormatError} naming the file (and line) and what was expected
 *
 * @example
 * ```ts
 * const r = await readNeuronpediaExplanations("downloads/gpt2-small/8-res-jb", {
 *   neuronpediaId: "gpt2-small/8-res-jb",
 * });
 * r.labels.get(42); // "references to Paris"
 * ```
 */
export async function readNeuronpediaExplanations(
  path: string,
  opts: NeuronpediaLabelOptions = {},
): Promise<NeuronpediaExplanations> {
  const files = await exportFiles(path);
  const labels = new Map<number, string>();
  let expected = opts.neuronpediaId ?? null;
  let rows = 0, duplicates = 0, mismatched = 0, matched = 0;
  const seenSources = new Set<string>();
  for (const file of files) {
    const lines = (await readText(file)).split("\n");
    for (let ln = 0; ln < lines.length; ln++) {
      const line = lines[ln].trim();
      if (line === "") continue;
      const where = `${file}:${ln + 1}`;
      let row: unknown;
      try {
        row = JSON.parse(line);
      } catch (e) {
        throw new LabelFormatError(
          `${where}: expected one JSON object per line, found malformed JSON (${
            (e as Error).message
          })`,
          { cause: e },
        );
      }
      if (!isRecord(row)) {
        throw new LabelFormatError(
          `${where}: expected a JSON object, found ${Array.isArray(row) ? "an array" : typeof row}`,
        );
      }
      const index = rowIndex(row.index);
      if (index === null) {
        throw new LabelFormatError(
          `${where}: expected "index" to be a latent index (a decimal string like "42"), found ${
            JSON.stringify(row.index) ?? "nothing"
          }`,
        );
      }
      if (typeof row.description !== "string") {
        throw new LabelFormatError(
          `${where}: expected "description" to be a string, found ${
            JSON.stringify(row.description) ?? "nothing"
          }`,
        );
      }
      rows++;
      // Rows without modelId/layer (hand-made files) are taken as the SAE's own.
      if (typeof row.modelId === "string" && typeof row.layer === "string") {
        const id = `${row.modelId}/${row.layer}`;
        seenSources.add(id);
        expected ??= id;
        if (id !== expected) {
          mismatched++;
          continue;
        }
      }
      matched++;
      if (labels.has(index)) duplicates++;
      else labels.set(index, row.description);
    }
  }
  if (rows > 0 && matched === 0) {
    throw new LabelFormatError(
      `${path}: explanations are for ${[...seenSources].join(", ")}, expected ${expected} ` +
        `(the SAE's Neuronpedia id); labels only line up with the exact SAE Neuronpedia indexed`,
    );
  }
  if (mismatched > 0) {
    opts.onWarning?.(
      `${path}: left out ${mismatched} of ${rows} explanations from another model/source than ${expected} ` +
        `(found ${[...seenSources].filter((s) => s !== expected).join(", ")})`,
    );
  }
  return { labels, files, rows, duplicates, mismatched, neuronpediaId: expected };
}

/**
 * Load latent labels (index → description) from a Neuronpedia explanation
 * export; see {@linkcode readNeuronpediaExplanations} for the rules.
 *
 * @example
 * ```ts
 * import { loadSae } from "./load.ts";
 * const labels = await loadNeuronpediaLabels("my-sae/explanations");
 * const sae = attachLabels(await loadSae("my-sae"), labels);
 * ```
 */
export async function loadNeuronpediaLabels(
  path: string,
  opts: NeuronpediaLabelOptions = {},
): Promise<Map<number, string>> {
  return (await readNeuronpediaExplanations(path, opts)).labels;
}

/**
 * `sae` with `labels` attached (a new object; the weights are shared).
 *
 * @throws {LabelFormatError} when a label's index is outside `[0, d_sae)`:
 * the labels belong to a wider SAE (another width or L0 variant)
 *
 * @example
 * ```ts
 * import type { SaeWeights } from "../core/sae.ts";
 * declare const sae: SaeWeights;
 * const labelled = attachLabels(sae, new Map([[3, "French text"]]));
 * labelled.labels?.get(3); // "French text"
 * ```
 */
export function attachLabels(sae: SaeWeights, labels: ReadonlyMap<number, string>): SaeWeights {
  let max = -1;
  for (const i of labels.keys()) if (i > max) max = i;
  if (max >= sae.dSae) {
    throw new LabelFormatError(
      `${sae.source}: labels go up to latent ${max}, expected indices below d_sae = ${sae.dSae}; ` +
        `they belong to another SAE (width or L0 variant)`,
    );
  }
  return { ...sae, labels };
}

/**
 * The explanation export stored next to an SAE, if any: an `explanations/`
 * folder inside the SAE folder (or beside the SAE file, e.g. `params.npz`).
 *
 * @example
 * ```ts
 * const found = await findLabelsNextTo("saes/gpt2-small-res-jb/blocks.8.hook_resid_pre");
 * // "saes/gpt2-small-res-jb/blocks.8.hook_resid_pre/explanations" or null
 * ```
 */
export async function findLabelsNextTo(saePath: string): Promise<string | null> {
  const info = await statOrNull(saePath);
  if (!info) return null;
  const dir = info.isDirectory ? saePath : dirname(saePath);
  const candidate = join(dir, "explanations");
  if (!(await statOrNull(candidate))?.isDirectory) return null;
  for await (const entry of Deno.readDir(candidate)) {
    if (entry.isFile && EXPORT_FILE.test(entry.name)) return candidate;
  }
  return null;
}
