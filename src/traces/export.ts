/**
 * What `trace export` takes out of a trace (`docs/traces.md`): the list of
 * its requests, one request's activations (tokens × d_in, float32, in token
 * order), its frames' metadata, or its latents under a monitor's SAEs.
 * Frames are decoded with the sidecar's strict decoder, so f16/bf16 payloads
 * widen to float32 exactly as the sidecar widens them.
 *
 * @module
 */
import { decodeFrame } from "../core/frame/decode.ts";
import { rowOf } from "../core/latent_rows.ts";
import type { Frame } from "../core/frame/format.ts";
import { headerValue, type TraceRecord } from "./format.ts";
import { TraceReader } from "./reader.ts";
import { encodeTrace, type OfflineMonitor } from "./offline.ts";

/** One request of a trace, as `trace export --list` shows it. */
export interface TraceRequestInfo {
  id: string;
  frames: number;
  /** Tokens over its frames (end markers hold none). */
  tokens: number;
  /** Receive times of its first and last frame (ms since the epoch). */
  first: number;
  last: number;
}

/** The request is not in the trace, or its frames do not make one tensor. */
export class TraceExportError extends Error {
  constructor(path: string, expected: string, found: string) {
    super(`${path}: expected ${expected}, found ${found}`);
    this.name = "TraceExportError";
  }
}

/**
 * Every request id of the trace at `path`, in order of first appearance,
 * with its frame and token counts. Frames without a readable request id or
 * shape are counted in `unreadable`, never dropped silently.
 *
 * @example
 * ```ts
 * const { requests } = await listTraceRequests("demo.trace.gz");
 * for (const r of requests) console.log(r.id, r.frames, r.tokens);
 * ```
 */
export async function listTraceRequests(
  path: string,
): Promise<{ requests: TraceRequestInfo[]; records: number; unreadable: number }> {
  const byId = new Map<string, TraceRequestInfo>();
  let records = 0;
  let unreadable = 0;
  for await (const rec of await TraceReader.open(path)) {
    records++;
    const id = headerValue(rec.headers, "Lw-Request-Id");
    const shape = /^([0-9]+),[0-9]+$/.exec(headerValue(rec.headers, "Lw-Shape") ?? "");
    if (id === undefined || !shape) {
      unreadable++;
      continue;
    }
    let r = byId.get(id);
    if (!r) {
      byId.set(id, r = { id, frames: 0, tokens: 0, first: rec.receivedAt, last: rec.receivedAt });
    }
    r.frames++;
    r.tokens += Number(shape[1]);
    r.last = rec.receivedAt;
  }
  return { requests: [...byId.values()], records, unreadable };
}

/** One decoded frame of a request, with its record. */
export interface RequestFrame {
  record: TraceRecord;
  frame: Frame;
}

/**
 * The decoded frames of request `id`, in recorded order, a re-sent frame (a
 * repeated `Lw-Seq`) left out and counted in `repeated`.
 *
 * @throws {TraceExportError} when no frame of the trace has that request id, or one of its frames does not decode
 */
export async function requestFrames(
  path: string,
  id: string,
): Promise<{ frames: RequestFrame[]; repeated: number }> {
  const frames: RequestFrame[] = [];
  const seqs = new Set<number>();
  let repeated = 0;
  for await (const record of await TraceReader.open(path)) {
    if (headerValue(record.headers, "Lw-Request-Id") !== id) continue;
    let frame: Frame;
    try {
      frame = decodeFrame(record.subject, record.headers, record.data);
    } catch (err) {
      throw new TraceExportError(
        path,
        `record ${record.record} to be a valid frame`,
        (err as Error).message,
      );
    }
    if (seqs.has(frame.seq)) {
      repeated++;
      continue;
    }
    seqs.add(frame.seq);
    // copy: a zero-copy view would pin the reader's buffer
    frames.push({ record, frame: { ...frame, data: frame.data.slice() } });
  }
  if (frames.length === 0) {
    throw new TraceExportError(
      path,
      `request id ${JSON.stringify(id)} (see trace export --list)`,
      "no frame with it",
    );
  }
  return { frames, repeated };
}

/**
 * Request `id`'s activations as one row-major tokens × d_in float32 array:
 * its frames placed by `Lw-Pos`, which must cover 0..tokens-1 once each.
 *
 * @example
 * ```ts
 * import { writeNpy } from "../formats/npy.ts";
 * const { data, tokens, dIn } = await requestActivations("demo.trace.gz", "demo-1");
 * await Deno.writeFile("demo-1.npy", writeNpy(data, [tokens, dIn], "f32"));
 * ```
 *
 * @throws {TraceExportError} for an unknown id, frames of two widths, a gap or an overlap
 */
