/**
 * One test per SAELens configuration branch that SAELens 6.18 loads from disk
 * (`SAE.load_from_disk` → `handle_config_defaulting` → `handle_pre_6_0_config`
 * → the architecture's config class, then `read_sae_components_from_disk`;
 * sae_lens/loading/pretrained_sae_loaders.py and sae_lens/saes/*.py at
 * 91ca16ccd0684e4dd6323cd4f23ded734339ec54). Each writes cfg.json +
 * sae_weights.safetensors to a temp folder and loads it; expected values come
 * from the SAELens rule (or the formula on the stored tensors), never from
 * the loader.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { SaeWeights } from "../core/sae.ts";
import { loadSaeLens } from "./saelens.ts";
import { parseSaeLensConfig } from "./saelens_config.ts";
import { isBelowV6rc0 } from "./saelens_legacy.ts";
import { type SafetensorsTensor } from "./safetensors.ts";
import { writeSafetensors } from "./safetensors_writer.ts";
import {
  add,
  assertMatchesUpstream,
  decode,
  gaussian,
  rejectsFormat,
  relu,
  sub,
  tensor,
  testRoot,
  topk,
  xW,
} from "./testdata/upstream.ts";

const TMP = testRoot("saelens_config_test_");

const D_IN = 4;
const D_SAE = 8;
const W_ENC = gaussian(11, D_IN * D_SAE, 0.7);
const B_ENC = gaussian(12, D_SAE, 0.2);
const W_DEC = gaussian(13, D_SAE * D_IN, 0.5);
const B_DEC = gaussian(14, D_IN, 0.3);
const X = gaussian(15, 3 * D_IN, 1.5);

function weights(
  dIn = D_IN,
  dSae = D_SAE,
  extra: Record<string, SafetensorsTensor> = {},
): Record<string, SafetensorsTensor> {
  const small = dIn === D_IN && dSae === D_SAE;
  return {
    W_enc: tensor(small ? W_ENC : new Float32Array(dIn * dSae), [dIn, dSae]),
    b_enc: tensor(small ? B_ENC : new Float32Array(dSae), [dSae]),
    W_dec: tensor(small ? W_DEC : new Float32Array(dSae * dIn), [dSae, dIn]),
    b_dec: tensor(small ? B_DEC : new Float32Array(dIn), [dIn]),
    ...extra,
  };
}

/** Write cfg.json (as text, so key order is the test's) + sae_weights.safetensors. */
async function folder(
  cfg: Record<string, unknown> | string,
  tensors: Record<string, SafetensorsTensor> = weights(),
): Promise<string> {
  const dir = await Deno.makeTempDir({ dir: TMP });
  await Deno.writeTextFile(
    join(dir, "cfg.json"),
    typeof cfg === "string" ? cfg : JSON.stringify(cfg),
  );
  await Deno.writeFile(join(dir, "sae_weights.safetensors"), writeSafetensors(tensors));
  return dir;
}

/** A pre-6.0 config (no sae_lens_version) as SAELens 3.x-5.x wrote it, minus what a test sets. */
function pre6(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    model_name: "gpt2-small",
    hook_point: "blocks.8.hook_resid_pre",
    hook_point_layer: 8,
    d_in: D_IN,
    d_sae: D_SAE,
    dtype: "torch.float32",
    device: "cpu",
    sae_lens_training_version: "3.13.0",
    ...extra,
  };
}

function v6(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    d_in: D_IN,
    d_sae: D_SAE,
    dtype: "float32",
    apply_b_dec_to_input: true,
    normalize_activations: "none",
    metadata: { sae_lens_version: "6.18.0", hook_name: "blocks.8.hook_resid_pre" },
    ...extra,
  };
}

/** SAELens's encode/decode on the stored tensors: relu or topk(k) of (x − b_dec·apply) @ W_enc + b_enc. */
function expectedTokens(act: (h: Float64Array) => Float64Array, applyBDec = true) {
  return [0, 1, 2].map((t) => {
    const xt = X.subarray(t * D_IN, (t + 1) * D_IN);
    const f = act(add(xW(applyBDec ? sub(xt, B_DEC) : xt, W_ENC, D_SAE), B_ENC));
    return { f, y: add(decode(f, W_DEC, D_IN), B_DEC) };
  });
}

function rule(sae: SaeWeights, setting: string): string | undefined {
  return sae.provenance?.findLast((p) => p.setting === setting)?.rule;
}

// ---- handle_config_defaulting: which configs are pre-6.0 ----

