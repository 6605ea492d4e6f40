import assert from "node:assert/strict";
import { join } from "node:path";
import type { SaeWeights } from "../core/sae.ts";
import { randomSae } from "./random_sae.ts";
import { SaeFormatError } from "./errors.ts";
import { loadSaeLens, saeLensFolder } from "./saelens.ts";
import { parseSaeLensConfig } from "./saelens_config.ts";
import { writeSaeLensFolder } from "./saelens_writer.ts";
import { readSafetensors, type SafetensorsTensor } from "./safetensors.ts";
import { writeSafetensors } from "./safetensors_writer.ts";
import {
  add,
  assertMatchesUpstream,
  decode,
  gaussian,
  jumpRelu,
  rejectsFormat,
  relu,
  sub,
  tensor,
  testRoot,
  topk,
  xW,
  xWT,
} from "./testdata/upstream.ts";

// Every folder lives under one temp dir, removed when the test module unloads.
const TMP = testRoot("saelens_test_");
const tempDir = () => Deno.makeTempDir({ dir: TMP });

function f32(...v: number[]): Uint8Array {
  return new Uint8Array(new Float32Array(v).buffer);
}

/** Write a folder by hand: cfg object + tensors, independent of writeSaeLensFolder. */
async function handFolder(
  cfg: unknown,
  tensors: Record<string, SafetensorsTensor>,
): Promise<string> {
  const dir = await tempDir();
  await Deno.writeTextFile(join(dir, "cfg.json"), JSON.stringify(cfg));
  await Deno.writeFile(join(dir, "sae_weights.safetensors"), writeSafetensors(tensors));
  return dir;
}

/** d_in = 2, d_sae = 3 tensors with recognisable values. */
function tinyTensors(
  extra: Record<string, SafetensorsTensor> = {},
): Record<string, SafetensorsTensor> {
  return {
    W_enc: { dtype: "F32", shape: [2, 3], data: f32(1, 2, 3, 4, 5, 6) },
    b_enc: { dtype: "F32", shape: [3], data: f32(0.5, 0.25, -1) },
    W_dec: { dtype: "F32", shape: [3, 2], data: f32(-1, -2, -3, -4, -5, -6) },
    b_dec: { dtype: "F32", shape: [2], data: f32(9, 8) },
    ...extra,
  };
}

const V6 = {
  architecture: "jumprelu",
  d_in: 2,
  d_sae: 3,
  dtype: "float32",
  device: "cpu",
  apply_b_dec_to_input: false,
  normalize_activations: "none",
  reshape_activations: "none",
  metadata: {
    sae_lens_version: "6.18.0",
    model_name: "gemma-2-2b",
    hook_name: "blocks.12.hook_resid_post",
  },
};

Deno.test("loadSaeLens reads a hand-written v6 jumprelu folder", async () => {
  const dir = await handFolder(
    V6,
    tinyTensors({ threshold: { dtype: "F32", shape: [3], data: f32(0.1, 0.2, 0.3) } }),
  );
  const sae = await loadSaeLens(dir);
  assert.equal(sae.format, "saelens");
  assert.equal(sae.architecture, "jumprelu");
  assert.equal(sae.dIn, 2);
  assert.equal(sae.dSae, 3);
  assert.equal(sae.hookName, "blocks.12.hook_resid_post");
  assert.equal(sae.modelName, "gemma-2-2b");
  assert.equal(sae.dtype, "float32");
  assert.equal(sae.applyBDecToInput, false);
  assert.deepEqual([...sae.wEnc], [1, 2, 3, 4, 5, 6]);
  assert.deepEqual([...sae.bEnc], [0.5, 0.25, -1]);
  assert.deepEqual([...sae.wDec], [-1, -2, -3, -4, -5, -6]);
  assert.deepEqual([...sae.bDec], [9, 8]);
  assert.deepEqual([...sae.threshold!], [0.1, 0.2, 0.3].map(Math.fround));
  // The cfg.json path resolves to its folder.
  assert.equal((await loadSaeLens(join(dir, "cfg.json"))).dSae, 3);
});

