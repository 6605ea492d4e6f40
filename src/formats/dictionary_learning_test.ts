import assert from "node:assert/strict";
import { loadDictionaryLearningSae } from "./dictionary_learning.ts";
import { SaeFormatError } from "./errors.ts";
import { torchFixtureDir } from "./testdata/python.ts";
import { assertEncodesLike, type ExpectedCase } from "./testdata/expect.ts";

async function cases(): Promise<Record<string, ExpectedCase>> {
  const dir = await torchFixtureDir();
  return JSON.parse(await Deno.readTextFile(`${dir}/expected.json`));
}

const ARCH: Record<string, [string, boolean]> = {
  AutoEncoder: ["standard", true],
  AutoEncoderNew: ["standard", false],
  GatedAutoEncoder: ["gated", true],
  JumpReluAutoEncoder: ["jumprelu", false],
  AutoEncoderTopK: ["topk", true],
  BatchTopKSAE: ["jumprelu", true],
  MatryoshkaBatchTopKSAE: ["jumprelu", true],
};

for (const [cls, [arch, centred]] of Object.entries(ARCH)) {
  Deno.test(`dictionary_learning ${cls}: ${arch}, b_dec ${centred ? "" : "not "}subtracted, encodes like upstream`, async () => {
    const c = (await cases())[`dl_${cls}`];
    const sae = await loadDictionaryLearningSae(c.path); // the trainer folder
    assert.equal(sae.format, "dictionary_learning");
    assert.equal(sae.architecture, arch);
    assert.equal(sae.applyBDecToInput, centred);
    assert.equal(sae.modelName, "EleutherAI/pythia-70m-deduped");
    if (cls === "AutoEncoderTopK") assert.equal(sae.k, 2);
    if (cls === "BatchTopKSAE") assert.deepEqual([...sae.threshold!], new Array(5).fill(0.25));
    assertEncodesLike(sae, c);
  });
}

Deno.test("dictionary_learning accepts the ae.pt path as well as the folder", async () => {
  const c = (await cases()).dl_AutoEncoder;
  const sae = await loadDictionaryLearningSae(`${c.path}/ae.pt`);
  assertEncodesLike(sae, c);
});

Deno.test("a nested mid-training checkpoint: norm_factor folded into the biases", async () => {
  const c = (await cases()).dl_nested;
  const sae = await loadDictionaryLearningSae(c.path);
  assert.equal(sae.architecture, "topk");
  assertEncodesLike(sae, c);
});

Deno.test("a nested checkpoint without config.json takes dict_class from its own config", async () => {
  const c = (await cases()).dl_nested_noconfig;
  const sae = await loadDictionaryLearningSae(c.path);
  assert.equal(sae.architecture, "jumprelu");
  assertEncodesLike(sae, c);
});

Deno.test("f16 dictionary_learning weights widen exactly and record their dtype", async () => {
  const c = (await cases()).dl_f16;
  const sae = await loadDictionaryLearningSae(c.path);
  assert.equal(sae.dtype, "float16");
  // f16 holds 0.05, -0.1, 0.15 as the nearest halves (exactly widened).
  assert.deepEqual([...sae.bDec], [0.04998779296875, -0.0999755859375, 0.1500244140625]);
  assert.equal(sae.dIn, 3);
});

Deno.test("an unknown dict_class is a clear error", async () => {
  const c = (await cases()).dl_unknown;
  await assert.rejects(() => loadDictionaryLearningSae(c.path), (e) => {
    assert.ok(e instanceof SaeFormatError);
    assert.match(
      e.message,
      /unknown dictionary_learning dict_class "CrossCoder", expected one of AutoEncoder, AutoEncoderNew/,
    );
    return true;
  });
});

Deno.test("a dict_size that disagrees with the weights is a clear error", async () => {
  const c = (await cases()).dl_mismatch;
  await assert.rejects(
    () => loadDictionaryLearningSae(c.path),
    /the weights have dict_size 5, but .*config\.json says trainer\.dict_size = 7/,
  );
});

Deno.test("a class override that does not fit the tensors names the missing tensor", async () => {
  const c = (await cases()).dl_AutoEncoder;
  await assert.rejects(
    () => loadDictionaryLearningSae(c.path, { dictClass: "JumpReluAutoEncoder" }),
    /missing tensor 'W_enc'/,
  );
  await assert.rejects(
    () => loadDictionaryLearningSae(c.path, { dictClass: "AutoEncoderNew" }),
    /missing tensor 'decoder\.bias', expected shape \[activation_dim\] = \[3\]/,
  );
});

Deno.test("a folder without ae.pt names the path", async () => {
  const dir = await Deno.makeTempDir();
  await assert.rejects(() => loadDictionaryLearningSae(dir), /ae\.pt: cannot read the checkpoint/);
});