Deno.test("version: no sae_lens_version, or one below 6.0.0-rc.0 (PEP 440 order), is pre-6.0", async () => {
  // Expected values: packaging.version ordering against Version("6.0.0-rc.0").
  const below: Record<string, boolean> = {
    "5.11.0": true,
    "6.0.0-beta.1": true,
    "6.0.0a3": true,
    "6.0.0.dev1": true,
    "6.0.0rc0.dev2": true,
    "6.0.0-rc.0": false,
    "6.0.0rc1": false,
    "6.0.0": false,
    "6.0.0.post1": false,
    "6.0.0-rc.0.post1": false,
    "v6.1.0": false,
    "6.18.0+local.1": false,
    "6": false,
    "6.0": false,
    "10.0.0": false,
    "1!0.1": false,
  };
  for (const [v, want] of Object.entries(below)) assert.equal(isBelowV6rc0(v), want, v);
  assert.equal(isBelowV6rc0("six"), null);
  // An empty top-level version falls back to metadata's (Python truthiness).
  const sae = await loadSaeLens(
    await folder({ ...v6({ architecture: "standard" }), sae_lens_version: "" }),
  );
  assert.equal(rule(sae, "config layout"), undefined);
  assert.equal(
    parseSaeLensConfig({ ...v6({ architecture: "standard" }), sae_lens_version: "" }, "c").legacy,
    false,
  );
  const old = await loadSaeLens(await folder(pre6({ sae_lens_version: "5.9.1" })));
  assert.equal(old.provenance?.[0].value, "pre-6.0");
  assert.match(old.provenance![0].rule, /"5\.9\.1" is below 6\.0\.0-rc\.0/);
  await rejectsFormat(
    loadSaeLens(await folder(v6({ architecture: "standard", sae_lens_version: "six" }))),
    "'sae_lens_version'",
    "PEP 440",
    '"six"',
  );
  await rejectsFormat(
    loadSaeLens(await folder(v6({ architecture: "standard", sae_lens_version: 6 }))),
    "'sae_lens_version'",
    "6",
  );
});

// ---- handle_pre_6_0_config ----