Deno.test("loadSaeLens widens bf16 and f16 tensors exactly", async () => {
  // bf16 bits: 0x3f80 = 1, 0xc000 = −2, 0x3e20 = 0.15625, 0x4049 = 3.140625
  const bf = (...bits: number[]) => new Uint8Array(new Uint16Array(bits).buffer);
  const dir = await handFolder({ ...V6, architecture: "standard", dtype: "torch.bfloat16" }, {
    W_enc: { dtype: "BF16", shape: [2, 3], data: bf(0x3f80, 0xc000, 0x3e20, 0x4049, 0, 0x3f80) },
    b_enc: { dtype: "BF16", shape: [3], data: bf(0, 0, 0) },
    W_dec: { dtype: "BF16", shape: [3, 2], data: bf(0x3f80, 0, 0, 0x3f80, 0, 0) },
    b_dec: { dtype: "BF16", shape: [2], data: bf(0xc000, 0) },
  });
  const sae = await loadSaeLens(dir);
  assert.equal(sae.dtype, "bfloat16");
  assert.deepEqual([...sae.wEnc], [1, -2, 0.15625, 3.140625, 0, 1]);
  assert.deepEqual([...sae.bDec], [-2, 0]);

  // f16 bits: 0x3555 = 0.333251953125, 0x3c00 = 1
  const dir16 = await handFolder({ ...V6, architecture: "standard", dtype: "float16" }, {
    W_enc: { dtype: "F16", shape: [2, 3], data: bf(0x3555, 0x3c00, 0, 0, 0, 0) },
    b_enc: { dtype: "F16", shape: [3], data: bf(0, 0, 0) },
    W_dec: { dtype: "F16", shape: [3, 2], data: bf(0, 0, 0, 0, 0, 0) },
    b_dec: { dtype: "F16", shape: [2], data: bf(0, 0) },
  });
  assert.deepEqual([...(await loadSaeLens(dir16)).wEnc].slice(0, 2), [0.333251953125, 1]);
});

Deno.test("loadSaeLens rounds f32 tensors to a narrower cfg dtype, as SAELens casts them", async () => {
  // bf16 keeps 7 mantissa bits, so near 1 the spacing is 2^-7. 1 + 2^-8 is a tie between 1
  // and 1 + 2^-7 → even mantissa → 1; 1 + 3·2^-8 is a tie between 1 + 2^-7 and 1 + 2^-6 →
  // even → 1 + 2^-6; 3 is exact.
  const dir = await handFolder(
    { ...V6, architecture: "standard", dtype: "bfloat16" },
    tinyTensors({
      W_enc: { dtype: "F32", shape: [2, 3], data: f32(1 + 2 ** -8, 1 + 3 * 2 ** -8, 3, 0, 0, 0) },
    }),
  );
  assert.deepEqual([...(await loadSaeLens(dir)).wEnc].slice(0, 3), [1, 1 + 2 ** -6, 3]);
});

Deno.test("legacy flat config: hook_point, topk via activation_fn_str, defaults", async () => {
  const legacy = {
    model_name: "gpt2-small",
    hook_point: "blocks.8.hook_resid_pre",
    hook_point_layer: 8,
    d_in: 2,
    d_sae: 3,
    dtype: "torch.float32",
    activation_fn_str: "topk",
    activation_fn_kwargs: { k: 2 },
    normalize_activations: false,
    sae_lens_training_version: "3.13.0",
  };
  const sae = await loadSaeLens(await handFolder(legacy, tinyTensors()));
  assert.equal(sae.architecture, "topk");
  assert.equal(sae.k, 2);
  assert.equal(sae.rescaleActsByDecoderNorm, false);
  assert.equal(sae.hookName, "blocks.8.hook_resid_pre");
  assert.equal(sae.modelName, "gpt2-small");
  assert.equal(sae.applyBDecToInput, true); // legacy default

  const plain = { ...legacy, activation_fn_str: "relu", activation_fn_kwargs: {} };
  const std = await loadSaeLens(await handFolder(plain, tinyTensors()));
  assert.equal(std.architecture, "standard"); // legacy default
  assert.equal(std.k, undefined);

  // normalize_activations: true means expected_average_only_in, which needs a constant not in cfg.json.
  await rejectsFormat(
    loadSaeLens(await handFolder({ ...plain, normalize_activations: true }, tinyTensors())),
    "cfg.json",
    "expected_average_only_in",
    "activation_scaler.json",
    "norm_scaling_factor",
  );
  await rejectsFormat(
    loadSaeLens(await handFolder({ ...plain, activation_fn_str: "tanh-relu" }, tinyTensors())),
    "activation_fn_str",
    "tanh-relu",
  );
});

Deno.test("legacy scaling_factor is folded into the decoder rows", async () => {
  const cfg = {
    hook_point: "blocks.0.hook_resid_pre",
    d_in: 2,
    d_sae: 3,
    finetuning_scaling_factor: true,
  };
  const dir = await handFolder(
    cfg,
    tinyTensors({ scaling_factor: { dtype: "F32", shape: [3], data: f32(1, 2, 0.5) } }),
  );
  // W_dec rows [−1, −2], [−3, −4], [−5, −6] scaled by [1, 2, 0.5]
  assert.deepEqual([...(await loadSaeLens(dir)).wDec], [-1, -2, -6, -8, -2.5, -3]);
});

Deno.test("v6 topk reads k and rescale_acts_by_decoder_norm", async () => {
  const cfg = { ...V6, architecture: "topk", k: 1, rescale_acts_by_decoder_norm: true };
  const sae = await loadSaeLens(await handFolder(cfg, tinyTensors()));
  assert.equal(sae.k, 1);
  assert.equal(sae.rescaleActsByDecoderNorm, true);
  await rejectsFormat(
    loadSaeLens(await handFolder({ ...cfg, k: 4 }, tinyTensors())),
    "'k'",
    "at most d_sae = 3",
    "4",
  );
  await rejectsFormat(
    loadSaeLens(await handFolder({ ...cfg, k: undefined }, tinyTensors())),
    "'k'",
    "missing",
  );
});

