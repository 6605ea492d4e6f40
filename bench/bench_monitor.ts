/**
 * The monitor the end-to-end, gating and scale-out benches run: a seeded
 * 768→24576 SAE in SAELens layout, its rules and the monitor file.
 *
 * @module
 */
import { randomSae } from "../src/formats/random_sae.ts";
import { writeSaeLensFolder } from "../src/formats/saelens_writer.ts";
import { BENCH_HOOK, BENCH_MODEL } from "./e2e_load.ts";

/**
 * Write the bench's 768→24576 SAE (SAELens layout), its rules and a monitor
 * file into `dir`: TopK gets one rule (TopK is encoded in full anyway),
 * JumpReLU 64 rules on 64 latents (what serve then encodes). `extraRules`
 * is appended to the rule list (YAML, indented two spaces).
 *
 * @example
 * ```ts
 * import { writeBenchMonitor } from "./bench_monitor.ts";
 * const dir = await Deno.makeTempDir();
 * await writeBenchMonitor(dir, "nats://127.0.0.1:4222", "jumprelu");
 * ```
 */
export async function writeBenchMonitor(
  dir: string,
  natsUrl: string,
  arch: "topk" | "jumprelu",
  extraRules = "",
): Promise<void> {
  const dIn = 768, dSae = 24576, k = 32;
  await writeSaeLensFolder(`${dir}/sae`, randomSae({ architecture: arch, dIn, dSae, k, seed: 2 }));
  const ruleCount = arch === "topk" ? 1 : 64;
  await Deno.writeTextFile(
    `${dir}/rules.yaml`,
    "version: 2\nrules:\n" +
      Array.from(
        { length: ruleCount },
        (_, i) =>
          `  - id: bench-${i}\n    title: bench rule ${i}\n    severity: low\n` +
          `    when: { sae: bench, latent: ${7 + i * 383}, above: 4.0 }\n`,
      ).join("") + extraRules,
  );
  await Deno.writeTextFile(
    `${dir}/monitor.yaml`,
    `monitor: bench\nmodel: ${BENCH_MODEL}\nhook: ${BENCH_HOOK}\nsaes:\n  - id: bench\n    path: sae\n` +
      `policies: [rules.yaml]\nnats:\n  url: ${natsUrl}\nalerts:\n  stream: BENCH_ALERTS\n` +
      `batching:\n  max_batch_tokens: 128\n  max_wait_ms: 2\n  max_queue_tokens: 8192\n` +
      (Deno.env.get("E2E_EXTRA_MONITOR") ?? ""),
  );
}
