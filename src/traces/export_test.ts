/**
 * `trace export` on real traces of the simulated model (written by the
 * project's TraceWriter): the .npy is checked by numpy in a child process
 * against the simulator's activations, rounded to f16/bf16 by numpy itself,
 * and by the project's own npy reader; latents against the simulator's
 * ground truth; errors name what was expected and found.
 */
import assert from "node:assert/strict";
import { runTraceCommand } from "../cli/trace.ts";
import { DEMO_PROMPTS } from "../demo/demo.ts";
import { writeExample } from "../demo/example_trace.ts";
import { writeSimulatedTrace } from "../demo/simulated_trace.ts";
import { SimulatedModel, tokenize } from "../demo/simulator.ts";
import type { Dtype } from "../core/dtype.ts";
import { readNpy } from "../formats/npy.ts";
import { listTraceRequests, requestActivations, TraceExportError } from "./export.ts";

const POLICIES = new URL("../../policies/demo.yaml", import.meta.url).pathname;

const PY = `
import sys, numpy as np
out, raw, n, d, dtype, ref = sys.argv[1:7]
n, d = int(n), int(d)
got = np.load(out)
want = np.fromfile(raw, dtype='<f4').reshape(n, d)
if dtype == 'f16':
    want = want.astype(np.float16).astype(np.float32)
elif dtype == 'bf16':
    u = want.view(np.uint32).astype(np.uint64)
    u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16   # round to nearest even
    want = (u & 0xFFFFFFFF).astype(np.uint32).view(np.float32)
assert got.dtype == np.float32, f"expected float32, found {got.dtype}"
assert got.shape == (n, d), f"expected {(n, d)}, found {got.shape}"
bad = np.argwhere(got != want)
assert len(bad) == 0, f"expected equal values, found {len(bad)} different, first at {bad[0]}: {got[tuple(bad[0])]} vs {want[tuple(bad[0])]}"
np.save(ref, want)
print("ok", n, d)
`;

