import assert from "node:assert/strict";
import { join } from "node:path";
import {
  gemmaScope2Hook,
  loadGemmaScope,
  loadGemmaScope2,
  parseGemmaScopePath,
  parseGemmaScopeWidth,
} from "./gemma_scope.ts";
import { writeNpz } from "./npz.ts";
import { type SafetensorsTensor } from "./safetensors.ts";
import { writeSafetensors } from "./safetensors_writer.ts";
import {
  add,
  assertMatchesUpstream,
  decode,
  gaussian,
  jumpRelu,
  rejectsFormat,
  tensor,
  testRoot,
  xW,
} from "./testdata/upstream.ts";

const TMP = testRoot("gemma_scope_test_");

const D_IN = 6;
const D_SAE = 12;

/** Gemma Scope weights as stored: W_enc [d_in, d_sae], W_dec [d_sae, d_out], float32. */
function params(seed: number, dOut = D_IN) {
  return {
    W_enc: gaussian(seed, D_IN * D_SAE, 0.6),
    W_dec: gaussian(seed + 1, D_SAE * dOut, 0.5),
    b_enc: gaussian(seed + 2, D_SAE, 0.2),
    // Large: subtracting it from the input (never done for Gemma Scope) would show.
    b_dec: gaussian(seed + 3, dOut, 3),
    threshold: Float32Array.from(gaussian(seed + 4, D_SAE, 0.3), Math.abs),
  };
}

/** The official tutorial JumpReLUSAE: pre = x@W_enc+b_enc; f = [pre>θ]·relu(pre); y = f@W_dec+b_dec (+ x@affine). */
function tutorial(
  p: ReturnType<typeof params>,
  x: Float32Array,
  tokens: number,
  dOut = D_IN,
  affine?: Float32Array,
) {
  return Array.from({ length: tokens }, (_, t) => {
    const xt = x.subarray(t * D_IN, (t + 1) * D_IN);
    const f = jumpRelu(add(xW(xt, p.W_enc, D_SAE), p.b_enc), p.threshold);
    const y = add(decode(f, p.W_dec, dOut), p.b_dec);
    return { f, y: affine ? add(y, xW(xt, affine, dOut)) : y };
  });
}

const X = gaussian(77, 4 * D_IN, 1.5);

Deno.test("parseGemmaScopePath reads repo, layer, width and L0 from the HF layout", () => {
  assert.deepEqual(
    parseGemmaScopePath("/hf/gemma-scope-2b-pt-res/layer_20/width_16k/average_l0_71/params.npz"),
    {
      repo: "gemma-scope-2b-pt-res",
      modelName: "gemma-2-2b",
      site: "res",
      layer: 20,
      embedding: false,
      width: 16384,
      averageL0: 71,
    },
  );
  const it = parseGemmaScopePath("gemma-scope-9b-it-res/layer_9/width_131k/average_l0_121");
  assert.equal(it.modelName, "gemma-2-9b-it");
  assert.equal(it.width, 131072);
  assert.equal(parseGemmaScopeWidth("1m"), 1 << 20);
  assert.equal(parseGemmaScopePath("some/dir/params.npz").layer, null);
});

