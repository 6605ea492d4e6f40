import assert from "node:assert/strict";
import { join } from "node:path";
import { type SafetensorsTensor } from "./safetensors.ts";
import { writeSafetensors } from "./safetensors_writer.ts";
import { loadSparsify, parseSparsifyConfig, roundToBf16, sparsifyHooks } from "./sparsify.ts";
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
    "apply_b_dec_to_input=true",
    "hook_name=blocks.0.hook_resid_post",
  ]);
  assert.match(sae.provenance![2].rule, /no 'transcode' key: false/);
  assert.equal(parseSparsifyConfig(CFG, "c").provenance.length, 0);
});

Deno.test("sparsify: every tensor is cast to the dtype of the first sorted key (load_from_disk reference_dtype)", async () => {
  const w = weights(41);
  // Values with more mantissa bits than bf16 keeps, so rounding shows.
  const t = stored(w, false);
  // W_dec sorts first ('W' < 'b' < 'e'): bf16 there makes the model bf16 and rounds the f32 rest.
  const bfDec = Float32Array.from(w.W_dec, (v) => Math.round(v * 64) / 64);
  t.W_dec = tensor(bfDec, [M, D_IN], "BF16");
  const sae = await loadSparsify(await folder("mixed/layers.2", CFG, t));
  assert.equal(sae.dtype, "bfloat16");
  // Independent bf16 rounding: keep the top 16 bits after adding half an ulp (ties to even).
  const bf16 = (v: number) => {
    const u = new Uint32Array(new Float32Array([v]).buffer)[0];
    const r = (u + 0x7fff + ((u >>> 16) & 1)) & 0xffff0000;
    return new Float32Array(new Uint32Array([r >>> 0]).buffer)[0];
  };
  assert.ok(w.encB.some((v) => bf16(v) !== v), "fixture has values bf16 changes");
  assert.deepEqual([...sae.bEnc], [...w.encB].map(bf16));
  assert.deepEqual([...sae.bDec], [...w.b_dec].map(bf16));
  assert.equal(sae.wEnc[1 * M + 5], bf16(w.encW[5 * D_IN + 1]));
  const q = {
    ...w,
    encW: w.encW.map(bf16),
    encB: w.encB.map(bf16),
    W_dec: bfDec,
    b_dec: w.b_dec.map(bf16),
  };
  assertMatchesUpstream(
    sae,
    X,
    sparsifyForward(q, X, 4, { transcode: false, skip: false }),
    "mixed",
  );
  assert.deepEqual(
    sae.provenance!.filter((p) => p.setting.endsWith(" dtype")).map((p) => p.setting),
    ["encoder.weight dtype", "encoder.bias dtype", "b_dec dtype"],
  );
  assert.match(sae.provenance![0].rule, /first key 'W_dec'/);
});

Deno.test("roundToBf16: nearest bfloat16, ties to even (hand-worked values)", () => {
  // bf16 keeps 7 mantissa bits: one ulp at 1 is 2^-7.
  const v = new Float32Array([
    1 + 2 ** -9, // quarter ulp → 1
    1 + 3 * 2 ** -9, // three quarters → 1 + 2^-7
    1 + 2 ** -8, // half ulp, tie: 1 has the even mantissa → 1
    1 + 2 ** -7 + 2 ** -8, // tie between odd 1+2^-7 and even 1+2^-6 → 1 + 2^-6
    -(1 + 3 * 2 ** -9),
    NaN,
  ]);
  roundToBf16(v);
  assert.deepEqual([...v.subarray(0, 5)], [1, 1 + 2 ** -7, 1, 1 + 2 ** -6, -(1 + 2 ** -7)]);
  assert.ok(Number.isNaN(v[5]));
});

Deno.test("sparsify: a tensor the model does not have fails (load_model strict=True)", async () => {
  const w = weights(45);
  const t = stored(w, false);
  t["decoder.bias"] = tensor(w.b_dec, [D_IN]);
  await rejectsFormat(
    loadSparsify(await folder("e/extra/layers.1", CFG, t)),
    "sae.safetensors",
    "tensor 'decoder.bias'",
    "strict=True",
  );
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
