import assert from "node:assert/strict";
import { connect } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { formatAlertLine, parseSince } from "./alerts.ts";
import { startNatsServer } from "../bus/nats_server.ts";
import type { Alert } from "../core/alert.ts";
import { LATENTWATCH_MAIN, REPO_ROOT, runLatentwatch } from "../../tests/helpers/cli.ts";
import { sampleAlert } from "../../tests/helpers/live_alerts.ts";

const STREAM = "LATENTWATCH_ALERTS";

Deno.test("alerts tail: --since reads ages and ISO times, nothing else", () => {
  const now = new Date("2026-05-01T12:10:00Z");
  assert.equal(parseSince("10m", now)?.toISOString(), "2026-05-01T12:00:00.000Z");
  assert.equal(parseSince("2h", now)?.toISOString(), "2026-05-01T10:10:00.000Z");
  assert.equal(parseSince("1d", now)?.toISOString(), "2026-04-30T12:10:00.000Z");
  assert.equal(parseSince("30s", now)?.toISOString(), "2026-05-01T12:09:30.000Z");
  assert.equal(parseSince("2026-05-01T08:00:00Z", now)?.toISOString(), "2026-05-01T08:00:00.000Z");
  assert.equal(parseSince("10 minutes", now), null);
  assert.equal(parseSince("5", now), null);
});

Deno.test("alerts tail: one readable line per alert; colour only when asked", () => {
  const a = sampleAlert();
  const plain = formatAlertLine(a, { color: false });
  assert.equal(
    plain,
    "2026-05-01T12:00:00.000Z HIGH     prompt-injection gpt2-small req=req-1 tokens=[12,15) " +
      '" ignore previous\\ninstructions" latent=res-jb:1234 "instructions override" max=5.25 thr=3',
  );
  assert.ok(!plain.includes("\x1b"), "no escape codes in plain output");
  const coloured = formatAlertLine(sampleAlert({ severity: "critical" }), { color: true });
  assert.ok(coloured.includes("\x1b[1;97;41mCRITICAL"), coloured);
  const probe = formatAlertLine(
    { ...a, evidence: [], latent: { sae: "jb-probe", index: 0, max: 0.91, signal: "probe" } },
    { color: false },
  );
  assert.match(probe, /tokens=\[12,15\) probe=jb-probe:0 max=0\.91$/);
});

/** A stream like the one `serve` creates, holding `alerts` (after a non-alert, and with one duplicate). */
async function seedStream(url: string, alerts: Alert[]): Promise<void> {
  const nc = await connect({ servers: url });
  try {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: STREAM, subjects: ["latentwatch.alerts.>"] });
    const js = jetstream(nc);
    // something else on an alert subject: tail skips it and says so
    await js.publish("latentwatch.alerts.junk", "not json", { msgID: "junk-1" });
    for (const a of alerts) {
      const ack = await js.publish(`latentwatch.alerts.${a.monitor}`, JSON.stringify(a), {
        msgID: a.id,
      });
      assert.equal(ack.duplicate, false);
    }
    // a retried publish: JetStream keeps the alert once, so tail shows it once
    const again = await js.publish(
      `latentwatch.alerts.${alerts[0].monitor}`,
      JSON.stringify(alerts[0]),
      { msgID: alerts[0].id },
    );
    assert.equal(again.duplicate, true);
  } finally {
    await nc.close();
  }
}

const ALERTS = [
  sampleAlert({ requestId: "r1", severity: "low", rule: "pii", model: "llama" }),
  sampleAlert({ requestId: "r2", severity: "high" }),
  sampleAlert({ requestId: "r3", severity: "critical", rule: "jailbreak" }),
  sampleAlert({ requestId: "r4", severity: "medium", monitor: "other" }),
  sampleAlert({ requestId: "r5", severity: "critical", model: "llama" }),
];