Deno.test("loadSaeLens errors name the file, the tensor or key, expected and found", async () => {
  const std = { ...V6, architecture: "standard" };
  const { W_enc: _, ...noWEnc } = tinyTensors();
  await rejectsFormat(
    loadSaeLens(await handFolder(std, noWEnc)),
    "sae_weights.safetensors",
    "missing tensor 'W_enc'",
    "[d_in, d_sae] = [2,3]",
  );
  await rejectsFormat(
    loadSaeLens(
      await handFolder(
        std,
        tinyTensors({ W_enc: { dtype: "F32", shape: [3, 2], data: f32(1, 2, 3, 4, 5, 6) } }),
      ),
    ),
    "sae_weights.safetensors",
    "'W_enc' has shape [3,2]",
    "expected [d_in, d_sae] = [2,3]",
  );
  await rejectsFormat(
    loadSaeLens(
      await handFolder(
        std,
        tinyTensors({ b_dec: { dtype: "F32", shape: [3], data: f32(1, 2, 3) } }),
      ),
    ),
    "'b_dec' has shape [3]",
    "[d_in] = [2]",
  );
  await rejectsFormat(
    loadSaeLens(
      await handFolder(
        V6,
        tinyTensors({ log_threshold: { dtype: "F32", shape: [3], data: f32(0, 0, 0) } }),
      ),
    ),
    "missing tensor 'threshold'",
    "log_threshold",
  );
  await rejectsFormat(
    loadSaeLens(await handFolder({ ...V6, architecture: "gated" }, tinyTensors())),
    "sae_weights.safetensors",
    "missing tensor 'b_gate'",
    "a gated SAE",
  );
  await rejectsFormat(
    loadSaeLens(await handFolder({ ...V6, architecture: "mystery_sae" }, tinyTensors())),
    "cfg.json",
    "'architecture'",
    "'standard', 'gated', 'jumprelu', 'topk', 'transcoder'",
    '"mystery_sae"',
  );
  await rejectsFormat(
    loadSaeLens(await handFolder({ ...V6, architecture: "batchtopk" }, tinyTensors())),
    "'architecture'",
    "saves BatchTopK SAEs for inference as 'jumprelu'",
  );
  await rejectsFormat(
    loadSaeLens(await handFolder({ ...V6, d_in: 0 }, tinyTensors())),
    "'d_in'",
    "positive integer",
  );
  await rejectsFormat(
    loadSaeLens(await handFolder({ ...V6, dtype: "int8" }, tinyTensors())),
    "'dtype'",
    '"int8"',
  );
  await rejectsFormat(
    loadSaeLens(await handFolder({ ...V6, normalize_activations: "rms" }, tinyTensors())),
    "'normalize_activations'",
    "'layer_norm'",
    '"rms"',
  );
  await rejectsFormat(loadSaeLens("/nonexistent/sae"), "/nonexistent/sae/cfg.json", "cannot read");
  const dir = await tempDir();
  await Deno.writeTextFile(join(dir, "cfg.json"), "{oops");
  await rejectsFormat(loadSaeLens(dir), "cfg.json", "not valid JSON");
  await Deno.writeTextFile(join(dir, "cfg.json"), JSON.stringify(V6));
  await rejectsFormat(loadSaeLens(dir), "sae_weights.safetensors", "cannot read");
  await Deno.writeFile(join(dir, "sae_weights.safetensors"), new Uint8Array(4));
  await rejectsFormat(loadSaeLens(dir), "sae_weights.safetensors", "at least 8 bytes");
});

Deno.test("parseSaeLensConfig version rule: 6.0.0-rc.0 and later are v6", () => {
  const base = { architecture: "standard", d_in: 1, d_sae: 1 };
  // A legacy file keeps hook_point at the top level; a v6 file's top-level keys are not renamed.
  const cfg = (v?: string) =>
    parseSaeLensConfig({ ...base, metadata: { sae_lens_version: v } }, "c");
  assert.equal(cfg("6.0.0-rc.0").legacy, false);
  assert.equal(cfg("6.18.0").legacy, false);
  assert.equal(cfg("5.9.1").legacy, true);
  assert.equal(cfg("6.0.0-beta.1").legacy, true);
  assert.equal(cfg(undefined).legacy, true);
  assert.equal(parseSaeLensConfig({ ...base, sae_lens_version: "6.1.0" }, "c").legacy, false);
  // In v6 the activation_fn key no longer selects the architecture.
  assert.equal(
    parseSaeLensConfig(
      { ...base, activation_fn: "topk", metadata: { sae_lens_version: "6.1.0" } },
      "c",
    )
      .architecture,
    "standard",
  );
});