Deno.test("Gemma Scope 1 params.npz: no b_dec subtraction, file or folder path, hooks from the layout", async () => {
  const p = params(1);
  for (
    const [repo, hook, out] of [
      ["gemma-scope-2b-pt-res", "blocks.5.hook_resid_post", undefined],
      ["gemma-scope-2b-pt-mlp", "blocks.5.hook_mlp_out", undefined],
      ["gemma-scope-2b-pt-att", "blocks.5.attn.hook_z", undefined],
      ["gemma-scope-2b-pt-transcoders", "blocks.5.ln2.hook_normalized", "blocks.5.hook_mlp_out"],
    ] as const
  ) {
    const dir = join(TMP, repo, "layer_5", "average_l0_33");
    await Deno.mkdir(dir, { recursive: true });
    await Deno.writeFile(
      join(dir, "params.npz"),
      writeNpz({
        W_enc: { data: p.W_enc, shape: [D_IN, D_SAE] },
        W_dec: { data: p.W_dec, shape: [D_SAE, D_IN] },
        b_enc: { data: p.b_enc, shape: [D_SAE] },
        b_dec: { data: p.b_dec, shape: [D_IN] },
        threshold: { data: p.threshold, shape: [D_SAE] },
      }),
    );
    for (const path of [dir, join(dir, "params.npz")]) {
      const sae = await loadGemmaScope(path);
      assert.equal(sae.format, "gemma-scope");
      assert.equal(sae.architecture, "jumprelu");
      assert.equal(sae.applyBDecToInput, false);
      assert.equal(sae.modelName, "gemma-2-2b");
      assert.equal(sae.hookName, hook);
      assert.equal(sae.hookNameOut, out);
      assert.equal(sae.kind ?? "sae", out ? "transcoder" : "sae");
      assertMatchesUpstream(sae, X, tutorial(p, X, 4), `${repo} ${path}`);
    }
  }
});

Deno.test("Gemma Scope 1: lower-case w_enc/w_dec, embedding rescale, width check, corrupt file", async () => {
  const p = params(11);
  const arrays = {
    w_enc: { data: p.W_enc, shape: [D_IN, D_SAE] },
    w_dec: { data: p.W_dec, shape: [D_SAE, D_IN] },
    b_enc: { data: p.b_enc, shape: [D_SAE] },
    b_dec: { data: p.b_dec, shape: [D_IN] },
    threshold: { data: p.threshold, shape: [D_SAE] },
  };
  const dir = join(TMP, "lower", "layer_0", "average_l0_10");
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeFile(join(dir, "params.npz"), writeNpz(arrays));
  assertMatchesUpstream(await loadGemmaScope(dir), X, tutorial(p, X, 4), "w_enc/w_dec");

  // Embedding SAEs: SAELens divides W_enc by √d_in and multiplies W_dec by it.
  const emb = join(TMP, "gemma-scope-2b-pt-res", "embedding", "average_l0_7");
  await Deno.mkdir(emb, { recursive: true });
  await Deno.writeFile(join(emb, "params.npz"), writeNpz(arrays));
  const e = await loadGemmaScope(emb);
  assert.equal(e.hookName, "hook_embed");
  assert.ok(Math.abs(e.wEnc[3] - p.W_enc[3] / Math.sqrt(D_IN)) < 1e-6);
  assert.ok(Math.abs(e.wDec[3] - p.W_dec[3] * Math.sqrt(D_IN)) < 1e-5);

  // The width folder is the config here: a file that disagrees fails, naming both.
  const wide = join(TMP, "gemma-scope-2b-pt-res", "layer_1", "width_16k", "average_l0_5");
  await Deno.mkdir(wide, { recursive: true });
  await Deno.writeFile(join(wide, "params.npz"), writeNpz(arrays));
  await rejectsFormat(loadGemmaScope(wide), "params.npz", "W_enc", `[${D_IN},${D_SAE}]`, "16384");

  // A shape that disagrees with the encoder.
  const badDir = join(TMP, "bad", "average_l0_1");
  await Deno.mkdir(badDir, { recursive: true });
  await Deno.writeFile(
    join(badDir, "params.npz"),
    writeNpz({ ...arrays, threshold: { data: new Float32Array(5), shape: [5] } }),
  );
  await rejectsFormat(
    loadGemmaScope(badDir),
    "params.npz",
    "'threshold' has shape [5]",
    `[${D_SAE}]`,
  );
  const { threshold: _, ...noThreshold } = arrays;
  await Deno.writeFile(join(badDir, "params.npz"), writeNpz(noThreshold));
  await rejectsFormat(loadGemmaScope(badDir), "missing tensor 'threshold'", "found tensors");

  // Corrupt / truncated archive.
  const bytes = writeNpz(arrays);
  await Deno.writeFile(join(badDir, "params.npz"), bytes.subarray(0, bytes.byteLength >> 1));
  await rejectsFormat(loadGemmaScope(badDir), "params.npz", "not a readable .npz");
  await rejectsFormat(loadGemmaScope(join(TMP, "nowhere")), "cannot read");
});

