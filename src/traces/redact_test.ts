import assert from "node:assert/strict";
import { decodeFrame } from "../core/frame/decode.ts";
import { encodeFrame } from "../core/frame/encode.ts";
import { readTrace } from "./reader.ts";
import { redactTokenTextHeader } from "./redact.ts";
import { TraceWriter } from "./writer.ts";

const HOOK = "blocks.6.hook_resid_post";
const SUBJECT = "latentwatch.tap.v1.sim-gpt.blocks_6_hook_resid_post.0";

function frameMsg(text: string[]) {
  const { headers, payload } = encodeFrame(
    {
      model: "sim-gpt",
      hook: HOOK,
      requestId: "r1",
      position: 0,
      seq: 0,
      dtype: "f32",
      tokenText: text,
    },
    new Float32Array(text.length * 2),
    text.length,
    2,
  );
  return { subject: SUBJECT, headers, data: payload };
}

async function sha16(text: string): Promise<string> {
  const d = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(d)].slice(0, 8).map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** A trace of one frame written with `redact`: its file bytes (gunzipped: no) and decoded text. */
async function recorded(mode: "none" | "hash" | "tokens") {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/t.trace`;
    const w = await TraceWriter.create(path, { monitor: "m", model: "sim-gpt", hook: HOOK }, {
      redact: { mode },
    });
    w.write(frameMsg(["my", " hunter2024", " é"]), 1000);
    await w.close();
    const bytes = await Deno.readFile(path);
    const records = [];
    for await (const r of readTrace(path)) records.push(r);
    const frame = decodeFrame(records[0].subject, records[0].headers, records[0].data);
    return { text: new TextDecoder().decode(bytes), tokenText: frame.tokenText };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("trace redact: record.redact rewrites the token text written, frames still decode", async () => {
  const none = await recorded("none");
  assert.ok(none.text.includes("hunter2024"));
  assert.deepEqual(none.tokenText, ["my", " hunter2024", " é"]);
  const tokens = await recorded("tokens");
  assert.ok(!tokens.text.includes("hunter2024"));
  assert.deepEqual(tokens.tokenText, ["[redacted]", "[redacted]", "[redacted]"]);
  const hash = await recorded("hash");
  assert.ok(!hash.text.includes("hunter2024"));
  assert.deepEqual(hash.tokenText, [
    `sha256:${await sha16("my")}`,
    `sha256:${await sha16(" hunter2024")}`,
    `sha256:${await sha16(" é")}`,
  ]);
});

Deno.test("trace redact: a malformed token-text header is left out, other headers kept", () => {
  assert.deepEqual(
    redactTokenTextHeader({ "Lw-Token-Text": "[not json", "Lw-Seq": "1" }, { mode: "hash" }),
    { "Lw-Seq": "1" },
  );
  assert.deepEqual(
    redactTokenTextHeader({ "Lw-Token-Text": "[1, 2]", "Lw-Seq": "1" }, { mode: "tokens" }),
    { "Lw-Seq": "1" },
  );
  const h = { "Lw-Token-Text": '["a"]' };
  assert.equal(redactTokenTextHeader(h, { mode: "none" }), h);
  assert.deepEqual(redactTokenTextHeader({ "Lw-Seq": "1" }, { mode: "tokens" }), { "Lw-Seq": "1" });
});
