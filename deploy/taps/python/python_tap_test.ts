/**
 * The Python tap from Deno: its unittest suite, and a cross-language check
 * that frames made by the Python encoder decode with the reference decoder
 * (`src/core/frame/`) to the known inputs.
 *
 * Python: `PYTHON` when set; else the first of `python3`, `/usr/bin/python3`
 * that imports torch; else `python3` (the torch tests then fail, saying how
 * to install it).
 *
 * @module
 */
import assert from "node:assert/strict";
import { decodeFrame } from "../../../src/core/frame/decode.ts";
import { partitionOf, tapSubject } from "../../../src/core/frame/subjects.ts";

const HERE = new URL(".", import.meta.url).pathname;
const ROOT = new URL("../../../", import.meta.url).pathname;

async function runs(python: string, args: string[]): Promise<boolean> {
  try {
    const { code } = await new Deno.Command(python, { args, stdout: "null", stderr: "null" })
      .output();
    return code === 0;
  } catch {
    return false;
  }
}

let chosen: string | undefined;

/** The Python interpreter to test with (see the module doc). */
async function python(): Promise<string> {
  if (chosen !== undefined) return chosen;
  const env = Deno.env.get("PYTHON");
  if (env) return chosen = env;
  for (const candidate of ["python3", "/usr/bin/python3"]) {
    if (await runs(candidate, ["-c", "import torch"])) return chosen = candidate;
  }
  return chosen = "python3";
}

async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const py = await python();
  const { code, stdout, stderr } = await new Deno.Command(py, {
    args,
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
    env: { PYTHONDONTWRITEBYTECODE: "1" },
  }).output();
  const dec = new TextDecoder();
  return { code, out: dec.decode(stdout), err: dec.decode(stderr) };
}

Deno.test("python tap: the unittest suite passes", async () => {
  const { code, out, err } = await run([
    "-m",
    "unittest",
    "discover",
    "-s",
    `${HERE}tests`,
    "-v",
  ]);
  if (code !== 0) {
    throw new Error(
      `python tap tests failed with ${await python()} (exit ${code}):\n${out}\n${err}`,
    );
  }
});

interface Emitted {
  case: string;
  subject: string;
  headers: Record<string, string>;
  payload: string;
}

function fromBase64(text: string): Uint8Array {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

const MODEL = "google/gemma-2-2b";
const HOOK = "blocks.6.hook_resid_post";
const VALUES = [1, -2, 0.5, 3, -0.25, 0, 0.1, 1e-3, -7.5];
// the same values as each dtype holds them, worked out by hand:
// bf16: 0.1 = 0x3dcccccd rounds up to 0x3dcd = 0.10009765625; 1e-3 = 0x3a83126f rounds down to
// 0x3a83 = 2^-10 · (1 + 3/128); f16: 0.1 -> 0x2e66 = 1638/16384; 1e-3 -> 0x1419 = 1049/2^20
const EXPECTED: Record<string, number[]> = {
  f32: VALUES.map(Math.fround),
  bf16: [1, -2, 0.5, 3, -0.25, 0, 0.10009765625, (1 + 3 / 128) / 1024, -7.5],
  f16: [1, -2, 0.5, 3, -0.25, 0, 1638 / 16384, 1049 / 2 ** 20, -7.5],
};
const IDS = [318, 257, 7];
const TEXT = ["Hello", " wörld", "😀\n\x7f"];

Deno.test("python tap: frames made in Python decode with src/core/frame/", async () => {
  const { code, out, err } = await run([`${HERE}tests/emit_frames.py`]);
  assert.equal(code, 0, `emit_frames.py failed:\n${err}`);
  const emitted = JSON.parse(out) as Emitted[];
  for (const dtype of ["f32", "bf16", "f16"]) {
    const frames = emitted.filter((e) => e.case === dtype);
    assert.equal(frames.length, 4, `${dtype}: three one-token frames and the end marker`);
    const requestId = `req-${dtype}`;
    const values: number[] = [];
    const ids: number[] = [];
    const texts: string[] = [];
    frames.forEach((e, i) => {
      assert.equal(e.subject, tapSubject(MODEL, HOOK, partitionOf(requestId, 16)));
      const f = decodeFrame(e.subject, e.headers, fromBase64(e.payload), { dModel: 3 });
      assert.equal(f.model, MODEL);
      assert.equal(f.hook, HOOK);
      assert.equal(f.requestId, requestId);
      assert.equal(f.dtype, dtype);
      assert.equal(f.seq, i);
      assert.equal(f.position, 5 + i);
      if (i < 3) {
        assert.equal(f.tokens, 1);
        assert.equal(f.phase, "prefill");
        assert.equal(f.tenant, "acme");
        assert.deepEqual(f.meta, { app: "support-bot" });
        assert.equal(f.endOfRequest, false);
        values.push(...f.data);
        ids.push(...f.tokenIds!);
        texts.push(...f.tokenText!);
      } else {
        assert.equal(f.tokens, 0);
        assert.equal(f.endOfRequest, true);
      }
    });
    assert.deepEqual(values, EXPECTED[dtype], dtype);
    assert.deepEqual(ids, IDS);
    assert.deepEqual(texts, TEXT);
  }
  const viaTorch = emitted.find((e) => e.case === "torch-bf16");
  if (viaTorch) {
    const f = decodeFrame(viaTorch.subject, viaTorch.headers, fromBase64(viaTorch.payload));
    assert.deepEqual([...f.data], EXPECTED.bf16);
  }
});
