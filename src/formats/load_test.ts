import assert from "node:assert/strict";
import { join } from "node:path";
import { detectSaeFormat, loadSae, SAE_FORMATS, type SaeFormatName } from "./load.ts";
import { writeNpz } from "./npz.ts";
import { randomSae } from "./random_sae.ts";
import { SaeFormatError } from "./errors.ts";
import { writeSaeLensFolder } from "./saelens_writer.ts";
import { writeSafetensors } from "./safetensors_writer.ts";
import { gaussian, tensor, testRoot } from "./testdata/upstream.ts";

const TMP = testRoot("load_test_");

let n = 0;
/** A folder holding `files` (name → contents). */
async function folder(files: Record<string, string | Uint8Array>, sub = ""): Promise<string> {
  const dir = join(TMP, `f${n++}`, sub);
  await Deno.mkdir(dir, { recursive: true });
  for (const [name, body] of Object.entries(files)) {
    if (typeof body === "string") await Deno.writeTextFile(join(dir, name), body);
    else await Deno.writeFile(join(dir, name), body);
  }
  return dir;
}

const D_IN = 4;
const D_SAE = 8;
const jump = () => ({
  W_enc: gaussian(1, D_IN * D_SAE),
  W_dec: gaussian(2, D_SAE * D_IN),
  b_enc: gaussian(3, D_SAE),
  b_dec: gaussian(4, D_IN),
  threshold: gaussian(5, D_SAE).map(Math.abs),
});

async function gemmaScope1(): Promise<string> {
  const p = jump();
  return await folder({
    "params.npz": writeNpz({
      W_enc: { data: p.W_enc, shape: [D_IN, D_SAE] },
      W_dec: { data: p.W_dec, shape: [D_SAE, D_IN] },
      b_enc: { data: p.b_enc, shape: [D_SAE] },
      b_dec: { data: p.b_dec, shape: [D_IN] },
      threshold: { data: p.threshold, shape: [D_SAE] },
    }),
  }, "layer_3/width_8/average_l0_12");
}

async function gemmaScope2(file = "params.safetensors"): Promise<string> {
  const p = jump();
  const clt = file !== "params.safetensors";
  return await folder({
    "config.json": JSON.stringify({
      architecture: "jump_relu",
      hf_hook_point_in: "model.layers.3.output",
      hf_hook_point_out: "model.layers.3.output",
      type: clt ? "clt" : "sae",
    }),
    [file]: writeSafetensors({
      w_enc: tensor(p.W_enc, [D_IN, D_SAE]),
      w_dec: clt ? tensor(new Float32Array(D_SAE * 2 * D_IN), [D_SAE, 2, D_IN]) : tensor(
        p.W_dec,
        [D_SAE, D_IN],
      ),
      b_enc: tensor(p.b_enc, [D_SAE]),
      b_dec: tensor(p.b_dec, [D_IN]),
      threshold: tensor(p.threshold, [D_SAE]),
    }),
  });
}

async function sparsify(): Promise<string> {
  return await folder({
    "cfg.json": JSON.stringify({ expansion_factor: 2, num_latents: 0, k: 2, d_in: D_IN }),
    "sae.safetensors": writeSafetensors({
      "encoder.weight": tensor(gaussian(6, D_SAE * D_IN), [D_SAE, D_IN]),
      "encoder.bias": tensor(gaussian(7, D_SAE), [D_SAE]),
      W_dec: tensor(gaussian(8, D_SAE * D_IN), [D_SAE, D_IN]),
      b_dec: tensor(gaussian(9, D_IN), [D_IN]),
    }),
  }, "layers.3");
}

async function saeLens(): Promise<string> {
  const dir = join(TMP, `f${n++}`);
  await writeSaeLensFolder(
    dir,
    randomSae({ architecture: "jumprelu", dIn: D_IN, dSae: D_SAE, seed: 1 }),
  );
  return dir;
}

