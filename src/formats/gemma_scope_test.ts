import assert from "node:assert/strict";
import { join } from "node:path";
import { loadGemmaScope, parseGemmaScopePath, parseGemmaScopeWidth } from "./gemma_scope.ts";
import { writeNpz } from "./npz.ts";
import { D_IN, D_SAE, params, tutorial, X } from "./testdata/gemma_scope.ts";
import { assertMatchesUpstream, rejectsFormat, testRoot } from "./testdata/upstream.ts";

const TMP = testRoot("gemma_scope_test_");

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
