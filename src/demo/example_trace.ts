/**
 * Writes the example under `policies/testdata/` that `policies/demo.test.yaml`
 * replays: a small demo SAE for the SIMULATED model (32 wide, 16 latents, in
 * the SAELens layout), a monitor for it running `policies/demo.yaml`, and a
 * trace of the demo prompts. Deterministic: rerunning it rewrites the same
 * files.
 *
 * ```sh
 * deno run -A src/traces/example.ts [folder]   # default policies/testdata
 * ```
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { DEMO_PROMPTS } from "./demo.ts";
import { buildDemoSae, SimulatedModel, writeDemoLabels } from "./simulator.ts";
import { writeSaeLensFolder } from "../formats/saelens_writer.ts";
import { type RequestTruth, writeSimulatedTrace } from "./simulated_trace.ts";

/**
 * Write the example SAE, monitor and trace into `dir`; returns the ground truth.
 *
 * @example
 * ```ts
 * const truth = await writeExample("/tmp/example");
 * ```
 */
export async function writeExample(
  dir: string,
  policies = "../demo.yaml",
): Promise<RequestTruth[]> {
  const sim = new SimulatedModel({ dModel: 32, seed: 7 });
  await writeSaeLensFolder(`${dir}/sae`, buildDemoSae(sim, 16));
  await writeDemoLabels(`${dir}/sae`);
  await Deno.writeTextFile(
    `${dir}/monitor.yaml`,
    [
      "# The demo policies over a small demo SAE (32 → 16) for the simulated model;",
      "# written by src/traces/example.ts, replayed by policies/demo.test.yaml.",
      "monitor: demo-example",
      "model: sim-gpt",
      "hook: blocks.6.hook_resid_post",
      "saes:",
      "  - id: demo-res",
      "    path: ./sae",
      "policies:",
      `  - ${policies}`,
      "",
    ].join("\n"),
  );
  return await writeSimulatedTrace(`${dir}/demo.trace.gz`, sim, DEMO_PROMPTS, {
    dtype: "bf16",
    startTime: Date.UTC(2025, 0, 1),
  });
}

if (import.meta.main) {
  const dir = Deno.args[0] ?? fileURLToPath(new URL("../../policies/testdata", import.meta.url));
  const truth = await writeExample(dir);
  for (const r of truth) {
    const c = [...r.concepts].map(([l, p]) => `latent ${l} at ${p.join(",")}`).join("; ");
    console.log(
      `${r.id}: ${r.tokens.length} tokens (${r.promptTokens} prompt)${c ? `: ${c}` : ""}`,
    );
  }
  console.log(`wrote ${dir}/{sae,monitor.yaml,demo.trace.gz}`);
}
