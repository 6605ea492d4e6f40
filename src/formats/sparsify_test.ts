import assert from "node:assert/strict";
import { join } from "node:path";
import { type SafetensorsTensor, writeSafetensors } from "./safetensors.ts";
import { loadSparsify, parseSparsifyConfig, sparsifyHooks } from "./sparsify.ts";
import {
  add,
  assertMatchesUpstream,
  gaussian,
  rejectsFormat,
  relu,
  sub,
  tensor,
  testRoot,
  topk,
  xW,
  xWT,
} from "./testdata/upstream.ts";

const TMP = testRoot("sparsify_test_");

const D_IN = 6;
const M = 12;
const K = 4;

/** sparsify tensors as stored: encoder.weight [M, d_in] (Linear), W_dec [M, d_in] (rows = latents). */
function weights(seed: number) {
  return {
    encW: gaussian(seed, M * D_IN, 0.6),
    encB: gaussian(seed + 1, M, 0.2),
    W_dec: gaussian(seed + 2, M * D_IN, 0.5),
    b_dec: gaussian(seed + 3, D_IN, 2), // large, so a wrong subtraction shows
    W_skip: gaussian(seed + 4, D_IN * D_IN, 0.7), // square: orientation by output only
  };
}

async function folder(
  path: string,
  cfg: Record<string, unknown>,
  tensors: Record<string, SafetensorsTensor>,
): Promise<string> {
  const dir = join(TMP, path);
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(join(dir, "cfg.json"), JSON.stringify(cfg));
  await Deno.writeFile(join(dir, "sae.safetensors"), writeSafetensors(tensors));
  return dir;
}

function stored(w: ReturnType<typeof weights>, skip: boolean, dtype: "F32" | "BF16" = "F32") {
  const t: Record<string, SafetensorsTensor> = {
    "encoder.weight": tensor(w.encW, [M, D_IN], dtype),
    "encoder.bias": tensor(w.encB, [M], dtype),
    W_dec: tensor(w.W_dec, [M, D_IN], dtype),
    b_dec: tensor(w.b_dec, [D_IN], dtype),
  };
  if (skip) t.W_skip = tensor(w.W_skip, [D_IN, D_IN], dtype);
  return t;
}

/**
 * sparsify's own forward (sparse_coder.py): x' = x − b_dec unless transcode;
 * pre = relu(x' @ encoder.weight^T + encoder.bias); top-k; y = Σ a_j W_dec[j] + b_dec
 * (+ x @ W_skip^T).
 */
function sparsifyForward(
  w: ReturnType<typeof weights>,
  x: Float32Array,
  tokens: number,
  o: { transcode: boolean; skip: boolean },
) {
  return Array.from({ length: tokens }, (_, t) => {
    const xt = x.subarray(t * D_IN, (t + 1) * D_IN);
    const pre = relu(add(xWT(o.transcode ? xt : sub(xt, w.b_dec), w.encW, M), w.encB));
    const f = topk(pre, K);
    const y = add(xW(f, w.W_dec, D_IN), w.b_dec);
    return { f, y: o.skip ? add(y, xWT(xt, w.W_skip, D_IN)) : y };
  });
}

const X = gaussian(88, 4 * D_IN, 1.5);
const CFG = {
  activation: "topk",
  expansion_factor: 2,
  normalize_decoder: true,
  num_latents: M,
  k: K,
  multi_topk: false,
  skip_connection: false,
  transcode: false,
  d_in: D_IN,
};

Deno.test("sparsify SAE: encoder.weight transposed, W_dec not, b_dec subtracted, matches sparsify", async () => {
  const w = weights(1);
  const dir = await folder("run/layers.10", CFG, stored(w, false));
  await Deno.writeTextFile(
    join(TMP, "run", "config.json"),
    JSON.stringify({ model: "EleutherAI/pythia-70m", sae: {}, hookpoints: ["layers.10"] }),
  );
  const sae = await loadSparsify(dir);
  assert.equal(sae.format, "sparsify");
  assert.equal(sae.architecture, "topk");
  assert.equal(sae.k, K);
  assert.equal(sae.applyBDecToInput, true);
  assert.equal(sae.hookName, "blocks.10.hook_resid_post");
  assert.equal(sae.modelName, "EleutherAI/pythia-70m");
  assert.deepEqual(sae.wDec, w.W_dec); // never transposed
  assert.equal(sae.wEnc[1 * M + 5], w.encW[5 * D_IN + 1]); // wEnc[j, i] = encoder.weight[i, j]
  assertMatchesUpstream(sae, X, sparsifyForward(w, X, 4, { transcode: false, skip: false }), "sae");
  // Also by cfg.json or weights path.
  assert.equal((await loadSparsify(join(dir, "sae.safetensors"))).dSae, M);
});

