import assert from "node:assert/strict";
import { join } from "node:path";
import { gemmaScope2Hook, loadGemmaScope2 } from "./gemma_scope_2.ts";
import { type SafetensorsTensor } from "./safetensors.ts";
import { writeSafetensors } from "./safetensors_writer.ts";
import { D_IN, D_SAE, params, tutorial, X } from "./testdata/gemma_scope.ts";
import {
  assertMatchesUpstream,
  gaussian,
  rejectsFormat,
  tensor,
  testRoot,
} from "./testdata/upstream.ts";

const TMP = testRoot("gemma_scope_2_test_");
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
