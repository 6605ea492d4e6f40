/**
 * The load generator against a real nats-server: the floor's frames go to a
 * model the monitor does not read, and the monitor's requests run on without
 * gaps around them.
 */
import assert from "node:assert/strict";
import { connectNatsBus } from "../src/bus/nats_bus.ts";
import { findNatsServer } from "../src/bus/nats_server.ts";
import { decodeFrame } from "../src/core/frame/decode.ts";
import { tapSubjectFilter } from "../src/core/frame/subjects.ts";
import { BENCH_HOOK, BENCH_MODEL, FLOOR_MODEL, LOAD_SHAPE } from "./e2e_load.ts";
import { LoadGenerator } from "./e2e_load_process.ts";
import { startBenchBroker } from "./harness.ts";

Deno.test({
  name:
    "load generator: floor frames name FLOOR_MODEL, are not counted as published, leave no gap; lags when asked",
  ignore: (await findNatsServer()) === null,
  fn: async () => {
    const broker = await startBenchBroker();
    const bus = await connectNatsBus({ url: broker.url, name: "load-test" });
    const gen = await LoadGenerator.start(broker.url);
    try {
      // what a monitor of BENCH_MODEL sees: each request's frames, decoded, in order
      const seen = new Map<
        string,
        { model: string; position: number; seq: number; tokens: number }[]
      >();
      const floorFrames: string[] = [];
      bus.subscribe(tapSubjectFilter(BENCH_MODEL, BENCH_HOOK), (m) => {
        const f = decodeFrame(m.subject, m.headers, m.data);
        const list = seen.get(f.requestId) ?? [];
        list.push({ model: f.model, position: f.position, seq: f.seq, tokens: f.tokens });
        seen.set(f.requestId, list);
      });
      bus.subscribe(tapSubjectFilter(FLOOR_MODEL, BENCH_HOOK), (m) => {
        floorFrames.push(decodeFrame(m.subject, m.headers, m.data).model);
      });
      await bus.flush();
      const rate = 64 * 16 * 10; // 640 frames a second
      const first = await gen.run({ cmd: "open", rate, seconds: 0.2 }, Date.now() + 20_000);
      const floor = await gen.run(
        { cmd: "open", rate, seconds: 0.2, model: FLOOR_MODEL },
        Date.now() + 20_000,
      );
      const last = await gen.run(
        { cmd: "open", rate, seconds: 0.2, lags: true },
        Date.now() + 20_000,
      );
      // a closed loop after it goes back to the monitor's model too (no credit needed: the
      // window is larger than the phase)
      const closed = await gen.run(
        { cmd: "saturation", tokens: 64 * 16 * 4, outstanding: 1 << 20 },
        Date.now() + 20_000,
      );
      const deadline = Date.now() + 10_000;
      const total = () => [...seen.values()].reduce((a, l) => a + l.length, 0);
      while (
        (total() < first.frames + last.frames + closed.frames ||
          floorFrames.length < floor.frames) &&
        Date.now() < deadline
      ) await new Promise((r) => setTimeout(r, 10));

      assert.ok(floor.frames > 50, `floor frames ${floor.frames}`);
      // every frame's lag only when asked, and the p99 is theirs (to the µs they are rounded to)
      assert.equal(first.lagsMs, undefined);
      assert.equal(last.lagsMs?.length, last.frames);
      const sortedLags = [...last.lagsMs!].sort((a, b) => a - b);
      const p99 = sortedLags[Math.floor(0.99 * sortedLags.length)];
      assert.ok(Math.abs(p99 - last.lagP99Ms) <= 0.0005, `p99 ${p99} against ${last.lagP99Ms}`);
      assert.equal(floorFrames.length, floor.frames);
      assert.ok(floorFrames.every((m) => m === FLOOR_MODEL));
      // published counts the monitor's model only: the floor phase adds nothing to it
      assert.equal(floor.published, first.published);
      assert.equal(last.published - floor.published, last.frames * LOAD_SHAPE.tokensPerFrame);
      assert.equal(closed.published - last.published, closed.frames * LOAD_SHAPE.tokensPerFrame);
      assert.equal(total(), first.frames + last.frames + closed.frames);
      // every request's positions and frame counters run on, frame after frame, across the
      // floor's phase
      for (const [id, frames] of seen) {
        let next = 0;
        for (const [i, f] of frames.entries()) {
          assert.equal(f.model, BENCH_MODEL);
          assert.equal(f.position, next, `${id}: a gap at ${next}`);
          assert.equal(f.seq, i, `${id}: frame ${i} numbered ${f.seq}`);
          next += f.tokens;
        }
      }
    } finally {
      await gen.quit();
      await bus.close();
      await broker.stop();
    }
  },
});
