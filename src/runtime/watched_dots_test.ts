import assert from "node:assert/strict";
import { Rng } from "../core/random.ts";
import { referenceEncode } from "../core/reference_encoder.ts";
import type { SparseLatents } from "../core/sae.ts";
import { randomVariant, variantName, VARIANTS } from "../core/testdata/random_variants.ts";
import { randomSae } from "../formats/random_sae.ts";
import type { SaeWeights } from "../core/sae.ts";
import { nativeKernelsStatus } from "./native_library.ts";
import { evalWithoutCompiler } from "./testdata/no_compiler.ts";
import { createOrtEncoder } from "./ort_encoder.ts";
import { compareToken } from "./testdata/compare_encoding.ts";
import {
  NATIVE_MAX_WATCHED_WEIGHTS,
  NATIVE_SYNC_MAX_MACS,
  SYNC_MAX_MACS,
  WatchedDots,
} from "./watched_dots.ts";

/** Whether the native kernels load here (the native cases are skipped elsewhere). */
const native = await nativeKernelsStatus();
const nativeHere = native.available;
const whyNotNative = native.available ? undefined : native.reason;
const kernelOf = (e: unknown) => (e as { watchedKernel?: string }).watchedKernel;

const smallBatches = (e: unknown) => (e as { smallBatches: number }).smallBatches;

/** Same active latents, values within f32 rounding of a 48-term dot (relative 1e-5). */
function sameUpToRounding(got: SparseLatents, want: SparseLatents, where: string): void {
  assert.deepEqual([...got.indices], [...want.indices], `${where}: active latents`);
  got.values.forEach((v, p) => {
    const w = want.values[p];
    assert.ok(
      Math.abs(v - w) <= 1e-5 * (1 + Math.abs(w)),
      `${where}: latent ${got.indices[p]}: ${v} vs ${w}`,
    );
  });
}

for (const kernels of ["off", "require"] as const) {
  Deno.test({
    name: `watched batches (${
      kernels === "off" ? "WebAssembly" : "native"
    }): every architecture × normalisation × kind matches the reference and onnxruntime`,
    ignore: kernels === "require" && !nativeHere,
    fn: () => matchesReference(kernels),
  });
}

async function matchesReference(kernels: "off" | "require"): Promise<void> {
  const dIn = 48, dSae = 163;
  let compared = 0, excused = 0, small = 0;
  // skip TopK variants: their watched graph is the full one (membership needs every latent)
  for (const [n, v] of VARIANTS.entries()) {
    if (v.architecture === "topk") continue;
    const sae = randomVariant(v, dIn, dSae, 40 + n);
    const rng = new Rng(500 + n);
    const watch = Uint32Array.from({ length: 50 }, (_, p) => (p * 37 + n) % dSae);
    const dots = await createOrtEncoder(sae, { intraOpThreads: 1, watch, nativeKernels: kernels });
    assert.equal(kernelOf(dots), kernels === "off" ? "wasm" : "native-fma");
    const ort = await createOrtEncoder(sae, { intraOpThreads: 1, watch, smallBatchDots: false });
    // 1, 2, 7 and 13 tokens: every tile height of the native kernel (6 rows, then 1 to 5)
    for (const tokens of [1, 2, 7, 13]) {
      const x = rng.fillGaussian(new Float32Array(tokens * dIn), 1.5);
      // shift and scale some tokens so the normalisations have work to do; one all-zero token
      for (let t = 0; t < tokens; t += 2) {
        for (let j = 0; j < dIn; j++) x[t * dIn + j] = x[t * dIn + j] * 3 + 0.7;
      }
      if (tokens === 7) x.fill(0, 3 * dIn, 4 * dIn);
      const before = smallBatches(dots);
      const got = await dots.encode(x, tokens);
      small += smallBatches(dots) - before;
      const viaOrt = await ort.encode(x, tokens);
      const want = referenceEncode(sae, x, tokens, watch);
      for (let t = 0; t < tokens; t++) {
        const where = `${variantName(v)} N=${tokens} t=${t}`;
        excused += compareToken(sae, x.subarray(t * dIn, (t + 1) * dIn), got[t], want[t], where);
        sameUpToRounding(got[t], viaOrt[t], `${where} vs onnxruntime`);
        compared += want[t].indices.length;
      }
    }
    assert.equal(smallBatches(ort), 0, "smallBatchDots: false kept onnxruntime");
    await dots.close();
    await ort.close();
  }
  // 13 tokens × 50 latents × 48 = 31,200 multiply-adds, within both limits: every batch ran here
  assert.ok(small >= 4 * 6, `the small-batch path ran ${small} batches`);
  assert.ok(compared > 500, `only ${compared} latents compared`);
  assert.equal(excused, 0);
}

