/**
 * Reading an SAE's tensors, shared by the format readers: a
 * {@linkcode TensorSource} (a safetensors file read one tensor at a time, or
 * arrays already in memory) and a {@linkcode WeightReader} that checks each
 * tensor's presence, shape and dtype against what the config says and
 * reports progress.
 *
 * @module
 */
import { SaeFormatError } from "./errors.ts";
import { SafetensorsError } from "./safetensors.ts";
import { SafetensorsReader } from "./safetensors_reader.ts";
import { rearrange, type TensorLayout } from "./tensor_layout.ts";
/**
 * Called while weights load: `done` of `total` stored bytes read so far, and
 * what is being read (e.g. `"W_enc"`).
 */
export type LoadProgress = (done: number, total: number, phase: string) => void;

/** Options every loader accepts. */
export interface SaeLoadOptions {
  /**
   * SAELens `expected_average_only_in`: the norm scaling factor `s` to fold
   * into the weights. Overrides `activation_scaler.json` and the cfg's
   * `norm_scaling_factor`.
   */
  scalingFactor?: number;
  onProgress?: LoadProgress;
}

/** A tensor's stored element type and shape, before any conversion. */
export interface TensorInfo {
  dtype: string;
  shape: number[];
  bytes: number;
}

/** A named set of tensors: a safetensors file read lazily, or arrays already in memory (npz). */
export interface TensorSource {
  readonly path: string;
  names(): string[];
  info(name: string): TensorInfo | undefined;
  /** A fresh f32 array the caller owns, laid out by `layout`. */
  read(
    name: string,
    layout: TensorLayout,
    onChunk: (bytes: number) => void,
  ): Promise<Float32Array<ArrayBuffer>>;
  close(): void;
}

/**
 * Open a safetensors weights file as a {@linkcode TensorSource} that reads one
 * tensor at a time from disk (memory-lean).
 *
 * @throws {SaeFormatError} when the file is missing, truncated or malformed
 */
export async function openSafetensorsSource(path: string, what: string): Promise<TensorSource> {
  let reader: SafetensorsReader;
  try {
    reader = await SafetensorsReader.open(path);
  } catch (e) {
    if (e instanceof SafetensorsError) throw new SaeFormatError(e.message, { cause: e });
    throw new SaeFormatError(`${path}: cannot read the ${what}: ${(e as Error).message}`, {
      cause: e,
    });
  }
  return {
    path,
    names: () => [...reader.entries.keys()],
    info: (name) => {
      const e = reader.entries.get(name);
      return e && { dtype: e.dtype, shape: e.shape, bytes: e.end - e.begin };
    },
    read: async (name, layout, onChunk) => {
      try {
        return await reader.readF32(name, layout, onChunk);
      } catch (e) {
        if (e instanceof SafetensorsError) throw new SaeFormatError(e.message, { cause: e });
        throw e;
      }
    },
    close: () => reader.close(),
  };
}

/**
 * Arrays already decoded to f32 (e.g. from an `.npz`) as a {@linkcode TensorSource}.
 * Each array is handed out once (the caller owns it), so reading a name twice fails.
 */
export function memoryTensorSource(
  path: string,
  arrays: Map<string, { shape: number[]; data: Float32Array; dtype: string }>,
): TensorSource {
  return {
    path,
    names: () => [...arrays.keys()],
    info: (name) => {
      const a = arrays.get(name);
      return a && { dtype: a.dtype, shape: a.shape, bytes: a.data.byteLength };
    },
    read: (name, layout, onChunk) => {
      const a = arrays.get(name);
      if (!a) return Promise.reject(new SaeFormatError(`${path}: no array '${name}'`));
      const out = rearrange(a.data, a.shape, layout);
      onChunk(a.data.byteLength);
      // A fresh, exactly sized, ArrayBuffer-backed copy only when the layout did not make one.
      return Promise.resolve(
        out === a.data || !(out.buffer instanceof ArrayBuffer)
          ? new Float32Array(out)
          : out as Float32Array<ArrayBuffer>,
      );
    },
    close: () => {},
  };
}

