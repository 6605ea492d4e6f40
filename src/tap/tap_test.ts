import assert from "node:assert/strict";
import type { Bus, BusMessage } from "../bus/bus.ts";
import { MemoryBus } from "../bus/memory_bus.ts";
import { encodedBlockOf } from "../bus/header_template.ts";
import { encodeHeaderBlock } from "../bus/nats_headers.ts";
import { decodeFrame } from "../core/frame/decode.ts";
import { type Frame, FrameError } from "../core/frame/format.ts";
import { FrameTooLargeError, Tap } from "./tap.ts";

/** A MemoryBus with a subscriber that decodes every tap frame. */
function setup(maxPayload = 1024 * 1024) {
  const bus = new MemoryBus({ maxPayload });
  const frames: Frame[] = [];
  const subjects: string[] = [];
  const sizes: number[] = [];
  bus.subscribe("latentwatch.tap.v1.>", (m: BusMessage) => {
    subjects.push(m.subject);
    sizes.push(m.data.byteLength);
    frames.push(decodeFrame(m.subject, m.headers, m.data));
  });
  return { bus, frames, subjects, sizes };
}

const pick = (f: Frame) => [f.position, f.seq, f.tokens, [...f.data]];

Deno.test("tap: one call that fits is one frame with every field", () => {
  const { bus, frames, subjects } = setup();
  const tap = new Tap(bus, { model: "gpt2", hook: "blocks.6.hook_resid_post" });
  const acts = new Float32Array([1, 2, 3, 4, 5, 6]);
  const sent = tap.publish("req-1", 5, acts, 3, 2, {
    tokenIds: [7, 8, 9],
    tokenText: ["a", "b", "c"],
    phase: "prefill",
    tenant: "acme",
    traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
  });
  assert.equal(sent, 1);
  assert.deepEqual(subjects, ["latentwatch.tap.v1.gpt2.blocks_6_hook_resid_post.0"]);
  const f = frames[0];
  assert.deepEqual(pick(f), [5, 0, 3, [1, 2, 3, 4, 5, 6]]);
  assert.equal(f.model, "gpt2");
  assert.equal(f.hook, "blocks.6.hook_resid_post");
  assert.equal(f.requestId, "req-1");
  assert.equal(f.dtype, "f32");
  assert.equal(f.dModel, 2);
  assert.deepEqual(f.tokenIds, [7, 8, 9]);
  assert.deepEqual(f.tokenText, ["a", "b", "c"]);
  assert.equal(f.phase, "prefill");
  assert.equal(f.tenant, "acme");
  assert.equal(f.traceparent, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  assert.equal(f.endOfRequest, false);
});

Deno.test("tap: splits by tokens under max payload, headers included", () => {
  // Headers of model "m", hook "h", request "r", f32, with one-digit Lw-Pos, Lw-Seq and
  // shape "n,2" take 122 bytes on the wire; a two-digit Lw-Pos takes 123. A token is 8 bytes.
  // maxPayload 146 = 122 + 3·8: three tokens while Lw-Pos has one digit, then two.
  const { bus, frames, sizes } = setup(146);
  const tap = new Tap(bus, { model: "m", hook: "h" });
  const acts = Float32Array.from({ length: 14 }, (_, i) => i);
  assert.equal(tap.publish("r", 8, acts, 7, 2), 3);
  assert.deepEqual(frames.map(pick), [
    [8, 0, 3, [0, 1, 2, 3, 4, 5]],
    [11, 1, 2, [6, 7, 8, 9]],
    [13, 2, 2, [10, 11, 12, 13]],
  ]);
  assert.deepEqual(sizes, [24, 16, 16]);
});

Deno.test("tap: each frame carries its own slice of token ids and text", () => {
  // 122 bytes of base headers + "Lw-Token-Ids: 10,11" (16 + 5) + 'Lw-Token-Text: ["a","b"]'
  // (17 + 9) + 2 tokens · 8 bytes = 185 ≤ 190; three tokens would need 200.
  const { bus, frames } = setup(190);
  const tap = new Tap(bus, { model: "m", hook: "h" });
  const acts = Float32Array.from({ length: 10 }, (_, i) => i / 2);
  const n = tap.publish("r", 0, acts, 5, 2, {
    tokenIds: [10, 11, 12, 13, 14],
    tokenText: ["a", "b", "c", "d", "e"],
  });
  assert.equal(n, 3);
  assert.deepEqual(frames.map((f) => [f.position, f.tokenIds, f.tokenText]), [
    [0, [10, 11], ["a", "b"]],
    [2, [12, 13], ["c", "d"]],
    [4, [14], ["e"]],
  ]);
  assert.deepEqual([...frames[2].data], [4, 4.5]);
});

Deno.test("tap: seq runs across calls and the end marker; end frees the request", () => {
  const { bus, frames } = setup();
  const tap = new Tap(bus, { model: "m", hook: "h", dtype: "bf16" });
  tap.publish("r", 0, new Float32Array([1, 2, 3, 4]), 2, 2, { tenant: "t1" });
  tap.publish("r", 2, new Float32Array([5, 6]), 1, 2, { phase: "decode", tenant: "t1" });
  assert.equal(tap.openRequests, 1);
  tap.end("r");
  assert.equal(tap.openRequests, 0);
  tap.end("r"); // already ended: nothing sent
  tap.end("never-seen");
  assert.deepEqual(frames.map((f) => [f.position, f.seq, f.tokens, f.endOfRequest]), [
    [0, 0, 2, false],
    [2, 1, 1, false],
    [3, 2, 0, true],
  ]);
  const end = frames[2];
  assert.equal(end.dModel, 2);
  assert.equal(end.data.length, 0);
  assert.equal(end.tenant, "t1");
  tap.publish("r", 0, new Float32Array([1, 2]), 1, 2);
  assert.equal(frames[3].seq, 0);
  assert.equal(tap.publish("r", 1, new Float32Array(0), 0, 2), 0);
  assert.equal(frames.length, 4);
});

Deno.test("tap: f16 and bf16 values arrive rounded to nearest even", () => {
  const { bus, frames } = setup();
  // f16: 0.1 -> 0x2e66 = 0.0999755859375; 1 + 2^-11 ties to 1; 65504 is the largest f16
  new Tap(bus, { model: "m", hook: "h", dtype: "f16" })
    .publish("a", 0, new Float32Array([0.1, 1 + 2 ** -11, 65504, -3]), 2, 2);
  // bf16: 0.1 -> 0x3dcd = 0.10009765625; 1 + 2^-8 ties to 1; 1 + 3·2^-8 ties to 1.015625
  new Tap(bus, { model: "m", hook: "h", dtype: "bf16" })
    .publish("b", 0, new Float32Array([0.1, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 3]), 2, 2);
  assert.equal(frames[0].dtype, "f16");
  assert.deepEqual([...frames[0].data], [0.0999755859375, 1, 65504, -3]);
  assert.equal(frames[1].dtype, "bf16");
  assert.deepEqual([...frames[1].data], [0.10009765625, 1, 1.015625, 3]);
});

Deno.test("tap: a token that cannot fit throws RangeError and sends nothing", () => {
  // one f32 token of width 2 at Lw-Pos 0 needs 122 + 8 = 130 bytes
  const { bus, frames } = setup(129);
  const tap = new Tap(bus, { model: "m", hook: "h" });
  assert.throws(
    () => tap.publish("r", 0, new Float32Array(4), 2, 2),
    (err: unknown) => {
      assert.ok(err instanceof FrameTooLargeError);
      assert.ok(err instanceof RangeError);
      assert.match(err.message, /at most 129 bytes .*found 130 bytes .*headers 122 \+ payload 8/);
      return true;
    },
  );
  // fits without text, but the third token's text is too long: no frame at all is sent
  const big = setup(300);
  const tap2 = new Tap(big.bus, { model: "m", hook: "h" });
  assert.throws(
    () =>
      tap2.publish("r", 0, new Float32Array(6), 3, 2, {
        tokenText: ["a", "b", "x".repeat(200)],
      }),
    FrameTooLargeError,
  );
  assert.equal(big.frames.length, 0);
  assert.equal(frames.length, 0);
  assert.equal(tap2.openRequests, 0);
});

Deno.test("tap: bad input is refused before anything is sent", () => {
  const { bus, frames } = setup();
  const tap = new Tap(bus, { model: "m", hook: "h" });
  assert.throws(() => tap.publish("r", 0, new Float32Array(5), 2, 2), FrameError);
  assert.throws(
    () => tap.publish("r", 0, new Float32Array(4), 2, 2, { tokenIds: [1] }),
    /tokenIds: expected 2 entries/,
  );
  assert.throws(() => tap.publish("", 0, new Float32Array(4), 2, 2), FrameError);
  assert.throws(() => tap.publish("r", -1, new Float32Array(4), 2, 2), /Lw-Pos/);
  assert.throws(
    () => tap.publish("r", 0, new Float32Array([1, NaN, 1, 1]), 2, 2),
    /NaN at token 0 \(position 0\), element 1/,
  );
  assert.throws(() => new Tap(bus, { model: "", hook: "h" }), FrameError);
  assert.throws(() => new Tap(bus, { model: "m", hook: "h", partitions: 0 }), RangeError);
  // a gate deadline no timer can hold (Infinity, past 2³¹−1 ms) is refused, as 0 is
  for (const deadlineMs of [0, Number.NaN, Infinity, 2 ** 31]) {
    assert.throws(
      () => new Tap(bus, { model: "m", hook: "h", gate: { deadlineMs, onTimeout: "open" } }),
      /tap gate: expected \{ deadlineMs in \(0, 2147483647\]/,
      String(deadlineMs),
    );
  }
  new Tap(bus, { model: "m", hook: "h", gate: { deadlineMs: 2 ** 31 - 1, onTimeout: "open" } });
  assert.equal(frames.length, 0);
});

Deno.test("tap: requests are spread over partitions by FNV-1a of the id", () => {
  const { bus, subjects } = setup();
  const tap = new Tap(bus, { model: "m", hook: "h", partitions: 4 });
  // FNV-1a("a") = 0xe40c292c ≡ 0 (mod 4); FNV-1a("ü") = 0x119dd44a ≡ 2 (mod 4)
  tap.publish("a", 0, new Float32Array(1), 1, 1);
  tap.publish("ü", 0, new Float32Array(1), 1, 1);
  tap.end("ü");
  assert.deepEqual(subjects, [
    "latentwatch.tap.v1.m.h.0",
    "latentwatch.tap.v1.m.h.2",
    "latentwatch.tap.v1.m.h.2",
  ]);
});

Deno.test("tap: f32 activations are copied, so the caller may reuse its buffer", () => {
  const sent: Uint8Array[] = [];
  const recording: Bus = {
    maxPayload: 1 << 20,
    connected: true,
    publish: (_s, data) => void sent.push(data),
    subscribe: () => ({ unsubscribe() {}, active: true }),
    ensureStream: () => Promise.resolve(),
    publishDurable: () => Promise.reject(new Error("unused")),
    request: () => Promise.reject(new Error("unused")),
    flush: () => Promise.resolve(),
    close: () => Promise.resolve(),
  };
  const acts = new Float32Array([1]);
  new Tap(recording, { model: "m", hook: "h" }).publish("r", 0, acts, 1, 1);
  acts[0] = 2;
  assert.deepEqual([...sent[0]], [0, 0, 0x80, 0x3f]); // 1.0f little-endian
  // decode-step copies share slabs: every one keeps its own values past the slabs' ends
  const tap = new Tap(recording, { model: "m", hook: "h" });
  const row = new Float32Array(768);
  for (let s = 0; s < 40; s++) {
    row.fill(s + 0.5);
    tap.publish("q", s, row, 1, 768);
  }
  row.fill(-1);
  for (let s = 0; s < 40; s++) {
    const got = sent[1 + s];
    const values = new Float32Array(got.slice().buffer);
    assert.equal(values.length, 768);
    assert.ok(values.every((v) => v === s + 0.5), `step ${s}`);
  }
});

Deno.test("tap: open requests are bounded; the stalest unended request is forgotten", () => {
  const bus = new MemoryBus();
  const tap = new Tap(bus, { model: "m", hook: "h", maxOpenRequests: 2 });
  const row = new Float32Array([1, 2]);
  tap.publish("a", 0, row, 1, 2);
  tap.publish("b", 0, row, 1, 2);
  tap.publish("a", 1, row, 1, 2); // a is now the most recent
  tap.publish("c", 0, row, 1, 2); // evicts b, the stalest
  assert.equal(tap.openRequests, 2);
  assert.equal(tap.evictedRequests, 1);
  const seen: string[] = [];
  bus.subscribe(">", (m) => seen.push(m.headers["Lw-Request-Id"]));
  tap.end("b"); // forgotten: sends nothing
  tap.end("a");
  assert.deepEqual(seen, ["a"]);
});

/** A MemoryBus that also keeps, for each publish, the header block a template attached (if any). */
class BlockKeepingBus extends MemoryBus {
  readonly blocks: Array<{ headers: Record<string, string>; block?: Uint8Array }> = [];
  override publish(subject: string, data: Uint8Array, headers?: Record<string, string>): void {
    if (headers) this.blocks.push({ headers, block: encodedBlockOf(headers) });
    super.publish(subject, data, headers);
  }
}

Deno.test("tap: decode steps sent from the request's header template decode to their own position and seq", () => {
  const bus = new BlockKeepingBus();
  const frames: Frame[] = [];
  bus.subscribe("latentwatch.tap.v1.>", (m: BusMessage) => {
    frames.push(decodeFrame(m.subject, m.headers, m.data));
  });
  const tap = new Tap(bus, { model: "m", hook: "h" });
  tap.publish("r", 0, new Float32Array(6), 3, 2, { phase: "prefill", tokenIds: [1, 2, 3] });
  const steps: Array<[number, string | undefined]> = [];
  for (let pos = 3; pos < 120; pos++) {
    // the phase changes once in the middle: its frames go back to frameHeaders
    const phase = pos === 60 ? "prefill" : "decode";
    tap.publish("r", pos, new Float32Array([pos, -pos]), 1, 2, { phase, meta: { k: "v" } });
    steps.push([pos, phase]);
  }
  tap.end("r");
  assert.deepEqual(
    frames.slice(1, -1).map((f) => [f.position, f.seq, f.phase, f.meta?.k, [...f.data]]),
    steps.map(([pos, phase], i) => [pos, i + 1, phase, "v", [pos, -pos]]),
  );
  assert.deepEqual(frames.at(-1)!.endOfRequest, true);
  assert.equal(frames.at(-1)!.seq, steps.length + 1);
  // the template path ran: every decode step from the third like one on carried a block, and
  // each block is what encodeHeaderBlock writes for its record (the NATS bus sends it as is)
  const decode = bus.blocks.slice(1, -1);
  const withBlock = decode.map((b, i) => [steps[i][0], b.block !== undefined]);
  assert.deepEqual(
    withBlock.filter(([, has]) => !has).map(([pos]) => pos),
    [3, 4, 60, 61, 62],
    "the first two decode steps, and the changed phase's step and the two after it",
  );
  for (const b of decode.filter((b) => b.block)) {
    assert.deepEqual(b.block, encodeHeaderBlock(b.headers));
  }
});