Deno.test("small watched batches: large batches, TopK and wide watches go to onnxruntime", async () => {
  const dIn = 64;
  const sae = randomSae({ architecture: "jumprelu", dIn, dSae: 512, seed: 3 });
  const watch = Uint32Array.from({ length: 64 }, (_, i) => i * 8);
  const enc = await createOrtEncoder(sae, { watch, nativeKernels: "off" });
  const perToken = watch.length * dIn;
  const most = Math.floor(SYNC_MAX_MACS / perToken);
  const x = new Rng(1).fillGaussian(new Float32Array((most + 1) * dIn));
  await enc.encode(x, most);
  assert.equal(smallBatches(enc), 1, `${most} tokens fit`);
  const big = await enc.encode(x, most + 1);
  assert.equal(smallBatches(enc), 1, `${most + 1} tokens do not`);
  // the two paths agree on the tokens they share
  const head = await enc.encode(x, 1);
  sameUpToRounding(head[0], big[0], "token 0, small vs onnxruntime");
  await assert.rejects(enc.encode(new Float32Array(dIn), 2), /expected at least 2 × 64/);
  await enc.close();

  const topk = randomSae({ architecture: "topk", dIn, dSae: 512, k: 8, seed: 3 });
  assert.equal(WatchedDots.create(topk, watch), null, "TopK");
  const wide = Uint32Array.from({ length: 512 }, (_, i) => i);
  const wideSae = randomSae({ architecture: "jumprelu", dIn: 2048, dSae: 512, seed: 3 });
  assert.equal(WatchedDots.create(wideSae, wide), null, "512 latents × d_in 2048 > SYNC_MAX_MACS");
});

Deno.test({
  name:
    "native watched batches: up to NATIVE_SYNC_MAX_MACS here, past it on onnxruntime, the same latents",
  ignore: !nativeHere,
  async fn() {
    const dIn = 64;
    const sae = randomSae({ architecture: "jumprelu", dIn, dSae: 700, seed: 4 });
    // 130 latents: three panels of the native kernel, the last one 2 columns wide
    const watch = Uint32Array.from({ length: 130 }, (_, i) => i * 5);
    const enc = await createOrtEncoder(sae, { watch, nativeKernels: "auto" });
    assert.equal(kernelOf(enc), "native-fma");
    const most = Math.floor(NATIVE_SYNC_MAX_MACS / (watch.length * dIn));
    const x = new Rng(2).fillGaussian(new Float32Array((most + 1) * dIn), 1.5);
    const here = await enc.encode(x, most);
    assert.equal(smallBatches(enc), 1, `${most} tokens fit`);
    const ort = await enc.encode(x, most + 1);
    assert.equal(smallBatches(enc), 1, `${most + 1} tokens do not`);
    let latents = 0;
    for (const t of [0, 1, most >> 1, most - 1]) {
      sameUpToRounding(here[t], ort[t], `token ${t}, native vs onnxruntime`);
      latents += ort[t].indices.length;
    }
    assert.ok(latents > 20, `only ${latents} active latents compared`);
    await enc.close();
  },
});

Deno.test("native watched batches: off says so; a watch past NATIVE_MAX_WATCHED_WEIGHTS stays off them under auto and require", async () => {
  // 1,025 latents × d_in 4,096 = 4,198,400 weights: past the native limit and the
  // WebAssembly one (a token is 4.2M multiply-adds), so no weights are read
  const wide = { architecture: "jumprelu", dIn: 4096, dSae: 2048 } as SaeWeights;
  const columns = Uint32Array.from({ length: 1025 }, (_, i) => i);
  assert.ok(columns.length * wide.dIn > NATIVE_MAX_WATCHED_WEIGHTS);
  assert.deepEqual(await WatchedDots.open(wide, columns, "off"), {
    dots: null,
    note: "execution.native_kernels is off",
  });
  for (const setting of ["auto", "require"] as const) {
    if (!nativeHere && setting === "require") continue; // the next test's case
    const got = await WatchedDots.open(wide, columns, setting);
    assert.equal(got.dots, null);
    assert.equal(
      got.note,
      nativeHere
        ? "1025 watched latents × d_in 4096 = 4198400 weights is past NATIVE_MAX_WATCHED_WEIGHTS (4194304)"
        : whyNotNative,
    );
  }
  const topk = { architecture: "topk", dIn: 8, dSae: 8 } as SaeWeights;
  assert.deepEqual(await WatchedDots.open(topk, new Uint32Array([1]), "require"), { dots: null });
});

Deno.test("native watched batches: where the kernels cannot load, auto says why and require fails saying why", async () => {
  // a process in which they cannot load: no compiler and an empty cache
  const cache = await Deno.makeTempDir({ prefix: "latentwatch-watched-nocc-" });
  try {
    const script = `
      import { randomSae } from "${new URL("../formats/random_sae.ts", import.meta.url).href}";
      import { WatchedDots } from "${new URL("./watched_dots.ts", import.meta.url).href}";
      const sae = randomSae({ architecture: "jumprelu", dIn: 8, dSae: 32, seed: 1 });
      const auto = await WatchedDots.open(sae, new Uint32Array([3, 17]), "auto");
      let failed = "";
      try { await WatchedDots.open(sae, new Uint32Array([3]), "require"); }
      catch (e) { failed = e.name + ": " + e.message; }
      console.log(JSON.stringify({ kernel: auto.dots?.kernel, note: auto.note, failed }));`;
    const got = await evalWithoutCompiler<{ kernel: string; note: string; failed: string }>(
      script,
      cache,
    );
    assert.equal(got.kernel, "wasm");
    assert.ok(got.note.length > 0, "auto says why");
    assert.equal(got.failed, `NativeKernelsUnavailableError: ${got.note}`);
  } finally {
    await Deno.remove(cache, { recursive: true });
  }
});