/** What a loader expects of one stored tensor. */
export interface TensorExpectation {
  /** Shape as stored upstream, e.g. `[d_out, d_in]` values. */
  shape: number[];
  /** The same shape in words, e.g. `"[d_out, d_in]"`, for messages. */
  dims: string;
  /** How to place it into the runtime layout. */
  layout?: TensorLayout;
  /** Also accept this stored shape (same element order), e.g. hook_z `[n_heads, d_head, d_sae]`. */
  accept?: (shape: number[]) => boolean;
}

/**
 * Reads the tensors of one SAE from a {@linkcode TensorSource} with checks:
 * a missing tensor, a shape that disagrees with the config, or an integer
 * dtype fails naming the file, the tensor, what was expected and what was
 * found. Reports progress over the tensors named in `wanted`.
 *
 * @example
 * ```ts
 * declare const source: TensorSource;
 * const dIn = 16, dSae = 64;
 * const w = new WeightReader(source, { what: "a jumprelu SAE", configPath: "cfg.json", wanted: ["W_enc"] });
 * const wEnc = await w.f32("W_enc", { shape: [dIn, dSae], dims: "[d_in, d_sae]" });
 * ```
 */
export class WeightReader {
  readonly source: TensorSource;
  #what: string;
  #configPath: string;
  #onProgress?: LoadProgress;
  #done = 0;
  #total: number;

  constructor(
    source: TensorSource,
    opts: { what: string; configPath: string; wanted: string[]; onProgress?: LoadProgress },
  ) {
    this.source = source;
    this.#what = opts.what;
    this.#configPath = opts.configPath;
    this.#onProgress = opts.onProgress;
    this.#total = opts.wanted.reduce((n, name) => n + (source.info(name)?.bytes ?? 0), 0);
  }

  has(name: string): boolean {
    return this.source.info(name) !== undefined;
  }

  /** The stored shape of `name`, or undefined. */
  shape(name: string): number[] | undefined {
    return this.source.info(name)?.shape;
  }

  /** The stored dtype of `name`, or undefined. */
  dtype(name: string): string | undefined {
    return this.source.info(name)?.dtype;
  }

  /** Fail naming the missing tensor and what the file does hold. */
  missing(name: string, exp: TensorExpectation, hint = ""): never {
    throw new SaeFormatError(
      `${this.source.path}: missing tensor '${name}', expected shape ${exp.dims} = [${exp.shape}] for ${this.#what}; found tensors ${
        JSON.stringify(this.source.names())
      }${hint}`,
    );
  }

  /** Check `name` against `exp` without reading it. */
  check(name: string, exp: TensorExpectation, hint = ""): TensorInfo {
    const info = this.source.info(name);
    if (!info) this.missing(name, exp, hint);
    const same = info.shape.length === exp.shape.length &&
      info.shape.every((d, i) => d === exp.shape[i]);
    if (!same && !(exp.accept?.(info.shape) ?? false)) {
      throw new SaeFormatError(
        `${this.source.path}: tensor '${name}' has shape [${info.shape}], expected ${exp.dims} = [${exp.shape}] from ${this.#configPath}`,
      );
    }
    if (!["F32", "F16", "BF16", "F64", "f32", "f16", "f64"].includes(info.dtype)) {
      throw new SaeFormatError(
        `${this.source.path}: tensor '${name}' has dtype ${info.dtype}, expected a float dtype (F32, F16, BF16 or F64)`,
      );
    }
    return info;
  }

  /** Check and read `name` as f32 in the runtime layout. */
  async f32(name: string, exp: TensorExpectation, hint = ""): Promise<Float32Array<ArrayBuffer>> {
    const info = this.check(name, exp, hint);
    // An accepted alternative shape has the same element order; read it flat.
    const shape = info.shape.length === exp.shape.length ? info.shape : exp.shape;
    const layout = exp.layout ?? "as-stored";
    if (layout !== "as-stored" && shape !== info.shape) {
      throw new SaeFormatError(`${this.source.path}: tensor '${name}' cannot be re-laid out`);
    }
    const out = await this.source.read(name, layout, (bytes) => {
      this.#done += bytes;
      this.#onProgress?.(this.#done, this.#total, name);
    });
    return out;
  }
}