Deno.test("saeLensFolder accepts the folder, its cfg.json or its weights", () => {
  assert.equal(saeLensFolder("a/b"), "a/b");
  assert.equal(saeLensFolder("a/b/cfg.json"), "a/b");
  assert.equal(saeLensFolder("a/b/sae_weights.safetensors"), "a/b");
  assert.equal(saeLensFolder("cfg.json"), ".");
});

function sameWeights(a: SaeWeights, b: SaeWeights): void {
  for (
    const key of [
      "architecture",
      "dIn",
      "dSae",
      "hookName",
      "modelName",
      "applyBDecToInput",
      "k",
    ] as const
  ) {
    assert.equal(b[key], a[key], key);
  }
  assert.equal(b.rescaleActsByDecoderNorm ?? false, a.rescaleActsByDecoderNorm ?? false);
  assert.deepEqual(b.wEnc, a.wEnc);
  assert.deepEqual(b.bEnc, a.bEnc);
  assert.deepEqual(b.wDec, a.wDec);
  assert.deepEqual(b.bDec, a.bDec);
  assert.deepEqual(b.threshold, a.threshold);
}

Deno.test("writeSaeLensFolder round-trips every architecture, dtype and config layout", async () => {
  for (const architecture of ["standard", "jumprelu", "topk"] as const) {
    for (const dtype of ["float32", "float16", "bfloat16"] as const) {
      for (const legacyConfig of [false, true]) {
        const sae = randomSae({ architecture, dIn: 8, dSae: 24, k: 5, seed: 3, dtype });
        const dir = await tempDir();
        await writeSaeLensFolder(dir, sae, { legacyConfig });
        const back = await loadSaeLens(dir);
        assert.equal(back.dtype, dtype);
        sameWeights(sae, back);
      }
    }
  }
});

Deno.test("writeSaeLensFolder writes the upstream layout", async () => {
  const sae = randomSae({
    architecture: "jumprelu",
    dIn: 4,
    dSae: 6,
    seed: 1,
    hookName: "blocks.3.hook_resid_post",
  });
  const dir = await tempDir();
  await writeSaeLensFolder(dir, sae, { dtype: "bfloat16" });
  const cfg = JSON.parse(await Deno.readTextFile(join(dir, "cfg.json")));
  assert.equal(cfg.architecture, "jumprelu");
  assert.equal(cfg.d_in, 4);
  assert.equal(cfg.d_sae, 6);
  assert.equal(cfg.dtype, "bfloat16");
  assert.equal(cfg.normalize_activations, "none");
  assert.equal(cfg.metadata.hook_name, "blocks.3.hook_resid_post");
  const file = readSafetensors(await Deno.readFile(join(dir, "sae_weights.safetensors")), "w");
  const shapes = Object.fromEntries([...file.tensors].map(([n, t]) => [n, [t.dtype, ...t.shape]]));
  assert.deepEqual(shapes, {
    W_dec: ["BF16", 6, 4],
    W_enc: ["BF16", 4, 6],
    b_dec: ["BF16", 4],
    b_enc: ["BF16", 6],
    threshold: ["BF16", 6],
  });

  const legacyDir = await tempDir();
  const topk = randomSae({ architecture: "topk", dIn: 4, dSae: 6, k: 3, seed: 1 });
  await writeSaeLensFolder(legacyDir, topk, { legacyConfig: true });
  const legacy = JSON.parse(await Deno.readTextFile(join(legacyDir, "cfg.json")));
  assert.equal(legacy.hook_point, "blocks.0.hook_resid_pre");
  assert.equal(legacy.activation_fn_str, "topk");
  assert.deepEqual(legacy.activation_fn_kwargs, { k: 3 });
  assert.equal(legacy.metadata, undefined);
  await assert.rejects(
    writeSaeLensFolder(legacyDir, { ...topk, rescaleActsByDecoderNorm: true }, {
      legacyConfig: true,
    }),
    SaeFormatError,
  );
});

// ---- Architectures and options checked against the SAELens formulas on the stored tensors ----

const D_IN = 6;
const D_SAE = 10;

/** x: `tokens` rows of d_in values. */
function inputs(tokens: number, seed = 99, dIn = D_IN): Float32Array<ArrayBuffer> {
  return gaussian(seed, tokens * dIn, 1.5);
}

function row(x: Float32Array, t: number, d: number): Float32Array {
  return x.subarray(t * d, (t + 1) * d);
}

function v6(architecture: string, extra: Record<string, unknown> = {}) {
  return { ...V6, architecture, d_in: D_IN, d_sae: D_SAE, apply_b_dec_to_input: true, ...extra };
}

