import assert from "node:assert/strict";
import { headers as natsHeaders, MsgHdrsImpl } from "@nats-io/transport-node";
import { Rng } from "../core/random.ts";
import {
  encodeHeaderBlock,
  HeaderEncodeError,
  headerStatus,
  parseHeaderBlock,
  put,
} from "./nats_headers.ts";

const enc = new TextEncoder();
const block = (...lines: (string | Uint8Array)[]) => {
  const parts = [
    enc.encode("NATS/1.0\r\n"),
    ...lines.flatMap((l) => [typeof l === "string" ? enc.encode(l) : l, enc.encode("\r\n")]),
    enc.encode("\r\n"),
  ];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) out.set(p, (o += p.length) - p.length);
  return out;
};

Deno.test("header block: names keep their spelling, values are trimmed UTF-8", () => {
  const p = parseHeaderBlock(block("Lw-Model:  modèle ", "lw-seq:3", "__proto__: x"));
  assert.equal(p.problem, undefined);
  assert.deepEqual(Object.keys(p.headers), ["Lw-Model", "lw-seq", "__proto__"]);
  assert.equal(p.headers["Lw-Model"], "modèle");
  assert.equal(p.headers["lw-seq"], "3");
  assert.equal(Object.getOwnPropertyDescriptor(p.headers, "__proto__")?.value, "x");
  assert.deepEqual(p.repeated, []);
});

Deno.test("header block: a name given twice is listed once in repeated, first value kept", () => {
  const p = parseHeaderBlock(block("Lw-Request-Id: a", "Lw-Request-Id: b", "Lw-Request-Id: c"));
  assert.deepEqual(p.repeated, ["Lw-Request-Id"]);
  assert.equal(p.headers["Lw-Request-Id"], "a");
});

Deno.test("header block: bad names, encodings and lines are reported, the rest still read", () => {
  const cases: [Uint8Array, string, RegExp][] = [
    [
      block("Lw-Request-Id: r", "Bad Name: x"),
      "header_name",
      /line 3: .*"Bad Name" \(byte 0x20 at 3\)/,
    ],
    [block("Lw-Request-Id: r", "Modèle: x"), "header_name", /byte 0xc3 at 3/],
    [block("Lw-Request-Id: r", ": x"), "header_name", /an empty name/],
    [
      block("Lw-Request-Id: r", new Uint8Array([0x41, 0x3a, 0xff])),
      "header_encoding",
      /A: expected a UTF-8 value/,
    ],
    [block("Lw-Request-Id: r", "no colon"), "header_syntax", /expected "Name: value"/],
    [block("Lw-Request-Id: r", "A: b\nc"), "header_syntax", /bare CR or LF/],
  ];
  for (const [b, reason, detail] of cases) {
    const p = parseHeaderBlock(b);
    assert.equal(p.problem?.reason, reason);
    assert.match(p.problem!.detail, detail);
    assert.equal(p.headers["Lw-Request-Id"], "r", "readable lines are kept");
  }
  const noStatus = parseHeaderBlock(enc.encode("HTTP/1.1\r\nA: b\r\n\r\n"));
  assert.equal(noStatus.problem?.reason, "header_syntax");
  assert.deepEqual(parseHeaderBlock(new Uint8Array(0)), { headers: {}, repeated: [] });
});

Deno.test("header block: a huge name does not overflow the call stack", () => {
  const p = parseHeaderBlock(block("X".repeat(300_000) + ": v"));
  assert.equal(p.problem, undefined);
  assert.equal(Object.keys(p.headers)[0].length, 300_000);
});

