import assert from "node:assert/strict";
import { join } from "node:path";
import { Rng } from "../core/random.ts";
import { referenceEncode, referencePreActivations } from "../core/reference_encoder.ts";
import { writeNpy } from "../formats/npy.ts";
import { writeNpz } from "../formats/npz.ts";
import { randomSae } from "../formats/random_sae.ts";
import { loadSaeLens } from "../formats/saelens.ts";
import { writeSaeLensFolder } from "../formats/saelens_writer.ts";
import type { SaeWeights } from "../core/sae.ts";
import { REPO_ROOT, runLatentwatch } from "../../tests/helpers/cli.ts";

/** Run `latentwatch sae ...args` from the repo root. */
const cli = (...args: string[]) => runLatentwatch(["sae", ...args]);

/**
 * Run `runProbeCommand(args)` in a child process (`latentwatch probe` once
 * src/main.ts routes the `probe` command to it).
 */
async function probeCli(...args: string[]) {
  const mod = new URL("./probe.ts", import.meta.url).href;
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `import { runProbeCommand } from "${mod}"; Deno.exit(await runProbeCommand(${
        JSON.stringify(args)
      }));`,
    ],
    cwd: REPO_ROOT,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

const tol = (v: number) => 1e-4 * (1 + Math.abs(v));

Deno.test("sae encode prints one JSON line per token matching the reference", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sae_cli_" });
  const dIn = 16, dSae = 48, tokens = 300; // 300 tokens → three batches of 128, 128, 44
  const sae = randomSae({ architecture: "jumprelu", dIn, dSae, seed: 21 });
  await writeSaeLensFolder(join(dir, "sae"), sae);
  const x = new Rng(8).fillGaussian(new Float32Array(tokens * dIn), 1.5);
  await Deno.writeFile(join(dir, "acts.npy"), writeNpy(x, [tokens, dIn], "f32"));

  const { code, stdout, stderr } = await cli(
    "encode",
    join(dir, "sae"),
    "--input",
    join(dir, "acts.npy"),
  );
  assert.equal(code, 0, stderr);
  assert.ok(stdout.endsWith("\n"));
  const lines = stdout.slice(0, -1).split("\n");
  assert.equal(lines.length, tokens, "exactly one line per token, nothing else");
  const want = referenceEncode(sae, x, tokens);
  let total = 0;
  lines.forEach((line, t) => {
    const obj = JSON.parse(line); // throws on any non-JSON line
    assert.deepEqual(Object.keys(obj), ["token", "latents"]);
    assert.equal(obj.token, t);
    const got = obj.latents as [number, number][];
    const ref = Array.from(want[t].indices, (i, p) => [i, want[t].values[p]]);
    const h = referencePreActivations(sae, x.subarray(t * dIn, (t + 1) * dIn));
    // Same support, except a latent within tolerance of its threshold (see ort_encoder_test.ts).
    const gotIdx = new Set(got.map(([i]) => i));
    const refIdx = new Set(ref.map(([i]) => i));
    for (const i of new Set([...gotIdx, ...refIdx])) {
      if (gotIdx.has(i) !== refIdx.has(i)) {
        assert.ok(
          Math.abs(h[i] - sae.threshold![i]) <= tol(sae.threshold![i]),
          `token ${t} latent ${i}`,
        );
      }
    }
    for (let p = 1; p < got.length; p++) assert.ok(got[p - 1][0] < got[p][0], "sorted by index");
    for (const [i, v] of got) {
      const r = ref.find(([j]) => j === i);
      if (r) assert.ok(Math.abs(v - r[1]) <= tol(r[1]), `token ${t} latent ${i}: ${v} vs ${r[1]}`);
      // Printed as a short decimal (≤ 9 significant digits, enough for any f32), not the
      // 17-digit expansion of the widened double.
      assert.equal(Number(v.toPrecision(9)), v, `token ${t} latent ${i}: ${v} printed too long`);
    }
    total += got.length;
  });
  assert.ok(total > tokens, `only ${total} latents in total`);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("sae encode reads float16 input and topk SAEs", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sae_cli_" });
  const dIn = 8, dSae = 32, tokens = 5;
  const sae = randomSae({ architecture: "topk", dIn, dSae, k: 4, seed: 4 });
  await writeSaeLensFolder(join(dir, "sae"), sae, { dtype: "bfloat16" });
  // Values exactly representable in f16, so the reference sees the same input.
  const x = Float32Array.from({ length: tokens * dIn }, (_, i) => ((i * 37) % 17 - 8) / 4);
  await Deno.writeFile(join(dir, "acts.npy"), writeNpy(x, [tokens, dIn], "f16"));
  const { code, stdout, stderr } = await cli(
    "encode",
    join(dir, "sae", "cfg.json"),
    "--input",
    join(dir, "acts.npy"),
    "--batch",
    "2",
  );
  assert.equal(code, 0, stderr);
  const lines = stdout.trimEnd().split("\n").map((l) => JSON.parse(l));
  assert.deepEqual(lines.map((l) => l.token), [0, 1, 2, 3, 4]);
  // The reference runs on the bf16-rounded weights the CLI loaded.
  const want = referenceEncode(await loadSaeLens(join(dir, "sae")), x, tokens);
  lines.forEach((l, t) => {
    assert.ok(l.latents.length <= 4);
    assert.deepEqual(l.latents.map(([i]: number[]) => i), [...want[t].indices], `token ${t}`);
  });
  await Deno.remove(dir, { recursive: true });
});