export async function requestActivations(
  path: string,
  id: string,
): Promise<{ data: Float32Array; tokens: number; dIn: number; frames: number; repeated: number }> {
  const { frames, repeated } = await requestFrames(path, id);
  const withTokens = frames.filter((f) => f.frame.tokens > 0)
    .sort((a, b) => a.frame.position - b.frame.position);
  const dIn = withTokens[0]?.frame.dModel ?? frames[0].frame.dModel;
  let tokens = 0;
  for (const { frame, record } of withTokens) {
    if (frame.dModel !== dIn) {
      throw new TraceExportError(
        path,
        `d_in ${dIn} in every frame of ${id}`,
        `${frame.dModel} in record ${record.record}`,
      );
    }
    if (frame.position !== tokens) {
      throw new TraceExportError(
        path,
        `request ${id}'s next frame at position ${tokens}`,
        `position ${frame.position} (record ${record.record}: ${
          frame.position > tokens ? "a gap, frames lost" : "an overlap"
        })`,
      );
    }
    tokens += frame.tokens;
  }
  const data = new Float32Array(tokens * dIn);
  for (const { frame } of withTokens) data.set(frame.data, frame.position * dIn);
  return { data, tokens, dIn, frames: frames.length, repeated };
}

/** The JSON line `trace export --format frames` prints for one frame (no payload). */
export function frameLine(rf: RequestFrame): Record<string, unknown> {
  const { frame: f, record } = rf;
  return {
    record: record.record,
    receivedAt: new Date(record.receivedAt).toISOString(),
    subject: record.subject,
    requestId: f.requestId,
    seq: f.seq,
    position: f.position,
    tokens: f.tokens,
    dModel: f.dModel,
    dtype: f.dtype,
    ...(f.phase ? { phase: f.phase } : {}),
    ...(f.tokenText ? { tokenText: f.tokenText } : {}),
    ...(f.tokenIds ? { tokenIds: f.tokenIds } : {}),
    ...(f.tenant !== undefined ? { tenant: f.tenant } : {}),
    ...(f.meta ? { meta: f.meta } : {}),
    ...(f.traceparent ? { traceparent: f.traceparent } : {}),
    endOfRequest: f.endOfRequest,
    bytes: record.data.byteLength,
  };
}

/** One token's latents: SAE id → `[index, value]` pairs, strongest first. */
export interface TokenLatents {
  position: number;
  token?: string;
  latents: Record<string, [number, number][]>;
}

/**
 * Encode the trace with `monitor` (as `replay` does) and yield request
 * `id`'s tokens with their latents under each of the monitor's SAEs, in
 * recorded order. `found` is set to the number of tokens yielded.
 *
 * @example
 * ```ts
 * import type { OfflineMonitor } from "./offline.ts";
 * declare const monitor: OfflineMonitor;
 * for await (const t of requestLatents(monitor, "demo.trace.gz", "demo-1")) console.log(JSON.stringify(t));
 * ```
 */
export async function* requestLatents(
  monitor: OfflineMonitor,
  path: string,
  id: string,
): AsyncGenerator<TokenLatents> {
  const saes = monitor.config.saes.map((s) => s.id);
  let frames = 0;
  for await (const batch of encodeTrace(monitor, await TraceReader.open(path))) {
    for (const { frame, firstRow } of batch.frames) {
      if (frame.requestId !== id) continue;
      frames++;
      for (let i = 0; i < frame.tokens; i++) {
        const latents: Record<string, [number, number][]> = {};
        for (const sae of saes) {
          const row = rowOf(batch.latents.get(sae), firstRow + i);
          if (!row) continue;
          const pairs: [number, number][] = [];
          row.indices.forEach((ix, k) => pairs.push([ix, row.values[k]]));
          latents[sae] = pairs.sort((a, b) => b[1] - a[1] || a[0] - b[0]);
        }
        yield {
          position: frame.position + i,
          ...(frame.tokenText ? { token: frame.tokenText[i] } : {}),
          latents,
        };
      }
    }
  }
  if (frames === 0) {
    throw new TraceExportError(
      path,
      `request id ${JSON.stringify(id)} with frames the monitor accepts`,
      "none",
    );
  }
}