Deno.test("Gemma Scope 1 transcoders: key spellings as SAELens's transcoder loader reads them (case-insensitive)", async () => {
  const p = params(41);
  const dir = join(TMP, "gemma-scope-2b-pt-transcoders", "layer_3", "average_l0_54");
  await Deno.mkdir(dir, { recursive: true });
  // gemma_2_transcoder_huggingface_loader accepts w_enc/wenc/w_e, w_dec/wdec/w_d, b_enc/benc/b_e,
  // b_dec/bdec/b_d and threshold, lower-cased; other arrays are not read.
  await Deno.writeFile(
    join(dir, "params.npz"),
    writeNpz({
      WENC: { data: p.W_enc, shape: [D_IN, D_SAE] },
      W_D: { data: p.W_dec, shape: [D_SAE, D_IN] },
      B_E: { data: p.b_enc, shape: [D_SAE] },
      bDec: { data: p.b_dec, shape: [D_IN] },
      Threshold: { data: p.threshold, shape: [D_SAE] },
      scaling_factor: { data: new Float32Array(D_SAE).fill(3), shape: [D_SAE] },
    }),
  );
  const tc = await loadGemmaScope(dir);
  assert.equal(tc.kind, "transcoder");
  assert.equal(tc.hookName, "blocks.3.ln2.hook_normalized");
  assertMatchesUpstream(tc, X, tutorial(p, X, 4), "transcoder aliases");
  const renamed = tc.provenance!.filter((r) => /case-insensitively/.test(r.rule));
  assert.deepEqual(
    renamed.map((r) => [r.setting, r.value]),
    [
      ["W_enc", "params.npz 'WENC'"],
      ["W_dec", "params.npz 'W_D'"],
      ["b_enc", "params.npz 'B_E'"],
      ["b_dec", "params.npz 'bDec'"],
      ["threshold", "params.npz 'Threshold'"],
    ],
  );

  // The SAE loader checks scaling_factor (the transcoder loader never reads it) and renames
  // only 'w_' → 'W_', so the same arrays in an SAE repo fail.
  const sae = join(TMP, "gemma-scope-2b-pt-res", "layer_3", "average_l0_54");
  await Deno.mkdir(sae, { recursive: true });
  await Deno.copyFile(join(dir, "params.npz"), join(sae, "params.npz"));
  await rejectsFormat(loadGemmaScope(sae), "array 'scaling_factor': expected all ones");
  await Deno.writeFile(
    join(sae, "params.npz"),
    writeNpz({
      WENC: { data: p.W_enc, shape: [D_IN, D_SAE] },
      W_dec: { data: p.W_dec, shape: [D_SAE, D_IN] },
      b_enc: { data: p.b_enc, shape: [D_SAE] },
      b_dec: { data: p.b_dec, shape: [D_IN] },
      threshold: { data: p.threshold, shape: [D_SAE] },
    }),
  );
  await rejectsFormat(loadGemmaScope(sae), "missing tensor 'W_enc'", "WENC");
});

Deno.test("Gemma Scope 1 SAEs: a scaling_factor of ones is dropped, any other fails (finetuning_scaling_factor false)", async () => {
  const p = params(43);
  const dir = join(TMP, "gemma-scope-9b-it-res", "layer_7", "average_l0_20");
  await Deno.mkdir(dir, { recursive: true });
  const arrays = (scale: number) =>
    writeNpz({
      W_enc: { data: p.W_enc, shape: [D_IN, D_SAE] },
      W_dec: { data: p.W_dec, shape: [D_SAE, D_IN] },
      b_enc: { data: p.b_enc, shape: [D_SAE] },
      b_dec: { data: p.b_dec, shape: [D_IN] },
      threshold: { data: p.threshold, shape: [D_SAE] },
      // allclose(s, 1): |s − 1| ≤ 1e-8 + 1e-5; 1 + 5e-6 passes, 1 + 1e-3 does not.
      scaling_factor: { data: new Float32Array(D_SAE).fill(scale), shape: [D_SAE] },
    });
  await Deno.writeFile(join(dir, "params.npz"), arrays(1 + 5e-6));
  const sae = await loadGemmaScope(dir);
  assertMatchesUpstream(sae, X, tutorial(p, X, 4), "scaling_factor ones");
  assert.equal(sae.modelName, "gemma-2-9b-it");
  const rule = (s: string) => sae.provenance!.find((r) => r.setting === s);
  assert.equal(rule("scaling_factor")?.value, "ignored");
  assert.equal(rule("hook_name")?.value, "blocks.7.hook_resid_post");
  assert.match(rule("hook_name")!.rule, /get_gemma_2_config_from_hf/);
  assert.equal(rule("apply_b_dec_to_input")?.value, false);
  assert.match(rule("threshold")!.rule, /h > threshold, strictly/);

  await Deno.writeFile(join(dir, "params.npz"), arrays(1 + 1e-3));
  await rejectsFormat(
    loadGemmaScope(dir),
    "params.npz",
    "array 'scaling_factor': expected all ones",
    "found [1.00",
  );
});

