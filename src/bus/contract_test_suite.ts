/**
 * The contract every {@linkcode Bus} keeps, as a test suite each bus runs
 * (Hono-style shared tests): publish/subscribe with headers, request/reply
 * with its two failures (timeout, no responders) classified by
 * {@linkcode classifyBusError}, borrowing subscriptions, durable publishing
 * with dedup by message id
 * (and the classified failure when no stream captures the subject), and
 * close.
 *
 * @module
 */
import assert from "node:assert/strict";
import { type Bus, type BusMessage, BusRequestError, MAX_REQUEST_TIMEOUT_MS } from "./bus.ts";
import { classifyBusError } from "./errors.ts";

/** What {@linkcode runBusContract} needs to test one bus. */
export interface BusContract {
  /** Test names start with it, e.g. `memory`. */
  name: string;
  /** A connected bus; `stop` releases what it needs besides (a server). */
  newBus(): Promise<{ bus: Bus; stop(): Promise<void> }>;
  /** Skip the suite (a server binary missing); the reason is printed. */
  ignore?: string;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`expected ${what} within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * Register the contract tests for one bus.
 *
 * @example
 * ```ts
 * import { MemoryBus } from "./memory_bus.ts";
 * runBusContract({
 *   name: "memory",
 *   newBus: () => {
 *     const bus = new MemoryBus();
 *     return Promise.resolve({ bus, stop: () => Promise.resolve() });
 *   },
 * });
 * ```
 */
export function runBusContract(c: BusContract): void {
  const test = (what: string, fn: (bus: Bus) => Promise<void>) =>
    Deno.test({
      name: `bus contract: ${c.name}: ${what}`,
      ignore: c.ignore !== undefined,
      sanitizeOps: false,
      sanitizeResources: false,
      fn: async () => {
        const { bus, stop } = await c.newBus();
        try {
          await fn(bus);
        } finally {
          await bus.close();
          await stop();
        }
      },
    });

  test("publish reaches matching subscriptions, with headers, in order", async (bus) => {
    const got: BusMessage[] = [];
    const other: BusMessage[] = [];
    const sub = bus.subscribe("contract.ps.>", (m) => got.push(m));
    const off = bus.subscribe("contract.elsewhere", (m) => other.push(m));
    if ("flush" in bus) await (bus as { flush(): Promise<void> }).flush();
    bus.publish("contract.ps.a", enc.encode("one"), { "X-Trace": "t1" });
    bus.publish("contract.ps.b.c", enc.encode("two"));
    await until(() => got.length === 2, "both messages");
    assert.deepEqual(got.map((m) => [m.subject, dec.decode(m.data)]), [
      ["contract.ps.a", "one"],
      ["contract.ps.b.c", "two"],
    ]);
    assert.equal(got[0].headers["X-Trace"], "t1");
    assert.equal(other.length, 0);
    assert.equal(sub.active, true);
    sub.unsubscribe();
    off.unsubscribe();
    assert.equal(sub.active, false);
  });

  test("a borrowing subscription reads every message intact while its handler runs", async (bus) => {
    // frame-sized payloads, so a NATS connection goes through several read chunks
    const payload = (i: number) => new Uint8Array(49_400).fill(i + 1);
    const seen: number[][] = [];
    const kept: Uint8Array[] = [];
    const sub = bus.subscribe(
      "contract.borrow",
      (m) => {
        const want = payload(seen.length);
        seen.push([m.data.length, m.data.every((b, j) => b === want[j]) ? 1 : 0]);
      },
      undefined,
      { borrows: true },
    );
    const plain = bus.subscribe("contract.borrow", (m) => kept.push(m.data));
    if ("flush" in bus) await (bus as { flush(): Promise<void> }).flush();
    for (let i = 0; i < 40; i++) bus.publish("contract.borrow", payload(i));
    await until(() => seen.length === 40 && kept.length === 40, "40 messages to each");
    assert.deepEqual(seen, Array.from({ length: 40 }, () => [49_400, 1]));
    // a plain subscription on the same messages keeps its bytes however they were shared
    kept.forEach((d, i) => assert.ok(d.every((b) => b === i + 1), `plain message ${i}`));
    sub.unsubscribe();
    plain.unsubscribe();
  });

  test("request gets the reply", async (bus) => {
    const sub = bus.subscribe("contract.rr", (m) => {
      if (m.reply) bus.publish(m.reply, enc.encode(`re: ${dec.decode(m.data)}`));
    });
    if ("flush" in bus) await (bus as { flush(): Promise<void> }).flush();
    const reply = await bus.request("contract.rr", enc.encode("ping"), undefined, 2000);
    assert.equal(dec.decode(reply.data), "re: ping");
    sub.unsubscribe();
  });

  test("a request nobody listens to fails as no_responders", async (bus) => {
    const err = await bus.request("contract.nobody", enc.encode("?"), undefined, 2000).then(
      () => assert.fail("expected a rejection"),
      (e) => e,
    );
    assert.ok(err instanceof BusRequestError, `expected a BusRequestError, found ${err}`);
    assert.equal(err.kind, "no_responders");
    assert.equal(classifyBusError(err), "no_responders");
  });

  test("a request nobody answers fails as timeout", async (bus) => {
    const sub = bus.subscribe("contract.silent", () => {});
    if ("flush" in bus) await (bus as { flush(): Promise<void> }).flush();
    const t0 = performance.now();
    const err = await bus.request("contract.silent", enc.encode("?"), undefined, 150).then(
      () => assert.fail("expected a rejection"),
      (e) => e,
    );
    assert.ok(performance.now() - t0 < 2000);
    assert.ok(err instanceof BusRequestError, `expected a BusRequestError, found ${err}`);
    assert.equal(err.kind, "timeout");
    assert.equal(classifyBusError(err), "timeout");
    sub.unsubscribe();
  });

  test("a request with a timeout no timer can hold is refused, by rejecting", async (bus) => {
    const sub = bus.subscribe("contract.timeouts", (m) => {
      if (m.reply) bus.publish(m.reply, enc.encode("late?"));
    });
    if ("flush" in bus) await (bus as { flush(): Promise<void> }).flush();
    for (const timeoutMs of [0, -5, Number.NaN, Infinity, MAX_REQUEST_TIMEOUT_MS + 1]) {
      let pending: Promise<unknown> | undefined;
      assert.doesNotThrow(() => {
        pending = bus.request("contract.timeouts", enc.encode("?"), undefined, timeoutMs);
      });
      const err = await pending!.then(() => assert.fail(`expected ${timeoutMs} refused`), (e) => e);
      assert.ok(err instanceof RangeError, `${timeoutMs}: expected a RangeError, found ${err}`);
      assert.match(err.message, /timeout/);
    }
    // the largest one is taken (and answered at once)
    const ok = await bus.request(
      "contract.timeouts",
      enc.encode("?"),
      undefined,
      MAX_REQUEST_TIMEOUT_MS,
    );
    assert.equal(dec.decode(ok.data), "late?");
    sub.unsubscribe();
  });

  test("concurrent requests, answered out of order, each get their own reply", async (bus) => {
    const held: BusMessage[] = [];
    const sub = bus.subscribe("contract.held", (m) => {
      held.push(m);
      if (held.length < 8) return;
      // every request is in: answer them last to first
      for (const h of held.reverse()) {
        if (h.reply) bus.publish(h.reply, enc.encode(`re: ${dec.decode(h.data)}`));
      }
    });
    if ("flush" in bus) await (bus as { flush(): Promise<void> }).flush();
    const asks = Array.from({ length: 8 }, (_, i) => `q${i}`);
    const replies = await Promise.all(
      asks.map((q) => bus.request("contract.held", enc.encode(q), { "Lw-Q": q }, 5000)),
    );
    assert.deepEqual(replies.map((r) => dec.decode(r.data)), asks.map((q) => `re: ${q}`));
    assert.deepEqual(held.map((h) => h.headers["Lw-Q"]).sort(), [...asks].sort(), "headers sent");
    sub.unsubscribe();
  });

  test("durable publish is acknowledged once per message id", async (bus) => {
    const spec = { name: "CONTRACT", subjects: ["contract.durable.>"], duplicateWindowMs: 60_000 };
    await bus.ensureStream(spec);
    await bus.ensureStream(spec); // idempotent
    const a = await bus.publishDurable("contract.durable.x", enc.encode("a"), "id-1");
    const again = await bus.publishDurable("contract.durable.x", enc.encode("a"), "id-1");
    const b = await bus.publishDurable("contract.durable.x", enc.encode("b"), "id-2");
    assert.equal(a.stream, "CONTRACT");
    assert.equal(a.duplicate, false);
    assert.equal(again.duplicate, true);
    assert.equal(again.seq, a.seq);
    assert.equal(b.duplicate, false);
    assert.ok(b.seq > a.seq);
  });

  test("a durable publish no stream captures fails, classified as such", async (bus) => {
    const err = await bus.publishDurable("contract.nostream.x", enc.encode("a"), "id-3").then(
      () => assert.fail("expected a rejection"),
      (e) => e,
    );
    const kind = classifyBusError(err);
    assert.ok(
      kind === "no_responders" || kind === "stream_not_found",
      `expected no_responders or stream_not_found, found ${kind} (${err})`,
    );
  });

  test("close: not connected, and a publish after it fails as closed", async (bus) => {
    assert.equal(bus.connected, true);
    await bus.close();
    assert.equal(bus.connected, false);
    let err: unknown;
    try {
      bus.publish("contract.after", enc.encode("x"));
    } catch (e) {
      err = e;
    }
    assert.ok(err !== undefined, "expected publish after close to throw");
    assert.equal(classifyBusError(err), "closed");
    const asked = await bus.request("contract.after", enc.encode("?"), undefined, 1000).then(
      () => assert.fail("expected a request after close to fail"),
      (e) => e,
    );
    assert.equal(classifyBusError(asked), "closed", String(asked));
    await bus.close(); // twice is fine
  });
}
