import assert from "node:assert/strict";
import { referenceEncode } from "../reference_encoder.ts";
import { randomSae } from "../../formats/random_sae.ts";
import { readLatent } from "./arithmetic.ts";
import { SteerResolveError } from "./protocol.ts";
import { latentVectors, resolveSteerAction, steerableProblem } from "./resolve.ts";
import { assertAlmostEquals, assertEquals, assertThrows } from "./_test_utils.ts";

Deno.test("latentVectors: the read-out agrees with the reference encoder on the latent's value", () => {
  for (const architecture of ["standard", "jumprelu"] as const) {
    const sae = randomSae({ architecture, dIn: 16, dSae: 24, seed: 11 });
    if (architecture === "jumprelu") sae.threshold = new Float32Array(24).fill(0.05);
    sae.applyBDecToInput = true;
    const x = new Float32Array(16).map((_, j) => Math.sin(j + 1));
    const ref = referenceEncode(sae, x, 1)[0];
    for (const index of [0, 5, 23]) {
      const { read, direction } = latentVectors(sae, "s", index);
      const at = [...ref.indices].indexOf(index);
      assertAlmostEquals(readLatent(read, x), at >= 0 ? ref.values[at] : 0, 1e-5);
      assertEquals([...direction], [...sae.wDec.subarray(index * 16, index * 16 + 16)]);
    }
  }
});

Deno.test("steering by latent is refused where the read-out is not affine", () => {
  const sae = randomSae({ architecture: "standard", dIn: 4, dSae: 8, seed: 1 });
  assertEquals(steerableProblem(sae), null);
  assert.ok(steerableProblem({ ...sae, normalize: "layer_norm" })!.includes("layer_norm"));
  assert.ok(steerableProblem({ ...sae, kind: "transcoder" })!.includes("transcoder"));
  const saes = new Map([["s", { ...sae, normalize: "constant_norm_rescale" as const }]]);
  assertThrows(
    () => resolveSteerAction({ kind: "clamp", sae: "s", latent: 0, value: 0 }, saes, 4),
    SteerResolveError,
    "SAE s: cannot steer by latent",
  );
  assertThrows(
    () => resolveSteerAction({ kind: "ablate", sae: "x", latent: 0 }, saes, 4),
    SteerResolveError,
    'found "x"',
  );
  assertThrows(
    () =>
      resolveSteerAction(
        { kind: "clamp", sae: "s", latent: 0, value: 0 },
        new Map([["s", sae]]),
        5,
      ),
    SteerResolveError,
    "expected d_in 5",
  );
  // a literal vector works with any SAE; cap's direction is made unit length
  const cap = resolveSteerAction(
    { kind: "cap", max: 1, direction: { vector: [3, 4, 0, 0] } },
    saes,
    4,
  );
  assert.ok(cap.kind === "cap");
  assertEquals([...cap.direction].map((v) => Math.round(v * 1e6) / 1e6), [0.6, 0.8, 0, 0]);
  assertThrows(
    () => resolveSteerAction({ kind: "add", scale: 1, direction: { vector: [1] } }, saes, 4),
    SteerResolveError,
    "expected a vector of 4 values",
  );
});