Deno.test("sae encode errors: exit 1, message on stderr naming the file, stdout empty", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sae_cli_" });
  await writeSaeLensFolder(
    join(dir, "sae"),
    randomSae({ architecture: "standard", dIn: 8, dSae: 16, seed: 1 }),
  );
  const sae = join(dir, "sae");

  const missing = await cli("encode", sae, "--input", join(dir, "nope.npy"));
  assert.equal(missing.code, 1);
  assert.equal(missing.stdout, "");
  assert.match(missing.stderr, /nope\.npy: cannot read/);

  await Deno.writeFile(join(dir, "wide.npy"), writeNpy(new Float32Array(3 * 6), [3, 6], "f32"));
  const wide = await cli("encode", sae, "--input", join(dir, "wide.npy"));
  assert.equal(wide.code, 1);
  assert.equal(wide.stdout, "");
  assert.match(wide.stderr, /wide\.npy: expected shape \[T, d_in\] = \[T, 8\].*found \[3, 6\]/);

  await Deno.writeFile(join(dir, "flat.npy"), writeNpy(new Float32Array(8), [8], "f32"));
  const flat = await cli("encode", sae, "--input", join(dir, "flat.npy"));
  assert.equal(flat.code, 1);
  assert.match(flat.stderr, /flat\.npy: expected shape .* found \[8\]/);

  const noSae = await cli("encode", join(dir, "absent"), "--input", join(dir, "flat.npy"));
  assert.equal(noSae.code, 1);
  assert.equal(noSae.stdout, "");
  assert.match(noSae.stderr, /absent: cannot read/);

  const usage = await cli("encode", sae);
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /missing --input/);
  assert.equal((await cli("frobnicate", sae)).code, 2);
  assert.equal((await cli("encode", sae, "--input", "x.npy", "--batch", "0")).code, 1);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("sae inspect prints key: value lines and --json", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sae_cli_" });
  const sae = randomSae({
    architecture: "topk",
    dIn: 8,
    dSae: 16,
    k: 3,
    seed: 1,
    hookName: "blocks.8.hook_resid_pre",
    modelName: "gpt2-small",
  });
  await writeSaeLensFolder(dir, sae, { dtype: "float16" });
  const text = await cli("inspect", dir, "--provider", "cpu");
  assert.equal(text.code, 0, text.stderr);
  assert.equal(
    text.stdout,
    [
      "format: saelens",
      "architecture: topk",
      "kind: sae",
      "d_in: 8",
      "d_sae: 16",
      "d_out: 8",
      "hook: blocks.8.hook_resid_pre",
      "dtype: float16",
      "normalize: none",
      "b_dec_on_input: true",
      "skip: false",
      "model: gpt2-small",
      "k: 3",
      "rescale_acts_by_decoder_norm: false",
      "labels: 0",
      "provider: cpu",
      "",
    ].join("\n"),
  );
  const json = await cli("inspect", dir, "--json", "--provider", "cpu");
  assert.equal(json.code, 0, json.stderr);
  assert.deepEqual(JSON.parse(json.stdout), {
    format: "saelens",
    architecture: "topk",
    kind: "sae",
    d_in: 8,
    d_sae: 16,
    d_out: 8,
    hook: "blocks.8.hook_resid_pre",
    dtype: "float16",
    normalize: "none",
    b_dec_on_input: true,
    skip: false,
    model: "gpt2-small",
    k: 3,
    rescale_acts_by_decoder_norm: false,
    labels: 0,
    provider: "cpu",
  });
  assert.equal(json.stdout.trimEnd().split("\n").length, 1);
  const bad = await cli("inspect", join(dir, "nowhere"));
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /nowhere/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("sae inspect states which upstream rule decided each legacy setting (text and --json provenance)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sae_cli_" });
  await writeSaeLensFolder(
    dir,
    randomSae({ architecture: "topk", dIn: 8, dSae: 16, k: 3, seed: 2 }),
  );
  // A pre-6.0 config: no sae_lens_version, architecture topk, k only in activation_fn_kwargs,
  // hook_point, boolean normalize_activations, no apply_b_dec_to_input.
  await Deno.writeTextFile(
    join(dir, "cfg.json"),
    JSON.stringify({
      architecture: "topk",
      d_in: 8,
      d_sae: 16,
      dtype: "torch.float32",
      hook_point: "blocks.2.hook_resid_pre",
      model_name: "gpt2-small",
      activation_fn_kwargs: { k: 5 },
      normalize_activations: false,
    }),
  );
  const PRE6 = "(SAELens pre-6.0 rule, handle_pre_6_0_config)";
  const expected = [
    {
      setting: "config layout",
      value: "pre-6.0",
      rule:
        "no sae_lens_version: converted by handle_pre_6_0_config (SAELens handle_config_defaulting)",
    },
    { setting: "hook_name", value: "blocks.2.hook_resid_pre", rule: `from hook_point ${PRE6}` },
    { setting: "normalize_activations", value: "none", rule: `from boolean false ${PRE6}` },
    { setting: "apply_b_dec_to_input", value: true, rule: `no key: default true ${PRE6}` },
    { setting: "k", value: 5, rule: `from activation_fn_kwargs.k ${PRE6}` },
  ];
  const text = await cli("inspect", dir, "--provider", "cpu");
  assert.equal(text.code, 0, text.stderr);
  const lines = text.stdout.trimEnd().split("\n");
  assert.ok(lines.includes("k: 5"), text.stdout);
  assert.ok(lines.includes("hook: blocks.2.hook_resid_pre"), text.stdout);
  const at = lines.indexOf("provenance:");
  assert.ok(at > lines.indexOf("provider: cpu"), text.stdout);
  assert.deepEqual(
    lines.slice(at + 1),
    expected.map((p) => `  ${p.setting}=${p.value} ${p.rule}`),
  );
  const json = await cli("inspect", dir, "--json", "--provider", "cpu");
  assert.equal(json.code, 0, json.stderr);
  const info = JSON.parse(json.stdout);
  assert.equal(info.k, 5);
  assert.deepEqual(info.provenance, expected);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("sae inspect shows the Gemma Scope 1 rules (a non-SAELens format) in text and --json", async () => {
  const root = await Deno.makeTempDir({ prefix: "sae_cli_" });
  const dir = join(root, "gemma-scope-2b-pt-transcoders", "layer_4", "width_16k", "average_l0_9");
  await Deno.mkdir(dir, { recursive: true });
  const dIn = 4, dSae = 16384;
  // SAELens's transcoder loader reads these spellings case-insensitively.
  await Deno.writeFile(
    join(dir, "params.npz"),
    writeNpz({
      WEnc: { data: new Float32Array(dIn * dSae), shape: [dIn, dSae] },
      W_D: { data: new Float32Array(dSae * dIn), shape: [dSae, dIn] },
      b_enc: { data: new Float32Array(dSae), shape: [dSae] },
      b_dec: { data: new Float32Array(dIn), shape: [dIn] },
      threshold: { data: new Float32Array(dSae), shape: [dSae] },
    }),
  );
  const expected = [
    ["W_enc", "params.npz 'WEnc'"],
    ["W_dec", "params.npz 'W_D'"],
    ["threshold", "params.npz 'threshold'"],
    ["apply_b_dec_to_input", "false"],
    ["model_name", "gemma-2-2b"],
    ["hook_name", "blocks.4.ln2.hook_normalized"],
    ["hook_name_out", "blocks.4.hook_mlp_out"],
  ];
  const text = await cli("inspect", dir, "--provider", "cpu");
  assert.equal(text.code, 0, text.stderr);
  const lines = text.stdout.trimEnd().split("\n");
  assert.ok(lines.includes("format: gemma-scope"), text.stdout);
  const at = lines.indexOf("provenance:");
  assert.ok(at > 0, text.stdout);
  const shown = lines.slice(at + 1).filter((l) => l.startsWith("  "));
  assert.deepEqual(
    shown.map((l) => l.slice(2, l.indexOf("="))),
    expected.map(([k]) => k),
  );
  for (const [k, v] of expected) {
    assert.ok(shown.some((l) => l.startsWith(`  ${k}=${v} `)), `${k}=${v} in ${text.stdout}`);
  }
  assert.ok(shown[0].endsWith("(SAELens gemma_2_transcoder_huggingface_loader)"), shown[0]);
  const json = await cli("inspect", dir, "--json", "--provider", "cpu");
  assert.equal(json.code, 0, json.stderr);
  const info = JSON.parse(json.stdout);
  assert.deepEqual(
    info.provenance.map((p: { setting: string; value: unknown }) => [p.setting, String(p.value)]),
    expected,
  );
  await Deno.remove(root, { recursive: true });
});