Deno.test("standard, jumprelu and topk (with decoder-norm rescale) match SAELens's formulas", async () => {
  const W_enc = gaussian(1, D_IN * D_SAE, 0.6);
  const b_enc = gaussian(2, D_SAE, 0.2);
  const W_dec = gaussian(3, D_SAE * D_IN, 0.5);
  const b_dec = gaussian(4, D_IN, 0.3);
  const threshold = Float32Array.from(gaussian(5, D_SAE, 0.3), (v) => Math.abs(v));
  const x = inputs(4);
  const base = {
    W_enc: tensor(W_enc, [D_IN, D_SAE]),
    b_enc: tensor(b_enc, [D_SAE]),
    W_dec: tensor(W_dec, [D_SAE, D_IN]),
    b_dec: tensor(b_dec, [D_IN]),
  };
  const norms = Array.from(
    { length: D_SAE },
    (_, i) => Math.hypot(...W_dec.subarray(i * D_IN, (i + 1) * D_IN)),
  );
  for (
    const [arch, extra, act] of [
      ["standard", {}, (h: Float64Array) => relu(h)],
      ["jumprelu", {}, (h: Float64Array) => jumpRelu(h, threshold)],
      ["topk", { k: 3 }, (h: Float64Array) => topk(h, 3)],
      [
        "topk",
        { k: 3, rescale_acts_by_decoder_norm: true },
        (h: Float64Array) => topk(h.map((v, i) => v * norms[i]), 3),
      ],
    ] as const
  ) {
    const tensors: Record<string, SafetensorsTensor> = { ...base };
    if (arch === "jumprelu") tensors.threshold = tensor(threshold, [D_SAE]);
    for (const apply of [true, false]) {
      const sae = await loadSaeLens(
        await handFolder(v6(arch, { ...extra, apply_b_dec_to_input: apply }), tensors),
      );
      const expected = [0, 1, 2, 3].map((t) => {
        const xt = row(x, t, D_IN);
        const h = add(xW(apply ? sub(xt, b_dec) : xt, W_enc, D_SAE), b_enc);
        let f = act(h);
        // Decode with rescale divides by the norms first (topk_sae.py).
        const fd = "rescale_acts_by_decoder_norm" in extra ? f.map((v, i) => v / norms[i]) : f;
        if (!("rescale_acts_by_decoder_norm" in extra)) f = f.slice();
        return { f, y: add(decode(fd, W_dec, D_IN), b_dec) };
      });
      assertMatchesUpstream(sae, x, expected, `${arch} ${JSON.stringify(extra)} apply=${apply}`);
    }
  }
});

Deno.test("gated: W_enc, b_gate, b_mag, r_mag, no b_enc (zeros), matches SAELens", async () => {
  const W_enc = gaussian(11, D_IN * D_SAE, 0.6);
  const b_gate = gaussian(12, D_SAE, 0.3);
  const b_mag = gaussian(13, D_SAE, 0.3);
  const r_mag = gaussian(14, D_SAE, 0.5);
  const W_dec = gaussian(15, D_SAE * D_IN, 0.5);
  const b_dec = gaussian(16, D_IN, 0.3);
  const sae = await loadSaeLens(
    await handFolder(v6("gated"), {
      W_dec: tensor(W_dec, [D_SAE, D_IN]),
      W_enc: tensor(W_enc, [D_IN, D_SAE]),
      b_dec: tensor(b_dec, [D_IN]),
      b_gate: tensor(b_gate, [D_SAE]),
      b_mag: tensor(b_mag, [D_SAE]),
      r_mag: tensor(r_mag, [D_SAE]),
    }),
  );
  assert.equal(sae.architecture, "gated");
  assert.deepEqual([...sae.bEnc], new Array(D_SAE).fill(0));
  assert.deepEqual(sae.gated?.rMag, r_mag);
  const x = inputs(4, 7);
  const expected = [0, 1, 2, 3].map((t) => {
    const xt = sub(row(x, t, D_IN), b_dec);
    const gate = add(xW(xt, W_enc, D_SAE), b_gate);
    // W_enc * exp(r_mag), r_mag broadcast over the latent axis (columns).
    const wMag = W_enc.map((w, n) => w * Math.exp(r_mag[n % D_SAE]));
    const mag = relu(add(xW(xt, wMag, D_SAE), b_mag));
    const f = mag.map((m, i) => (gate[i] > 0 ? m : 0));
    return { f, y: add(decode(f, W_dec, D_IN), b_dec) };
  });
  assertMatchesUpstream(sae, x, expected, "gated");
});