Deno.test("pre-6.0: architecture topk with activation_fn_kwargs.k and no activation_fn takes k from the kwargs", async () => {
  // The reported file: SAELens sets k = activation_fn_kwargs["k"] whenever architecture == "topk".
  const sae = await loadSaeLens(
    await folder(pre6({ architecture: "topk", activation_fn_kwargs: { k: 3 } })),
  );
  assert.equal(sae.architecture, "topk");
  assert.equal(sae.k, 3);
  assert.match(rule(sae, "k")!, /from activation_fn_kwargs\.k \(SAELens pre-6\.0 rule/);
  assertMatchesUpstream(sae, X, expectedTokens((h) => topk(h, 3)), "pre-6 topk kwargs");
});

Deno.test("pre-6.0: activation_fn_str 'topk' with activation_fn_kwargs.k and no architecture becomes topk", async () => {
  const sae = await loadSaeLens(
    await folder(pre6({ activation_fn_str: "topk", activation_fn_kwargs: { k: 2 } })),
  );
  assert.equal(sae.architecture, "topk");
  assert.equal(sae.k, 2);
  assert.match(rule(sae, "architecture")!, /from activation_fn_str 'topk'/);
  assertMatchesUpstream(sae, X, expectedTokens((h) => topk(h, 2)), "pre-6 activation_fn_str topk");
});

Deno.test("pre-6.0: activation_fn 'topk' with k overrides an explicit architecture", async () => {
  const sae = await loadSaeLens(
    await folder(
      pre6({ architecture: "standard", activation_fn: "topk", activation_fn_kwargs: { k: 5 } }),
    ),
  );
  assert.equal(sae.architecture, "topk");
  assert.equal(sae.k, 5);
  assert.match(rule(sae, "architecture")!, /was "standard"/);
});

Deno.test("pre-6.0: activation_fn 'topk' without activation_fn_kwargs.k keeps the architecture (ReLU), as SAELens 6 does", async () => {
  for (const kwargs of [{}, { k: null }]) {
    const sae = await loadSaeLens(
      await folder(pre6({ activation_fn_str: "topk", activation_fn_kwargs: kwargs })),
    );
    assert.equal(sae.architecture, "standard");
    assert.equal(sae.k, undefined);
    assert.match(rule(sae, "architecture")!, /without activation_fn_kwargs\.k/);
    assertMatchesUpstream(sae, X, expectedTokens(relu), "pre-6 topk without k");
  }
});

Deno.test("pre-6.0: architecture topk whose activation_fn_kwargs lacks k is refused (SAELens raises KeyError)", async () => {
  await rejectsFormat(
    loadSaeLens(await folder(pre6({ architecture: "topk", activation_fn_kwargs: {} }))),
    "cfg.json",
    "'activation_fn_kwargs.k'",
    "found nothing",
  );
});

Deno.test("pre-6.0: architecture topk without activation_fn_kwargs reads k, else TopKSAEConfig's default 100", async () => {
  const withK = await loadSaeLens(await folder(pre6({ architecture: "topk", k: 4 })));
  assert.equal(withK.k, 4);
  assert.equal(rule(withK, "k"), undefined);
  const dflt = await loadSaeLens(
    await folder(pre6({ architecture: "topk", d_sae: 128 }), weights(D_IN, 128)),
  );
  assert.equal(dflt.k, 100);
  assert.match(rule(dflt, "k")!, /default 100 \(SAELens TopKSAEConfig\)/);
  await rejectsFormat(
    loadSaeLens(await folder(pre6({ architecture: "topk" }))),
    "'k'",
    "at most d_sae = 8",
    "default k = 100",
  );
});

Deno.test("pre-6.0: activation_fn_kwargs.k wins over a top-level k", async () => {
  const sae = await loadSaeLens(
    await folder(pre6({ architecture: "topk", k: 7, activation_fn_kwargs: { k: 2 } })),
  );
  assert.equal(sae.k, 2);
});

Deno.test("pre-6.0: renames apply in file order, so the later of activation_fn_str / activation_fn wins", async () => {
  const base = JSON.stringify(pre6()).slice(0, -1);
  const laterTopk = await loadSaeLens(
    await folder(
      `${base},"activation_fn":"relu","activation_fn_str":"topk","activation_fn_kwargs":{"k":2}}`,
    ),
  );
  assert.equal(laterTopk.architecture, "topk");
  const laterRelu = await loadSaeLens(
    await folder(
      `${base},"activation_fn_str":"topk","activation_fn":"relu","activation_fn_kwargs":{"k":2}}`,
    ),
  );
  assert.equal(laterRelu.architecture, "standard");
});

Deno.test("pre-6.0: hook_point → hook_name and hook_point_head_index → hook_head_index; metadata rebuilt from top-level keys", async () => {
  const sae = await loadSaeLens(
    await folder(
      pre6({
        hook_point: "blocks.3.attn.hook_q",
        hook_point_head_index: 2,
        neuronpedia_id: "gpt2-small/3-q",
        // A pre-6.0 file's metadata object is replaced by SAELens, not read.
        metadata: { hook_name: "ignored", model_name: "ignored" },
      }),
    ),
  );
  assert.equal(sae.hookName, "blocks.3.attn.hook_q");
  assert.equal(sae.modelName, "gpt2-small");
  assert.equal(sae.hookHeadIndex, 2);
  assert.equal(sae.neuronpediaId, "gpt2-small/3-q");
  assert.match(rule(sae, "hook_name")!, /from hook_point/);
  assert.match(rule(sae, "hook_head_index")!, /from hook_point_head_index/);
});

Deno.test("pre-6.0: boolean normalize_activations: true → expected_average_only_in (folded), false/null → none", async () => {
  for (const off of [false, null]) {
    const sae = await loadSaeLens(await folder(pre6({ normalize_activations: off })));
    assert.equal(sae.normalize, undefined);
    assertMatchesUpstream(sae, X, expectedTokens(relu), `normalize ${off}`);
  }
  const s = 0.5;
  const on = await loadSaeLens(
    await folder(pre6({ normalize_activations: true, norm_scaling_factor: s })),
  );
  const normRules = on.provenance!.filter((p) => p.setting === "normalize_activations");
  assert.match(normRules[0].rule, /from boolean true/);
  assert.match(normRules[1].rule, /fold_activation_norm_scaling_factor/);
  // fold_activation_norm_scaling_factor: W_enc·s, W_dec/s, b_dec/s on the stored tensors.
  assert.deepEqual([...on.wEnc], [...W_ENC].map((v) => Math.fround(v * s)));
  assert.deepEqual([...on.bDec], [...B_DEC].map((v) => Math.fround(v / s)));
  await rejectsFormat(
    loadSaeLens(await folder(pre6({ normalize_activations: true }))),
    "expected_average_only_in",
  );
});

Deno.test("pre-6.0: reshape_activations is hook_z when the hook name contains hook_z, unless the file says", async () => {
  const z = await loadSaeLens(await folder(pre6({ hook_point: "blocks.4.attn.hook_z" })));
  assert.match(rule(z, "reshape_activations")!, /contains 'hook_z'/);
  // hook_z accepts W_enc stored [n_heads, d_head, d_sae]; without it the shape is refused.
  const heads = weights(D_IN, D_SAE, { W_enc: tensor(W_ENC, [2, 2, D_SAE]) });
  assert.deepEqual(
    (await loadSaeLens(await folder(pre6({ hook_point: "blocks.4.attn.hook_z" }), heads))).wEnc,
    z.wEnc,
  );
  await rejectsFormat(
    loadSaeLens(
      await folder(
        pre6({ hook_point: "blocks.4.attn.hook_z", reshape_activations: "none" }),
        heads,
      ),
    ),
    "'W_enc' has shape [2,2,8]",
  );
  // 6.x never infers it.
  await rejectsFormat(
    loadSaeLens(
      await folder(
        v6({
          architecture: "standard",
          metadata: { sae_lens_version: "6.18.0", hook_name: "blocks.4.attn.hook_z" },
        }),
        heads,
      ),
    ),
    "'W_enc' has shape [2,2,8]",
  );
});

Deno.test("defaults: apply_b_dec_to_input true and dtype float32 when absent (pre-6.0 setdefault, SAEConfig)", async () => {
  const { dtype: _, ...noDtype } = pre6();
  const sae = await loadSaeLens(await folder(noDtype));
  assert.equal(sae.applyBDecToInput, true);
  assert.equal(sae.dtype, "float32");
  assert.match(rule(sae, "apply_b_dec_to_input")!, /default true \(SAELens pre-6\.0 rule/);
  assert.match(rule(sae, "dtype")!, /default 'float32'/);
  assertMatchesUpstream(sae, X, expectedTokens(relu, true), "defaults");
  const { apply_b_dec_to_input: __, dtype: ___, ...bare } = v6({ architecture: "standard" });
  const six = await loadSaeLens(await folder(bare));
  assert.equal(six.applyBDecToInput, true);
  assert.match(rule(six, "apply_b_dec_to_input")!, /SAEConfig/);
  // A pre-6.0 file that says false is obeyed.
  const off = await loadSaeLens(await folder(pre6({ apply_b_dec_to_input: false })));
  assertMatchesUpstream(off, X, expectedTokens(relu, false), "apply false");
});

Deno.test("pre-6.0: jumprelu and gated architectures (SAELens 4.x-5.x files) load as such", async () => {
  const threshold = Float32Array.from(gaussian(16, D_SAE, 0.3), Math.abs);
  const j = await loadSaeLens(
    await folder(
      pre6({ architecture: "jumprelu", activation_fn_str: "relu", sae_lens_version: "5.10.0" }),
      weights(D_IN, D_SAE, { threshold: tensor(threshold, [D_SAE]) }),
    ),
  );
  assert.equal(j.architecture, "jumprelu");
  assert.deepEqual([...j.threshold!], [...threshold]);
  const g = weights();
  delete g.b_enc;
  const gated = await loadSaeLens(
    await folder(pre6({ architecture: "gated" }), {
      ...g,
      b_gate: tensor(B_ENC, [D_SAE]),
      b_mag: tensor(B_ENC, [D_SAE]),
      r_mag: tensor(new Float32Array(D_SAE), [D_SAE]),
    }),
  );
  assert.equal(gated.architecture, "gated");
});

Deno.test("pre-6.0: 'tanh-relu' is refused (SAELens 6 would silently run ReLU) and unknown activations too", async () => {
  await rejectsFormat(
    loadSaeLens(await folder(pre6({ activation_fn_str: "tanh-relu" }))),
    "'activation_fn_str'",
    "tanh(relu(h))",
    '"tanh-relu"',
  );
  await rejectsFormat(
    loadSaeLens(await folder(pre6({ activation_fn: "gelu" }))),
    "'activation_fn'",
    '"gelu"',
  );
});

// ---- 6.x configs and the architecture config classes ----

Deno.test("6.x: model keys come from metadata; activation_fn / activation_fn_kwargs are ignored", async () => {
  const sae = await loadSaeLens(
    await folder(
      v6({
        architecture: "standard",
        hook_name: "top.level.ignored",
        activation_fn: "topk",
        activation_fn_kwargs: { k: 2 },
        metadata: {
          sae_lens_version: "6.18.0",
          hook_name: "blocks.8.hook_resid_post",
          model_name: "gemma-2-2b",
          hook_head_index: null,
        },
      }),
    ),
  );
  assert.equal(sae.architecture, "standard");
  assert.equal(sae.hookName, "blocks.8.hook_resid_post");
  assert.equal(sae.modelName, "gemma-2-2b");
  assert.equal(sae.hookHeadIndex, undefined);
  assertMatchesUpstream(sae, X, expectedTokens(relu), "v6 ignores activation_fn");
});

Deno.test("6.x topk: k defaults to 100 (TopKSAEConfig); rescale_acts_by_decoder_norm only applies to topk", async () => {
  const sae = await loadSaeLens(
    await folder(v6({ architecture: "topk", d_sae: 100 }), weights(D_IN, 100)),
  );
  assert.equal(sae.k, 100);
  assert.match(rule(sae, "k")!, /TopKSAEConfig/);
  const std = await loadSaeLens(
    await folder(v6({ architecture: "standard", rescale_acts_by_decoder_norm: true })),
  );
  assert.equal(std.rescaleActsByDecoderNorm, undefined);
  assertMatchesUpstream(std, X, expectedTokens(relu), "rescale ignored for standard");
});

Deno.test("transcoders: d_out defaults to 768 (TranscoderConfig); a missing apply_b_dec_to_input is false", async () => {
  const dOut = 768;
  const sae = await loadSaeLens(
    await folder(v6({ architecture: "transcoder", apply_b_dec_to_input: undefined }), {
      W_enc: tensor(W_ENC, [D_IN, D_SAE]),
      b_enc: tensor(B_ENC, [D_SAE]),
      W_dec: tensor(new Float32Array(D_SAE * dOut), [D_SAE, dOut]),
      b_dec: tensor(new Float32Array(dOut), [dOut]),
    }),
  );
  assert.equal(sae.dOut, 768);
  assert.equal(sae.applyBDecToInput, false);
  assert.match(rule(sae, "d_out")!, /default 768/);
  assert.match(rule(sae, "apply_b_dec_to_input")!, /false for transcoders/);
});

// ---- read_sae_components_from_disk: the scaling_factor tensor ----

Deno.test("scaling_factor tensor: allclose to ones is dropped in any version; otherwise needs finetuning_scaling_factor", async () => {
  const nearOnes = Float32Array.from({ length: D_SAE }, (_, i) => 1 + (i % 2 ? 5e-6 : -5e-6));
  for (const cfg of [pre6(), v6({ architecture: "standard" })]) {
    const sae = await loadSaeLens(
      await folder(cfg, weights(D_IN, D_SAE, { scaling_factor: tensor(nearOnes, [D_SAE]) })),
    );
    assert.deepEqual([...sae.wDec], [...W_DEC]);
    assert.match(rule(sae, "scaling_factor")!, /allclose to ones/);
  }
  const s = Float32Array.from({ length: D_SAE }, (_, i) => 1 + i / 4);
  for (const cfg of [pre6(), v6({ architecture: "standard" })]) {
    await rejectsFormat(
      loadSaeLens(await folder(cfg, weights(D_IN, D_SAE, { scaling_factor: tensor(s, [D_SAE]) }))),
      "'finetuning_scaling_factor'",
      "Scaling factor is present but finetuning_scaling_factor is False",
    );
  }
  const folded = await loadSaeLens(
    await folder(
      pre6({ finetuning_scaling_factor: true }),
      weights(D_IN, D_SAE, { scaling_factor: tensor(s, [D_SAE]) }),
    ),
  );
  // SAELens ≤ 5 decode: (f * s) @ W_dec + b_dec.
  const expected = expectedTokens(relu).map(({ f }) => ({
    f,
    y: add(decode(f.map((v, i) => v * s[i]), W_DEC, D_IN), B_DEC),
  }));
  assertMatchesUpstream(folded, X, expected, "finetuning scaling factor");
  assert.match(rule(folded, "scaling_factor")!, /SAELens ≤ 5 rule/);
});

Deno.test("parseSaeLensConfig lists the rules for a legacy topk config", () => {
  const cfg = parseSaeLensConfig(
    { architecture: "topk", d_in: 16, d_sae: 64, activation_fn_kwargs: { k: 8 } },
    "cfg.json",
  );
  assert.equal(cfg.k, 8);
  assert.deepEqual(
    cfg.provenance.map((p) => `${p.setting}=${p.value}`),
    ["config layout=pre-6.0", "dtype=float32", "apply_b_dec_to_input=true", "k=8"],
  );
});
