import assert from "node:assert/strict";
import { join } from "node:path";
import { Rng } from "../core/random.ts";
import { referenceEncode, referencePreActivations } from "../core/reference_encoder.ts";
import { writeNpy } from "../formats/npy.ts";
import { randomSae } from "../formats/random_sae.ts";
import { loadSaeLens, writeSaeLensFolder } from "../formats/saelens.ts";
import { runLatentwatch } from "../../tests/helpers/cli.ts";

/** Run `latentwatch sae ...args` from the repo root. */
const cli = (...args: string[]) => runLatentwatch(["sae", ...args]);

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
  assert.match(noSae.stderr, /absent\/cfg\.json: cannot read/);

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
  const text = await cli("inspect", dir);
  assert.equal(text.code, 0, text.stderr);
  assert.equal(
    text.stdout,
    [
      "format: saelens",
      "architecture: topk",
      "d_in: 8",
      "d_sae: 16",
      "hook: blocks.8.hook_resid_pre",
      "dtype: float16",
      "model: gpt2-small",
      "k: 3",
      "",
    ].join("\n"),
  );
  const json = await cli("inspect", dir, "--json");
  assert.equal(json.code, 0, json.stderr);
  assert.deepEqual(JSON.parse(json.stdout), {
    format: "saelens",
    architecture: "topk",
    d_in: 8,
    d_sae: 16,
    hook: "blocks.8.hook_resid_pre",
    dtype: "float16",
    model: "gpt2-small",
    k: 3,
  });
  assert.equal(json.stdout.trimEnd().split("\n").length, 1);
  const bad = await cli("inspect", join(dir, "nowhere"));
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /nowhere\/cfg\.json/);
  await Deno.remove(dir, { recursive: true });
});