Deno.test("transcoders: never subtract b_dec; skip adds x_raw @ W_skip^T, orientation checked by output", async () => {
  for (const dOut of [D_IN, 4]) {
    const W_enc = gaussian(21, D_IN * D_SAE, 0.6);
    const b_enc = gaussian(22, D_SAE, 0.2);
    const W_dec = gaussian(23, D_SAE * dOut, 0.5);
    const b_dec = gaussian(24, dOut, 2); // large, so a wrong subtraction shows
    const threshold = Float32Array.from(gaussian(25, D_SAE, 0.3), Math.abs);
    // A square W_skip (dOut = D_IN) runs either way round; only the output tells.
    const W_skip = gaussian(26, dOut * D_IN, 0.7);
    const x = inputs(3, 8);
    for (
      const arch of [
        "transcoder",
        "skip_transcoder",
        "jumprelu_transcoder",
        "jumprelu_skip_transcoder",
      ]
    ) {
      const skip = arch.includes("skip");
      const jump = arch.startsWith("jumprelu");
      const tensors: Record<string, SafetensorsTensor> = {
        W_dec: tensor(W_dec, [D_SAE, dOut]),
        W_enc: tensor(W_enc, [D_IN, D_SAE]),
        b_dec: tensor(b_dec, [dOut]),
        b_enc: tensor(b_enc, [D_SAE]),
      };
      if (skip) tensors.W_skip = tensor(W_skip, [dOut, D_IN]);
      if (jump) tensors.threshold = tensor(threshold, [D_SAE]);
      const cfg = v6(arch, {
        d_out: dOut,
        apply_b_dec_to_input: false,
        metadata: {
          ...V6.metadata,
          hook_name: "blocks.3.ln2.hook_normalized",
          hook_name_out: "blocks.3.hook_mlp_out",
        },
      });
      const sae = await loadSaeLens(await handFolder(cfg, tensors));
      assert.equal(sae.kind, "transcoder");
      assert.equal(sae.dOut, dOut);
      assert.equal(sae.applyBDecToInput, false);
      assert.equal(sae.hookNameOut, "blocks.3.hook_mlp_out");
      assert.equal(sae.wSkip !== undefined, skip);
      const expected = [0, 1, 2].map((t) => {
        const xt = row(x, t, D_IN);
        const h = add(xW(xt, W_enc, D_SAE), b_enc);
        const f = jump ? jumpRelu(h, threshold) : relu(h);
        const y = add(decode(f, W_dec, dOut), b_dec);
        return { f, y: skip ? add(y, xWT(xt, W_skip, dOut)) : y };
      });
      assertMatchesUpstream(sae, x, expected, `${arch} d_out=${dOut}`);
    }
  }
  // SAELens's TranscoderConfig raises on apply_b_dec_to_input; so do we.
  const tc = {
    W_dec: tensor(new Float32Array(D_SAE * D_IN), [D_SAE, D_IN]),
    W_enc: tensor(new Float32Array(D_IN * D_SAE), [D_IN, D_SAE]),
    b_dec: tensor(new Float32Array(D_IN), [D_IN]),
    b_enc: tensor(new Float32Array(D_SAE), [D_SAE]),
  };
  await rejectsFormat(
    loadSaeLens(await handFolder(v6("transcoder", { d_out: D_IN }), tc)),
    "cfg.json",
    "'apply_b_dec_to_input'",
    "never subtract b_dec",
    "true",
  );
  await rejectsFormat(
    loadSaeLens(await handFolder(v6("transcoder", { apply_b_dec_to_input: false }), tc)),
    "'W_dec' has shape [10,6]",
    "no 'd_out' key",
    "default is 768",
  );
  // The skip tensor in the wrong orientation for a non-square transcoder: named with both shapes.
  await rejectsFormat(
    loadSaeLens(
      await handFolder(v6("skip_transcoder", { d_out: 4, apply_b_dec_to_input: false }), {
        W_dec: tensor(new Float32Array(D_SAE * 4), [D_SAE, 4]),
        W_enc: tc.W_enc,
        W_skip: tensor(new Float32Array(4 * D_IN), [D_IN, 4]),
        b_dec: tensor(new Float32Array(4), [4]),
        b_enc: tc.b_enc,
      }),
    ),
    "'W_skip' has shape [6,4]",
    "expected [d_out, d_in] = [4,6]",
  );
});

Deno.test("normalize_activations constant_norm_rescale and layer_norm set normalize and match SAELens", async () => {
  const W_enc = gaussian(31, D_IN * D_SAE, 0.6);
  const b_enc = gaussian(32, D_SAE, 0.2);
  const W_dec = gaussian(33, D_SAE * D_IN, 0.5);
  const b_dec = gaussian(34, D_IN, 0.3);
  const tensors = {
    W_dec: tensor(W_dec, [D_SAE, D_IN]),
    W_enc: tensor(W_enc, [D_IN, D_SAE]),
    b_dec: tensor(b_dec, [D_IN]),
    b_enc: tensor(b_enc, [D_SAE]),
  };
  const x = Float32Array.from(inputs(3, 9), (v) => 3 * v + 1); // off-centre, large norm
  for (const mode of ["constant_norm_rescale", "layer_norm"] as const) {
    const sae = await loadSaeLens(
      await handFolder(v6("standard", { normalize_activations: mode }), tensors),
    );
    assert.equal(sae.normalize, mode);
    const expected = [0, 1, 2].map((t) => {
      const xt = Array.from(row(x, t, D_IN));
      let xn: number[];
      let undo: (y: number) => number;
      if (mode === "constant_norm_rescale") {
        const c = Math.sqrt(D_IN) / Math.hypot(...xt);
        xn = xt.map((v) => v * c);
        undo = (y) => y / c;
      } else {
        const mu = xt.reduce((a, b) => a + b) / D_IN;
        const xc = xt.map((v) => v - mu);
        // torch std: unbiased (N − 1); eps added to σ, not inside the sqrt.
        const sigma = Math.sqrt(xc.reduce((a, b) => a + b * b, 0) / (D_IN - 1));
        xn = xc.map((v) => v / (sigma + 1e-5));
        undo = (y) => y * sigma + mu;
      }
      const f = relu(add(xW(sub(xn, b_dec), W_enc, D_SAE), b_enc));
      const y = add(decode(f, W_dec, D_IN), b_dec).map(undo);
      return { f, y };
    });
    assertMatchesUpstream(sae, x, expected, mode);
  }
  const plain = await loadSaeLens(await handFolder(v6("standard"), tensors));
  assert.equal(plain.normalize ?? "none", "none");
});