Deno.test("header block: names of Object.prototype's members become own headers, the prototype untouched", () => {
  const p = parseHeaderBlock(
    block("constructor: a", "toString: b", "hasOwnProperty: c", "__proto__: d"),
  );
  assert.equal(p.problem, undefined);
  assert.deepEqual(Object.keys(p.headers), [
    "constructor",
    "toString",
    "hasOwnProperty",
    "__proto__",
  ]);
  for (
    const [k, v] of [["constructor", "a"], ["toString", "b"], ["hasOwnProperty", "c"], [
      "__proto__",
      "d",
    ]]
  ) {
    assert.equal(Object.getOwnPropertyDescriptor(p.headers, k)?.value, v, k);
  }
  assert.equal(Object.getPrototypeOf(p.headers), Object.prototype);
  assert.equal(({} as Record<string, unknown>).toString, Object.prototype.toString);
});

Deno.test("header block: short ASCII, long ASCII and UTF-8 values read the same as a UTF-8 decoder", () => {
  const values = [
    "",
    " 1796367096937.458 ",
    "x".repeat(255),
    "y".repeat(256),
    "z".repeat(257) + " ",
    "a\tb",
    "~!{}\x7f",
    "naïve",
    "🙂".repeat(70),
  ];
  const p = parseHeaderBlock(block(...values.map((v, i) => `H${i}: ${v}`)));
  assert.equal(p.problem, undefined);
  values.forEach((v, i) => assert.equal(p.headers[`H${i}`], v.trim(), `value ${i}`));
  // a high byte in a short value still goes through the strict decoder
  const bad = parseHeaderBlock(block(new Uint8Array([0x48, 0x3a, 0x20, 0x61, 0xff, 0x62])));
  assert.equal(bad.problem?.reason, "header_encoding");
});

Deno.test("header block: names that hash alike, and more names than the name cache holds, read as sent", () => {
  // "Aa" and "BB" hash alike under the name cache's hash (31·h + byte, as Java's String.hashCode)
  for (let round = 0; round < 3; round++) {
    const p = parseHeaderBlock(block("Aa: 1", "BB: 2", "Ab: 3"));
    assert.deepEqual(p.headers, { Aa: "1", BB: "2", Ab: "3" });
    assert.deepEqual(parseHeaderBlock(block("BB: 4")).headers, { BB: "4" });
  }
  // past the cache's bound it is emptied and refilled: every name still reads right
  for (let i = 0; i < 1500; i++) {
    const name = `N-${i.toString(36)}`;
    assert.deepEqual(parseHeaderBlock(block(`${name}: ${i}`, "Lw-Seq: 7")).headers, {
      [name]: String(i),
      "Lw-Seq": "7",
    });
  }
});

Deno.test("header block: ASCII values are trimmed of exactly what String.prototype.trim removes", () => {
  const values = ["\v\f 1 \f\v", "\t\t", " \x1c x \x1f ", "\x0b", " a b ", "\x7f "];
  const p = parseHeaderBlock(block(...values.map((v, i) => `H${i}:${v}`)));
  assert.equal(p.problem, undefined);
  values.forEach((v, i) =>
    assert.equal(p.headers[`H${i}`], v.trim(), `value ${JSON.stringify(v)}`)
  );
  // the same values beside a UTF-8 one (the block is then not read as one string)
  const mixed = parseHeaderBlock(block(...values.map((v, i) => `H${i}:${v}`), "U: naïve "));
  assert.deepEqual(mixed.headers, { ...p.headers, U: "naïve" });
});

Deno.test("headerStatus: the status code on the first line, and none where there is none", () => {
  const raw = (s: string) => enc.encode(s);
  assert.equal(headerStatus(raw("NATS/1.0 503\r\n\r\n")), 503);
  assert.equal(headerStatus(raw("NATS/1.0 408 Request Timeout\r\n\r\n")), 408);
  assert.equal(
    headerStatus(raw("NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 0\r\n\r\n")),
    100,
  );
  assert.equal(headerStatus(raw("NATS/1.0\r\nLw-Seq: 1\r\n\r\n")), undefined);
  assert.equal(headerStatus(raw("NATS/1.0 50\r\n\r\n")), undefined, "two digits");
  assert.equal(headerStatus(raw("NATS/1.0 5031\r\n\r\n")), undefined, "four digits");
  assert.equal(headerStatus(raw("NATS/1.0 5x3\r\n\r\n")), undefined);
  assert.equal(headerStatus(raw("NATS/2.0 503\r\n\r\n")), undefined, "another version");
  assert.equal(headerStatus(raw("")), undefined);
});

