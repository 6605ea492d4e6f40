import assert from "node:assert/strict";
import { join } from "node:path";
import { loadOpenAiSae } from "./openai.ts";
import { SaeFormatError } from "./errors.ts";
import { torchFixtureDir } from "./testdata/python.ts";
import { assertEncodesLike, type ExpectedCase } from "./testdata/expect.ts";

async function cases(): Promise<Record<string, ExpectedCase>> {
  const dir = await torchFixtureDir();
  return JSON.parse(await Deno.readTextFile(`${dir}/expected.json`));
}

Deno.test("OpenAI TopK checkpoint: topk with k from activation_state_dict, layer_norm, pre_bias", async () => {
  const c = (await cases()).openai_topk;
  const sae = await loadOpenAiSae(c.path);
  assert.equal(sae.format, "openai");
  assert.equal(sae.architecture, "topk");
  assert.equal(sae.k, 2);
  assert.equal(sae.normalize, "layer_norm");
  assert.equal(sae.applyBDecToInput, true);
  assert.equal(sae.dtype, "float32");
  // encoder.weight [n, d] and decoder.weight [d, n] both transposed.
  assert.deepEqual([...sae.wEnc], c.wEnc!.map(Math.fround));
  assert.deepEqual([...sae.wDec], c.wDec!.map(Math.fround));
  assertEncodesLike(sae, c);
});

Deno.test("OpenAI ReLU checkpoint: standard, no normalisation", async () => {
  const c = (await cases()).openai_relu;
  const sae = await loadOpenAiSae(c.path, { modelName: "gpt2-small" });
  assert.equal(sae.architecture, "standard");
  assert.equal(sae.normalize, "none");
  assert.equal(sae.k, undefined);
  assert.equal(sae.modelName, "gpt2-small");
  assertEncodesLike(sae, c);
});

Deno.test("OpenAI checkpoint without 'activation': ReLU, no layer norm (from_state_dict's default)", async () => {
  const c = (await cases()).openai_noact;
  const sae = await loadOpenAiSae(c.path);
  assert.equal(sae.architecture, "standard");
  assert.equal(sae.normalize, "none");
  assertEncodesLike(sae, c);
  assert.deepEqual(sae.provenance!.map((p) => [p.setting, p.value]), [
    ["activation", "ReLU"],
    ["normalize", "none"],
  ]);
  assert.match(sae.provenance![0].rule, /from_state_dict default/);
});

Deno.test("OpenAI TopK provenance: k from activation_state_dict, layer norm from the activation, hook and model from the path", async () => {
  const c = (await cases()).openai_topk;
  const dir = await Deno.makeTempDir();
  const folder = join(dir, "gpt2-small", "resid_delta_attn_v5_128k", "autoencoders");
  await Deno.mkdir(folder, { recursive: true });
  await Deno.copyFile(c.path, join(folder, "3.pt"));
  const sae = await loadOpenAiSae(join(folder, "3.pt"));
  assert.equal(sae.modelName, "gpt2-small");
  assert.deepEqual(sae.provenance!.map((p) => [p.setting, p.value]), [
    ["k", 2],
    ["normalize", "layer_norm"],
    ["hook_name", "blocks.3.hook_attn_out"],
    ["model_name", "gpt2-small"],
  ]);
  assert.match(sae.provenance![0].rule, /OpenAI TopK rule/);
  assert.match(sae.provenance![1].rule, /normalize = activation == "TopK"/);
  // Given explicitly, the hook and model are not derived (no provenance).
  const given = await loadOpenAiSae(join(folder, "3.pt"), { hookName: null, modelName: "gpt2" });
  assert.equal(given.modelName, "gpt2");
  assert.deepEqual(given.provenance!.map((p) => p.setting), ["k", "normalize"]);
});

Deno.test("OpenAI TopK without postact_fn fails as TopK.from_state_dict does", async () => {
  const c = (await cases()).openai_topk_nopostact;
  await assert.rejects(() => loadOpenAiSae(c.path), (e) => {
    assert.ok(e instanceof SaeFormatError);
    assert.match(
      e.message,
      /key 'activation_state_dict\.postact_fn': expected "ReLU", found none/,
    );
    return true;
  });
});

Deno.test("the hook is inferred from <location>_v5_32k/autoencoders/<layer>.pt", async () => {
  const c = (await cases()).openai_topk;
  const dir = await Deno.makeTempDir();
  const folder = join(dir, "resid_post_mlp_v5_32k", "autoencoders");
  await Deno.mkdir(folder, { recursive: true });
  await Deno.copyFile(c.path, join(folder, "8.pt"));
  assert.equal((await loadOpenAiSae(join(folder, "8.pt"))).hookName, "blocks.8.hook_resid_post");
  assert.equal((await loadOpenAiSae(c.path)).hookName, null);
  assert.equal(
    (await loadOpenAiSae(c.path, { hookName: "blocks.6.hook_resid_post" })).hookName,
    "blocks.6.hook_resid_post",
  );
});

Deno.test("an OpenAI loader given another checkpoint names the missing tensor", async () => {
  const dir = await torchFixtureDir();
  await assert.rejects(() => loadOpenAiSae(`${dir}/dl_AutoEncoder/ae.pt`), (e) => {
    assert.ok(e instanceof SaeFormatError);
    assert.match(e.message, /ae\.pt: missing tensor 'latent_bias'/);
    return true;
  });
});

Deno.test("a malicious OpenAI checkpoint is refused", async () => {
  const dir = await torchFixtureDir();
  await assert.rejects(
    () => loadOpenAiSae(`${dir}/evil/os_system.pt`),
    /posix\.system.*nothing from the file was executed/,
  );
});
