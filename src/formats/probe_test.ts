import assert from "node:assert/strict";
import { join } from "node:path";
import { f32ToBf16 } from "../core/dtype.ts";
import { writeNpy } from "./npy.ts";
import { writeSafetensors } from "./safetensors_writer.ts";
import type { LinearProbe } from "../core/sae.ts";
import { referenceProbe } from "../core/decode.ts";
import { loadProbe, parseProbeJson, ProbeFormatError } from "./probe.ts";

/** Scores of every token, flattened `[tokens, n]`, from the core probe reference. */
const scoreProbe = (p: LinearProbe, x: Float32Array, tokens: number) =>
  Float64Array.from(referenceProbe(p, x, tokens).flatMap((s) => [...s.values]));

// Two tokens over d = 3: x0 = [1, 1, 1], x1 = [2, 0, 1].
const X = Float32Array.of(1, 1, 1, 2, 0, 1);
// Directions w0 = [1, 2, -1] (b0 = 0.5) and w1 = [0, 0, 2] (b1 = -1), by hand:
//   x0·w0 + b0 = 1 + 2 − 1 + 0.5 = 2.5    x0·w1 + b1 = 2 − 1 = 1
//   x1·w0 + b0 = 2 + 0 − 1 + 0.5 = 1.5    x1·w1 + b1 = 2 − 1 = 1
const W = Float32Array.of(1, 2, -1, 0, 0, 2);
const RAW = [2.5, 1, 1.5, 1];
const sigma = (z: number) => 1 / (1 + Math.exp(-z));

const bytesOf = (a: Float32Array | Uint16Array) =>
  new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

function close(got: Float64Array, want: number[]): void {
  assert.equal(got.length, want.length);
  want.forEach((w, i) => assert.ok(Math.abs(got[i] - w) < 1e-6, `score ${i}: ${got[i]} vs ${w}`));
}