Deno.test("encodeHeaderBlock: the NATS client's bytes for the same headers, read back by parseHeaderBlock", () => {
  const cases: Record<string, string>[] = [
    { "Lw-Seq": "7" },
    {
      "Lw-Request-Id": "  padded  ",
      "Lw-Meta-sent": "1764900000000.125",
      "a!#$%&'*+-.^_`|~z": "x",
    },
    { "Lw-Meta-note": "naïve ✓ 日本", empty: "" },
  ];
  for (const headers of cases) {
    const ours = encodeHeaderBlock(headers);
    const ref = natsHeaders();
    for (const [k, v] of Object.entries(headers)) ref.set(k, v);
    assert.deepEqual(new TextDecoder().decode(ours), ref.toString());
    const back = parseHeaderBlock(ours);
    assert.equal(back.problem, undefined);
    assert.deepEqual(
      back.headers,
      Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, v.trim()])),
    );
  }
  // an own __proto__ name is a header like any other
  const proto: Record<string, string> = {};
  put(proto, "__proto__", "p");
  assert.deepEqual(parseHeaderBlock(encodeHeaderBlock(proto)).headers, proto);
  assert.equal(new TextDecoder().decode(encodeHeaderBlock({})), "NATS/1.0\r\n\r\n");
});

Deno.test("encodeHeaderBlock: names and values that cannot go on the wire are refused, saying which", () => {
  const bad: [Record<string, string>, RegExp][] = [
    [{ "": "x" }, /non-empty name/],
    [{ "Bad Name": "x" }, /printable ASCII.*" " at 3/],
    [{ "Colon:Name": "x" }, /":" at 5/],
    [{ "Näme": "x" }, /"ä" at 1/],
    [{ "Lw-Seq": "1\r\nLw-Evil: 1" }, /without CR or LF/],
    [{ "Lw-Seq": "1\n" }, /without CR or LF/],
  ];
  for (const [headers, message] of bad) {
    assert.throws(() => encodeHeaderBlock(headers), (err: unknown) => {
      assert.ok(err instanceof HeaderEncodeError, String(err));
      assert.match(err.message, message);
      return true;
    });
  }
});

Deno.test("parseHeaderBlock: the NATS client's own reading of random valid blocks (first value of a repeated name)", () => {
  const rng = new Rng(23);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rng.uniform() * xs.length)];
  const names = ["Lw-Seq", "Lw-Request-Id", "lw-seq", "X", "a!#$%&'*+-.^_`|~z", "Lw-Meta-sent"];
  const values = ["", "1", "  padded  ", "a:b:c", "naïve ✓", "x y", "\t tab"];
  for (let t = 0; t < 500; t++) {
    const lines: string[] = [];
    const count = Math.floor(rng.uniform() * 8);
    for (let i = 0; i < count; i++) lines.push(`${pick(names)}:${pick(values)}`);
    const status = rng.uniform() < 0.2 ? " 503" : "";
    const text = `NATS/1.0${status}\r\n${lines.map((l) => `${l}\r\n`).join("")}\r\n`;
    const block = enc.encode(text);
    const ours = parseHeaderBlock(block);
    const ref = MsgHdrsImpl.decode(block);
    assert.equal(ours.problem, undefined, text);
    const want: Record<string, string> = {};
    const repeated: string[] = [];
    for (const k of ref.keys()) {
      const vs = ref.values(k);
      want[k] = vs[0];
      if (vs.length > 1) repeated.push(k);
    }
    assert.deepEqual(ours.headers, want, JSON.stringify(text));
    assert.deepEqual([...ours.repeated].sort(), repeated.sort(), JSON.stringify(text));
  }
});
