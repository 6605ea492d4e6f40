import assert from "node:assert/strict";
import { MemoryBus } from "../../bus/memory_bus.ts";
import { resolveSinkOptions } from "./options.ts";
import { JetStreamSink } from "./sink.ts";
import { JetStreamSinkError } from "./types.ts";

const stream = { name: "A", subjects: ["alerts.t"], duplicateWindowMs: 60_000 };

Deno.test("jetstream sink options: defaults fill in what is not set, the rest is kept", () => {
  const o = resolveSinkOptions({ subject: "alerts.t", stream, maxQueue: 5 });
  assert.equal(o.maxQueue, 5);
  assert.equal(o.maxInFlight, 32);
  assert.equal(o.initialBackoffMs, 100);
  assert.equal(o.maxBackoffMs, 5000);
  assert.equal(o.pollMs, 100);
  assert.equal(o.subject, "alerts.t");
  assert.equal(o.stream, stream);
});

Deno.test("jetstream sink options: a setting out of range is refused with what was expected", () => {
  const refused = [
    [{ maxQueue: 0 }, "jetstream sink maxQueue: expected ≥ 1, found 0"],
    [{ maxInFlight: NaN }, "jetstream sink maxInFlight: expected ≥ 1, found NaN"],
    [
      { maxBackoffMs: 40_000 },
      "jetstream sink stream.duplicateWindowMs: expected ≥ 2 × maxBackoffMs = 80000 ms " +
      "(the retry horizon), found 60000 ms",
    ],
  ] as const;
  for (const [opts, message] of refused) {
    const check = (err: unknown) => err instanceof JetStreamSinkError && err.message === message;
    assert.throws(() => resolveSinkOptions({ subject: "alerts.t", stream, ...opts }), check);
    assert.throws(
      () => new JetStreamSink(new MemoryBus(), { subject: "alerts.t", stream, ...opts }),
      check,
    );
  }
});
