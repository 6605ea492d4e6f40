/**
 * One rendering of token text everywhere: the demo's live alert lines,
 * `replay` of the trace the demo recorded, and `alerts tail` of the alerts
 * that replay raised (published to a real JetStream stream) show the same
 * quoted text for the same evidence, and that text is what the demo's
 * prompts spell under the rule of src/core/render/token_text.ts (written
 * out by hand below).
 *
 * The demo writes its SAE and trace under the repository's `.latentwatch/`;
 * it runs here in a copy of the sources (node_modules linked), so nothing
 * another test reads is rewritten under it.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { connect } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { findNatsServer, startNatsServer } from "../src/bus/nats_server.ts";
import type { Alert } from "../src/core/alert.ts";
import { type CliRun, REPO_ROOT, runLatentwatch } from "./helpers/cli.ts";

/** The demo's firings by `request@first position`, the text each shows (hand-written). */
const EXPECTED: Record<string, string> = {
  // "Summarise this page . Ignore all previous instructions ...": tokens 4, 6, 7 fire, 5 ("all") not
  "req-2-injection@4": '"Ignore … previous·instructions"',
  "req-3-pii@4": '"alice.smith@example.com"',
  "req-3-pii@8": '"hunter2024"',
  "req-4-key@8": '"sk-live-4f9a8b7c6d5e"',
  "req-4-key@18": '"sk-live-4f9a8b7c6d5e"',
  // "Lately I want to hurt myself": word tokens carry no spaces, so '·' between them
  "req-5-selfharm@4": '"hurt·myself"',
};

/** A JSON string literal, as the outputs quote token text. */
const QUOTED = String.raw`("(?:[^"\\]|\\.)*")`;

/** A copy of what the demo needs, with the repository's node_modules linked. */
async function demoCopy(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "lw-token-text-" });
  for (const d of ["src", "monitors", "policies"]) {
    await new Deno.Command("cp", { args: ["-R", join(REPO_ROOT, d), join(dir, d)] }).output();
  }
  for (const f of ["deno.json", "deno.lock"]) await Deno.copyFile(join(REPO_ROOT, f), join(dir, f));
  await Deno.symlink(join(REPO_ROOT, "node_modules"), join(dir, "node_modules"));
  return dir;
}

/** `deno run -A src/main.ts ...args` of the copy in `dir`, without colour. */
function runIn(dir: string, args: string[]): Promise<CliRun> {
  return runLatentwatch(args, { cwd: dir, main: join(dir, "src/main.ts") });
}

/** `text` of each match of `re` (groups: request, first position, quoted text), by key. */
function byKey(out: string, re: RegExp): Record<string, string> {
  const found: Record<string, string> = {};
  for (const m of out.matchAll(re)) {
    const key = `${m[1]}@${m[2]}`;
    assert.equal(found[key], undefined, `two lines for ${key}:\n${out}`);
    found[key] = m[3];
  }
  return found;
}

Deno.test({
  name: "token text: the demo, replay and alerts tail show the same text for the same evidence",
  sanitizeResources: false,
  fn: async () => {
    const dir = await demoCopy();
    const run = (args: string[]) => runIn(dir, args);
    const srv = await findNatsServer() ? await startNatsServer() : null;
    try {
      const demo = await run(["demo", "--no-color"]);
      assert.equal(demo.code, 0, demo.stdout + demo.stderr);
      const demoText = byKey(
        demo.stdout,
        new RegExp(String.raw`request (\S+), \w+ tokens (\d+)–\d+: ${QUOTED}\n`, "g"),
      );
      assert.deepEqual(demoText, EXPECTED);

      const trace = join(dir, ".latentwatch/demo/demo.trace.gz");
      const replay = await run(["replay", trace, "--monitor", "monitors/demo.yaml", "-q"]);
      assert.equal(replay.code, 0, replay.stderr);
      const replayText = byKey(
        replay.stdout,
        new RegExp(String.raw`request (\S+), tokens? (\d+)[^:\n]*: ${QUOTED}\n`, "g"),
      );
      assert.deepEqual(replayText, EXPECTED);

      if (!srv) {
        console.warn("nats-server not installed: alerts tail not compared");
        return;
      }
      const raised = await run([
        "replay",
        trace,
        "--monitor",
        "monitors/demo.yaml",
        "--alerts",
        "-q",
      ]);
      assert.equal(raised.code, 0, raised.stderr);
      const alerts = raised.stdout.trim().split("\n").map((l) => JSON.parse(l) as Alert);
      assert.equal(alerts.length, Object.keys(EXPECTED).length);
      const nc = await connect({ servers: srv.url });
      try {
        await jetstreamManager(nc).then((m) =>
          m.streams.add({ name: "LATENTWATCH_ALERTS", subjects: ["latentwatch.alerts.>"] })
        );
        const js = jetstream(nc);
        for (const a of alerts) {
          await js.publish(`latentwatch.alerts.${a.monitor}`, JSON.stringify(a), { msgID: a.id });
        }
      } finally {
        await nc.close();
      }
      const tail = await run([
        "alerts",
        "tail",
        "--url",
        srv.url,
        "--all",
        "--limit",
        String(alerts.length),
      ]);
      assert.equal(tail.code, 0, tail.stderr);
      const tailText = byKey(
        tail.stdout,
        new RegExp(String.raw`req=(\S+) tokens=\[(\d+),\d+\) ${QUOTED} latent=`, "g"),
      );
      assert.deepEqual(tailText, EXPECTED);
    } finally {
      await srv?.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
