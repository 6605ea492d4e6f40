/**
 * `trace publish` against a real nats-server, read back by a plain NATS
 * subscriber (the client library, not latentwatch's bus): the frames arrive
 * byte-identical to the trace records, in order, at about the asked rate or
 * recorded timing (loose bounds: speed belongs to the benches), and the
 * bounds stop it.
 */
import assert from "node:assert/strict";
import { connect, type Msg } from "@nats-io/transport-node";
import { startNatsServer } from "../bus/nats_server.ts";
import { connectNatsBus } from "../bus/nats_bus.ts";
import { writeExample } from "../demo/example_trace.ts";
import { runTraceCommand } from "../cli/trace.ts";
import { headerValue, type TraceRecord } from "./format.ts";
import { TraceReader } from "./reader.ts";
import { TraceWriter } from "./writer.ts";
import { passRequestId, publishTrace } from "./publish.ts";

const POLICIES = new URL("../../policies/demo.yaml", import.meta.url).pathname;

async function records(path: string): Promise<TraceRecord[]> {
  const out: TraceRecord[] = [];
  for await (const r of await TraceReader.open(path)) out.push({ ...r, data: r.data.slice() });
  return out;
}

/** Every message on `latentwatch.tap.>` with its headers as the client read them. */
async function subscriber(url: string) {
  const nc = await connect({ servers: url });
  const got: { subject: string; headers: Record<string, string>; data: Uint8Array; at: number }[] =
    [];
  nc.subscribe("latentwatch.tap.>", {
    callback: (_err, m: Msg) => {
      const headers: Record<string, string> = {};
      for (const k of m.headers?.keys() ?? []) headers[k] = m.headers!.get(k);
      got.push({
        subject: m.subject,
        headers,
        data: new Uint8Array(m.data),
        at: performance.now(),
      });
    },
  });
  await nc.flush();
  return { got, close: () => nc.close(), flush: () => nc.flush() };
}

async function settle(sub: { got: unknown[]; flush: () => Promise<void> }, n: number) {
  const deadline = Date.now() + 5000;
  while (sub.got.length < n && Date.now() < deadline) {
    await sub.flush();
    await new Promise((r) => setTimeout(r, 10));
  }
  await new Promise((r) => setTimeout(r, 50));
}