Deno.test("detectSaeFormat: every layout, by folder and by file", async () => {
  const cases: [string, SaeFormatName][] = [];
  const gs1 = await gemmaScope1();
  cases.push([gs1, "gemma-scope"], [join(gs1, "params.npz"), "gemma-scope"]);
  const gs2 = await gemmaScope2();
  cases.push(
    [gs2, "gemma-scope-2"],
    [join(gs2, "params.safetensors"), "gemma-scope-2"],
    [join(gs2, "config.json"), "gemma-scope-2"],
  );
  const clt = await gemmaScope2("params_layer_1.safetensors");
  cases.push([clt, "gemma-scope-2"], [join(clt, "params_layer_1.safetensors"), "gemma-scope-2"]);
  const sl = await saeLens();
  cases.push([sl, "saelens"], [join(sl, "cfg.json"), "saelens"], [
    join(sl, "sae_weights.safetensors"),
    "saelens",
  ]);
  const sp = await sparsify();
  cases.push([sp, "sparsify"], [join(sp, "cfg.json"), "sparsify"], [
    join(sp, "sae.safetensors"),
    "sparsify",
  ]);
  const dl = await folder({ "ae.pt": "x", "config.json": "{}" });
  cases.push([dl, "dictionary-learning"], [join(dl, "ae.pt"), "dictionary-learning"]);
  const oa = await folder({ "8.pt": "x" }, "autoencoders");
  cases.push([oa, "openai"], [join(oa, "8.pt"), "openai"]);
  // A cfg.json alone is classified by its keys (the loader then names the missing weights).
  cases.push([await folder({ "cfg.json": JSON.stringify({ d_in: 4, d_sae: 8 }) }), "saelens"]);
  cases.push([
    await folder({ "cfg.json": JSON.stringify({ d_in: 4, num_latents: 8 }) }),
    "sparsify",
  ]);
  for (const [path, format] of cases) assert.equal(await detectSaeFormat(path), format, path);
});

Deno.test("detectSaeFormat: nothing matches → an error listing what was looked for and found", async () => {
  const dir = await folder({ "weights.bin": "x", "readme.md": "hi" });
  await assert.rejects(detectSaeFormat(dir), (e: unknown) => {
    assert.ok(e instanceof SaeFormatError);
    for (
      const part of [
        dir,
        "cannot tell the SAE format",
        "params.npz",
        "config.json + params.safetensors",
        "cfg.json + sae_weights.safetensors",
        "cfg.json + sae.safetensors",
        "ae.pt",
        '["readme.md","weights.bin"]',
        "--format",
        SAE_FORMATS.join(", "),
      ]
    ) assert.ok(e.message.includes(part), `'${e.message}' lacks '${part}'`);
    return true;
  });
  await assert.rejects(detectSaeFormat(join(TMP, "missing")), SaeFormatError);
});

Deno.test("loadSae dispatches to each loader, honours --format, reports progress", async () => {
  const expect: [string, string][] = [
    [await gemmaScope1(), "gemma-scope"],
    [await gemmaScope2(), "gemma-scope-2"],
    [await saeLens(), "saelens"],
    [await sparsify(), "sparsify"],
  ];
  for (const [path, format] of expect) {
    const progress: number[][] = [];
    const sae = await loadSae(path, { onProgress: (d, t) => progress.push([d, t]) });
    assert.equal(sae.format, format);
    assert.equal(sae.dIn, D_IN);
    assert.equal(sae.dSae, D_SAE);
    const last = progress.at(-1)!;
    assert.ok(last[1] > 0 && last[0] === last[1], `${format}: ${JSON.stringify(progress)}`);
  }
  const clt = await gemmaScope2("params_layer_1.safetensors");
  assert.deepEqual((await loadSae(clt, { layer: 1 })).crossLayer, { layer: 1, layers: 2 });
  // --format overrides detection: a SAELens folder read as sparsify fails in the sparsify loader.
  await assert.rejects(
    loadSae(expect[2][0], { format: "sparsify" }),
    (e: unknown) =>
      e instanceof SaeFormatError &&
      /sae\.safetensors|'k'|'num_latents'|expansion_factor/.test(e.message),
  );
  // Pickled checkpoints go to the other loaders, which refuse a non-zip file.
  const oa = await folder({ "8.pt": "not a checkpoint" }, "autoencoders");
  await assert.rejects(
    loadSae(oa),
    (e: unknown) => e instanceof Error && e.message.includes("8.pt"),
  );
  const dl = await folder({ "ae.pt": "not a checkpoint", "config.json": "{}" });
  await assert.rejects(
    loadSae(dl),
    (e: unknown) => e instanceof Error && e.message.includes("ae.pt"),
  );
});
