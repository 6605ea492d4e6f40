/**
 * onnxruntime encoder vs the plain-TypeScript reference.
 *
 * Tolerance rule (written down once, used by every comparison below):
 *   - tol(v) = 1e-4 · (1 + |v|), v the reference value. ORT accumulates in
 *     f32, the reference in f64; over d_in ≤ 64 the f32 error is ~1e-6.
 *   - A latent active on both sides must agree within tol(v_ref).
 *   - A latent active on one side only is accepted only when the decision
 *     was within tolerance of flipping: |h| ≤ tol(h) for every architecture
 *     (relu boundary); jumprelu also when |h − θ| ≤ tol(θ); topk also when
 *     |h − h_(k)| ≤ tol(h_(k)), h_(k) the reference's k-th largest score;
 *     gated also when the gate pre-activation is within tol of 0 (h is the
 *     magnitude pre-activation there).
 *     Everything else must have identical support.
 * Normalised inputs are computed in f32 by ORT too; at d_in = 48 the relative
 * error of ‖x‖, μ and σ is ~1e-7, well inside the same tolerance.
 * Watched vs full ORT encodes are compared bit for bit (no tolerance).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { Rng } from "../core/random.ts";
import { referenceProbe } from "../core/decode.ts";
import { referenceEncode } from "../core/reference_encoder.ts";
import { EncoderConfigError, EncoderInputError } from "../core/encoder_checks.ts";
import type {
  LinearProbe,
  SaeArchitecture,
  SaeWeights,
  SparseLatents,
  WeightDtype,
} from "../core/sae.ts";
import { NO_LATENTS } from "../core/sae.ts";
import { randomVariant, variantName, VARIANTS } from "../core/testdata/random_variants.ts";
import {
  LN_S,
  tiny,
  tinyGated,
  tinyLayerNorm,
  tinyNormRescale,
  tinyTies,
  tinyTranscoder,
} from "../core/testdata/tiny_sae.ts";
import { randomSae } from "../formats/random_sae.ts";
import { loadSaeLens } from "../formats/saelens.ts";
import { writeSaeLensFolder } from "../formats/saelens_writer.ts";
import { EXTERNAL_DATA_FILE } from "./external_data.ts";
import {
  createOrtEncoder,
  createProbeEncoder,
  fallbackEncoderOptions,
  watchIsCheap,
} from "./ort_encoder.ts";
import { compareToken, tol } from "./testdata/compare_encoding.ts";

interface Case {
  architecture: SaeArchitecture;
  rescale?: boolean;
  applyBDec?: boolean;
}

const CASES: Case[] = [
  { architecture: "standard" },
  { architecture: "standard", applyBDec: false },
  { architecture: "jumprelu" },
  { architecture: "topk" },
  { architecture: "topk", rescale: true },
];
const DTYPES: WeightDtype[] = ["float32", "float16", "bfloat16"];
const BATCHES = [1, 3, 64, 200];

Deno.test("ort encoder matches the reference for every architecture, dtype and batch size", async () => {
  const dIn = 48, dSae = 163; // not a multiple of 8: the scan's block and tail paths both run
  let tokensChecked = 0, latentsChecked = 0, excused = 0;
  for (const c of CASES) {
    for (const dtype of DTYPES) {
      // Go through the on-disk format so f16/bf16 widening is part of what is checked.
      const dir = await Deno.makeTempDir({ prefix: "ort_test_" });
      await writeSaeLensFolder(
        dir,
        randomSae({
          architecture: c.architecture,
          dIn,
          dSae,
          k: 12,
          seed: 11,
          dtype,
          rescaleActsByDecoderNorm: c.rescale,
          applyBDecToInput: c.applyBDec,
        }),
      );
      const sae = await loadSaeLens(dir);
      await Deno.remove(dir, { recursive: true });
      assert.equal(sae.dtype, dtype);
      const enc = await createOrtEncoder(sae, { intraOpThreads: 2 });
      const rng = new Rng(1000 + tokensChecked);
      for (const tokens of BATCHES) {
        const x = rng.fillGaussian(new Float32Array(tokens * dIn), 1.5);
        const got = await enc.encode(x, tokens);
        const want = referenceEncode(sae, x, tokens);
        assert.equal(got.length, tokens);
        for (let t = 0; t < tokens; t++) {
          const where = `${c.architecture}${
            c.rescale ? "+rescale" : ""
          } ${dtype} N=${tokens} t=${t}`;
          excused += compareToken(sae, x.subarray(t * dIn, (t + 1) * dIn), got[t], want[t], where);
          latentsChecked += want[t].indices.length;
          if (c.architecture === "topk") assert.ok(got[t].indices.length <= sae.k!);
        }
        tokensChecked += tokens;
      }
      await enc.close();
    }
  }
  assert.ok(latentsChecked > 10_000, `only ${latentsChecked} latents compared`);
  // Flips must be rare accidents of rounding, not a systematic difference.
  assert.ok(excused <= latentsChecked / 1000, `${excused} support flips excused`);
});

function pairs(l: SparseLatents): [number, number][] {
  return Array.from(l.indices, (i, n) => [i, l.values[n]]);
}

async function encodeTiny(sae: SaeWeights, x: number[]): Promise<[number, number][][]> {
  const enc = await createOrtEncoder(sae);
  try {
    return (await enc.encode(new Float32Array(x), x.length / 2)).map(pairs);
  } finally {
    await enc.close();
  }
}

Deno.test("ort encoder reproduces the hand-computed cases exactly", async () => {
  // x = [2, 0] → h = [3.5, 0.25, −1.5]; x = [−1, 2] → h = [4.5, 3.25, −5] (see the reference test)
  assert.deepEqual(await encodeTiny(tiny({}), [2, 0, -1, 2]), [[[0, 3.5], [1, 0.25]], [[0, 4.5], [
    1,
    3.25,
  ]]]);
  // jumprelu θ = [3.5, 0.1, −2]: 3.5 > 3.5 fails (strict), 0.25 > 0.1 passes, −1.5 relu'd away
  const jr = tiny({ architecture: "jumprelu", threshold: new Float32Array([3.5, 0.1, -2]) });
  assert.deepEqual(await encodeTiny(jr, [2, 0]), [[[1, 0.25]]]);
  // topk rescale, norms [5, 0.5, 1]: h' = [17.5, 0.125, −1.5]
  const tk = tiny({ architecture: "topk", k: 2, rescaleActsByDecoderNorm: true });
  assert.deepEqual(await encodeTiny(tk, [2, 0]), [[[0, 17.5], [1, 0.125]]]);
  // Ties: W_enc = [[1, 1, 0], [0, 0, 1]], no biases: h = [x0, x0, x1]; the lower index wins.
  assert.deepEqual(await encodeTiny(tinyTies(1), [2, 1]), [[[0, 2]]]);
  assert.deepEqual(await encodeTiny(tinyTies(2), [1, 2, -1, -3]), [[[0, 1], [2, 2]], []]);
});

Deno.test("ort encoder: zero tokens, oversized input, batches do not alias", async () => {
  const sae = randomSae({ architecture: "standard", dIn: 8, dSae: 32, seed: 2 });
  const enc = await createOrtEncoder(sae);
  assert.equal(enc.dIn, 8);
  assert.equal(enc.dSae, 32);
  assert.deepEqual(await enc.encode(new Float32Array(0), 0), []);
  const rng = new Rng(5);
  const x = rng.fillGaussian(new Float32Array(3 * 8));
  // Only the first 2 rows are encoded when tokens = 2.
  const first = await enc.encode(x, 2);
  assert.equal(first.length, 2);
  const snapshot = first.map(pairs);
  const second = await enc.encode(rng.fillGaussian(new Float32Array(5 * 8)), 5);
  assert.equal(second.length, 5);
  assert.deepEqual(first.map(pairs), snapshot, "an earlier result changed after a later batch");
  const want = referenceEncode(sae, x, 2);
  for (let t = 0; t < 2; t++) {
    compareToken(sae, x.subarray(t * 8, (t + 1) * 8), first[t], want[t], `row ${t}`);
  }
  await assert.rejects(enc.encode(new Float32Array(7), 1), RangeError);
  await enc.close();
});

Deno.test("ort encoder: encodeRows hands back encode's rows as one table, not aliased by later batches", async () => {
  const rng = new Rng(11);
  const cases = [
    { sae: randomSae({ architecture: "standard", dIn: 16, dSae: 64, seed: 3 }) },
    { sae: randomSae({ architecture: "topk", dIn: 16, dSae: 64, k: 5, seed: 4 }) },
    // watched: small batches on the synchronous product, larger ones through onnxruntime
    {
      sae: randomSae({ architecture: "jumprelu", dIn: 16, dSae: 64, seed: 5 }),
      watch: Uint32Array.of(1, 7, 8, 30, 63),
    },
  ];
  for (const { sae, watch } of cases) {
    const enc = await createOrtEncoder(sae, watch ? { watch } : {});
    assert.ok(enc.encodeRows, `${sae.architecture}: encodeRows offered`);
    for (const tokens of [1, 3, 40]) {
      const x = rng.fillGaussian(new Float32Array(tokens * 16));
      const table = await enc.encodeRows!(x, tokens);
      const snapshot = table.toArray().map(pairs);
      assert.deepEqual(snapshot, (await enc.encode(x, tokens)).map(pairs), `${sae.architecture}`);
      const want = referenceEncode(sae, x, tokens);
      for (let t = 0; t < tokens; t++) {
        const keep = watch ? new Set(watch) : null;
        const w = keep
          ? {
            indices: want[t].indices.filter((i) => keep.has(i)),
            values: want[t].values.filter((_, k) => keep.has(want[t].indices[k])),
          }
          : want[t];
        compareToken(sae, x.subarray(t * 16, (t + 1) * 16), table.row(t), w, `token ${t}`);
      }
      await enc.encodeRows!(rng.fillGaussian(new Float32Array(tokens * 16)), tokens);
      assert.deepEqual(
        table.toArray().map(pairs),
        snapshot,
        "a later batch changed an earlier table",
      );
    }
    assert.equal((await enc.encodeRows!(new Float32Array(0), 0)).length, 0);
    await assert.rejects(enc.encodeRows!(new Float32Array(7), 1), RangeError);
    await enc.close();
  }
});

Deno.test("createOrtEncoder builds one session per SAE folder on disk", async () => {
  const dir = await Deno.makeTempDir();
  const sae = randomSae({ architecture: "jumprelu", dIn: 8, dSae: 16, seed: 3 });
  await writeSaeLensFolder(join(dir, "sae"), sae);
  const enc = await createOrtEncoder(await loadSaeLens(join(dir, "sae")));
  const x = new Rng(1).fillGaussian(new Float32Array(8));
  const [got] = await enc.encode(x, 1);
  compareToken(sae, x, got, referenceEncode(sae, x, 1)[0], "folder");
  await enc.close();
  await Deno.remove(dir, { recursive: true });
});

function restrict(l: SparseLatents, keep: Set<number>): [number, number][] {
  return pairs(l).filter(([i]) => keep.has(i));
}

Deno.test("every architecture × normalisation × kind, full and watched, matches the reference", async () => {
  const dIn = 48, dSae = 163;
  let latentsChecked = 0, excused = 0, watchedChecked = 0;
  for (const [n, v] of VARIANTS.entries()) {
    const sae = randomVariant(v, dIn, dSae, 20 + n);
    const rng = new Rng(300 + n);
    // About a third of the latents, unsorted, with duplicates; always the first and last.
    const watch = Uint32Array.from(
      { length: 60 },
      (_, p) => (p === 0 ? dSae - 1 : p === 1 ? 0 : Math.floor(rng.uniform() * dSae)),
    );
    const keep = new Set(watch);
    const full = await createOrtEncoder(sae, { intraOpThreads: 2 });
    // onnxruntime for every batch: the small-batch path (watched_dots_test.ts) rounds differently
    const watched = await createOrtEncoder(sae, {
      intraOpThreads: 2,
      watch,
      smallBatchDots: false,
    });
    for (const tokens of BATCHES) {
      const x = rng.fillGaussian(new Float32Array(tokens * dIn), 1.5);
      // Shift some tokens off zero mean and scale others so normalisation has work to do.
      for (let t = 0; t < tokens; t += 2) {
        for (let j = 0; j < dIn; j++) x[t * dIn + j] = x[t * dIn + j] * 3 + 0.7;
      }
      const got = await full.encode(x, tokens);
      const gotW = await watched.encode(x, tokens);
      const want = referenceEncode(sae, x, tokens);
      const wantW = referenceEncode(sae, x, tokens, watch);
      for (let t = 0; t < tokens; t++) {
        const where = `${variantName(v)} N=${tokens} t=${t}`;
        const xt = x.subarray(t * dIn, (t + 1) * dIn);
        excused += compareToken(sae, xt, got[t], want[t], where);
        excused += compareToken(sae, xt, gotW[t], wantW[t], `${where} watched`);
        // The watched graph is exact: bit for bit the full encode restricted to the watch.
        assert.deepEqual(pairs(gotW[t]), restrict(got[t], keep), `${where}: watched ≠ full`);
        latentsChecked += want[t].indices.length;
        watchedChecked += wantW[t].indices.length;
      }
    }
    await full.close();
    await watched.close();
  }
  assert.ok(latentsChecked > 50_000, `only ${latentsChecked} latents compared`);
  assert.ok(watchedChecked > 10_000, `only ${watchedChecked} watched latents compared`);
  assert.ok(excused <= latentsChecked / 1000, `${excused} support flips excused`);
});

function nearPairs(got: [number, number][][], want: [number, number][][], where: string): void {
  assert.equal(got.length, want.length, where);
  got.forEach((row, t) => {
    assert.deepEqual(row.map(([i]) => i), want[t].map(([i]) => i), `${where} t=${t}: indices`);
    row.forEach(([, v], p) => {
      const w = want[t][p][1];
      assert.ok(Math.abs(v - w) <= 1e-6 * (1 + Math.abs(w)), `${where} t=${t}: ${v} vs ${w}`);
    });
  });
}

Deno.test("ort encoder reproduces the hand-computed gated, normalised and transcoder cases", async () => {
  // Values and derivations: src/core/testdata/tiny_sae.ts.
  nearPairs(await encodeTiny(tinyGated(), [2, 0, -1, 2]), [[[0, 5]], [[0, 7], [1, 7]]], "gated");
  nearPairs(
    await encodeTiny(tinyNormRescale(), [2, 2, -3, 3, 0, 0]),
    [[[0, 4.5], [1, 1.25]], [[0, 2.5], [1, 3.25]], [[0, 1.5], [1, 2.25]]],
    "constant_norm_rescale",
  );
  nearPairs(
    await encodeTiny(tinyTranscoder(), [2, 0, -1, 2]),
    [[[0, 2.5]], [[0, 3.5], [1, 2.25]]],
    "transcoder",
  );
  const enc = await createOrtEncoder(tinyLayerNorm());
  const ln = (await enc.encode(new Float32Array([1, 2, 3, 5, 5, 5]), 2)).map(pairs);
  await enc.close();
  nearPairs(ln, [[[0, 2 * LN_S], [1, 1 + LN_S]], [[1, 1]]], "layer_norm");
});

Deno.test("watched encoders: by SAE index, empty watch, out-of-range refused, watchIsCheap", async () => {
  const x = [2, 0, -1, 2];
  // Full: [(0, 3.5), (1, 0.25)], [(0, 4.5), (1, 3.25)]; watching {1, 2} keeps latent 1.
  const enc = await createOrtEncoder(tiny(), { watch: new Uint32Array([2, 1]) });
  assert.deepEqual((await enc.encode(new Float32Array(x), 2)).map(pairs), [[[1, 0.25]], [[
    1,
    3.25,
  ]]]);
  assert.equal(enc.dSae, 3);
  await enc.close();
  // TopK k = 1 chooses among all latents: watching {1} reports nothing for x = [2, 0].
  const tk = await createOrtEncoder(tiny({ architecture: "topk", k: 1 }), {
    watch: new Uint32Array([1]),
  });
  // x = [-2, -1]: latent 1 wins with (-2 - 1)·(-1) + 1.25 = 4.25
  const fired = await tk.encode(new Float32Array([2, 0, -2, -1]), 2);
  assert.deepEqual(fired.map(pairs), [[], [[1, 4.25]]]);
  // a token that fires none of the watched latents is the one shared, frozen empty entry
  assert.equal(fired[0], NO_LATENTS);
  assert.notEqual(fired[1], NO_LATENTS);
  assert.ok(Object.isFrozen(NO_LATENTS) && NO_LATENTS.indices.length === 0);
  await tk.close();
  const none = await createOrtEncoder(tinyGated(), { watch: new Uint32Array(0) });
  assert.deepEqual((await none.encode(new Float32Array(x), 2)).map(pairs), [[], []]);
  await none.close();
  await assert.rejects(
    createOrtEncoder(tiny(), { watch: new Uint32Array([3]) }),
    EncoderInputError,
  );
  await assert.rejects(
    createOrtEncoder(tiny({ architecture: "topk", k: 1 }), { watch: new Uint32Array([9]) }),
    EncoderInputError,
  );
  await assert.rejects(
    createOrtEncoder(tinyTranscoder({ applyBDecToInput: true })),
    EncoderConfigError,
  );
  assert.deepEqual(
    (["standard", "jumprelu", "gated", "topk"] as const).map((a) =>
      watchIsCheap(tiny({ architecture: a }))
    ),
    [true, true, true, false],
  );
});

Deno.test("external data: same output as the in-memory model, progress reported, temp folder removed", async () => {
  const sae = randomVariant({ architecture: "jumprelu", normalize: "layer_norm" }, 64, 300, 9);
  const x = new Rng(2).fillGaussian(new Float32Array(7 * 64));
  const inMemory = await createOrtEncoder(sae);
  const phases = new Map<string, [number, number]>();
  const tmp = Deno.env.get("TMPDIR") ?? "/tmp";
  const before = new Set([...Deno.readDirSync(tmp)].map((e) => e.name));
  const external = await createOrtEncoder(sae, {
    externalDataThreshold: 0,
    onProgress: (done, total, phase) => phases.set(phase, [done, total]),
  });
  // W_enc 64·300·4 = 76800 bytes goes out (≥ 64 KiB); the small vectors stay inline.
  assert.deepEqual(phases.get("write"), [76800, 76800]);
  assert.deepEqual(phases.get("session"), [1, 1]);
  const leftover = [...Deno.readDirSync(tmp)].filter((e) =>
    !before.has(e.name) && e.name.startsWith("latentwatch_onnx_")
  );
  assert.deepEqual(leftover, [], `temp folders left behind (${EXTERNAL_DATA_FILE})`);
  assert.deepEqual(
    (await external.encode(x, 7)).map(pairs),
    (await inMemory.encode(x, 7)).map(pairs),
  );
  // Without prepacking the weights stay mapped; the MatMul kernel differs, so compare with tol.
  const mapped = await createOrtEncoder(sae, { externalDataThreshold: 0, disablePrepacking: true });
  const want = referenceEncode(sae, x, 7);
  (await mapped.encode(x, 7)).forEach((got, t) =>
    compareToken(sae, x.subarray(t * 64, (t + 1) * 64), got, want[t], `unpacked t=${t}`)
  );
  await mapped.close();
  await inMemory.close();
  await external.close();
});

Deno.test("probe encoder: MatMul + Add (+ Sigmoid) equals the reference probe", async () => {
  const rng = new Rng(4);
  for (const link of ["raw", "logistic"] as const) {
    const probe: LinearProbe = {
      kind: "probe",
      dIn: 32,
      n: 3,
      directions: rng.fillGaussian(new Float32Array(96), 0.3),
      bias: new Float32Array([0.5, -1, 0]),
      link,
      source: `probe:${link}`,
    };
    const enc = await createProbeEncoder(probe);
    assert.equal(enc.dSae, 3);
    for (const tokens of [1, 5, 64]) {
      const x = rng.fillGaussian(new Float32Array(tokens * 32));
      const got = await enc.encode(x, tokens);
      const want = referenceProbe(probe, x, tokens);
      got.forEach((g, t) => {
        assert.deepEqual([...g.indices], [0, 1, 2]);
        g.values.forEach((v, i) => {
          const w = want[t].values[i];
          assert.ok(Math.abs(v - w) <= tol(w), `${link} N=${tokens} t=${t} ${i}: ${v} vs ${w}`);
        });
      });
    }
    assert.deepEqual(await enc.encode(new Float32Array(0), 0), []);
    await assert.rejects(enc.encode(new Float32Array(31), 1), EncoderInputError);
    await enc.close();
  }
});

Deno.test("ort encoder: the int8 path's f32 fallback keeps idle threads still unless asked, and stays on the CPU", () => {
  // the bench opened it with onnxruntime's default (spinning) while the candidate session did not
  const plain = fallbackEncoderOptions({ fullEncode: "auto", intraOpThreads: 2 });
  assert.deepEqual(plain, {
    fullEncode: "f32",
    intraOpThreads: 2,
    cudaEncoder: false,
    spinning: false,
  });
  assert.equal(fallbackEncoderOptions({ fullEncode: "auto", spinning: true }).spinning, true);
  const watch = new Uint32Array([3]);
  assert.equal(fallbackEncoderOptions({ fullEncode: "int8-candidates", watch }).watch, watch);
});
