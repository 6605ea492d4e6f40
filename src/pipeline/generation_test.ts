/** Building a generation: `encoder.ready` says which kernels each encoder runs, and why not. */
import assert from "node:assert/strict";
import { randomSae } from "../formats/random_sae.ts";
import { nativeKernelsStatus } from "../runtime/native_library.ts";
import { Logger } from "../shared/log.ts";
import { buildGeneration } from "./generation.ts";
import { policies } from "./testdata/fixtures.ts";

const RULE = "version: 1\nrules:\n  - id: high\n    title: latent 3 high\n    severity: high\n" +
  "    when: { sae: s, latent: 3, above: 2 }\n";

async function readyLine(nativeKernels: "auto" | "off"): Promise<Record<string, unknown>> {
  const sae = randomSae({ architecture: "jumprelu", dIn: 16, dSae: 40, seed: 2 });
  const lines: string[] = [];
  const built = await buildGeneration({
    models: { saes: new Map([["s", sae]]), probes: new Map(), dIn: 16 },
    policies: policies(RULE, 40),
    log: new Logger({ write: (l) => lines.push(l), maxPerSecond: 1000, format: "json" }),
    execution: { provider: "cpu", nativeKernels },
  });
  for (const e of built.generation.encoders.values()) await e.close?.();
  const ready = lines.map((l) => JSON.parse(l)).find((l) => l.event === "encoder.ready");
  assert.ok(ready, `no encoder.ready line in ${lines.join("\n")}`);
  return ready.fields;
}

Deno.test("generation: a watched encoder's encoder.ready names its kernel, and why not native when it is not", async () => {
  const off = await readyLine("off");
  assert.equal(off.mode, "watched");
  assert.equal(off.kernels, "wasm");
  assert.equal(off.kernels_note, "execution.native_kernels is off");
  const auto = await readyLine("auto");
  const status = await nativeKernelsStatus();
  if (status.available) {
    assert.equal(auto.kernels, "native-fma");
    assert.equal(auto.kernels_note, undefined);
  } else {
    assert.equal(auto.kernels, "wasm");
    assert.equal(auto.kernels_note, status.reason);
  }
});
