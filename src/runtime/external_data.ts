/**
 * Writes an ONNX model whose large initializers live in a raw side file
 * (ONNX external data), for models past protobuf's 2 GB message limit.
 *
 * Each large float initializer loses its `rawData` and gains
 * `dataLocation: EXTERNAL` with `location`/`offset`/`length` entries pointing
 * into `weights.bin` beside `model.onnx`. The bytes are written straight
 * from the SAE's own Float32Array views in chunks, so no second full copy of
 * `W_enc` is ever made in JS. onnxruntime resolves `location` relative to
 * the model file's folder, so the session must be created from the path.
 *
 * @module
 */

import { join } from "node:path";
import onnxProto from "onnx-proto";
import type { onnx as OnnxTypes } from "onnx-proto";
import type { ProgressFn } from "./matrix.ts";

const { onnx } = onnxProto;

/** Name of the raw weights file beside the model. */
export const EXTERNAL_DATA_FILE = "weights.bin";
/** Name of the model file. */
export const EXTERNAL_MODEL_FILE = "model.onnx";
/** Initializers at least this large go to the side file; small ones stay inline. */
const MIN_EXTERNAL_BYTES = 1 << 16;
/** Offsets are page-aligned so onnxruntime can map each tensor directly. */
const ALIGN = 4096;
/** Write (and report progress) in 64 MiB pieces. */
const CHUNK = 64 << 20;

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await file.write(bytes.subarray(off));
}

/**
 * Write `model` into `dir` as `model.onnx` + `weights.bin` and return the
 * model's path. `model` is not modified (its initializers are shallow-copied).
 *
 * @example
 * ```ts
 * import * as ort from "onnxruntime-node";
 * import { buildEncoderGraph } from "./onnx_graph.ts";
 * import type { SaeWeights } from "../core/sae.ts";
 * declare const sae: SaeWeights;
 * const dir = await Deno.makeTempDir();
 * const path = await writeModelWithExternalData(buildEncoderGraph(sae), dir);
 * const session = await ort.InferenceSession.create(path);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function writeModelWithExternalData(
  model: OnnxTypes.IModelProto,
  dir: string,
  onProgress?: ProgressFn,
): Promise<string> {
  const inits = model.graph?.initializer ?? [];
  let total = 0;
  for (const t of inits) {
    const n = t.rawData?.byteLength ?? 0;
    if (n >= MIN_EXTERNAL_BYTES) total += n;
  }
  const file = await Deno.open(join(dir, EXTERNAL_DATA_FILE), {
    write: true,
    create: true,
    truncate: true,
  });
  const outInits: OnnxTypes.ITensorProto[] = [];
  let offset = 0, done = 0;
  try {
    for (const t of inits) {
      const raw = t.rawData;
      if (!raw || raw.byteLength < MIN_EXTERNAL_BYTES) {
        outInits.push(t);
        continue;
      }
      const pad = (ALIGN - (offset % ALIGN)) % ALIGN;
      if (pad) await writeAll(file, new Uint8Array(pad));
      offset += pad;
      for (let p = 0; p < raw.byteLength; p += CHUNK) {
        await writeAll(file, raw.subarray(p, Math.min(p + CHUNK, raw.byteLength)));
        done += Math.min(CHUNK, raw.byteLength - p);
        onProgress?.(done, total, "write");
      }
      outInits.push({
        name: t.name,
        dims: t.dims,
        dataType: t.dataType,
        dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
        externalData: [
          { key: "location", value: EXTERNAL_DATA_FILE },
          { key: "offset", value: String(offset) },
          { key: "length", value: String(raw.byteLength) },
        ],
      });
      offset += raw.byteLength;
    }
  } finally {
    file.close();
  }
  const bytes = onnx.ModelProto.encode({
    ...model,
    graph: { ...model.graph, initializer: outInits },
  }).finish();
  const path = join(dir, EXTERNAL_MODEL_FILE);
  await Deno.writeFile(path, bytes);
  return path;
}
