/**
 * Test fixtures for the format loaders: deterministic tensors, the upstream
 * formulas computed directly on the tensors **as stored upstream** (so a
 * transposition or `b_dec` bug in a loader disagrees with them), and a
 * comparison against the core reference encoder/decoder run on the loaded
 * weights. A fixture module, not a test file.
 *
 * @module
 */
import assert from "node:assert/strict";
import { referenceDecode } from "../../core/decode.ts";
import { Rng } from "../../core/random.ts";
import { referenceEncode } from "../../core/reference_encoder.ts";
import type { SaeWeights } from "../../core/sae.ts";
import type { SafetensorsTensor } from "../safetensors.ts";
import { fromF32 } from "../../core/dtype.ts";
import { SaeFormatError } from "../errors.ts";

/** `n` N(0, std²) values from `seed`. */
export function gaussian(seed: number, n: number, std = 1): Float32Array<ArrayBuffer> {
  return new Rng(seed).fillGaussian(new Float32Array(n), std) as Float32Array<ArrayBuffer>;
}

/** An F32/F16/BF16 safetensors tensor of `values` (rounded to the dtype). */
export function tensor(
  values: Float32Array,
  shape: number[],
  dtype: "F32" | "F16" | "BF16" = "F32",
): SafetensorsTensor {
  const core = dtype === "F32" ? "f32" : dtype === "F16" ? "f16" : "bf16";
  return { dtype, shape, data: fromF32(values, core).slice() };
}

/** `x @ W` with `W` stored `[rows = x.length, cols]`, f64. */
export function xW(x: ArrayLike<number>, w: ArrayLike<number>, cols: number): Float64Array {
  const out = new Float64Array(cols);
  for (let j = 0; j < x.length; j++) {
    for (let c = 0; c < cols; c++) out[c] += x[j] * w[j * cols + c];
  }
  return out;
}

/** `x @ W^T` with `W` stored `[rows, cols = x.length]` (an nn.Linear weight), f64. */
export function xWT(x: ArrayLike<number>, w: ArrayLike<number>, rows: number): Float64Array {
  const out = new Float64Array(rows);
  const cols = x.length;
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let j = 0; j < cols; j++) s += x[j] * w[r * cols + j];
    out[r] = s;
  }
  return out;
}

/** Elementwise a + b (+ c …). */
export function add(...vs: ArrayLike<number>[]): Float64Array {
  const out = new Float64Array(vs[0].length);
  for (const v of vs) for (let i = 0; i < out.length; i++) out[i] += v[i];
  return out;
}

/** x − b */
export function sub(x: ArrayLike<number>, b: ArrayLike<number>): Float64Array {
  return Float64Array.from(x, (v, i) => v - b[i]);
}

/** JumpReLU, strict: relu(h)·[h > θ]. */
export function jumpRelu(h: ArrayLike<number>, threshold: ArrayLike<number>): Float64Array {
  return Float64Array.from(h, (v, i) => (v > threshold[i] && v > 0 ? v : 0));
}

/** relu(h) */
export function relu(h: ArrayLike<number>): Float64Array {
  return Float64Array.from(h, (v) => Math.max(v, 0));
}

/** Top-k of relu(h) (ties to the lower index), the rest zero. */
export function topk(h: ArrayLike<number>, k: number): Float64Array {
  const idx = Array.from({ length: h.length }, (_, i) => i).sort((a, b) => h[b] - h[a] || a - b);
  const out = new Float64Array(h.length);
  for (const i of idx.slice(0, k)) out[i] = Math.max(h[i], 0);
  return out;
}

/** Expected dense latents and output of one token. */
export interface UpstreamToken {
  f: ArrayLike<number>;
  y: ArrayLike<number>;
}

/**
 * Run the core reference encoder and decoder on `sae` for each token of `x`
 * and check the dense latents and output against `expected` (relative 1e-4).
 */
export function assertMatchesUpstream(
  sae: SaeWeights,
  x: Float32Array,
  expected: UpstreamToken[],
  what: string,
): void {
  const tokens = expected.length;
  const latents = referenceEncode(sae, x, tokens);
  const y = referenceDecode(sae, latents, x);
  const dOut = sae.dOut ?? sae.dIn;
  let fired = 0;
  for (let t = 0; t < tokens; t++) {
    const f = new Float64Array(sae.dSae);
    latents[t].indices.forEach((i, n) => (f[i] = latents[t].values[n]));
    for (let i = 0; i < sae.dSae; i++) {
      const e = expected[t].f[i];
      if (e !== 0) fired++;
      assert.ok(
        Math.abs(f[i] - e) <= 1e-4 * (1 + Math.abs(e)),
        `${what}: token ${t} latent ${i}: loaded ${f[i]}, upstream ${e}`,
      );
    }
    for (let o = 0; o < dOut; o++) {
      const e = expected[t].y[o];
      const got = y[t * dOut + o];
      assert.ok(
        Math.abs(got - e) <= 1e-4 * (1 + Math.abs(e)),
        `${what}: token ${t} output ${o}: loaded ${got}, upstream ${e}`,
      );
    }
  }
  // A test whose latents never fire would not test the encoder weights.
  assert.ok(fired > 0, `${what}: no latent fired; the fixture is too weak`);
}

/** `f @ W_dec` with W_dec stored `[d_sae, d_out]`. */
export function decode(f: ArrayLike<number>, wDec: ArrayLike<number>, dOut: number): Float64Array {
  return xW(f, wDec, dOut);
}

/**
 * A temp folder for one test module, removed when the module unloads.
 *
 * @example
 * ```ts
 * const TMP = testRoot("sparsify_test_");
 * ```
 */
export function testRoot(prefix: string): string {
  const dir = Deno.makeTempDirSync({ prefix });
  globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
  return dir;
}

/**
 * Assert that `p` rejects with a {@linkcode SaeFormatError} whose message
 * contains every one of `parts`.
 *
 * @example
 * ```ts
 * import { loadSparsify } from "../sparsify.ts";
 * declare const dir: string;
 * await rejectsFormat(loadSparsify(dir), "cfg.json", "d_in");
 * ```
 */
export async function rejectsFormat(p: Promise<unknown>, ...parts: string[]): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof SaeFormatError, `expected SaeFormatError, got ${e}`);
    for (const part of parts) assert.ok(e.message.includes(part), `'${e.message}' lacks '${part}'`);
    return true;
  });
}
