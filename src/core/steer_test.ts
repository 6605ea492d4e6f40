import assert from "node:assert/strict";
import { referenceEncode } from "./reference_encoder.ts";
import { randomSae } from "../formats/random_sae.ts";
import {
  applyOp,
  commandToWire,
  encodeAck,
  encodeCommand,
  encodeVerdict,
  isExpired,
  latentVectors,
  parseAck,
  parseCommand,
  parseVerdict,
  readLatent,
  resolveSteerAction,
  steerableProblem,
  steerAckSubject,
  type SteerCommand,
  SteerProtocolError,
  SteerResolveError,
  steerSubject,
  vectorFromBase64,
  vectorToBase64,
} from "./steer.ts";

const f32 = (...v: number[]) => new Float32Array(v);
const assertEquals = (a: unknown, b: unknown) => assert.deepEqual(a, b);
const assertAlmostEquals = (a: number, b: number, tol: number) =>
  assert.ok(Math.abs(a - b) <= tol, `expected ${b} ± ${tol}, found ${a}`);

/** Run `fn`, expect it to throw an instance of `cls` whose message contains `part`; return the error. */
function assertThrows<E extends Error>(
  fn: () => unknown,
  cls: new (...args: never[]) => E,
  part: string,
): E {
  try {
    fn();
  } catch (err) {
    assert.ok(
      err instanceof cls,
      `expected ${cls.name}, found ${(err as Error).name}: ${(err as Error).message}`,
    );
    assert.ok(
      err.message.includes(part),
      `expected a message containing ${JSON.stringify(part)}, found ${JSON.stringify(err.message)}`,
    );
    return err;
  }
  throw new assert.AssertionError({
    message: `expected ${cls.name} containing ${JSON.stringify(part)}, nothing thrown`,
  });
}

function command(op: SteerCommand["op"], extra: Partial<SteerCommand> = {}): SteerCommand {
  return {
    id: "c1",
    requestId: "req-1",
    model: "m",
    hook: "blocks.0",
    dModel: 2,
    fromPosition: 4,
    untilPosition: null,
    issuedAtMs: 1000,
    expiresAtMs: 6000,
    op,
    ...extra,
  };
}

Deno.test("steer subjects: tokens as for tap subjects, acks on their own prefix", () => {
  assertEquals(
    steerSubject("google/gemma-2-2b", "blocks.6.hook_resid_post", 3),
    "latentwatch.steer.v1.google_gemma-2-2b.blocks_6_hook_resid_post.3",
  );
  assertEquals(steerAckSubject("gpt2", "blocks.6"), "latentwatch.steer-ack.v1.gpt2.blocks_6");
  assertThrows(() => steerSubject("m", "h", -1), RangeError, "partition");
});

Deno.test("vectors: base64 of little-endian f32, hand-checked bytes", () => {
  // 1.0f = 00 00 80 3f, -2.0f = 00 00 00 c0
  assertEquals(vectorToBase64(f32(1, -2)), btoa("\x00\x00\x80\x3f\x00\x00\x00\xc0"));
  assertEquals([...vectorFromBase64(vectorToBase64(f32(0.5, 3))!, 2, "v")], [0.5, 3]);
  assertThrows(
    () => vectorFromBase64("AACAPw==", 2, "op.vector"),
    SteerProtocolError,
    "2 f32 values (8 bytes",
  );
  assertThrows(() => vectorFromBase64("%%%", 1, "op.vector"), SteerProtocolError, "valid base64");
  // NaN (00 00 c0 7f) is refused
  assertThrows(
    () => vectorFromBase64(btoa("\x00\x00\xc0\x7f"), 1, "op.vector"),
    SteerProtocolError,
    "finite",
  );
});

Deno.test("clamp: the latent reads `value` afterwards along its direction (hand-computed)", () => {
  // w = [1, 0], b = -1, threshold 0; x = [3, 5] → pre 2 → a 2; value 0.5; d = [1, 1]
  const x = f32(3, 5);
  const op = {
    kind: "clamp" as const,
    value: 0.5,
    latent: { sae: "s", index: 0 },
    read: { w: f32(1, 0), b: -1, threshold: 0 },
    direction: f32(1, 1),
  };
  assert.ok(applyOp(op, x, 0, 2));
  // x + (0.5 − 2)·[1, 1] = [1.5, 3.5]
  assertEquals([...x], [1.5, 3.5]);
  // an inactive latent is raised to the value too: x = [0, 0] → pre −1 → a 0
  const y = f32(0, 0);
  applyOp(op, y, 0, 2);
  assertEquals([...y], [0.5, 0.5]);
});

Deno.test("jumprelu read-out: below the threshold the latent is 0", () => {
  const read = { w: f32(1, 0), b: 0, threshold: 2.5 };
  assertEquals(readLatent(read, f32(2, 7)), 0);
  assertEquals(readLatent(read, f32(3, 7)), 3);
});