Deno.test("expected_average_only_in folds s like fold_activation_norm_scaling_factor, from every place SAELens keeps it", async () => {
  const W_enc = gaussian(41, D_IN * D_SAE, 0.6);
  const b_enc = gaussian(42, D_SAE, 0.2);
  const W_dec = gaussian(43, D_SAE * D_IN, 0.5);
  const b_dec = gaussian(44, D_IN, 0.3);
  const threshold = Float32Array.from(gaussian(45, D_SAE, 0.2), Math.abs);
  const tensors = {
    W_dec: tensor(W_dec, [D_SAE, D_IN]),
    W_enc: tensor(W_enc, [D_IN, D_SAE]),
    b_dec: tensor(b_dec, [D_IN]),
    b_enc: tensor(b_enc, [D_SAE]),
    threshold: tensor(threshold, [D_SAE]),
  };
  const cfg = v6("jumprelu", { normalize_activations: "expected_average_only_in" });
  const x = inputs(3, 10);
  // The unfolded SAE applied to s·x, decoded and divided by s: what the fold must reproduce.
  const expectedFor = (s: number) =>
    [0, 1, 2].map((t) => {
      const xs = Array.from(row(x, t, D_IN), (v) => v * s);
      const f = jumpRelu(add(xW(sub(xs, b_dec), W_enc, D_SAE), b_enc), threshold);
      return { f, y: add(decode(f, W_dec, D_IN), b_dec).map((v) => v / s) };
    });

  // 1. activation_scaler.json next to cfg.json (training checkpoints).
  const dir = await handFolder(cfg, tensors);
  await Deno.writeTextFile(
    join(dir, "activation_scaler.json"),
    JSON.stringify({ scaling_factor: 0.5 }),
  );
  const a = await loadSaeLens(dir);
  assert.equal(a.normalize ?? "none", "none");
  assert.deepEqual(a.wEnc, W_enc.map((w) => w * 0.5));
  assert.deepEqual(a.wDec, W_dec.map((w) => w / 0.5));
  assert.deepEqual(a.bDec, b_dec.map((w) => w / 0.5));
  assert.deepEqual(a.bEnc, b_enc); // untouched
  assertMatchesUpstream(a, x, expectedFor(0.5), "activation_scaler.json");
  // 2. The explicit option wins over the file.
  assertMatchesUpstream(
    await loadSaeLens(dir, { scalingFactor: 2.5 }),
    x,
    expectedFor(2.5),
    "option",
  );
  // 3. norm_scaling_factor in cfg.json (pretrained_saes.yaml's per-SAE value).
  const inCfg = await handFolder({ ...cfg, norm_scaling_factor: 1.75 }, tensors);
  assertMatchesUpstream(await loadSaeLens(inCfg), x, expectedFor(1.75), "cfg norm_scaling_factor");
  // 4. Nowhere: a clear error naming every place looked at.
  await rejectsFormat(
    loadSaeLens(await handFolder(cfg, tensors)),
    "cfg.json",
    "expected_average_only_in",
    "activation_scaler.json",
    "pretrained_saes.yaml",
    "norm_scaling_factor",
    "scalingFactor",
  );
  await rejectsFormat(loadSaeLens(dir, { scalingFactor: -1 }), "positive");
  await Deno.writeTextFile(
    join(dir, "activation_scaler.json"),
    JSON.stringify({ scaling_factor: "x" }),
  );
  await rejectsFormat(
    loadSaeLens(dir),
    "activation_scaler.json",
    "'scaling_factor'",
    "positive number",
  );
});