async function python(args: string[]): Promise<string> {
  const { code, stdout, stderr } = await new Deno.Command("python3", {
    args: ["-c", PY, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  assert.equal(code, 0, `python3 failed: ${dec.decode(stderr)}`);
  return dec.decode(stdout).trim();
}

for (const dtype of ["f32", "f16", "bf16"] as Dtype[]) {
  Deno.test(`trace export --format npy: ${dtype} frames → float32 .npy that numpy loads, values exact`, async () => {
    const dir = await Deno.makeTempDir({ prefix: "lw-export-" });
    try {
      const sim = new SimulatedModel({ dModel: 32, seed: 7 });
      const trace = `${dir}/t.trace.gz`;
      await writeSimulatedTrace(trace, sim, DEMO_PROMPTS, { dtype });
      // the first request, so that a fresh simulator (same seed) gives its activations again
      const r = DEMO_PROMPTS[0];
      const tokens = [...tokenize(r.prompt), ...tokenize(r.reply)];
      const acts = new SimulatedModel({ dModel: 32, seed: 7 }).activations(tokens);
      await Deno.writeFile(`${dir}/raw.f32`, new Uint8Array(acts.buffer));
      const code = await runTraceCommand([
        "export",
        trace,
        "--request",
        r.id,
        "--out",
        `${dir}/out.npy`,
      ]);
      assert.equal(code, 0);
      const ok = await python([
        `${dir}/out.npy`,
        `${dir}/raw.f32`,
        String(tokens.length),
        "32",
        dtype,
        `${dir}/ref.npy`,
      ]);
      assert.equal(ok, `ok ${tokens.length} 32`);
      // the project's reader agrees with numpy's file, value for value
      const mine = readNpy(await Deno.readFile(`${dir}/out.npy`), "out.npy");
      const ref = readNpy(await Deno.readFile(`${dir}/ref.npy`), "ref.npy");
      assert.deepStrictEqual(mine.shape, [tokens.length, 32]);
      assert.deepStrictEqual(mine.data, ref.data);
      if (dtype === "f32") assert.deepStrictEqual(mine.data, acts);
      else assert.notDeepStrictEqual(mine.data, acts, "rounded to the frame's dtype");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("trace export: --list counts each request's frames and tokens; unknown ids fail clearly", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lw-export-" });
  try {
    const sim = new SimulatedModel({ dModel: 32, seed: 7 });
    const trace = `${dir}/t.trace`;
    const t0 = Date.UTC(2025, 0, 1);
    const truth = await writeSimulatedTrace(trace, sim, DEMO_PROMPTS, { startTime: t0 });
    const { requests, records, unreadable } = await listTraceRequests(trace);
    assert.equal(unreadable, 0);
    assert.deepStrictEqual(requests.map((r) => r.id), DEMO_PROMPTS.map((p) => p.id));
    let frames = 0;
    for (const [i, r] of requests.entries()) {
      const t = truth[i];
      const reply = t.tokens.length - t.promptTokens;
      // one prefill frame, one frame per reply token, the end marker
      assert.equal(r.frames, 1 + reply + 1, r.id);
      assert.equal(r.tokens, t.tokens.length, r.id);
      assert.equal(r.first, t0 + frames);
      frames += r.frames;
      assert.equal(r.last, t0 + frames - 1);
    }
    assert.equal(records, frames);

    await assert.rejects(
      requestActivations(trace, "no-such-request"),
      (e: Error) =>
        e instanceof TraceExportError && /expected request id "no-such-request"/.test(e.message) &&
        /found no frame with it/.test(e.message),
    );
    assert.equal(
      await runTraceCommand(["export", trace, "--request", "nope", "--out", `${dir}/x.npy`]),
      1,
    );
    await assert.rejects(Deno.stat(`${dir}/x.npy`), Deno.errors.NotFound, "no file left behind");
    assert.equal(await runTraceCommand(["export", `${dir}/missing.trace`, "--list"]), 1);
    await Deno.writeTextFile(`${dir}/bad.trace`, "not a trace\n");
    assert.equal(await runTraceCommand(["export", `${dir}/bad.trace`, "--list"]), 1);
    assert.equal(await runTraceCommand(["export", trace, "--request", "x", "--format", "csv"]), 2);
    assert.equal(
      await runTraceCommand(["export", trace, "--request", "x", "--format", "latents"]),
      2,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("trace export --format frames: one line per frame with its metadata, no payload", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lw-export-" });
  try {
    const truth = await writeExample(dir, POLICIES);
    const r = truth[1];
    const out = `${dir}/frames.jsonl`;
    assert.equal(
      await runTraceCommand([
        "export",
        `${dir}/demo.trace.gz`,
        "--request",
        r.id,
        "--format",
        "frames",
        "--out",
        out,
      ]),
      0,
    );
    const lines = (await Deno.readTextFile(out)).trim().split("\n").map((l) => JSON.parse(l));
    const reply = r.tokens.length - r.promptTokens;
    assert.equal(lines.length, reply + 2);
    assert.deepStrictEqual(lines.map((l) => l.seq), lines.map((_, i) => i));
    assert.deepStrictEqual(lines[0].tokenText, r.tokens.slice(0, r.promptTokens));
    assert.equal(lines[0].phase, "prefill");
    assert.equal(lines[0].dtype, "bf16");
    assert.equal(lines[0].bytes, r.promptTokens * 32 * 2);
    for (let i = 0; i < reply; i++) {
      assert.equal(lines[1 + i].position, r.promptTokens + i);
      assert.deepStrictEqual(lines[1 + i].tokenText, [r.tokens[r.promptTokens + i]]);
      assert.equal(lines[1 + i].phase, "decode");
    }
    assert.equal(lines.at(-1).endOfRequest, true);
    assert.equal(lines.at(-1).tokens, 0);
    assert.ok(lines.every((l) => !("data" in l) && !("payload" in l)));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("trace export --format latents: the simulator's concept latents on exactly its concept tokens", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lw-export-" });
  try {
    const truth = await writeExample(dir, POLICIES);
    for (const r of truth.filter((t) => t.concepts.size > 0)) {
      const out = `${dir}/${r.id}.jsonl`;
      const code = await runTraceCommand([
        "export",
        `${dir}/demo.trace.gz`,
        "--request",
        r.id,
        "--format",
        "latents",
        "--monitor",
        `${dir}/monitor.yaml`,
        "--out",
        out,
      ]);
      assert.equal(code, 0);
      const lines = (await Deno.readTextFile(out)).trim().split("\n").map((l) => JSON.parse(l));
      assert.deepStrictEqual(lines.map((l) => l.position), r.tokens.map((_, i) => i));
      assert.deepStrictEqual(lines.map((l) => l.token), r.tokens);
      // the demo SAE's latents 0..3 are the simulator's concepts: above 2 where planted, only there
      for (let c = 0; c < 4; c++) {
        const got = lines.flatMap((l) =>
          (l.latents["demo-res"] as [number, number][]).some(([ix, v]) => ix === c && v > 2)
            ? [l.position]
            : []
        );
        assert.deepStrictEqual(got, r.concepts.get(c) ?? [], `${r.id} latent ${c}`);
      }
      for (const l of lines) {
        const pairs = l.latents["demo-res"] as [number, number][];
        assert.ok(pairs.every((p, i) => i === 0 || pairs[i - 1][1] >= p[1]), "strongest first");
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