Deno.test("ablate removes a·d; add adds scale·v; cap limits the projection (hand-computed)", () => {
  const read = { w: f32(0, 1), b: 0, threshold: 0 };
  const x = f32(1, 4, /* row 1 */ 2, 2);
  assert.ok(
    applyOp(
      { kind: "ablate", latent: { sae: "s", index: 1 }, read, direction: f32(0.5, 0.5) },
      x,
      1,
      2,
    ),
  );
  // row 1: a = 2 → [2 − 1, 2 − 1]; row 0 untouched
  assertEquals([...x], [1, 4, 1, 1]);
  applyOp({ kind: "add", scale: -2, vector: f32(1, 0.25) }, x, 0, 2);
  assertEquals([...x.subarray(0, 2)], [-1, 3.5]);
  const c = f32(3, 4);
  const u = f32(0.6, 0.8); // p = 1.8 + 3.2 = 5
  assert.ok(applyOp({ kind: "cap", max: 2, direction: u }, c, 0, 2));
  assertAlmostEquals(c[0], 3 - 3 * 0.6, 1e-6);
  assertAlmostEquals(c[1], 4 - 3 * 0.8, 1e-6);
  // below the cap nothing changes
  assertEquals(applyOp({ kind: "cap", max: 10, direction: u }, c, 0, 2), false);
  assertEquals(applyOp({ kind: "abort" }, c, 0, 2), false);
});

Deno.test("commands round-trip through the wire, snake_case as documented", () => {
  const cmd = command(
    {
      kind: "clamp",
      value: 0,
      latent: { sae: "s", index: 3 },
      read: { w: f32(1, 2), b: -0.25, threshold: 0.5 },
      direction: f32(0.5, -1),
    },
    { rule: "r", monitor: "mon", alertId: "a1", untilPosition: 9 },
  );
  const wire = commandToWire(cmd);
  assertEquals(wire.request_id, "req-1");
  assertEquals(wire.from_position, 4);
  assertEquals(wire.until_position, 9);
  assertEquals(wire.alert_id, "a1");
  const back = parseCommand(encodeCommand(cmd), { model: "m", hook: "blocks.0", dModel: 2 });
  assertEquals(back.op.kind, "clamp");
  if (back.op.kind !== "clamp") throw new Error("unreachable");
  assertEquals([...back.op.read.w], [1, 2]);
  assertEquals([...back.op.direction], [0.5, -1]);
  assertEquals({ ...back, op: null }, { ...cmd, op: null });
  for (
    const op of [
      { kind: "abort", reason: "policy" },
      { kind: "add", scale: 2, vector: f32(1, 1) },
      { kind: "cap", max: 1, direction: f32(1, 0) },
    ] as const
  ) {
    assertEquals(parseCommand(encodeCommand(command(op))).op.kind, op.kind);
  }
});

Deno.test("malformed commands are refused naming the field, what was expected and found", () => {
  const good = commandToWire(command({ kind: "add", scale: 1, vector: f32(1, 1) }));
  const cases: Array<[Record<string, unknown>, string]> = [
    [{ ...good, v: 2 }, "v: expected 1, found 2"],
    [{ ...good, id: "" }, "id: expected a non-empty string"],
    [{ ...good, request_id: 7 }, "request_id: expected a non-empty string"],
    [{ ...good, from_position: -1 }, "from_position: expected an integer ≥ 0, found -1"],
    [{ ...good, until_position: 4 }, "until_position: expected an integer ≥ 5, found 4"],
    [{ ...good, expires_at_ms: 10 }, "expires_at_ms: expected an integer ≥ 1000"],
    [
      { ...good, op: { kind: "explode" } },
      'op.kind: expected one of clamp, ablate, add, cap, abort, found the string "explode"',
    ],
    [
      { ...good, op: { kind: "add", scale: "x", vector: vectorToBase64(f32(1, 1)) } },
      "op.scale: expected a finite number",
    ],
    [
      { ...good, op: { kind: "add", scale: 1, vector: vectorToBase64(f32(1)) } },
      "op.vector: expected 2 f32 values",
    ],
    [
      { ...good, op: { kind: "cap", max: 1, direction: vectorToBase64(f32(3, 4)) } },
      "op.direction: expected a unit vector",
    ],
    [
      { ...good, op: { kind: "clamp", value: 0, direction: vectorToBase64(f32(1, 0)) } },
      "op.read: expected an object",
    ],
  ];
  for (const [raw, message] of cases) {
    const err = assertThrows(() => parseCommand(raw), SteerProtocolError, message);
    assert.ok(err.message.startsWith("steering ("), err.message);
  }
  assertThrows(
    () => parseCommand(new TextEncoder().encode("{not json")),
    SteerProtocolError,
    "payload: expected a UTF-8 JSON",
  );
  assertThrows(
    () => parseCommand(good, { dModel: 4 }),
    SteerProtocolError,
    "d_model: expected 4 (the hook's width), found 2",
  );
  assertThrows(
    () => parseCommand(good, { hook: "blocks.1" }),
    SteerProtocolError,
    'hook: expected "blocks.1"',
  );
});

