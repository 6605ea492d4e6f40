/** Building a generation: `encoder.ready` says which kernels each encoder runs, and why not. */
import assert from "node:assert/strict";
import { randomSae } from "../formats/random_sae.ts";
import { nativeKernelsStatus } from "../runtime/native_library.ts";
import { Logger } from "../shared/log.ts";
import { allEncoders, buildGeneration } from "./generation.ts";
import { Rng } from "../core/random.ts";
import { valueAt } from "./alert.ts";
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

/** A v2 file: rules on `steer` latents steer (abort), rules on `alert` latents only alert. */
function rulesOn(steer: number[], alert: number[]): string {
  const one = (id: string, l: number, actions: string) =>
    `  - id: ${id}\n    title: ${id}\n    severity: low\n    when: { sae: s, latent: ${l}, above: 0.5 }\n` +
    `    actions: ${actions}\n`;
  return "version: 2\nrules:\n" +
    steer.map((l) => one(`steer-${l}`, l, "[alert, { steer: abort }]")).join("") +
    alert.map((l) => one(`alert-${l}`, l, "[alert]")).join("");
}

Deno.test("generation: a gated frame's verdict encoder computes the steering rules' latents bit for bit as the whole encoder, on the same kernel", async () => {
  const dIn = 96, dSae = 300;
  const sae = randomSae({ architecture: "jumprelu", dIn, dSae, seed: 4 });
  const models = { saes: new Map([["s", sae]]), probes: new Map(), dIn };
  const steer = [3, 17, 42, 99, 250], alert = [1, 5, 60, 61, 62, 120, 121, 200, 201, 299];
  const lines: string[] = [];
  const log = new Logger({ write: (l) => lines.push(l), maxPerSecond: 1000, format: "json" });
  const set = policies(rulesOn(steer, alert), dSae);
  const built = await buildGeneration({
    models,
    policies: set,
    log,
    execution: { provider: "cpu" },
  });
  const main = built.generation.encoders.get("s")!;
  const verdict = built.generation.verdictEncoders?.get("s");
  assert.ok(verdict && verdict !== main);
  const ready = lines.map((l) => JSON.parse(l)).filter((l) => l.event === "encoder.ready");
  assert.deepEqual(ready.map((l) => [l.fields.mode, l.fields.watched]), [["watched", 15], [
    "verdict",
    5,
  ]]);
  const rng = new Rng(9);
  let compared = 0;
  for (const tokens of [1, 8, 128]) {
    const x = rng.fillGaussian(new Float32Array(tokens * dIn), 2);
    const [whole, early] = [await main.encode(x, tokens), await verdict.encode(x, tokens)];
    for (let t = 0; t < tokens; t++) {
      for (const l of steer) {
        const a = valueAt(whole[t], l), b = valueAt(early[t], l);
        assert.ok(Object.is(a, b), `token ${t} latent ${l}: ${b} against ${a}`);
        if (a !== 0) compared++;
      }
      // it computes only what the steering rules read
      assert.ok([...early[t].indices].every((l) => steer.includes(l)));
    }
  }
  assert.ok(compared > 50, `only ${compared} active values compared`);
  // a reload with the same steering latents keeps the encoder; the generation closes it with the rest
  const again = await buildGeneration({
    models,
    policies: policies(rulesOn(steer, [7]), dSae),
    log,
    previous: built,
  });
  assert.equal(again.generation.verdictEncoders?.get("s"), verdict);
  assert.ok(allEncoders(again.generation).includes(verdict));
  for (const e of new Set([...allEncoders(built.generation), ...allEncoders(again.generation)])) {
    await e.close();
  }
});

Deno.test("generation: no verdict encoders when every rule steers; none to wait for when no rule does", async () => {
  const dIn = 16, dSae = 40;
  const sae = randomSae({ architecture: "jumprelu", dIn, dSae, seed: 2 });
  const models = { saes: new Map([["s", sae]]), probes: new Map(), dIn };
  const log = new Logger({ write: () => {}, maxPerSecond: 1000 });
  const steering = await buildGeneration({
    models,
    policies: policies(rulesOn([3, 4], []), dSae),
    log,
  });
  assert.equal(steering.generation.verdictEncoders, undefined);
  const alerting = await buildGeneration({
    models,
    policies: policies(rulesOn([], [3, 4]), dSae),
    log,
  });
  assert.deepEqual([...alerting.generation.verdictEncoders!], []);
  // offline replay asks for none
  const offline = await buildGeneration({
    models,
    policies: policies(rulesOn([3], [4]), dSae),
    log,
    verdictEncoders: false,
  });
  assert.equal(offline.generation.verdictEncoders, undefined);
  // a steering rule on every latent the alerts read: one encoder serves both passes
  const same = await buildGeneration({
    models,
    policies: policies(rulesOn([3, 4], [4]), dSae),
    log,
  });
  assert.equal(same.generation.verdictEncoders?.get("s"), same.generation.encoders.get("s"));
  for (const g of [steering, alerting, offline, same]) {
    for (const e of allEncoders(g.generation)) await e.close();
  }
});