const havePython = (() => {
  try {
    return new Deno.Command("python3", { args: ["-c", "import numpy"] }).outputSync().success;
  } catch {
    return false;
  }
})();
if (!havePython) {
  console.warn("SKIPPED: Gemma Scope npz written by numpy (python3 with numpy not found)");
}

Deno.test({
  name: "Gemma Scope 1: an npz written by numpy.savez_compressed (deflated members) loads the same",
  ignore: !havePython,
  fn: async () => {
    const p = params(21);
    const dir = join(TMP, "numpy", "average_l0_9");
    await Deno.mkdir(dir, { recursive: true });
    const raw = join(dir, "raw.bin");
    await Deno.writeFile(
      raw,
      new Uint8Array(
        new Float32Array([...p.W_enc, ...p.W_dec, ...p.b_enc, ...p.b_dec, ...p.threshold]).buffer,
      ),
    );
    const script = `
import numpy as np, sys
a = np.fromfile(sys.argv[1], dtype='<f4'); d, m = ${D_IN}, ${D_SAE}; o = 0
def take(n, shape):
    global o; v = a[o:o+n].reshape(shape); o += n; return v
W_enc = take(d*m, (d, m)); W_dec = take(m*d, (m, d)); b_enc = take(m, (m,)); b_dec = take(d, (d,)); th = take(m, (m,))
np.savez_compressed(sys.argv[2], W_enc=W_enc, W_dec=W_dec, b_enc=b_enc, b_dec=b_dec, threshold=th)
`;
    const out = new Deno.Command("python3", {
      args: ["-c", script, raw, join(dir, "params.npz")],
    }).outputSync();
    assert.ok(out.success, new TextDecoder().decode(out.stderr));
    assertMatchesUpstream(await loadGemmaScope(dir), X, tutorial(p, X, 4), "numpy npz");
  },
});

async function gs2Folder(
  name: string,
  config: Record<string, unknown>,
  files: Record<string, Record<string, SafetensorsTensor>>,
): Promise<string> {
  const dir = join(TMP, "gemma-scope-2-1b-pt", name);
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify(config));
  for (const [file, tensors] of Object.entries(files)) {
    await Deno.writeFile(join(dir, file), writeSafetensors(tensors));
  }
  return dir;
}

function gs2Tensors(
  p: ReturnType<typeof params>,
  dOut = D_IN,
  dtype: "F32" | "BF16" = "F32",
): Record<string, SafetensorsTensor> {
  return {
    b_dec: tensor(p.b_dec, [dOut], dtype),
    b_enc: tensor(p.b_enc, [D_SAE], dtype),
    threshold: tensor(p.threshold, [D_SAE], dtype),
    w_dec: tensor(p.W_dec, [D_SAE, dOut], dtype),
    w_enc: tensor(p.W_enc, [D_IN, D_SAE], dtype),
  };
}

