/**
 * End to end with a real PyTorch model: a small GPT-style model defined in
 * `tests/python/tiny_gpt_e2e.py` (fixed seeds), tapped at its first block by
 * the Python tap (`deploy/taps/python/`), served through its `generate`, a
 * real nats-server and the sidecar (`startMonitor`). A direction planted in a
 * token's embedding makes a rule fire; the clamp comes back in the gate's
 * verdict and the tap applies it to that request's following tokens, which
 * are checked here against the clamp computed directly (f64, from the SAE
 * this test wrote). Abort stops generation; with the sidecar stopped, a gate
 * fails open or closed as configured.
 *
 * Needs python3 with torch (`apt-get install --no-install-recommends
 * python3-torch`; `deno task test` installs it when run as root).
 */
import assert from "node:assert/strict";
import {
  CLAMP_VALUE,
  clampExpected,
  D,
  STOP,
  torchFixture,
  TRIGGER,
} from "../support/planted_model.ts";
import { waitUntil } from "./helpers/stream.ts";

const PROMPTS = { planted: [1, 2, TRIGGER, 3, 4], benign: [5, 6, 3], stop: [1, STOP, 2] };

Deno.test("python tap + torch: a planted direction fires, the clamp applies to that request's next tokens only", async () => {
  const f = await torchFixture();
  try {
    const r = await f.run({
      prompts: [PROMPTS.planted, PROMPTS.benign],
      request_ids: ["r-planted", "r-benign"],
      gate: { deadline_ms: 10000, on_timeout: "closed" },
    });
    assert.equal(r.generated[0].length, 6);
    assert.ok(r.steps.length >= 5, `decode steps: ${r.steps.length}`);
    let changed = 0;
    for (const s of r.steps) {
      const [planted, benign] = s.rows;
      // the clamp came in the prefill's verdict: every decode step of r-planted carries it
      const expected = clampExpected(f.sae, planted.raw, CLAMP_VALUE);
      for (let i = 0; i < D; i++) {
        assert.ok(
          Math.abs(planted.steered[i] - expected[i]) < 1e-4,
          `step ${s.step} position ${planted.position} dim ${i}: ${planted.steered[i]} vs ${
            expected[i]
          }`,
        );
      }
      if (planted.raw.some((v, i) => Math.abs(v - planted.steered[i]) > 1e-3)) changed++;
      // the other request in the batch is untouched
      assert.deepEqual(benign.steered, benign.raw, `r-benign step ${s.step}`);
    }
    assert.equal(changed, r.steps.length, "the clamp changed every decode step of r-planted");
    assert.equal(r.stats.commands_applied, 1);
    assert.equal(r.stats.fail_closed, 0);
    assert.ok(r.stats.gate_waits >= r.steps.length);
    const t = f.monitor!.telemetry;
    await waitUntil(() => t.total("latentwatch.steer.acks") >= 1, "the tap's ack");
    assert.equal(t.total("latentwatch.alerts"), 1);
  } finally {
    await f.stop();
  }
});

Deno.test("python tap + torch: an abort rule stops that request's generation", async () => {
  const f = await torchFixture();
  try {
    const r = await f.run({
      prompts: [PROMPTS.stop, PROMPTS.benign],
      request_ids: ["r-stop", "r-go"],
      gate: { deadline_ms: 10000, on_timeout: "open" },
    });
    assert.equal(r.aborted["r-stop"], true);
    assert.equal(r.aborted["r-go"], false);
    // the token sampled from the prefill ends r-stop's output; the rest is padding
    assert.deepEqual(r.generated[0].slice(1), new Array(r.generated[0].length - 1).fill(0));
    assert.equal(r.generated[1].length, 6);
    assert.ok(r.stats.aborts >= 1);
  } finally {
    await f.stop();
  }
});

Deno.test("python tap + torch: with the sidecar stopped, fail-open generates and fail-closed stops", async () => {
  const f = await torchFixture();
  try {
    await f.monitor!.stop();
    f.monitor = null;
    const open = await f.run({
      prompts: [PROMPTS.planted],
      request_ids: ["r-open"],
      gate: { deadline_ms: 200, on_timeout: "open" },
    });
    assert.equal(open.generated[0].length, 6);
    assert.equal(open.aborted["r-open"], false);
    assert.ok(open.stats.fail_open >= 1);
    // nothing steered the model: every step went through as computed
    for (const s of open.steps) assert.deepEqual(s.rows[0].steered, s.rows[0].raw);
    const closed = await f.run({
      prompts: [PROMPTS.planted],
      request_ids: ["r-closed"],
      gate: { deadline_ms: 200, on_timeout: "closed" },
    });
    assert.equal(closed.aborted["r-closed"], true);
    assert.ok(closed.generated[0].filter((t) => t !== 0).length <= 1);
    assert.ok(closed.stats.fail_closed >= 1);
  } finally {
    await f.stop();
  }
});