Deno.test({
  name: "alerts tail: follows a real JetStream stream with filters, --json, --limit, --since",
  sanitizeResources: false,
  fn: async () => {
    const srv = await startNatsServer();
    try {
      await seedStream(srv.url, ALERTS);
      const tail = (...args: string[]) =>
        runLatentwatch(["alerts", "tail", "--url", srv.url, "--all", ...args]);

      const json = await tail("--json", "--severity", "high,critical", "--limit", "3");
      assert.equal(json.code, 0, json.stderr);
      const got = json.stdout.trim().split("\n").map((l) => JSON.parse(l) as Alert);
      assert.deepEqual(got.map((a) => a.requestId), ["r2", "r3", "r5"]);
      assert.deepEqual(got[0], ALERTS[1], "--json prints the alert as stored");
      assert.match(json.stderr, /skipped seq \d+ on latentwatch\.alerts\.junk: not JSON/);

      const minSev = await tail("--json", "--min-severity", "medium", "--limit", "4");
      assert.deepEqual(
        minSev.stdout.trim().split("\n").map((l) => JSON.parse(l).requestId),
        ["r2", "r3", "r4", "r5"],
      );

      const byPolicyModel = await tail(
        "--policy",
        "prompt-injection",
        "--model",
        "llama",
        "--limit",
        "1",
      );
      assert.equal(byPolicyModel.code, 0, byPolicyModel.stderr);
      assert.equal(byPolicyModel.stdout, formatAlertLine(ALERTS[4], { color: false }) + "\n");
      assert.ok(!byPolicyModel.stdout.includes("\x1b"), "plain when stdout is not a terminal");

      const bad = await tail("--severity", "urgent");
      assert.equal(bad.code, 2);
      assert.match(bad.stderr, /unknown severity 'urgent'/);
      const both = await runLatentwatch(["alerts", "tail", "--all", "--since", "1m"]);
      assert.equal(both.code, 2);

      const missing = await tail("--stream", "NOPE", "--limit", "1");
      assert.equal(missing.code, 1);
      assert.match(missing.stderr, /cannot read stream 'NOPE'/);

      // --since counts back from now by the time the stream stored each alert
      await new Promise((r) => setTimeout(r, 1200));
      const late = sampleAlert({ requestId: "r6", severity: "info" });
      const nc = await connect({ servers: srv.url });
      await jetstream(nc).publish("latentwatch.alerts.demo", JSON.stringify(late), {
        msgID: late.id,
      });
      await nc.close();
      const since = await runLatentwatch([
        "alerts",
        "tail",
        "--url",
        srv.url,
        "--since",
        "1s",
        "--json",
        "--limit",
        "1",
      ]);
      assert.equal(since.code, 0, since.stderr);
      assert.equal(JSON.parse(since.stdout).requestId, "r6");
    } finally {
      await srv.stop();
    }
  },
});

Deno.test({
  name: "alerts tail: shows new alerts as they come and exits 0 on SIGINT",
  sanitizeResources: false,
  fn: async () => {
    const srv = await startNatsServer();
    await seedStream(srv.url, [ALERTS[0]]); // before the tail starts: not shown (new alerts only)
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", LATENTWATCH_MAIN, "alerts", "tail", "--url", srv.url, "--json"],
      cwd: REPO_ROOT,
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
    try {
      const dec = new TextDecoder();
      let stderr = "";
      const errReader = child.stderr.getReader();
      while (!stderr.includes("following")) {
        const r = await errReader.read();
        if (r.done) throw new Error(`tail exited early: ${stderr}`);
        stderr += dec.decode(r.value);
      }
      const nc = await connect({ servers: srv.url });
      const fresh = sampleAlert({ requestId: "live-1", severity: "critical" });
      await jetstream(nc).publish("latentwatch.alerts.demo", JSON.stringify(fresh), {
        msgID: fresh.id,
      });
      await nc.close();
      let stdout = "";
      const outReader = child.stdout.getReader();
      while (!stdout.includes("\n")) {
        const r = await outReader.read();
        if (r.done) break;
        stdout += dec.decode(r.value);
      }
      assert.deepEqual(JSON.parse(stdout), fresh);
      child.kill("SIGINT");
      const status = await child.status;
      assert.equal(status.code, 0, "Ctrl-C is a clean exit");
      errReader.releaseLock();
      outReader.releaseLock();
      await child.stdout.cancel();
      await child.stderr.cancel();
    } finally {
      clearTimeout(timer);
      await srv.stop();
    }
  },
});

Deno.test({
  name: "alerts tail: the start-up banner shows no password of any comma-separated URL",
  sanitizeResources: false,
  fn: async () => {
    const srv = await startNatsServer();
    try {
      await seedStream(srv.url, [ALERTS[0]]);
      const hostPort = srv.url.slice("nats://".length);
      const url = `nats://ops:first-secret@${hostPort},nats://ops:second-secret@${hostPort}`;
      const run = await runLatentwatch(["alerts", "tail", "--url", url, "--all", "--limit", "1"]);
      assert.equal(run.code, 0, run.stderr);
      assert.match(run.stderr, /following LATENTWATCH_ALERTS at nats:\/\/127\.0\.0\.1:\d+,/);
      assert.ok(!run.stderr.includes("first-secret"), run.stderr);
      assert.ok(!run.stderr.includes("second-secret"), run.stderr);
    } finally {
      await srv.stop();
    }
  },
});
