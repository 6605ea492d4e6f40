import assert from "node:assert/strict";
import { type BusMessage, BusRequestError, MAX_REQUEST_TIMEOUT_MS } from "../bus/bus.ts";
import { type SteerCommand, SteerProtocolError } from "../core/steer/protocol.ts";
import { awaitVerdict, checkGateOptions, readVerdict, type VerdictExpect } from "./gate.ts";

const expect: VerdictExpect = {
  model: "gpt2",
  hook: "blocks.6.hook_resid_post",
  dModel: 4,
  requestId: "req-2",
  seq: 3,
};

/** A verdict as the sidecar writes it (docs/steering.md), by hand. */
const wire = (v: Record<string, unknown>) =>
  new TextEncoder().encode(JSON.stringify({ v: 1, request_id: "req-2", seq: 3, ...v }));

const abortCommand = (id: string, extra: Record<string, unknown> = {}) => ({
  v: 1,
  id,
  request_id: "req-2",
  model: "gpt2",
  hook: "blocks.6.hook_resid_post",
  d_model: 4,
  from_position: 4,
  until_position: null,
  issued_at_ms: 1_000,
  expires_at_ms: 9e12,
  op: { kind: "abort", reason: "policy" },
  ...extra,
});

function collect() {
  const seen = {
    rejected: [] as SteerProtocolError[],
    received: [] as SteerCommand[],
    failed: [] as string[],
  };
  return {
    seen,
    handlers: {
      reject: (err: SteerProtocolError) => seen.rejected.push(err),
      receive: (cmd: SteerCommand) => seen.received.push(cmd),
      fail: (why: string) => seen.failed.push(why),
    },
  };
}

Deno.test("gate: options outside the deadline's range or with an unknown mode are refused", () => {
  for (const bad of [0, -1, Number.NaN, MAX_REQUEST_TIMEOUT_MS + 1]) {
    assert.throws(() => checkGateOptions({ deadlineMs: bad, onTimeout: "open" }), RangeError);
  }
  // @ts-expect-error: a mode the gate does not have
  assert.throws(() => checkGateOptions({ deadlineMs: 5, onTimeout: "maybe" }), /onTimeout/);
  const ok = { deadlineMs: MAX_REQUEST_TIMEOUT_MS, onTimeout: "closed" as const };
  assert.equal(checkGateOptions(ok), ok);
});

Deno.test("gate: a steer verdict's commands are received, a malformed one rejected", () => {
  const { seen, handlers } = collect();
  const data = wire({
    verdict: "abort",
    commands: [abortCommand("c-1"), abortCommand("c-2", { d_model: 8 })],
  });
  assert.equal(readVerdict(data, expect, handlers), "abort");
  assert.deepEqual(seen.received.map((c) => [c.id, c.fromPosition, c.op.kind]), [
    ["c-1", 4, "abort"],
  ]);
  assert.deepEqual(seen.rejected.map((e) => [e.commandId, e.field]), [["c-2", "d_model"]]);
  assert.deepEqual(seen.failed, []);
});

Deno.test("gate: an error verdict is a failure with the sidecar's reason", () => {
  const { seen, handlers } = collect();
  const data = wire({ verdict: "error", reason: "dropped: queue full", commands: [] });
  assert.equal(readVerdict(data, expect, handlers), "error");
  assert.deepEqual(seen.failed, ["sidecar could not evaluate the step: dropped: queue full"]);
});

Deno.test("gate: a verdict for another step is a protocol error", () => {
  const { seen, handlers } = collect();
  for (const other of [{ seq: 4 }, { request_id: "req-3" }]) {
    const data = wire({ verdict: "continue", commands: [], ...other });
    assert.throws(() => readVerdict(data, expect, handlers), SteerProtocolError);
  }
  assert.throws(
    () => readVerdict(wire({ verdict: "maybe", commands: [] }), expect, handlers),
    SteerProtocolError,
  );
  assert.deepEqual([seen.received.length, seen.rejected.length, seen.failed.length], [0, 0, 0]);
});

/** A reply as the bus resolves a request with it. */
const reply = (data: Uint8Array): Promise<BusMessage> =>
  Promise.resolve({ subject: "_INBOX.x", headers: {}, data });

Deno.test("gate: awaitVerdict reads continue, commands and errors, and never throws", async () => {
  const plain = new TextEncoder().encode(
    '{"v":1,"request_id":"req-2","seq":3,"verdict":"continue","commands":[]}',
  );
  const { seen, handlers } = collect();
  assert.deepEqual(await awaitVerdict(reply(plain), expect, handlers), {
    verdict: "continue",
    failure: "",
  });
  // the same answer for an earlier step is not this step's continue
  const stale = wire({ verdict: "continue", commands: [], seq: 2 });
  const late = await awaitVerdict(reply(stale), expect, handlers);
  assert.equal(late.verdict, "error");
  assert.match(late.failure, /request req-2 seq 3/);

  const abort = wire({ verdict: "abort", commands: [abortCommand("c-9")] });
  assert.deepEqual(await awaitVerdict(reply(abort), expect, handlers), {
    verdict: "abort",
    failure: "",
  });
  assert.deepEqual(seen.received.map((c) => c.id), ["c-9"]);

  const error = wire({ verdict: "error", reason: "encoder closed", commands: [] });
  assert.deepEqual(await awaitVerdict(reply(error), expect, handlers), {
    verdict: "error",
    failure: "sidecar could not evaluate the step: encoder closed",
  });

  const garbage = await awaitVerdict(
    reply(new TextEncoder().encode("{not json")),
    expect,
    handlers,
  );
  assert.equal(garbage.verdict, "error");
  assert.ok(garbage.failure.length > 0, "a malformed answer says why");
});

Deno.test("gate: awaitVerdict tells a timeout from other failures of the request", async () => {
  const { handlers } = collect();
  const timeout = new BusRequestError("timeout", "latentwatch.tap.v1.gpt2.x.0", 5);
  assert.deepEqual(await awaitVerdict(Promise.reject(timeout), expect, handlers), {
    verdict: "timeout",
    failure: timeout.message,
  });
  const none = new BusRequestError("no_responders", "latentwatch.tap.v1.gpt2.x.0", 5);
  assert.deepEqual(await awaitVerdict(Promise.reject(none), expect, handlers), {
    verdict: "error",
    failure: none.message,
  });
  const closed = await awaitVerdict(
    Promise.reject(new Error("connection closed")),
    expect,
    handlers,
  );
  assert.deepEqual(closed, { verdict: "error", failure: "connection closed" });
});
