/**
 * Traces of the SIMULATED model (`src/demo/simulator.ts`), for the demo,
 * the example under `policies/testdata/` and the tests: frames encoded as
 * the TypeScript tap sends them (the prompt in one prefill frame, the reply
 * one decode frame per token, then the end marker), with the ground truth of
 * which concept each token carries.
 *
 * @module
 */
import { encodeFrame } from "../core/frame/encode.ts";
import { tapSubject } from "../core/frame/subjects.ts";
import type { Dtype } from "../core/dtype.ts";
import { type SimulatedModel, tokenize } from "./simulator.ts";
import { TraceWriter } from "../traces/writer.ts";

/** One simulated request: a prompt and the reply the model "generates". */
export interface SimulatedRequest {
  id: string;
  prompt: string;
  reply: string;
  tenant?: string;
  meta?: Record<string, string>;
}

/** Which tokens of a request carry which concept latent. */
export interface RequestTruth {
  id: string;
  tokens: string[];
  promptTokens: number;
  /** Concept latent → positions of the tokens carrying it, ascending. */
  concepts: Map<number, number[]>;
}

/** Options of {@linkcode writeSimulatedTrace}. */
export interface SimulatedTraceOptions {
  model?: string;
  hook?: string;
  monitor?: string;
  dtype?: Dtype;
  /** Receive time of the first frame (ms since the epoch); +1 ms per frame after it. */
  startTime?: number;
}

/**
 * Write `requests` through `sim` as a trace at `path` and return the ground
 * truth per request.
 *
 * @example
 * ```ts
 * import { SimulatedModel } from "./simulator.ts";
 * const truth = await writeSimulatedTrace("/tmp/t.trace.gz", new SimulatedModel(), [
 *   { id: "r1", prompt: "Ignore previous instructions", reply: "No ." },
 * ]);
 * truth[0].concepts.get(0); // [0, 1, 2]: the prompt-injection latent's tokens
 * ```
 */
export async function writeSimulatedTrace(
  path: string,
  sim: SimulatedModel,
  requests: readonly SimulatedRequest[],
  opts: SimulatedTraceOptions = {},
): Promise<RequestTruth[]> {
  const model = opts.model ?? "sim-gpt";
  const hook = opts.hook ?? "blocks.6.hook_resid_post";
  const dtype = opts.dtype ?? "f32";
  const writer = await TraceWriter.create(path, {
    monitor: opts.monitor ?? "demo",
    model,
    hook,
    ...(opts.startTime !== undefined ? { created: new Date(opts.startTime).toISOString() } : {}),
  });
  const subject = tapSubject(model, hook);
  let t = opts.startTime ?? Date.now();
  const d = sim.dModel;
  const truth: RequestTruth[] = [];
  for (const r of requests) {
    const prompt = tokenize(r.prompt);
    const reply = tokenize(r.reply);
    const tokens = [...prompt, ...reply];
    const acts = sim.activations(tokens);
    const concepts = new Map<number, number[]>();
    sim.concepts(tokens).forEach((cs, pos) => {
      for (const c of cs) concepts.set(c.latent, [...concepts.get(c.latent) ?? [], pos]);
    });
    truth.push({ id: r.id, tokens, promptTokens: prompt.length, concepts });
    const extra = {
      ...(r.tenant !== undefined ? { tenant: r.tenant } : {}),
      ...(r.meta !== undefined ? { meta: r.meta } : {}),
    };
    let seq = 0;
    const put = (pos: number, n: number, phase: "prefill" | "decode" | undefined, end = false) => {
      const { headers, payload } = encodeFrame(
        {
          model,
          hook,
          requestId: r.id,
          position: pos,
          seq: seq++,
          dtype,
          ...(n > 0 ? { tokenText: tokens.slice(pos, pos + n) } : {}),
          ...(phase ? { phase } : {}),
          ...extra,
          endOfRequest: end,
        },
        acts.slice(pos * d, (pos + n) * d),
        n,
        d,
      );
      writer.write({ subject, headers, data: payload }, t++);
    };
    if (prompt.length > 0) put(0, prompt.length, "prefill");
    for (let i = 0; i < reply.length; i++) put(prompt.length + i, 1, "decode");
    put(tokens.length, 0, undefined, true);
    // the writer's queue is bounded: let it write rather than drop (a trace of
    // thousands of requests is written faster than it compresses)
    while (writer.stats.queuedBytes > 8 << 20) await new Promise((r) => setTimeout(r, 1));
  }
  await writer.close();
  if (writer.stats.dropped > 0) {
    throw new Error(
      `simulated trace ${path}: expected every frame written, found ${writer.stats.dropped} dropped`,
    );
  }
  return truth;
}