Deno.test("trace publish: frames arrive byte-identical and in order, at about the rate; loop and bounds", async () => {
  const server = await startNatsServer();
  const dir = await Deno.makeTempDir({ prefix: "lw-publish-" });
  const sub = await subscriber(server.url);
  const bus = await connectNatsBus({ url: server.url, probe: { intervalMs: 0 } });
  try {
    await writeExample(dir, POLICIES);
    const trace = `${dir}/demo.trace.gz`;
    const recs = await records(trace);
    assert.ok(recs.length > 40, `${recs.length} records`);

    // the whole trace once at 200 frames/s, through the CLI
    const t0 = performance.now();
    const code = await runTraceCommand([
      "publish",
      trace,
      "--url",
      server.url,
      "--rate",
      "200",
      "--quiet",
    ]);
    const took = (performance.now() - t0) / 1000;
    assert.equal(code, 0);
    await settle(sub, recs.length);
    assert.equal(sub.got.length, recs.length, "every record, none twice");
    sub.got.forEach((m, i) => {
      assert.equal(m.subject, recs[i].subject, `record ${i + 1} subject`);
      assert.deepStrictEqual(m.headers, recs[i].headers, `record ${i + 1} headers`);
      assert.deepStrictEqual(m.data, recs[i].data, `record ${i + 1} payload`);
    });
    const ideal = (recs.length - 1) / 200;
    assert.ok(took > ideal * 0.8 && took < ideal * 3 + 2, `${took} s for ${ideal} s at 200/s`);
    const spread = (sub.got.at(-1)!.at - sub.got[0].at) / 1000;
    assert.ok(spread > ideal * 0.5, `arrivals spread over ${spread} s, expected ~${ideal} s`);

    // looped and bounded by frames: exactly N, the second pass under new request ids
    sub.got.length = 0;
    const n = recs.length + 5;
    const s = await publishTrace(trace, bus, { rate: 5000, loop: true, maxFrames: n });
    await settle(sub, n);
    assert.equal(s.stoppedBy, "max-frames");
    assert.equal(s.frames, n);
    assert.equal(s.passes, 2);
    assert.equal(sub.got.length, n);
    assert.equal(s.bytes, sub.got.reduce((b, m) => b + m.data.byteLength, 0));
    for (let i = 0; i < 5; i++) {
      const m = sub.got[recs.length + i];
      const want = headerValue(recs[i].headers, "Lw-Request-Id")!;
      assert.equal(headerValue(m.headers, "Lw-Request-Id"), passRequestId(want, 2));
      assert.equal(passRequestId(want, 2), `${want}~2`);
      assert.deepStrictEqual(m.data, recs[i].data);
    }

    // bounded by time: a slow looped publish stops after max-seconds
    sub.got.length = 0;
    const t1 = performance.now();
    const timed = await publishTrace(trace, bus, { rate: 20, loop: true, maxSeconds: 0.5 });
    const secs = (performance.now() - t1) / 1000;
    assert.equal(timed.stoppedBy, "max-seconds");
    assert.ok(secs >= 0.45 && secs < 2, `stopped after ${secs} s`);
    assert.ok(timed.frames >= 5 && timed.frames <= 12, `${timed.frames} frames in 0.5 s at 20/s`);
    await settle(sub, timed.frames);
    assert.equal(sub.got.length, timed.frames);

    // an abort stops it too
    const stop = new AbortController();
    setTimeout(() => stop.abort(), 200);
    const aborted = await publishTrace(trace, bus, { rate: 10, loop: true, signal: stop.signal });
    assert.equal(aborted.stoppedBy, "signal");
    assert.ok(aborted.elapsedMs < 1500, `${aborted.elapsedMs} ms`);

    // bad options and servers: clear errors
    await assert.rejects(publishTrace(trace, bus, { rate: 0 }), /rate: expected a number > 0/);
    await assert.rejects(
      publishTrace(trace, bus, { rate: 5, timing: "recorded" }),
      /expected either a rate or the recorded timing, found "both"/,
    );
    assert.equal(await runTraceCommand(["publish", trace, "--url", server.url, "--rate", "x"]), 2);
    assert.equal(await runTraceCommand(["publish", `${dir}/no.trace`, "--url", server.url]), 1);
  } finally {
    await bus.close();
    await sub.close();
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("trace publish --timing recorded: the recorded gaps, divided by --speed", async () => {
  const server = await startNatsServer();
  const dir = await Deno.makeTempDir({ prefix: "lw-publish-" });
  const sub = await subscriber(server.url);
  const bus = await connectNatsBus({ url: server.url, probe: { intervalMs: 0 } });
  try {
    await writeExample(dir, POLICIES);
    const recs = (await records(`${dir}/demo.trace.gz`)).slice(0, 21);
    // the same frames re-recorded 40 ms apart, plus one 400 ms later
    const w = await TraceWriter.create(`${dir}/spaced.trace`, {
      monitor: "demo",
      model: "sim-gpt",
      hook: "blocks.6.hook_resid_post",
    });
    recs.forEach((r, i) => w.write(r, 1_000_000 + i * 40 + (i === 20 ? 400 : 0)));
    await w.close();
    const recorded = (19 * 40 + 440) / 1000; // 1.2 s from the first frame to the last
    const s = await publishTrace(`${dir}/spaced.trace`, bus, { timing: "recorded", speed: 2 });
    await settle(sub, 21);
    assert.equal(s.stoppedBy, "end");
    assert.equal(sub.got.length, 21);
    const secs = s.elapsedMs / 1000;
    assert.ok(secs > recorded / 2 * 0.8 && secs < recorded / 2 + 1, `${secs} s, ideal 0.6 s`);
    const gap = sub.got[20].at - sub.got[19].at;
    assert.ok(gap > 150 && gap < 600, `the long gap took ${gap} ms, ideal 220 ms`);
    sub.got.forEach((m, i) => assert.deepStrictEqual(m.data, recs[i].data));
  } finally {
    await bus.close();
    await sub.close();
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("trace publish through src/main.ts: progress once a second, then the summary", async () => {
  const server = await startNatsServer();
  const dir = await Deno.makeTempDir({ prefix: "lw-publish-" });
  const sub = await subscriber(server.url);
  try {
    await writeExample(dir, POLICIES);
    const main = new URL("../main.ts", import.meta.url).pathname;
    const { code, stderr } = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        main,
        "trace",
        "publish",
        `${dir}/demo.trace.gz`,
        "--url",
        server.url,
        "--rate",
        "10",
        "--loop",
        "--max-frames",
        "25",
      ],
      stdout: "null",
      stderr: "piped",
    }).output();
    const err = new TextDecoder().decode(stderr);
    assert.equal(code, 0, err);
    const progress = err.split("\n").filter((l) => /^trace publish: \d+ frames, /.test(l));
    assert.ok(progress.length >= 1 && progress.length <= 3, `progress lines:\n${err}`);
    assert.match(
      err,
      /trace publish: done \(max-frames\): 25 frames, [0-9.]+ MB, [0-9.]+ s, [0-9.]+ frames\/s/,
    );
    await settle(sub, 25);
    assert.equal(sub.got.length, 25);
  } finally {
    await sub.close();
    await server.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
