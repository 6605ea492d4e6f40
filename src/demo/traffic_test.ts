import assert from "node:assert/strict";
import { connectNatsBus } from "../bus/nats_bus.ts";
import { startNatsServer } from "../bus/nats_server.ts";
import { partitionOf, tapSubjectFilter } from "../core/frame/subjects.ts";
import { generateTraffic } from "./traffic.ts";

Deno.test({
  name: "traffic: the demo prompts as frames on every partition, each on its request's",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const server = await startNatsServer();
    const bus = await connectNatsBus({ url: server.url });
    try {
      const seen: { subject: string; request: string }[] = [];
      bus.subscribe(tapSubjectFilter("sim-gpt", "blocks.6.hook_resid_post"), (m) => {
        seen.push({ subject: m.subject, request: m.headers["Lw-Request-Id"] });
      });
      await bus.flush();
      const sent = await generateTraffic({
        url: server.url,
        partitions: 4,
        rate: 50,
        seconds: 1,
        frameTokens: 4,
      });
      await bus.flush();
      await new Promise((r) => setTimeout(r, 200));
      assert.ok(sent.requests >= 20, `${sent.requests} requests`);
      // every frame and every end marker arrived
      assert.equal(seen.length, sent.frames + sent.requests);
      for (const s of seen) {
        assert.equal(Number(s.subject.split(".").pop()), partitionOf(s.request, 4), s.subject);
      }
      assert.equal(new Set(seen.map((s) => s.subject)).size, 4);
    } finally {
      await bus.close();
      await server.stop();
    }
  },
});