Deno.test("probe from .npy: [n, d] directions, sidecar bias/link/names; [d] alone is raw with bias 0", async () => {
  const dir = await Deno.makeTempDir({ prefix: "probe_" });
  await Deno.writeFile(join(dir, "two.npy"), writeNpy(W, [2, 3], "f32"));
  await Deno.writeTextFile(
    join(dir, "two.json"),
    JSON.stringify({ bias: [0.5, -1], link: "logistic", names: ["deception", "refusal"] }),
  );
  const p = await loadProbe(join(dir, "two.npy"));
  assert.equal(p.kind, "probe");
  assert.deepEqual([p.n, p.dIn, p.link, p.names], [2, 3, "logistic", ["deception", "refusal"]]);
  close(scoreProbe(p, X, 2), RAW.map(sigma));

  await Deno.writeFile(join(dir, "one.npy"), writeNpy(W.subarray(0, 3), [3], "f16"));
  const one = await loadProbe(join(dir, "one.npy"));
  assert.deepEqual([one.n, one.dIn, one.link, [...one.bias]], [1, 3, "raw", [0]]);
  close(scoreProbe(one, X, 2), [2, 1]);

  await Deno.writeTextFile(join(dir, "two.json"), JSON.stringify({ bias: [1, 2, 3] }));
  await assert.rejects(
    () => loadProbe(join(dir, "two.npy")),
    /two\.npy: expected a bias of shape \[2\] .* found 3 values/,
  );
  await Deno.writeFile(join(dir, "cube.npy"), writeNpy(new Float32Array(8), [2, 2, 2], "f32"));
  await assert.rejects(
    () => loadProbe(join(dir, "cube.npy")),
    (e: Error) =>
      e instanceof ProbeFormatError &&
      /expected directions of shape \[d\] or \[n, d\], found \[2, 2, 2\]/.test(e.message),
  );
  await Deno.writeFile(join(dir, "junk.npy"), new Uint8Array([1, 2, 3]));
  await assert.rejects(() => loadProbe(join(dir, "junk.npy")), ProbeFormatError);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("probe from .safetensors: weight/direction, bias [n] or scalar, link in __metadata__", async () => {
  const dir = await Deno.makeTempDir({ prefix: "probe_" });
  const file = join(dir, "p.safetensors");
  await Deno.writeFile(
    file,
    writeSafetensors({
      weight: { dtype: "F32", shape: [2, 3], data: bytesOf(W) },
      bias: { dtype: "F32", shape: [2], data: bytesOf(Float32Array.of(0.5, -1)) },
    }, { link: "logistic", names: '["a","b"]' }),
  );
  const p = await loadProbe(file);
  assert.deepEqual([p.n, p.dIn, p.link, p.names], [2, 3, "logistic", ["a", "b"]]);
  close(scoreProbe(p, X, 2), RAW.map(sigma));

  // bf16 direction [d] (values exact in bf16) and a 0-d scalar bias; no metadata → raw.
  await Deno.writeFile(
    file,
    writeSafetensors({
      direction: { dtype: "BF16", shape: [3], data: bytesOf(f32ToBf16(W.subarray(0, 3))) },
      bias: { dtype: "F32", shape: [], data: bytesOf(Float32Array.of(0.5)) },
    }),
  );
  const q = await loadProbe(file);
  assert.deepEqual([q.n, q.link], [1, "raw"]);
  close(scoreProbe(q, X, 2), [2.5, 1.5]);

  await Deno.writeFile(
    file,
    writeSafetensors({
      direction: { dtype: "I32", shape: [3], data: bytesOf(Float32Array.of(1, 2, 3)) },
    }),
  );
  await assert.rejects(() => loadProbe(file), /tensor 'direction' has dtype I32, expected a float/);
  await Deno.writeFile(
    file,
    writeSafetensors({ w: { dtype: "F32", shape: [3], data: bytesOf(W.subarray(0, 3)) } }),
  );
  await assert.rejects(
    () => loadProbe(file),
    /expected one tensor 'direction' or 'weight', found only w/,
  );
  await Deno.writeFile(
    file,
    writeSafetensors({
      weight: { dtype: "F32", shape: [2, 3], data: bytesOf(W) },
      bias: { dtype: "F32", shape: [3], data: bytesOf(Float32Array.of(1, 2, 3)) },
    }, { link: "softmax" }),
  );
  await assert.rejects(() => loadProbe(file), /expected a bias of shape \[2\]/);
  await Deno.writeFile(
    file,
    writeSafetensors({ weight: { dtype: "F32", shape: [2, 3], data: bytesOf(W) } }, {
      link: "softmax",
    }),
  );
  await assert.rejects(() => loadProbe(file), /expected link "logistic" or "raw", found "softmax"/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("probe from JSON, including a scikit-learn LogisticRegression export", async () => {
  const dir = await Deno.makeTempDir({ prefix: "probe_" });
  const file = join(dir, "p.json");
  await Deno.writeTextFile(
    file,
    JSON.stringify({ directions: [[1, 2, -1], [0, 0, 2]], bias: [0.5, -1], names: ["x", "y"] }),
  );
  const p = await loadProbe(file);
  assert.deepEqual([p.n, p.link], [2, "raw"]);
  close(scoreProbe(p, X, 2), RAW);

  // sklearn: coef_ [1, d], intercept_ [1]; predict_proba[:, 1] = σ(x·coef + intercept).
  await Deno.writeTextFile(
    file,
    JSON.stringify({ coef_: [[1, 2, -1]], intercept_: [0.5], classes_: [0, 1] }),
  );
  const sk = await loadProbe(file);
  assert.deepEqual([sk.n, sk.link], [1, "logistic"]);
  close(scoreProbe(sk, X, 2), [sigma(2.5), sigma(1.5)]);

  const single = parseProbeJson({ direction: [1, 2, -1], bias: 0.5, link: "sigmoid" }, "inline");
  close(scoreProbe(single, X, 1), [sigma(2.5)]);

  const errors: [unknown, RegExp][] = [
    [{ direction: [1, 2], directions: [[1, 2]] }, /exactly one of .* found direction, directions/],
    [{ bias: 1 }, /exactly one of .* found none/],
    [{ directions: [[1, 2], [3]] }, /"directions" row 1 has 1 values, expected 2 like row 0/],
    [{ direction: [1, "2"] }, /"direction" to hold numbers only/],
    [{ direction: [1, null] }, /"direction" to hold numbers only/],
    [{ directions: [1, 2] }, /"directions" to be \[\[\.\.\.\], \.\.\.\]/],
    [{ coef_: [[1, 2], [3, 4], [5, 6]], intercept_: [0, 0, 0] }, /3 rows \(a multi-class model/],
    [{ direction: [1, 2], names: ["a", "b"] }, /expected 1 names .* found 2/],
    [{ direction: [1, 2], bias: "0.5" }, /"bias" to be finite numbers/],
  ];
  for (const [raw, re] of errors) {
    assert.throws(() => parseProbeJson(raw, "p.json"), re, JSON.stringify(raw));
  }
  await Deno.writeTextFile(file, "{nope");
  await assert.rejects(() => loadProbe(file), /p\.json: not valid JSON/);
  await assert.rejects(() => loadProbe(join(dir, "p.pkl")), /cannot read the probe/);
  await Deno.writeTextFile(join(dir, "p.pkl"), "");
  await assert.rejects(
    () => loadProbe(join(dir, "p.pkl")),
    /ending in \.npy, \.safetensors or \.json/,
  );
  await Deno.remove(dir, { recursive: true });
});
