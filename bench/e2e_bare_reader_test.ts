/**
 * The paired rows' bare subscriber against a real nats-server and the real
 * load generator: it hands back every frame of the monitor's model, each with
 * its own publish time, and none of the floor's.
 */
import assert from "node:assert/strict";
import { connectNatsBus } from "../src/bus/nats_bus.ts";
import { findNatsServer } from "../src/bus/nats_server.ts";
import { tapSubjectFilter } from "../src/core/frame/subjects.ts";
import { BareReader } from "./e2e_bare_reader.ts";
import { BENCH_HOOK, BENCH_MODEL, FLOOR_MODEL, hostNowMs } from "./e2e_load.ts";
import { LoadGenerator } from "./e2e_load_process.ts";
import { startBenchBroker } from "./harness.ts";

Deno.test({
  name:
    "bare reader: every frame of the monitor's model, with its publish time, none of the floor's",
  ignore: (await findNatsServer()) === null,
  fn: async () => {
    const broker = await startBenchBroker();
    const bus = await connectNatsBus({ url: broker.url, name: "bare-reader-test" });
    const gen = await LoadGenerator.start(broker.url);
    let reader: BareReader | null = null;
    try {
      reader = await BareReader.start(broker.url);
      // what this test reads itself, beside the reader: the publish times
      const seen: number[] = [];
      bus.subscribe(tapSubjectFilter(BENCH_MODEL, BENCH_HOOK), (m) => {
        seen.push(Number(m.headers["Lw-Meta-sent"]));
      });
      await bus.flush();
      const rate = 64 * 16 * 10; // 640 frames a second
      const monitored = await gen.run({ cmd: "open", rate, seconds: 0.3 }, Date.now() + 20_000);
      const floor = await gen.run(
        { cmd: "open", rate, seconds: 0.1, model: FLOOR_MODEL },
        Date.now() + 20_000,
      );
      assert.ok(floor.frames > 10, `floor frames ${floor.frames}`);
      const deadline = Date.now() + 10_000;
      while (seen.length < monitored.frames && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 10));
      }
      await bus.flush();
      const stoppedAt = hostNowMs();
      const stopping = reader;
      reader = null;
      const { pairs, overflow } = await stopping.stop();
      assert.equal(overflow, 0);
      assert.equal(pairs.length / 2, monitored.frames);
      const sent = Array.from({ length: pairs.length / 2 }, (_, i) => pairs[2 * i]);
      assert.deepEqual(sent.toSorted((a, b) => a - b), seen.toSorted((a, b) => a - b));
      for (let i = 0; i < pairs.length; i += 2) {
        // one host clock: received after published, before the reader was stopped
        assert.ok(
          pairs[i + 1] >= pairs[i] - 0.001,
          `frame ${i / 2}: ${pairs[i]} → ${pairs[i + 1]}`,
        );
        assert.ok(pairs[i + 1] <= stoppedAt, `frame ${i / 2} received after the stop`);
      }
    } finally {
      await reader?.stop().catch(() => {}); // a failed assertion leaves no child behind
      await gen.quit();
      await bus.close();
      await broker.stop();
    }
  },
});

Deno.test("bare reader: a child that never says ready is a BareReaderError naming what came", async () => {
  // no nats-server at this port: the child never connects, so it never says ready
  await assert.rejects(
    () => BareReader.start("nats://127.0.0.1:1", { readyMs: 1500 }),
    (e: Error) =>
      e.name === "BareReaderError" &&
      /expected "ready" .*found (its end|nothing in 1500 ms)/.test(e.message),
  );
});