Deno.test("Gemma Scope 2 SAE: lower-case keys, hook mapping, width check against config.json", async () => {
  const p = params(31);
  const config = {
    architecture: "jump_relu",
    model_name: "google/gemma-3-1b-pt",
    hf_hook_point_in: "model.layers.22.output",
    hf_hook_point_out: "model.layers.22.output",
    affine_connection: false,
    width: D_SAE,
    l0: "medium",
    type: "sae",
  };
  const dir = await gs2Folder("resid_post/layer_22_width_16k_l0_medium", config, {
    "params.safetensors": gs2Tensors(p),
  });
  for (const path of [dir, join(dir, "params.safetensors"), join(dir, "config.json")]) {
    const sae = await loadGemmaScope2(path);
    assert.equal(sae.format, "gemma-scope-2");
    assert.equal(sae.hookName, "blocks.22.hook_resid_post");
    assert.equal(sae.modelName, "google/gemma-3-1b-pt");
    assert.equal(sae.kind ?? "sae", "sae");
    assert.equal(sae.applyBDecToInput, false);
    assertMatchesUpstream(sae, X, tutorial(p, X, 4), `GS2 SAE ${path}`);
  }
  await rejectsFormat(
    loadGemmaScope2(
      await gs2Folder("resid_post/wrong_width", { ...config, width: 16384 }, {
        "params.safetensors": gs2Tensors(p),
      }),
    ),
    "params.safetensors",
    "'w_enc'",
    `[${D_IN},${D_SAE}]`,
    "16384",
    "'width'",
  );
  await rejectsFormat(
    loadGemmaScope2(
      await gs2Folder("resid_post/bad_arch", { ...config, architecture: "topk" }, {
        "params.safetensors": gs2Tensors(p),
      }),
    ),
    "config.json",
    "'architecture'",
    '"topk"',
  );
  assert.equal(gemmaScope2Hook("model.layers.3.self_attn.o_proj.input"), "blocks.3.attn.hook_z");
  assert.equal(
    gemmaScope2Hook("model.layers.3.post_feedforward_layernorm.output"),
    "blocks.3.hook_mlp_out",
  );
  assert.equal(
    gemmaScope2Hook("model.layers.3.pre_feedforward_layernorm.output"),
    "blocks.3.hook_mlp_in",
  );
});

Deno.test("Gemma Scope 2 affine transcoder: square affine_skip_connection used UNtransposed (x @ A), bf16", async () => {
  const p = params(41);
  // Values exact in bf16, so the upstream formula sees the same numbers.
  const bf = (a: Float32Array) => Float32Array.from(a, (v) => Math.round(v * 64) / 64);
  const q = {
    W_enc: bf(p.W_enc),
    W_dec: bf(p.W_dec),
    b_enc: bf(p.b_enc),
    b_dec: bf(p.b_dec),
    threshold: bf(p.threshold),
  };
  const affine = bf(gaussian(45, D_IN * D_IN, 0.7)); // [d_in, d_out], square: orientation by output only
  const dir = await gs2Folder("transcoder/layer_12_width_16k_l0_small_affine", {
    architecture: "jump_relu",
    model_name: "google/gemma-3-1b-pt",
    hf_hook_point_in: "model.layers.12.pre_feedforward_layernorm.output",
    hf_hook_point_out: "model.layers.12.post_feedforward_layernorm.output",
    affine_connection: true,
    type: "transcoder",
  }, {
    "params.safetensors": {
      ...gs2Tensors(q, D_IN, "BF16"),
      affine_skip_connection: tensor(affine, [D_IN, D_IN], "BF16"),
    },
  });
  const tc = await loadGemmaScope2(dir);
  assert.equal(tc.dtype, "bfloat16");
  assert.equal(tc.kind, "transcoder");
  assert.equal(tc.hookName, "blocks.12.hook_mlp_in");
  assert.equal(tc.hookNameOut, "blocks.12.hook_mlp_out");
  assert.deepEqual(tc.wSkip, affine);
  assertMatchesUpstream(tc, X, tutorial(q, X, 4, D_IN, affine), "GS2 affine transcoder");
  assert.deepEqual(
    tc.provenance!.map((r) => [r.setting, r.value]),
    [
      ["threshold", "params.safetensors 'threshold'"],
      ["apply_b_dec_to_input", false],
      ["hook_name", "blocks.12.hook_mlp_in"],
      ["kind", "transcoder"],
      ["hook_name_out", "blocks.12.hook_mlp_out"],
      ["skip", "x @ affine_skip_connection"],
    ],
  );
  assert.equal(tc.provenance![3].rule, "config type 'transcoder'");

  await rejectsFormat(
    loadGemmaScope2(
      await gs2Folder("transcoder/missing_affine", {
        architecture: "jump_relu",
        affine_connection: true,
        type: "transcoder",
      }, { "params.safetensors": gs2Tensors(p) }),
    ),
    "missing tensor 'affine_skip_connection'",
    "affine_connection: true",
  );
});

