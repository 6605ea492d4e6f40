import assert from "node:assert/strict";
import { Rng } from "../core/random.ts";
import { randomSae } from "./random_sae.ts";

Deno.test("randomSae is deterministic per seed and shaped like the cfg", () => {
  const a = randomSae({ architecture: "jumprelu", dIn: 16, dSae: 40, seed: 9 });
  const b = randomSae({ architecture: "jumprelu", dIn: 16, dSae: 40, seed: 9 });
  const c = randomSae({ architecture: "jumprelu", dIn: 16, dSae: 40, seed: 10 });
  assert.deepEqual(a.wEnc, b.wEnc);
  assert.deepEqual(a.threshold, b.threshold);
  assert.notDeepEqual(a.wEnc, c.wEnc);
  assert.equal(a.wEnc.length, 16 * 40);
  assert.equal(a.wDec.length, 40 * 16);
  assert.equal(a.bEnc.length, 40);
  assert.equal(a.bDec.length, 16);
  assert.equal(a.threshold!.length, 40);
  assert.equal(randomSae({ architecture: "topk", dIn: 4, dSae: 400, seed: 1 }).k, 32);
  assert.equal(randomSae({ architecture: "topk", dIn: 4, dSae: 8, seed: 1, k: 3 }).k, 3);
});

Deno.test("randomSae decoder rows have norm near 1 and encoder is not the tied transpose", () => {
  const dIn = 32, dSae = 64;
  const sae = randomSae({ architecture: "standard", dIn, dSae, seed: 2 });
  let untied = 0;
  for (let i = 0; i < dSae; i++) {
    let sq = 0;
    for (let j = 0; j < dIn; j++) sq += sae.wDec[i * dIn + j] ** 2;
    assert.ok(Math.abs(Math.sqrt(sq) - 1) <= 0.1 + 1e-6, `row ${i} norm ${Math.sqrt(sq)}`);
    for (let j = 0; j < dIn; j++) if (sae.wEnc[j * dSae + i] !== sae.wDec[i * dIn + j]) untied++;
  }
  assert.equal(untied, dIn * dSae);
});

Deno.test("randomSae latents fire at plausible rates on gaussian input", () => {
  const dIn = 64, dSae = 256, tokens = 64;
  const rng = new Rng(77);
  const x = rng.fillGaussian(new Float32Array(tokens * dIn));
  for (
    const [architecture, lo, hi] of [["standard", 0.3, 0.6], ["jumprelu", 0.05, 0.45]] as const
  ) {
    const sae = randomSae({ architecture, dIn, dSae, seed: 5 });
    let fired = 0;
    for (let t = 0; t < tokens; t++) {
      for (let i = 0; i < dSae; i++) {
        let h = sae.bEnc[i];
        for (let j = 0; j < dIn; j++) h += (x[t * dIn + j] - sae.bDec[j]) * sae.wEnc[j * dSae + i];
        const gate = architecture === "standard" ? 0 : sae.threshold![i];
        if (h > gate && h > 0) fired++;
      }
    }
    const rate = fired / (tokens * dSae);
    assert.ok(rate >= lo && rate <= hi, `${architecture}: firing rate ${rate}`);
  }
});

Deno.test("randomSae rounds to the requested dtype", () => {
  const sae = randomSae({ architecture: "standard", dIn: 8, dSae: 8, seed: 4, dtype: "bfloat16" });
  const bits = new Uint32Array(sae.wEnc.buffer, sae.wEnc.byteOffset, sae.wEnc.length);
  assert.ok(bits.every((b) => (b & 0xffff) === 0), "bf16 values have zero low 16 bits");
  assert.equal(sae.dtype, "bfloat16");
});