Deno.test("expiry: a command received after expires_at_ms is expired", () => {
  const cmd = command({ kind: "abort" });
  assertEquals(isExpired(cmd, 6000), false);
  assertEquals(isExpired(cmd, 6001), true);
});

Deno.test("acks and verdicts round-trip; bad status refused", () => {
  const ack = parseAck(
    encodeAck({ id: "c1", requestId: "r", status: "applied", position: 8, tap: "t" }),
  );
  assertEquals(ack, { id: "c1", requestId: "r", status: "applied", position: 8, tap: "t" });
  const bad = new TextEncoder().encode(
    JSON.stringify({ v: 1, id: "c", request_id: "r", status: "done" }),
  );
  assertThrows(() => parseAck(bad), SteerProtocolError, "status: expected one of applied");
  const v = parseVerdict(
    encodeVerdict({
      requestId: "r",
      seq: 2,
      verdict: "abort",
      commands: [command({ kind: "abort" })],
    }),
  );
  assertEquals(v.verdict, "abort");
  assertEquals(v.commands[0].op, { kind: "abort" });
});

Deno.test("latentVectors: the read-out agrees with the reference encoder on the latent's value", () => {
  for (const architecture of ["standard", "jumprelu"] as const) {
    const sae = randomSae({ architecture, dIn: 16, dSae: 24, seed: 11 });
    if (architecture === "jumprelu") sae.threshold = new Float32Array(24).fill(0.05);
    sae.applyBDecToInput = true;
    const x = new Float32Array(16).map((_, j) => Math.sin(j + 1));
    const ref = referenceEncode(sae, x, 1)[0];
    for (const index of [0, 5, 23]) {
      const { read, direction } = latentVectors(sae, "s", index);
      const at = [...ref.indices].indexOf(index);
      assertAlmostEquals(readLatent(read, x), at >= 0 ? ref.values[at] : 0, 1e-5);
      assertEquals([...direction], [...sae.wDec.subarray(index * 16, index * 16 + 16)]);
    }
  }
});

Deno.test("steering by latent is refused where the read-out is not affine", () => {
  const sae = randomSae({ architecture: "standard", dIn: 4, dSae: 8, seed: 1 });
  assertEquals(steerableProblem(sae), null);
  assert.ok(steerableProblem({ ...sae, normalize: "layer_norm" })!.includes("layer_norm"));
  assert.ok(steerableProblem({ ...sae, kind: "transcoder" })!.includes("transcoder"));
  const saes = new Map([["s", { ...sae, normalize: "constant_norm_rescale" as const }]]);
  assertThrows(
    () => resolveSteerAction({ kind: "clamp", sae: "s", latent: 0, value: 0 }, saes, 4),
    SteerResolveError,
    "SAE s: cannot steer by latent",
  );
  assertThrows(
    () => resolveSteerAction({ kind: "ablate", sae: "x", latent: 0 }, saes, 4),
    SteerResolveError,
    'found "x"',
  );
  assertThrows(
    () =>
      resolveSteerAction(
        { kind: "clamp", sae: "s", latent: 0, value: 0 },
        new Map([["s", sae]]),
        5,
      ),
    SteerResolveError,
    "expected d_in 5",
  );
  // a literal vector works with any SAE; cap's direction is made unit length
  const cap = resolveSteerAction(
    { kind: "cap", max: 1, direction: { vector: [3, 4, 0, 0] } },
    saes,
    4,
  );
  assert.ok(cap.kind === "cap");
  assertEquals([...cap.direction].map((v) => Math.round(v * 1e6) / 1e6), [0.6, 0.8, 0, 0]);
  assertThrows(
    () => resolveSteerAction({ kind: "add", scale: 1, direction: { vector: [1] } }, saes, 4),
    SteerResolveError,
    "expected a vector of 4 values",
  );
});

Deno.test("a verdict with one malformed command keeps the others and returns the bad one", () => {
  const good = commandToWire(command({ kind: "abort" }));
  const bad = { ...commandToWire(command({ kind: "abort" })), id: "c2", from_position: -3 };
  const data = new TextEncoder().encode(
    JSON.stringify({ v: 1, request_id: "req-1", seq: 0, verdict: "abort", commands: [good, bad] }),
  );
  const v = parseVerdict(data);
  assertEquals(v.commands.map((c) => c.id), ["c1"]);
  assertEquals(v.rejected?.map((e) => [e.commandId, e.field]), [["c2", "from_position"]]);
  const wrong = new TextEncoder().encode(JSON.stringify({ v: 3, request_id: "r", seq: 0 }));
  assertThrows(() => parseVerdict(wrong), SteerProtocolError, "v: expected 1, found 3");
});