Deno.test("sparsify: old checkpoints without 'transcode' subtract b_dec; transcode does not; skip is x @ W_skip^T", async () => {
  const w = weights(11);
  const { transcode: _t, skip_connection: _s, activation: _a, ...old } = CFG;
  const legacy = await loadSparsify(
    await folder("old/layers.3", { ...old, signed: false }, stored(w, false)),
  );
  assert.equal(legacy.applyBDecToInput, true);
  assertMatchesUpstream(
    legacy,
    X,
    sparsifyForward(w, X, 4, { transcode: false, skip: false }),
    "old checkpoint",
  );

  const tc = await loadSparsify(
    await folder(
      "skip/layers.3.mlp",
      { ...CFG, transcode: true, skip_connection: true },
      stored(w, true),
    ),
  );
  assert.equal(tc.kind, "transcoder");
  assert.equal(tc.applyBDecToInput, false);
  assert.equal(tc.hookName, "blocks.3.ln2.hook_normalized");
  assert.equal(tc.hookNameOut, "blocks.3.hook_mlp_out");
  assertMatchesUpstream(
    tc,
    X,
    sparsifyForward(w, X, 4, { transcode: true, skip: true }),
    "skip transcoder",
  );

  // A skip connection on a plain SAE, in a seed folder.
  const skipSae = await loadSparsify(
    await folder("seeded/layers.4/seed1", { ...CFG, skip_connection: true }, stored(w, true)),
  );
  assert.equal(skipSae.hookName, "blocks.4.hook_resid_post");
  assertMatchesUpstream(
    skipSae,
    X,
    sparsifyForward(w, X, 4, { transcode: false, skip: true }),
    "skip SAE",
  );
});

Deno.test("sparsify: num_latents 0 → d_in × expansion_factor; dtype from the tensors", async () => {
  const w = weights(21);
  const bf = (a: Float32Array) => Float32Array.from(a, (v) => Math.round(v * 64) / 64);
  const q = { ...w, encW: bf(w.encW), encB: bf(w.encB), W_dec: bf(w.W_dec), b_dec: bf(w.b_dec) };
  const sae = await loadSparsify(
    await folder("bf16/layers.1", { ...CFG, num_latents: 0 }, stored(q, false, "BF16")),
  );
  assert.equal(sae.dSae, D_IN * 2);
  assert.equal(sae.dtype, "bfloat16");
  assertMatchesUpstream(
    sae,
    X,
    sparsifyForward(q, X, 4, { transcode: false, skip: false }),
    "bf16",
  );
  assert.equal(
    parseSparsifyConfig({ d_in: 512, expansion_factor: 32, num_latents: 0, k: 16 }, "c")
      .numLatents,
    16384,
  );
});

Deno.test("sparsify: missing k and expansion_factor take SparseCoderConfig's defaults (32, 32)", async () => {
  // sparsify/config.py: k = 32, expansion_factor = 32, num_latents = 0 → d_in × 32.
  const dIn = 2;
  const m = dIn * 32;
  const z = (n: number) => new Float32Array(n);
  const sae = await loadSparsify(
    await folder("defaults/layers.0", { d_in: dIn }, {
      "encoder.weight": tensor(z(m * dIn), [m, dIn]),
      "encoder.bias": tensor(z(m), [m]),
      W_dec: tensor(z(m * dIn), [m, dIn]),
      b_dec: tensor(z(dIn), [dIn]),
    }),
  );
  assert.equal(sae.dSae, 64);
  assert.equal(sae.k, 32);
  assert.deepEqual(sae.provenance?.map((p) => `${p.setting}=${p.value}`), [
    "num_latents=64",
    "k=32",
  ]);
  assert.equal(parseSparsifyConfig(CFG, "c").provenance.length, 0);
});

Deno.test("sparsify errors: groupmax, signed, shapes, stray W_skip, k", async () => {
  const w = weights(31);
  await rejectsFormat(
    loadSparsify(await folder("e/groupmax", { ...CFG, activation: "groupmax" }, stored(w, false))),
    "cfg.json",
    "'activation'",
    "groupmax",
    "unsupported",
  );
  await rejectsFormat(
    loadSparsify(await folder("e/signed", { ...CFG, signed: true }, stored(w, false))),
    "'signed'",
    "unsupported",
  );
  // encoder.weight stored [d_in, M] (the SAELens orientation) is a shape error, not silently used.
  const wrong = stored(w, false);
  wrong["encoder.weight"] = tensor(w.encW, [D_IN, M]);
  await rejectsFormat(
    loadSparsify(await folder("e/orient", CFG, wrong)),
    "sae.safetensors",
    "'encoder.weight' has shape [6,12]",
    "[num_latents, d_in] = [12,6]",
    "cfg.json",
  );
  await rejectsFormat(
    loadSparsify(await folder("e/count", { ...CFG, num_latents: 24 }, stored(w, false))),
    "'encoder.weight' has shape [12,6]",
    "[24,6]",
  );
  await rejectsFormat(
    loadSparsify(await folder("e/stray", CFG, stored(w, true))),
    "'W_skip'",
    "skip_connection",
  );
  await rejectsFormat(
    loadSparsify(await folder("e/noskip", { ...CFG, skip_connection: true }, stored(w, false))),
    "missing tensor 'W_skip'",
  );
  await rejectsFormat(
    loadSparsify(await folder("e/k", { ...CFG, k: 99 }, stored(w, false))),
    "'k'",
    "99",
  );
  assert.deepEqual(sparsifyHooks("embed_tokens", false), { in: null, out: null });
  assert.deepEqual(sparsifyHooks("layers.2", true), {
    in: "blocks.2.hook_resid_pre",
    out: "blocks.2.hook_resid_post",
  });
});