Deno.test("Gemma Scope 2 cross-layer transcoder: params_layer_{i} with w_dec [d_sae, n_layers, d_out] keeps w_dec[:, i, :]", async () => {
  const p = params(51);
  const layers = 3;
  const wDecAll = gaussian(56, D_SAE * layers * D_IN, 0.5);
  const config = {
    architecture: "jump_relu",
    model_name: "google/gemma-3-270m-pt",
    hf_hook_point_in: "model.layers.0.pre_feedforward_layernorm.output",
    hf_hook_point_out: "model.layers.0.post_feedforward_layernorm.output",
    affine_connection: false,
    width: D_SAE * layers, // the total over layers
    type: "clt",
  };
  const files: Record<string, Record<string, SafetensorsTensor>> = {};
  for (let i = 0; i < layers; i++) {
    files[`params_layer_${i}.safetensors`] = {
      ...gs2Tensors(p),
      w_dec: tensor(wDecAll, [D_SAE, layers, D_IN]),
    };
  }
  const dir = await gs2Folder("clt/width_262k_l0_medium", config, files);
  for (
    const sae of [
      await loadGemmaScope2(join(dir, "params_layer_1.safetensors")),
      await loadGemmaScope2(dir, { layer: 1 }),
    ]
  ) {
    assert.deepEqual(sae.crossLayer, { layer: 1, layers });
    assert.equal(sae.kind, "transcoder");
    assert.equal(sae.hookName, "blocks.1.hook_mlp_in");
    assert.equal(sae.hookNameOut, "blocks.1.hook_mlp_out");
    const slice = new Float32Array(D_SAE * D_IN);
    for (let s = 0; s < D_SAE; s++) {
      for (let o = 0; o < D_IN; o++) slice[s * D_IN + o] = wDecAll[(s * layers + 1) * D_IN + o];
    }
    assert.deepEqual(sae.wDec, slice);
    assertMatchesUpstream(sae, X, tutorial({ ...p, W_dec: slice }, X, 4), "CLT layer 1");
    const rule = (s: string) => sae.provenance!.find((r) => r.setting === s)!;
    assert.equal(rule("W_dec").value, "w_dec[:, 1, :]");
    assert.match(rule("hook_name").rule, /layer 1 from params_layer_1\.safetensors/);
    assert.equal(rule("kind").rule, "cross-layer transcoder file params_layer_1.safetensors");
  }
  await rejectsFormat(loadGemmaScope2(dir), "params_layer_{i}.safetensors", "layer");
  await rejectsFormat(
    loadGemmaScope2(dir, { layer: 7 }),
    "params_layer_7.safetensors",
    "cannot read",
  );
});

Deno.test("Gemma Scope 2: truncated params and unreadable config fail naming the file", async () => {
  const p = params(61);
  const dir = await gs2Folder("resid_post/truncated", { architecture: "jump_relu", type: "sae" }, {
    "params.safetensors": gs2Tensors(p),
  });
  const file = join(dir, "params.safetensors");
  const bytes = await Deno.readFile(file);
  await Deno.writeFile(file, bytes.subarray(0, bytes.byteLength - 4));
  await rejectsFormat(loadGemmaScope2(dir), "params.safetensors", "truncated");
  await Deno.writeTextFile(join(dir, "config.json"), "{");
  await rejectsFormat(loadGemmaScope2(dir), "config.json", "not valid JSON");
});
