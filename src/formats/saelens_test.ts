import assert from "node:assert/strict";
import { join } from "node:path";
import type { SaeWeights } from "../core/sae.ts";
import { randomSae } from "./random_sae.ts";
import {
  loadSaeLens,
  parseSaeLensConfig,
  SaeFormatError,
  saeLensFolder,
  writeSaeLensFolder,
} from "./saelens.ts";
import { readSafetensors, type SafetensorsTensor, writeSafetensors } from "./safetensors.ts";

// Every folder lives under one temp dir, removed when the test module unloads.
const TMP = Deno.makeTempDirSync({ prefix: "saelens_test_" });
globalThis.addEventListener("unload", () => Deno.removeSync(TMP, { recursive: true }));
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

async function rejects(p: Promise<unknown>, ...parts: string[]): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof SaeFormatError, `expected SaeFormatError, got ${e}`);
    for (const part of parts) assert.ok(e.message.includes(part), `'${e.message}' lacks '${part}'`);
    return true;
  });
}

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
  await rejects(
    loadSaeLens(await handFolder({ ...plain, normalize_activations: true }, tinyTensors())),
    "cfg.json",
    "expected_average_only_in",
    "activation_scaler.json",
    "norm_scaling_factor",
  );
  await rejects(
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
  await rejects(
    loadSaeLens(await handFolder({ ...cfg, k: 4 }, tinyTensors())),
    "'k'",
    "at most d_sae = 3",
    "4",
  );
  await rejects(
    loadSaeLens(await handFolder({ ...cfg, k: undefined }, tinyTensors())),
    "'k'",
    "missing",
  );
});

Deno.test("loadSaeLens errors name the file, the tensor or key, expected and found", async () => {
  const std = { ...V6, architecture: "standard" };
  const { W_enc: _, ...noWEnc } = tinyTensors();
  await rejects(
    loadSaeLens(await handFolder(std, noWEnc)),
    "sae_weights.safetensors",
    "missing tensor 'W_enc'",
    "[d_in, d_sae] = [2,3]",
  );
  await rejects(
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
  await rejects(
    loadSaeLens(
      await handFolder(
        std,
        tinyTensors({ b_dec: { dtype: "F32", shape: [3], data: f32(1, 2, 3) } }),
      ),
    ),
    "'b_dec' has shape [3]",
    "[d_in] = [2]",
  );
  await rejects(
    loadSaeLens(
      await handFolder(
        V6,
        tinyTensors({ log_threshold: { dtype: "F32", shape: [3], data: f32(0, 0, 0) } }),
      ),
    ),
    "missing tensor 'threshold'",
    "log_threshold",
  );
  await rejects(
    loadSaeLens(await handFolder({ ...V6, architecture: "gated" }, tinyTensors())),
    "sae_weights.safetensors",
    "missing tensor 'b_gate'",
    "a gated SAE",
  );
  await rejects(
    loadSaeLens(await handFolder({ ...V6, architecture: "mystery_sae" }, tinyTensors())),
    "cfg.json",
    "'architecture'",
    "'standard', 'gated', 'jumprelu', 'topk', 'transcoder'",
    '"mystery_sae"',
  );
  await rejects(
    loadSaeLens(await handFolder({ ...V6, architecture: "batchtopk" }, tinyTensors())),
    "'architecture'",
    "saves BatchTopK SAEs for inference as 'jumprelu'",
  );
  await rejects(
    loadSaeLens(await handFolder({ ...V6, d_in: 0 }, tinyTensors())),
    "'d_in'",
    "positive integer",
  );
  await rejects(
    loadSaeLens(await handFolder({ ...V6, dtype: "int8" }, tinyTensors())),
    "'dtype'",
    '"int8"',
  );
  await rejects(
    loadSaeLens(await handFolder({ ...V6, normalize_activations: "rms" }, tinyTensors())),
    "'normalize_activations'",
    "'layer_norm'",
    '"rms"',
  );
  await rejects(loadSaeLens("/nonexistent/sae"), "/nonexistent/sae/cfg.json", "cannot read");
  const dir = await tempDir();
  await Deno.writeTextFile(join(dir, "cfg.json"), "{oops");
  await rejects(loadSaeLens(dir), "cfg.json", "not valid JSON");
  await Deno.writeTextFile(join(dir, "cfg.json"), JSON.stringify(V6));
  await rejects(loadSaeLens(dir), "sae_weights.safetensors", "cannot read");
  await Deno.writeFile(join(dir, "sae_weights.safetensors"), new Uint8Array(4));
  await rejects(loadSaeLens(dir), "sae_weights.safetensors", "at least 8 bytes");
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
