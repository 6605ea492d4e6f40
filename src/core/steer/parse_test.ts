import assert from "node:assert/strict";
import {
  commandToWire,
  encodeAck,
  encodeCommand,
  encodeVerdict,
  vectorToBase64,
} from "./encode.ts";
import {
  isExpired,
  isPlainContinue,
  parseAck,
  parseCommand,
  parseVerdict,
  vectorFromBase64,
} from "./parse.ts";
import { SteerProtocolError } from "./protocol.ts";
import { assertEquals, assertThrows, command, f32 } from "./_test_utils.ts";

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

Deno.test("a verdict's bytes are the JSON of its wire object, keys in order, for awkward ids and reasons", () => {
  const ids = [
    "r",
    "req-1",
    'quote"and\\slash',
    "tab\there",
    "é✓ unicode",
    "\u2028line",
    "x".repeat(250),
  ];
  const reasons = [undefined, "", 'evaluation failed: "bad"\n', "\ud800 lone surrogate"];
  let checked = 0;
  for (const id of ids) {
    for (const reason of reasons) {
      for (
        const [seq, verdict, cmds] of [[0, "continue", []], [2 ** 40, "abort", [
          command({ kind: "abort" }),
        ]]] as const
      ) {
        const v = {
          requestId: id,
          seq,
          verdict,
          commands: [...cmds],
          ...(reason !== undefined ? { reason } : {}),
        };
        // the reference: JSON.stringify of the wire object, as docs/steering.md writes it
        const expected = JSON.stringify({
          v: 1,
          request_id: id,
          seq,
          verdict,
          commands: cmds.map(commandToWire),
          ...(reason !== undefined ? { reason } : {}),
        });
        assertEquals(
          new TextDecoder().decode(encodeVerdict(v)),
          new TextDecoder().decode(new TextEncoder().encode(expected)),
        );
        const back = parseVerdict(encodeVerdict(v));
        // JSON.stringify escapes a lone surrogate (\ud800): it comes back as it was
        assertEquals([back.requestId, back.seq, back.verdict, back.reason], [
          id,
          seq,
          verdict,
          reason,
        ]);
        checked++;
      }
    }
  }
  assertEquals(checked, 56);
});

Deno.test("isPlainContinue: true exactly for the bytes of a plain continue answering that step", () => {
  const enc = new TextEncoder();
  for (const id of ["r", "req-1", 'quote"and\\slash', "x".repeat(250), "é✓", "tab\there"]) {
    for (const seq of [0, 7, 2 ** 40]) {
      const plain = encodeVerdict({ requestId: id, seq, verdict: "continue", commands: [] });
      // the parser's reading of the same bytes decides what "plain continue" means
      const parsed = parseVerdict(plain);
      assertEquals([parsed.verdict, parsed.commands.length, parsed.reason], [
        "continue",
        0,
        undefined,
      ]);
      // ids outside printable ASCII are left to the parser
      const ascii = /^[\x20-\x7e]*$/.test(JSON.stringify(id));
      assert.equal(isPlainContinue(plain, id, seq), ascii, `${JSON.stringify(id)} seq ${seq}`);
      assertEquals(isPlainContinue(plain, id, seq + 1), false);
      assertEquals(isPlainContinue(plain, id + "x", seq), false);
      for (
        const other of [
          { requestId: id, seq, verdict: "abort" as const, commands: [] },
          { requestId: id, seq, verdict: "steer" as const, commands: [command({ kind: "abort" })] },
          { requestId: id, seq, verdict: "continue" as const, commands: [], reason: "" },
          { requestId: id, seq, verdict: "error" as const, commands: [], reason: "x" },
        ]
      ) assertEquals(isPlainContinue(encodeVerdict(other), id, seq), false);
      // the same verdict written another way (spaces): the parser reads it instead
      const spaced = enc.encode(
        JSON.stringify({ v: 1, request_id: id, seq, verdict: "continue", commands: [] }, null, 1),
      );
      assertEquals(isPlainContinue(spaced, id, seq), false);
      assertEquals(parseVerdict(spaced).verdict, "continue");
    }
  }
  // what the parser refuses is never taken as a plain continue: a seq that is no count, a long id
  for (const [id, seq] of [["r", -1], ["r", 1.5], ["x".repeat(257), 0]] as const) {
    const data = encodeVerdict({ requestId: id, seq, verdict: "continue", commands: [] });
    assertThrows(() => parseVerdict(data), SteerProtocolError, "steering");
    assertEquals(isPlainContinue(data, id, seq), false);
  }
});