Deno.test("hook_z: flattened head-major d_in; W_enc stored [n_heads, d_head, d_sae] is accepted, a wrong d_in is not", async () => {
  const W_enc = gaussian(51, D_IN * D_SAE, 0.6);
  const W_dec = gaussian(52, D_SAE * D_IN, 0.5);
  const cfg = v6("standard", {
    reshape_activations: "hook_z",
    metadata: {
      ...V6.metadata,
      hook_name: "blocks.4.attn.hook_z",
      neuronpedia_id: "gpt2-small/4-att-kk",
    },
  });
  const t = (wEncShape: number[], wDecShape: number[]) => ({
    W_dec: tensor(W_dec, wDecShape),
    W_enc: tensor(W_enc, wEncShape),
    b_dec: tensor(new Float32Array(D_IN), [D_IN]),
    b_enc: tensor(new Float32Array(D_SAE), [D_SAE]),
  });
  const flat = await loadSaeLens(await handFolder(cfg, t([D_IN, D_SAE], [D_SAE, D_IN])));
  const heads = await loadSaeLens(await handFolder(cfg, t([2, 3, D_SAE], [D_SAE, 2, 3])));
  assert.deepEqual(heads.wEnc, flat.wEnc);
  assert.deepEqual(heads.wDec, flat.wDec);
  assert.equal(heads.hookName, "blocks.4.attn.hook_z");
  assert.equal(heads.neuronpediaId, "gpt2-small/4-att-kk");
  await rejectsFormat(
    loadSaeLens(
      await handFolder(cfg, {
        ...t([D_IN, D_SAE], [D_SAE, D_IN]),
        W_enc: tensor(gaussian(53, 90), [3, 3, D_SAE]),
      }),
    ),
    "'W_enc' has shape [3,3,10]",
    "[d_in, d_sae] = [6,10]",
  );
  // Without hook_z the head axes are a shape error.
  await rejectsFormat(
    loadSaeLens(await handFolder(v6("standard"), t([2, 3, D_SAE], [D_SAE, D_IN]))),
    "'W_enc' has shape [2,3,10]",
  );
  // hook_head_index is metadata: SAELens loads the SAE; the caller feeds that head's slice.
  const head = await loadSaeLens(
    await handFolder(
      { ...cfg, metadata: { ...cfg.metadata, hook_head_index: 1 } },
      t([D_IN, D_SAE], [D_SAE, D_IN]),
    ),
  );
  assert.equal(head.hookHeadIndex, 1);
  assert.deepEqual(head.wEnc, flat.wEnc);
  await rejectsFormat(
    loadSaeLens(
      await handFolder(
        { ...cfg, metadata: { ...cfg.metadata, hook_head_index: "1" } },
        t([D_IN, D_SAE], [D_SAE, D_IN]),
      ),
    ),
    "'hook_head_index'",
    "non-negative integer",
    '"1"',
  );
});

Deno.test("loadSaeLens reports progress over the stored bytes and fails clearly on a truncated file", async () => {
  const sae = randomSae({
    architecture: "jumprelu",
    dIn: 16,
    dSae: 64,
    seed: 5,
    dtype: "bfloat16",
  });
  const dir = await tempDir();
  await writeSaeLensFolder(dir, sae);
  const seen: [number, number, string][] = [];
  await loadSaeLens(dir, { onProgress: (d, t, p) => seen.push([d, t, p]) });
  const total = 2 * (16 * 64 * 2 + 64 + 16 + 64);
  assert.ok(seen.every(([, t]) => t === total), JSON.stringify(seen));
  assert.deepEqual(seen.at(-1)?.slice(0, 2), [total, total]);
  assert.ok(seen.every(([d], i) => i === 0 || d >= seen[i - 1][0]));
  assert.deepEqual(
    new Set(seen.map(([, , p]) => p)),
    new Set(["W_enc", "W_dec", "b_dec", "b_enc", "threshold"]),
  );

  const file = join(dir, "sae_weights.safetensors");
  const bytes = await Deno.readFile(file);
  await Deno.writeFile(file, bytes.subarray(0, bytes.byteLength - 10));
  await rejectsFormat(loadSaeLens(dir), "sae_weights.safetensors", "truncated");
  await Deno.writeFile(file, bytes.subarray(0, 20));
  await rejectsFormat(loadSaeLens(dir), "sae_weights.safetensors", "header length");
});

Deno.test("writeSaeLensFolder round-trips gated, transcoders with skip, and normalisation", async () => {
  const cases = [
    randomSae({ architecture: "gated", dIn: 8, dSae: 16, seed: 1 }),
    randomSae({ architecture: "jumprelu", dIn: 8, dSae: 16, seed: 2, dOut: 5, skip: true }),
    randomSae({ architecture: "standard", dIn: 8, dSae: 16, seed: 3, dOut: 8 }),
    randomSae({ architecture: "topk", dIn: 8, dSae: 16, k: 3, seed: 4, normalize: "layer_norm" }),
  ];
  for (const sae of cases) {
    const dir = await tempDir();
    await writeSaeLensFolder(dir, sae);
    const back = await loadSaeLens(dir);
    sameWeights(sae, back);
    assert.deepEqual(back.gated, sae.gated);
    assert.deepEqual(back.wSkip, sae.wSkip);
    assert.equal(back.kind ?? "sae", sae.kind ?? "sae");
    assert.equal(back.dOut ?? back.dIn, sae.dOut ?? sae.dIn);
    assert.equal(back.normalize ?? "none", sae.normalize ?? "none");
  }
});
