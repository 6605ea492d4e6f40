/**
 * Taps that outlive the broker: nats-server is stopped (SIGTERM) and started
 * again on the same port and store while a model generates, for both taps.
 *
 * - Python: a small torch model decodes through the Python tap
 *   (`tests/python/tap_restart_gen.py`), one frame per step.
 * - TypeScript: the {@linkcode Tap} over a bus connected to a list of URLs,
 *   one frame per step, from this process.
 *
 * Each run checks that frames published after the restart reach a plain
 * subscriber, that what reached the server (a JetStream stream in the
 * server's store, so it sees frames before any subscriber is back) lacks
 * exactly what the tap counted as dropped, plus at most what it counted
 * as in doubt, with no repeats, and that a steering command sent after the
 * restart is applied and acknowledged. With a small outage buffer the drops
 * are real and counted. The figures are printed (`tap restart figures:`).
 *
 * Needs nats-server and python3 with torch.
 */
import assert from "node:assert/strict";
import { findPythonWithTorch } from "../support/python.ts";
import { connectTapBus } from "../src/tap/connect.ts";
import { Tap } from "../src/tap/tap.ts";
import { ackOf, D, framesAfter, gaps, HOOK, MODEL, witness } from "./helpers/tap_restart.ts";
import { freePort } from "../src/bus/nats_server.ts";
import { waitUntil } from "./helpers/stream.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const OUTAGE_MS = 1000;
/** Long enough for the plain subscriber (reconnect wait 20 ms + up to 100 ms jitter) to be back. */
const REPLAY_DELAY_MS = 300;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Gaps of what reached the server: in the stream or seen by the subscriber (repeats: the stream's). */
function reached(stored: number[], seen: number[], endSeq: number) {
  const union = new Set([...stored, ...seen]);
  return { missing: gaps([...union], endSeq).missing, repeated: gaps(stored, endSeq).repeated };
}

async function pythonRun(bufferMsgs: number | null, id: string) {
  const python = await findPythonWithTorch();
  if (!python) {
    throw new Error(
      "no python3 here imports torch: install it (apt-get install --no-install-recommends python3-torch)",
    );
  }
  const w = await witness();
  const dir = await Deno.makeTempDir({ prefix: "latentwatch-restart-" });
  const rid = `py-${id}`;
  try {
    const dead = `nats://127.0.0.1:${freePort()}`;
    await Deno.writeTextFile(
      `${dir}/cfg.json`,
      JSON.stringify({
        nats: [w.server.url, dead],
        model: MODEL,
        hook: HOOK,
        d_model: D,
        step_ms: 5,
        request_id: rid,
        nats_options: {
          reconnect_wait: 0.05,
          reconnect_wait_max: 0.25,
          replay_delay: REPLAY_DELAY_MS / 1000,
          ...(bufferMsgs !== null ? { reconnect_buffer_msgs: bufferMsgs } : {}),
        },
      }),
    );
    const child = new Deno.Command(python, {
      args: [
        `${ROOT}tests/python/tap_restart_gen.py`,
        `${ROOT}deploy/taps/python`,
        `${dir}/cfg.json`,
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const errText = new Response(child.stderr).text();
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    const next = async () => {
      while (!text.includes("\n")) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`tap_restart_gen.py ended early:\n${await errText}`);
        text += value;
      }
      const i = text.indexOf("\n");
      const line = text.slice(0, i);
      text = text.slice(i + 1);
      return JSON.parse(line);
    };
    assert.equal((await next()).ready, true);
    await sleep(400);
    const outage = await w.restart(OUTAGE_MS, rid);
    await framesAfter(w, rid, outage.lastBefore);
    const cmd = `steer-after-restart-${id}`;
    w.steer(cmd, rid, (w.lastPos.get(rid) ?? 0) + 10);
    const ack = await ackOf(w, cmd);
    await sleep(300);
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode("stop\n"));
    await writer.close();
    const result = await next();
    reader.releaseLock();
    const status = await child.status;
    assert.equal(status.code, 0, await errText);
    await w.observer.flush();
    await sleep(100);
    const s = result.stats as Record<string, number>;
    const storedSeqs = await w.stored(rid);
    const seenSeqs = w.seen.get(rid) ?? [];
    // reached the server: stored in the stream or delivered to the subscriber (the stream
    // stores asynchronously, so a frame the server took just before its shutdown may miss it)
    const stored = reached(storedSeqs, seenSeqs, result.end_seq);
    const seen = gaps(seenSeqs, result.end_seq);
    const figures = {
      tap: "python",
      outageMs: Math.round(outage.outageMs),
      tapOutageMs: s.nats_outage_ms,
      frames: result.end_seq + 1,
      publishedDuringOutage: s.nats_buffered + s.nats_dropped,
      buffered: s.nats_buffered,
      replayed: s.nats_replayed,
      dropped: s.nats_dropped,
      inDoubt: s.nats_in_doubt,
      storedMissing: gaps(storedSeqs, result.end_seq).missing,
      reachedServerMissing: stored.missing,
      subscriberMissing: seen.missing,
      subscriberSaw: (w.seen.get(rid) ?? []).length,
      ack: ack.status,
    };
    console.log(`tap restart figures: ${JSON.stringify(figures)}`);
    return { s, stored, seen, ack, figures, result };
  } finally {
    await w.close();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("python tap: a nats-server restart under a generating model loses only what it counts", async () => {
  const { s, stored, seen, ack, figures, result } = await pythonRun(null, "buffered");
  assert.equal(s.nats_disconnects, 1);
  assert.equal(s.nats_reconnects, 1);
  assert.ok(
    figures.publishedDuringOutage > 20,
    `frames during the outage: ${figures.publishedDuringOutage}`,
  );
  assert.equal(s.nats_dropped, 0);
  assert.equal(s.nats_replayed, s.nats_buffered, "every held frame was sent after the reconnect");
  assert.equal(stored.repeated, 0);
  assert.ok(
    stored.missing <= s.nats_in_doubt,
    `missing ${stored.missing} ≤ in doubt ${s.nats_in_doubt}`,
  );
  // the replay waited for the plain subscriber: it saw what reached the server
  assert.ok(seen.missing <= s.nats_in_doubt, `subscriber missed ${seen.missing}`);
  assert.equal(ack.status, "applied", `commands received ${s.commands_received}, acks ${s.acks}`);
  assert.equal(s.commands_applied, 1);
  assert.ok(result.changed_positions.length > 0, "the command changed the activations");
});

Deno.test("python tap: with a small outage buffer, the frames that did not fit are the ones missing", async () => {
  const { s, stored, ack } = await pythonRun(20, "small");
  assert.equal(ack.status, "applied", `commands received ${s.commands_received}, acks ${s.acks}`);
  assert.equal(s.nats_buffered, 20);
  assert.equal(s.nats_replayed, 20);
  assert.ok(s.nats_dropped > 20, `dropped ${s.nats_dropped}`);
  assert.equal(s.publish_errors, s.nats_dropped);
  assert.equal(stored.repeated, 0);
  assert.ok(
    stored.missing >= s.nats_dropped && stored.missing <= s.nats_dropped + s.nats_in_doubt,
    `missing ${stored.missing}: dropped ${s.nats_dropped} + at most ${s.nats_in_doubt} in doubt`,
  );
});

async function tsRun(maxMessages: number | undefined, id: string) {
  const w = await witness();
  const rid = `ts-${id}`;
  const bus = await connectTapBus([w.server.url, `nats://127.0.0.1:${freePort()}`], {
    name: "ts-tap",
    reconnectWaitMs: 100,
  });
  const tap = new Tap(bus, {
    model: MODEL,
    hook: HOOK,
    name: "ts-tap",
    outage: {
      replayDelayMs: REPLAY_DELAY_MS,
      ...(maxMessages === undefined ? {} : { maxMessages }),
    },
  });
  tap.enableSteering(D);
  let stop = false;
  let pos = 0;
  let changed = 0;
  const loop = (async () => {
    while (!stop) {
      const acts = Float32Array.from({ length: D }, (_, i) => Math.sin(pos + i));
      const raw = acts.slice();
      await tap.step(rid, pos, acts, 1, D, { phase: "decode" });
      if (acts.some((v, i) => v !== raw[i])) changed++;
      pos++;
      await sleep(5);
    }
  })();
  try {
    await sleep(400);
    const outage = await w.restart(OUTAGE_MS, rid);
    await framesAfter(w, rid, outage.lastBefore);
    const cmd = `ts-steer-after-restart-${id}`;
    w.steer(cmd, rid, pos + 10);
    const ack = await ackOf(w, cmd);
    await sleep(300);
    stop = true;
    await loop;
    tap.end(rid);
    await bus.flush();
    await w.observer.flush();
    await sleep(100);
    const s = { ...tap.outageStats };
    const endSeq = pos; // one frame per step, then the end marker
    const storedSeqs = await w.stored(rid);
    const seenSeqs = w.seen.get(rid) ?? [];
    const stored = reached(storedSeqs, seenSeqs, endSeq);
    const seen = gaps(seenSeqs, endSeq);
    const figures = {
      tap: "typescript",
      outageMs: Math.round(outage.outageMs),
      tapOutageMs: Math.round(s.outageMs),
      frames: endSeq + 1,
      publishedDuringOutage: s.buffered + s.dropped,
      buffered: s.buffered,
      replayed: s.replayed,
      dropped: s.dropped,
      inDoubt: s.inDoubt,
      storedMissing: gaps(storedSeqs, endSeq).missing,
      reachedServerMissing: stored.missing,
      subscriberMissing: seen.missing,
      subscriberSaw: (w.seen.get(rid) ?? []).length,
      ack: ack.status,
    };
    console.log(`tap restart figures: ${JSON.stringify(figures)}`);
    return { s, stored, seen, ack, changed, steering: { ...tap.steeringStats } };
  } finally {
    stop = true;
    await loop;
    tap.close();
    await bus.close();
    await w.close();
  }
}

Deno.test("ts tap: a nats-server restart under a generating loop loses only what it counts", async () => {
  const { s, stored, seen, ack, changed, steering } = await tsRun(undefined, "buffered");
  assert.equal(s.disconnects, 1);
  assert.equal(s.reconnects, 1);
  assert.ok(s.buffered > 20, `frames held during the outage: ${s.buffered}`);
  assert.equal(s.dropped, 0);
  assert.equal(s.replayed, s.buffered);
  assert.equal(stored.repeated, 0);
  assert.ok(stored.missing <= s.inDoubt, `missing ${stored.missing} ≤ in doubt ${s.inDoubt}`);
  assert.ok(seen.missing <= s.inDoubt, `subscriber missed ${seen.missing}`);
  assert.equal(ack.status, "applied", JSON.stringify(steering));
  assert.ok(changed > 0, "the command changed the activations");
});

Deno.test("ts tap: with a small outage buffer, the frames that did not fit are the ones missing", async () => {
  const { s, stored, ack, steering } = await tsRun(20, "small");
  assert.equal(ack.status, "applied", JSON.stringify(steering));
  assert.equal(s.buffered, 20);
  assert.equal(s.replayed, 20);
  assert.ok(s.dropped > 20, `dropped ${s.dropped}`);
  assert.equal(stored.repeated, 0);
  assert.ok(
    stored.missing >= s.dropped && stored.missing <= s.dropped + s.inDoubt,
    `missing ${stored.missing}: dropped ${s.dropped} + at most ${s.inDoubt} in doubt`,
  );
});

Deno.test("ts tap: a gated step during an outage does not wait, fails as configured, and its frame is held", async () => {
  const w = await witness();
  const bus = await connectTapBus(w.server.url, { name: "ts-gated", reconnectWaitMs: 50 });
  const make = (onTimeout: "open" | "closed") =>
    new Tap(bus, {
      model: MODEL,
      hook: HOOK,
      gate: { deadlineMs: 2000, onTimeout },
      outage: { replayDelayMs: REPLAY_DELAY_MS },
    });
  const open = make("open");
  const closed = make("closed");
  open.enableSteering(D);
  closed.enableSteering(D);
  try {
    await w.server.stop();
    await waitUntil(() => !bus.connected, "the tap's bus to see the outage");
    const acts = () => new Float32Array(D).fill(0.5);
    const t0 = performance.now();
    const a = await open.step("g-open", 0, acts(), 1, D);
    const b = await closed.step("g-closed", 0, acts(), 1, D);
    const waited = performance.now() - t0;
    assert.ok(waited < 500, `two gated steps took ${waited} ms (deadline 2000 ms each)`);
    assert.deepEqual([a.proceed, a.verdict], [true, "timeout"]);
    assert.deepEqual([b.proceed, b.verdict], [false, "timeout"]);
    assert.equal(open.outageStats.gateOffline, 1);
    assert.equal(open.steeringStats.failOpen, 1);
    assert.equal(closed.steeringStats.failClosed, 1);
    await w.server.restart();
    await waitUntil(
      () => w.seen.has("g-open") && w.seen.has("g-closed"),
      "the held gated frames after the restart",
      15_000,
    );
    assert.deepEqual([w.seen.get("g-open"), w.seen.get("g-closed")], [[0], [0]]);
    assert.equal(open.outageStats.replayed, 1);
  } finally {
    open.close();
    closed.close();
    await bus.close();
    await w.close();
  }
});
