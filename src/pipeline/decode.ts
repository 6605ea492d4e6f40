/**
 * Stage 1 of every path (serve, replay, policy test, calibrate): a tap
 * message, as received or recorded, decoded strictly for one monitor. A
 * message that does not decode is a {@linkcode FrameError}, counted under
 * {@linkcode rejectionReason}.
 *
 * @module
 */
import { decodeFrame, releaseFrameData } from "../core/frame/decode.ts";
import { type Frame, FrameError } from "../core/frame/format.ts";

/** The header block could not be read in full (the bus's `HeaderProblem`). */
export interface RawHeaderProblem {
  /** The counted reason: `header_syntax`, `header_name` or `header_encoding`. */
  reason: string;
  /** What was expected and what was found. */
  detail: string;
}

/** A tap message as received or recorded: subject, headers, payload. */
export interface RawFrame {
  subject: string;
  headers: Record<string, string>;
  data: Uint8Array;
  /** Header names given more than once with the same spelling (see `BusMessage`). */
  repeatedHeaders?: string[];
  /** The header block could not be read in full (see `BusMessage`). */
  headerProblem?: RawHeaderProblem;
}

/** What a monitor accepts: its model, hook and activation width. */
export interface FrameExpect {
  model: string;
  hook: string;
  dIn: number;
}

/**
 * Decode `msg` strictly (`decodeFrame` with `dModel = dIn`) and check it is
 * for the monitor's model and hook. Throws {@linkcode FrameError} otherwise
 * (field `Lw-Model` or `Lw-Hook` for the checks here; `header_syntax`,
 * `header_name` or `header_encoding` for a header block the bus could not
 * read in full). A header the bus saw twice is rejected by the decoder.
 * `copyData`: the message's bytes are reused once this returns (a borrowing
 * subscription), so the activations are copied even where they could be viewed.
 *
 * @example Decode a frame for gpt2's layer 6
 * ```ts
 * import { encodeFrame } from "../core/frame/encode.ts";
 * import { decodeMonitorFrame } from "./decode.ts";
 * const meta = { model: "gpt2", hook: "blocks.6.hook_resid_post", requestId: "r1", position: 0, seq: 0, dtype: "f32" as const };
 * const { headers, payload } = encodeFrame(meta, new Float32Array(2), 1, 2);
 * const frame = decodeMonitorFrame(
 *   { subject: "lw.tap.gpt2.0", headers, data: payload },
 *   { model: "gpt2", hook: "blocks.6.hook_resid_post", dIn: 2 },
 * );
 * frame.tokens; // 1
 * ```
 */
export function decodeMonitorFrame(
  msg: RawFrame,
  expect: FrameExpect,
  opts: { copyData?: boolean } = {},
): Frame {
  if (msg.headerProblem) {
    const id = msg.headers["Lw-Request-Id"];
    throw new FrameError(
      msg.headerProblem.reason,
      "a header block of NATS/1.0 lines `Name: value` (name printable ASCII, value UTF-8)",
      msg.headerProblem.detail,
      {
        subject: msg.subject,
        ...(typeof id === "string" && readableName(id) ? { requestId: id } : {}),
      },
    );
  }
  const frame = decodeFrame(msg.subject, msg.headers, msg.data, {
    dModel: expect.dIn,
    ...(opts.copyData ? { copyData: true } : {}),
    ...(msg.repeatedHeaders ? { repeated: msg.repeatedHeaders } : {}),
  });
  const where = { subject: msg.subject, requestId: frame.requestId };
  const wrong = frame.model !== expect.model
    ? new FrameError("Lw-Model", JSON.stringify(expect.model), JSON.stringify(frame.model), where)
    : frame.hook !== expect.hook
    ? new FrameError("Lw-Hook", JSON.stringify(expect.hook), JSON.stringify(frame.hook), where)
    : null;
  if (wrong) {
    releaseFrameData([frame]); // a copy's slab room goes back, as a processed frame's does
    throw wrong;
  }
  return frame;
}

/** A request id worth naming in a log line: short, printable, no surrounding whitespace. */
function readableName(s: string): boolean {
  // deno-lint-ignore no-control-regex
  return s.length > 0 && s.length <= 256 && !/[\u0000-\u001f\u007f-\u009f]/.test(s) &&
    s.trim() === s;
}

/**
 * The counted reason of a rejection: the header at fault, `payload`, a
 * header-block problem, or `decode` (an error that is no `FrameError`).
 * `Lw-Meta-<key>` headers count as one reason, `Lw-Meta-*`, so senders
 * cannot grow the label set.
 *
 * @example
 * ```ts
 * import { rejectionReason } from "./decode.ts";
 * rejectionReason("Lw-Meta-user"); // "Lw-Meta-*"
 * rejectionReason(undefined); // "decode"
 * ```
 */
export function rejectionReason(field: string | undefined): string {
  if (field === undefined) return "decode";
  if (field.toLowerCase().startsWith("lw-meta-")) return "Lw-Meta-*";
  return field;
}

/**
 * The request id a message claims, bounded for a log line ("?" when none).
 *
 * @example
 * ```ts
 * import { requestOf } from "./decode.ts";
 * requestOf({ headers: { "Lw-Request-Id": "r1" } }); // "r1"
 * ```
 */
export function requestOf(msg: Pick<RawFrame, "headers">): string {
  const id = msg.headers?.["Lw-Request-Id"];
  if (typeof id !== "string") return "?";
  return id.length > 256 ? `${id.slice(0, 256)}…` : id;
}

/**
 * The partition of a tap subject (its last token), 0 when it has none. Not
 * `partitionOf` (`core/frame/subjects.ts`), which hashes a request id to one.
 *
 * @example
 * ```ts
 * import { subjectPartition } from "./decode.ts";
 * subjectPartition("lw.tap.gpt2.3"); // 3
 * ```
 */
export function subjectPartition(subject: string): number {
  const partition = Number(subject.slice(subject.lastIndexOf(".") + 1));
  return Number.isSafeInteger(partition) && partition >= 0 ? partition : 0;
}