async function gzip(text: string): Promise<Uint8Array> {
  const stream = new Blob([text]).stream().pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

const explanation = (index: string, description: string, layer = "8-res-jb") =>
  JSON.stringify({ modelId: "gpt2-small", layer, index, description, typeName: "oai" });

Deno.test("sae inspect --latent: label (auto-found or --labels) and decoder norm, range-checked", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sae_cli_" });
  const sae = randomSae({ architecture: "standard", dIn: 4, dSae: 12, seed: 5 });
  // Latent 10's decoder row is [3, 0, 4, 0]: norm 5 exactly.
  sae.wDec.set([3, 0, 4, 0], 10 * 4);
  await writeSaeLensFolder(join(dir, "sae"), sae);
  await Deno.mkdir(join(dir, "sae", "explanations"));
  await Deno.writeFile(
    join(dir, "sae", "explanations", "batch-0.jsonl.gz"),
    await gzip(
      [explanation("0", "zero"), explanation("10", "ten"), explanation("2", "two")].join("\n"),
    ),
  );
  const auto = await cli("inspect", join(dir, "sae"), "--latent", "10");
  assert.equal(auto.code, 0, auto.stderr);
  assert.match(
    auto.stdout,
    /\nlabels: 3\nprovider: \w+\n(provider_note: .*\n)?latent: 10\n {2}label: ten\n {2}decoder_norm: 5\n$/,
  );

  await Deno.writeTextFile(join(dir, "other.jsonl"), explanation("10", "ten, elsewhere") + "\n");
  const json = await cli(
    "inspect",
    join(dir, "sae", "cfg.json"),
    "--labels",
    join(dir, "other.jsonl"),
    "--latent",
    "10",
    "--json",
  );
  assert.equal(json.code, 0, json.stderr);
  const info = JSON.parse(json.stdout);
  assert.equal(info.labels, 1);
  assert.deepEqual(info.latent, { index: 10, label: "ten, elsewhere", decoder_norm: 5 });

  const unlabelled = await cli("inspect", join(dir, "sae"), "--latent", "1", "--json");
  assert.equal(JSON.parse(unlabelled.stdout).latent.label, null);

  const far = await cli("inspect", join(dir, "sae"), "--latent", "12");
  assert.equal(far.code, 1);
  assert.equal(far.stdout, "");
  assert.match(far.stderr, /--latent 12: expected an index below d_sae = 12 \(0 … 11\)/);
  assert.equal((await cli("inspect", join(dir, "sae"), "--latent=-1")).code, 1);
  assert.equal((await cli("inspect", join(dir, "sae"), "--latent", "x")).code, 1);

  // Labels for a wider SAE variant do not fit: an error, not a silent mislabel.
  await Deno.writeTextFile(join(dir, "wide.jsonl"), explanation("40", "forty") + "\n");
  const wide = await cli("inspect", join(dir, "sae"), "--labels", join(dir, "wide.jsonl"));
  assert.equal(wide.code, 1);
  assert.match(wide.stderr, /labels go up to latent 40, expected indices below d_sae = 12/);
  const broken = join(dir, "broken.jsonl");
  await Deno.writeTextFile(broken, explanation("1", "one") + "\n{oops\n");
  const malformed = await cli("inspect", join(dir, "sae"), "--labels", broken);
  assert.equal(malformed.code, 1);
  assert.match(malformed.stderr, /broken\.jsonl:2: expected one JSON object per line/);
  await Deno.remove(dir, { recursive: true });
});

