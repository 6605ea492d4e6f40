/**
 * Read-chunk reuse against a real nats-server: a borrowing subscription's
 * chunks are read into again and every message it reads is intact; a chunk
 * holding a message that a non-borrowing subscription keeps is never reused,
 * however much borrowing traffic shares the connection.
 */
import { deepStrictEqual as assertEquals, default as assert } from "node:assert/strict";
import { connectNatsBus, type NatsBus } from "./nats_bus.ts";
import { findNatsServer, startNatsServer } from "./nats_server.ts";

const ignore = (await findNatsServer()) === null;

/** A frame-sized payload (49 400 bytes, as 16 tokens of 768 f32 and headers). */
const SIZE = 49_400;

/** Deterministic bytes for message `i`: a message read from a reused chunk too early shows. */
function pattern(i: number): Uint8Array {
  const out = new Uint8Array(SIZE);
  for (let j = 0; j < SIZE; j++) out[j] = (i * 131 + j * 7 + (j >> 8)) & 255;
  return out;
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let j = 0; j < a.length; j++) if (a[j] !== b[j]) return false;
  return true;
}

/** Publish `count` messages, every `keepEvery`-th on `kept.<i>` and the rest on `lent.<i>`. */
async function run(reader: NatsBus, writer: NatsBus, count: number, keepEvery: number) {
  let lentOk = 0, lentBad = 0;
  const keptViews = new Map<number, Uint8Array>();
  const all = Promise.withResolvers<void>();
  const seen = () => lentOk + lentBad + keptViews.size;
  reader.subscribe(
    "lend.lent.*",
    (msg) => {
      const i = Number(msg.subject.split(".")[2]);
      // read while the handler runs, as a borrowing handler must
      if (same(msg.data, pattern(i))) lentOk++;
      else lentBad++;
      if (seen() === count) all.resolve();
    },
    undefined,
    { borrows: true },
  );
  reader.subscribe("lend.kept.*", (msg) => {
    // kept as read, never copied: the chunk under it must never be read into again
    keptViews.set(Number(msg.subject.split(".")[2]), msg.data);
    if (seen() === count) all.resolve();
  });
  await reader.flush();
  const timer = setTimeout(() => all.reject(new Error(`only ${seen()} of ${count}`)), 30_000);
  for (let i = 0; i < count; i++) {
    writer.publish(`lend.${i % keepEvery === keepEvery - 1 ? "kept" : "lent"}.${i}`, pattern(i));
    if (i % 50 === 49) await writer.flush();
  }
  await writer.flush();
  await all.promise.finally(() => clearTimeout(timer));
  const keptBad = [...keptViews].filter(([i, view]) => !same(view, pattern(i))).map(([i]) => i);
  return { lentOk, lentBad, kept: keptViews.size, keptBad };
}

/** A server, a reader on `transport` and a writer, for `fn`; all stopped after. */
async function withBuses(
  transport: "deno" | "node",
  fn: (reader: NatsBus, writer: NatsBus) => Promise<void>,
): Promise<void> {
  const server = await startNatsServer();
  const reader = await connectNatsBus({ url: server.url, name: "reader", transport });
  const writer = await connectNatsBus({ url: server.url, name: "writer", transport: "deno" });
  try {
    await fn(reader, writer);
  } finally {
    await reader.close();
    await writer.close();
    await server.stop();
  }
}

Deno.test({
  name: "chunk lending: a borrowing subscription's read chunks are reused, every message intact",
  ignore,
  fn: () =>
    withBuses("deno", async (reader, writer) => {
      const r = await run(reader, writer, 400, Infinity);
      assertEquals({ lentOk: r.lentOk, lentBad: r.lentBad }, { lentOk: 400, lentBad: 0 });
      const stats = reader.readChunks!;
      // ~20 MB through 256 KiB chunks: nearly all from the pool
      assert(stats.reused >= 40, `expected most chunks reused, found ${JSON.stringify(stats)}`);
      assert(stats.allocated <= 4, `expected a few chunks allocated: ${JSON.stringify(stats)}`);
    }),
});

Deno.test({
  name: "chunk lending: a chunk under a message that a plain subscription keeps is never reused",
  ignore,
  fn: () =>
    withBuses("deno", async (reader, writer) => {
      const r = await run(reader, writer, 600, 25);
      assertEquals(r.keptBad, [], "kept messages were written over by later reads");
      assertEquals({ lentBad: r.lentBad, kept: r.kept }, { lentBad: 0, kept: 24 });
      const stats = reader.readChunks!;
      assert(
        stats.kept >= 10,
        `expected chunks under kept messages left: ${JSON.stringify(stats)}`,
      );
      assert(stats.reused >= 20, `expected the other chunks reused: ${JSON.stringify(stats)}`);
    }),
});

Deno.test({
  name: "chunk lending: the Node transport reports no read chunks and still delivers",
  ignore,
  fn: () =>
    withBuses("node", async (reader, writer) => {
      const r = await run(reader, writer, 40, Infinity);
      assertEquals(r.lentBad, 0);
      assertEquals(reader.readChunks, null);
    }),
});