/**
 * A standard SAE over d_in = 2 that reconstructs exactly: latents 0/1 carry
 * relu(±x₀), 2/3 carry relu(±x₁), decoded back with ±1. `bDec` shifts the
 * output by a known amount (not subtracted from the input).
 */
function exactSae(bDec: [number, number]): SaeWeights {
  return {
    format: "saelens",
    architecture: "standard",
    dIn: 2,
    dSae: 4,
    hookName: "blocks.0.hook_resid_pre",
    modelName: "toy",
    dtype: "float32",
    applyBDecToInput: false,
    // [d_in, d_sae]
    wEnc: Float32Array.of(1, -1, 0, 0, 0, 0, 1, -1),
    bEnc: new Float32Array(4),
    // [d_sae, d_in]
    wDec: Float32Array.of(1, 0, -1, 0, 0, 1, 0, -1),
    bDec: Float32Array.from(bDec),
    source: "exact",
  };
}

// Three tokens; latent 3 (relu(−x₁)) never fires, every token has L0 = 2.
const X3 = Float32Array.of(1, 2, 3, 1, -2, 0.5);

Deno.test("sae eval: exact reconstruction gives mse 0 / fvu 0; a known bias error gives a known mse", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sae_cli_" });
  await writeSaeLensFolder(join(dir, "exact"), exactSae([0, 0]));
  await writeSaeLensFolder(join(dir, "shifted"), exactSae([0.5, 0]));
  await Deno.writeFile(join(dir, "x.npy"), writeNpy(X3, [3, 2], "f32"));

  const exact = await cli("eval", join(dir, "exact"), "--input", join(dir, "x.npy"), "--json");
  assert.equal(exact.code, 0, exact.stderr);
  assert.deepEqual(JSON.parse(exact.stdout), {
    tokens: 3,
    mse: 0,
    fvu: 0,
    mean_l0: 2,
    dead_latents: 1,
    dead_fraction: 0.25,
    d_sae: 4,
  });

  // Output = x + [0.5, 0]: squared error 0.25 per token over 3·2 elements → mse 0.125.
  // Σ(y − ȳ)²: column 0 (1, 3, −2; mean 2/3) 114/9, column 1 (2, 1, 0.5; mean 7/6) 7/6,
  // total 249/18; fvu = 0.75 / (249/18) = 13.5/249.
  const shifted = await cli("eval", join(dir, "shifted"), "--input", join(dir, "x.npy"), "--json");
  assert.equal(shifted.code, 0, shifted.stderr);
  const r = JSON.parse(shifted.stdout);
  assert.ok(Math.abs(r.mse - 0.125) < 1e-7, `mse ${r.mse}`);
  assert.ok(Math.abs(r.fvu - 13.5 / 249) < 1e-7, `fvu ${r.fvu}`);
  assert.equal(r.mean_l0, 2);

  // Against a target that already includes the shift, the shifted SAE is exact.
  const y = X3.map((v, i) => i % 2 === 0 ? v + 0.5 : v);
  await Deno.writeFile(join(dir, "y.npy"), writeNpy(y, [3, 2], "f32"));
  const text = await cli(
    "eval",
    join(dir, "shifted"),
    "--input",
    join(dir, "x.npy"),
    "--target",
    join(dir, "y.npy"),
  );
  assert.equal(text.code, 0, text.stderr);
  assert.equal(
    text.stdout,
    "tokens: 3\nmse: 0\nfvu: 0\nmean_l0: 2\ndead_latents: 1 of 4 (0.25)\n",
  );

  await Deno.writeFile(join(dir, "y2.npy"), writeNpy(y.subarray(0, 4), [2, 2], "f32"));
  const short = await cli(
    "eval",
    join(dir, "exact"),
    "--input",
    join(dir, "x.npy"),
    "--target",
    join(dir, "y2.npy"),
  );
  assert.equal(short.code, 1);
  assert.match(short.stderr, /y2\.npy: expected 3 tokens like .*x\.npy, found 2/);
  assert.equal((await cli("eval", join(dir, "exact"))).code, 2);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("sae encode/eval reject NaN and Inf inputs naming the token and column", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sae_cli_" });
  await writeSaeLensFolder(join(dir, "sae"), exactSae([0, 0]));
  const x = Float32Array.from(X3);
  x[5] = NaN; // token 2, column 1
  await Deno.writeFile(join(dir, "nan.npy"), writeNpy(x, [3, 2], "f32"));
  for (const sub of ["encode", "eval"]) {
    const r = await cli(sub, join(dir, "sae"), "--input", join(dir, "nan.npy"));
    assert.equal(r.code, 1, `${sub}: ${r.stderr}`);
    assert.equal(r.stdout, "", "nothing on stdout, not even the tokens before the bad one");
    assert.match(r.stderr, /nan\.npy: token 2, column 1 is NaN; expected finite activations/);
  }
  const inf = Float32Array.from(X3);
  inf[2] = -Infinity; // token 1, column 0; f16 keeps infinities
  await Deno.writeFile(join(dir, "inf.npy"), writeNpy(inf, [3, 2], "f16"));
  const r = await cli("encode", join(dir, "sae"), "--input", join(dir, "inf.npy"));
  assert.equal(r.code, 1);
  assert.match(r.stderr, /token 1, column 0 is -Infinity/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("sae --format overrides detection and is validated", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sae_cli_" });
  await writeSaeLensFolder(join(dir, "sae"), exactSae([0, 0]));
  await Deno.writeFile(join(dir, "x.npy"), writeNpy(X3, [3, 2], "f32"));
  const ok = await cli(
    "encode",
    join(dir, "sae"),
    "--input",
    join(dir, "x.npy"),
    "--format",
    "saelens",
  );
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(
    ok.stdout,
    [
      '{"token": 0, "latents": [[0, 1], [2, 2]]}',
      '{"token": 1, "latents": [[0, 3], [2, 1]]}',
      '{"token": 2, "latents": [[1, 2], [2, 0.5]]}',
      "",
    ].join("\n"),
  );
  // Forcing another format on a SAELens folder fails on that format's files.
  const forced = await cli("inspect", join(dir, "sae"), "--format", "sparsify");
  assert.equal(forced.code, 1);
  assert.equal(forced.stdout, "");
  // The sparsify loader reads the SAELens cfg.json with SparseCoderConfig's defaults (as
  // sparsify does) and then names the sparsify weights file the folder lacks.
  assert.match(forced.stderr, /sae\.safetensors: cannot read the sparsify weights/);
  const unknown = await cli("inspect", join(dir, "sae"), "--format", "pickle");
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /--format: expected one of saelens, gemma-scope, .* found 'pickle'/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("probe score prints one JSON line of scores per token", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sae_cli_" });
  // w = [1, 2] + 0.5, raw; and w = [0, -1] − 1, raw. Tokens (1, 2), (3, 1), (−2, 0.5).
  await Deno.writeTextFile(
    join(dir, "p.json"),
    JSON.stringify({ directions: [[1, 2], [0, -1]], bias: [0.5, -1] }),
  );
  await Deno.writeFile(join(dir, "x.npy"), writeNpy(X3, [3, 2], "f32"));
  const r = await probeCli(
    "score",
    join(dir, "p.json"),
    "--input",
    join(dir, "x.npy"),
    "--batch",
    "2",
  );
  assert.equal(r.code, 0, r.stderr);
  assert.equal(
    r.stdout,
    [
      '{"token": 0, "scores": [5.5, -3]}',
      '{"token": 1, "scores": [5.5, -2]}',
      '{"token": 2, "scores": [-0.5, -1.5]}',
      "",
    ].join("\n"),
  );
  await Deno.writeFile(join(dir, "w.npy"), writeNpy(new Float32Array(3), [1, 3], "f32"));
  const wide = await probeCli("score", join(dir, "p.json"), "--input", join(dir, "w.npy"));
  assert.equal(wide.code, 1);
  assert.match(wide.stderr, /w\.npy: expected shape \[T, d_in\] = \[T, 2\]/);
  assert.equal((await probeCli("score", join(dir, "p.json"))).code, 2);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("sae encode shows loading progress on stderr only, never on stdout", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sae_cli_" });
  await writeSaeLensFolder(join(dir, "sae"), exactSae([0, 0]));
  await Deno.writeFile(join(dir, "x.npy"), writeNpy(X3, [3, 2], "f32"));
  const args = ["sae", "encode", join(dir, "sae"), "--input", join(dir, "x.npy")];
  // Past the size threshold (0 bytes here), a log shows progress lines.
  const big = await runLatentwatch(args, { env: { LATENTWATCH_PROGRESS_MIN_BYTES: "0" } });
  assert.equal(big.code, 0, big.stderr);
  assert.match(big.stderr, /loading: .*100% /);
  assert.equal(big.stdout.trimEnd().split("\n").length, 3);
  assert.ok(big.stdout.split("\n").every((l) => l === "" || l.startsWith('{"token": ')));
  // Below it, with stderr not a terminal, nothing is drawn.
  const small = await runLatentwatch(args);
  assert.equal(small.stderr, "");
  assert.equal(small.stdout, big.stdout);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("sae inspect: labels of another Neuronpedia source are left out with a warning", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sae_cli_" });
  await writeSaeLensFolder(dir, exactSae([0, 0]));
  const cfg = JSON.parse(await Deno.readTextFile(join(dir, "cfg.json")));
  cfg.metadata.neuronpedia_id = "gpt2-small/8-res-jb";
  await Deno.writeTextFile(join(dir, "cfg.json"), JSON.stringify(cfg));
  await Deno.mkdir(join(dir, "explanations"));
  await Deno.writeTextFile(
    join(dir, "explanations", "batch-0.jsonl"),
    [explanation("0", "mine"), explanation("1", "theirs", "9-res-jb")].join("\n"),
  );
  const r = await cli("inspect", dir, "--latent", "1", "--json");
  assert.equal(r.code, 0, r.stderr);
  const info = JSON.parse(r.stdout);
  assert.equal(info.neuronpedia, "gpt2-small/8-res-jb");
  assert.equal(info.labels, 1);
  assert.equal(info.latent.label, null);
  assert.match(r.stderr, /warning: .*left out 1 of 2 explanations/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("sae --provider: a GPU provider that cannot start falls back to cpu with a note, same latents", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sae_cli_" });
  const dIn = 16, dSae = 48, tokens = 20;
  const sae = randomSae({ architecture: "standard", dIn, dSae, seed: 5 });
  await writeSaeLensFolder(join(dir, "sae"), sae);
  const x = new Rng(2).fillGaussian(new Float32Array(tokens * dIn));
  await Deno.writeFile(join(dir, "acts.npy"), writeNpy(x, [tokens, dIn], "f32"));
  const providers = ["webgpu", "cuda", "cpu"];

  const json = await cli("inspect", join(dir, "sae"), "--provider", "webgpu", "--json");
  assert.equal(json.code, 0, json.stderr);
  const info = JSON.parse(json.stdout);
  assert.ok(providers.includes(info.provider), info.provider);
  if (info.provider === "cpu") {
    // no GPU here: the note names the provider that failed and why
    assert.match(info.provider_note, /^webgpu could not start: .+; running on cpu$/);
    const text = await cli("inspect", join(dir, "sae"), "--provider", "webgpu");
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /\nprovider: cpu\nprovider_note: webgpu could not start: .+\n$/);
  } else {
    assert.equal(info.provider, "webgpu");
  }
  const auto = await cli("inspect", join(dir, "sae"), "--json");
  assert.equal(auto.code, 0, auto.stderr);
  assert.ok(providers.includes(JSON.parse(auto.stdout).provider));

  const input = ["--input", join(dir, "acts.npy")];
  const cpu = await cli("encode", join(dir, "sae"), ...input, "--provider", "cpu");
  assert.equal(cpu.code, 0, cpu.stderr);
  assert.equal(cpu.stderr, "");
  const gpu = await cli("encode", join(dir, "sae"), ...input, "--provider", "webgpu");
  assert.equal(gpu.code, 0, gpu.stderr);
  if (info.provider === "cpu") {
    assert.match(gpu.stderr, /latentwatch sae encode: warning: webgpu could not start: /);
    assert.equal(gpu.stdout, cpu.stdout, "the same latents as the CPU path");
  } else {
    const a = cpu.stdout.trimEnd().split("\n").map((l) => JSON.parse(l).latents);
    const b = gpu.stdout.trimEnd().split("\n").map((l) => JSON.parse(l).latents);
    a.forEach((row: [number, number][], t: number) => {
      const other = new Map<number, number>(b[t]);
      for (const [i, v] of row) assert.ok(Math.abs((other.get(i) ?? 0) - v) <= tol(v), `${t} ${i}`);
    });
  }
  const cuda = await cli("eval", join(dir, "sae"), ...input, "--provider", "cuda", "--json");
  assert.equal(cuda.code, 0, cuda.stderr);
  const evalCpu = await cli("eval", join(dir, "sae"), ...input, "--provider", "cpu", "--json");
  if (!/could not start/.test(cuda.stderr)) {
    assert.ok(Math.abs(JSON.parse(cuda.stdout).mse - JSON.parse(evalCpu.stdout).mse) < 1e-4);
  } else {
    // latentwatch's CUDA encoder is tried first for this standard SAE, then onnxruntime's provider
    assert.match(
      cuda.stderr,
      /latentwatch sae eval: warning: cuda-ffi could not start: .+; cuda could not start: /,
    );
    assert.equal(cuda.stdout, evalCpu.stdout);
  }

  const bad = await cli("inspect", join(dir, "sae"), "--provider", "gpu");
  assert.equal(bad.code, 2);
  assert.equal(bad.stdout, "");
  assert.match(
    bad.stderr,
    /latentwatch sae inspect: --provider: expected one of auto, webgpu, cuda, cpu, found 'gpu'/,
  );
  await Deno.remove(dir, { recursive: true });
});
