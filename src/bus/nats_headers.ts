/**
 * A defensive reader of a NATS message's raw header block
 * (`NATS/1.0\r\nName: value\r\n...\r\n\r\n`), for messages that anyone on
 * the bus can publish. The NATS client's own parser throws on a header name
 * with a space, a non-ASCII letter or invalid UTF-8, and joins a repeated
 * header into one value; this one never throws, keeps what it can read (so
 * a rejection can still name the request), reports the first problem, and
 * lists the names given more than once.
 *
 * @module
 */

/** Why a header block was refused, as counted (`latentwatch.frames.rejected{reason}`). */
export type HeaderProblemReason =
  /** The block is not `NATS/1.0` lines of `Name: value` (no colon, a bare CR or LF). */
  | "header_syntax"
  /** A header name is empty or has a byte outside printable ASCII (33–126) or a colon. */
  | "header_name"
  /** A header value is not valid UTF-8. */
  | "header_encoding";

/** The first problem found in a header block. */
export interface HeaderProblem {
  reason: HeaderProblemReason;
  /** What was expected and what was found, with the line number (1 = the `NATS/1.0` line). */
  detail: string;
}

/** What {@linkcode parseHeaderBlock} read. */
export interface ParsedHeaders {
  /** Name (as spelled) → value (surrounding whitespace trimmed); the first value of a repeated name. */
  headers: Record<string, string>;
  /** Names given more than once with the same spelling, each listed once. */
  repeated: string[];
  /** The first problem, when the block is malformed (`headers` then holds the readable lines). */
  problem?: HeaderProblem;
}

const STATUS_LINE = [0x4e, 0x41, 0x54, 0x53, 0x2f, 0x31, 0x2e, 0x30]; // "NATS/1.0"
const utf8Strict = new TextDecoder("utf-8", { fatal: true });
const utf8Loose = new TextDecoder("utf-8");

/** Bytes shown quoted in a detail message, bounded. */
function quote(bytes: Uint8Array): string {
  const cut = bytes.subarray(0, 80);
  const more = bytes.length > cut.length ? `… (${bytes.length} bytes)` : "";
  return JSON.stringify(utf8Loose.decode(cut)) + more;
}

/** Longest value read without a decoder call (each `TextDecoder.decode` is a runtime call). */
const SHORT_ASCII = 256;

/** Whether `bytes` is short ASCII: valid UTF-8 that {@linkcode asciiString} reads as is. */
function isShortAscii(bytes: Uint8Array): boolean {
  if (bytes.length > SHORT_ASCII) return false;
  for (let i = 0; i < bytes.length; i++) if (bytes[i] > 0x7f) return false;
  return true;
}

/** ASCII bytes (at most {@linkcode SHORT_ASCII}) as a string. */
function asciiString(bytes: Uint8Array): string {
  return String.fromCharCode.apply(null, bytes as unknown as number[]);
}

/**
 * Set `name` as an own property, also when it is `__proto__`.
 *
 * @example
 * ```ts
 * const headers: Record<string, string> = {};
 * put(headers, "__proto__", "x");
 * Object.keys(headers); // ["__proto__"]
 * ```
 */
export function put(out: Record<string, string>, name: string, value: string): void {
  // a plain assignment makes an own property for every other name (Object.prototype has no
  // other setter) and costs a tenth of defineProperty on the per-frame path
  if (name !== "__proto__") {
    out[name] = value;
    return;
  }
  Object.defineProperty(out, name, {
    value,
    enumerable: true,
    writable: true,
    configurable: true,
  });
}

/**
 * Read a raw NATS header block. Never throws: a malformed block comes back
 * with `problem` set and the lines that could be read in `headers`. Names
 * keep their spelling; values are decoded as strict UTF-8 and trimmed like
 * the NATS clients do.
 *
 * @example
 * ```ts
 * const block = new TextEncoder().encode("NATS/1.0\r\nLw-Seq: 1\r\nLw-Seq: 1\r\nBad Name: x\r\n\r\n");
 * const parsed = parseHeaderBlock(block);
 * parsed.headers["Lw-Seq"]; // "1"
 * parsed.repeated; // ["Lw-Seq"]
 * parsed.problem?.reason; // "header_name"
 * ```
 */
export function parseHeaderBlock(block: Uint8Array): ParsedHeaders {
  const headers: Record<string, string> = {};
  const seen = new Set<string>();
  const repeated = new Set<string>();
  let problem: HeaderProblem | undefined;
  const fail = (reason: HeaderProblemReason, detail: string) => {
    problem ??= { reason, detail };
  };
  let start = 0;
  let line = 0;
  while (start < block.length) {
    let end = start;
    while (end < block.length && !(block[end] === 13 && block[end + 1] === 10)) end++;
    const bytes = block.subarray(start, end);
    start = end + 2;
    line++;
    if (line === 1) {
      const ok = STATUS_LINE.every((b, i) => bytes[i] === b) &&
        (bytes.length === STATUS_LINE.length || bytes[STATUS_LINE.length] === 0x20);
      if (!ok) fail("header_syntax", `line 1: expected "NATS/1.0", found ${quote(bytes)}`);
      continue;
    }
    if (bytes.length === 0) continue; // the blank line closing the block
    if (bytes.includes(13) || bytes.includes(10)) {
      fail("header_syntax", `line ${line}: expected no bare CR or LF, found ${quote(bytes)}`);
      continue;
    }
    const colon = bytes.indexOf(0x3a);
    if (colon < 0) {
      fail("header_syntax", `line ${line}: expected "Name: value", found ${quote(bytes)}`);
      continue;
    }
    const nameBytes = bytes.subarray(0, colon);
    const bad = nameBytes.findIndex((b) => b < 33 || b > 126);
    if (colon === 0 || bad >= 0) {
      const what = colon === 0
        ? "an empty name"
        : `${quote(nameBytes)} (byte 0x${nameBytes[bad].toString(16).padStart(2, "0")} at ${bad})`;
      fail(
        "header_name",
        `line ${line}: expected a name of printable ASCII (33–126, no colon), found ${what}`,
      );
      continue;
    }
    // printable ASCII, checked above
    const name = nameBytes.length <= SHORT_ASCII
      ? asciiString(nameBytes)
      : utf8Loose.decode(nameBytes);
    let value: string;
    try {
      const valueBytes = bytes.subarray(colon + 1);
      value = (isShortAscii(valueBytes) ? asciiString(valueBytes) : utf8Strict.decode(valueBytes))
        .trim();
    } catch (err) {
      fail(
        "header_encoding",
        `line ${line}: ${name}: expected a UTF-8 value, found ${
          quote(bytes.subarray(colon + 1))
        } (${(err as Error).message})`,
      );
      continue;
    }
    if (seen.has(name)) {
      repeated.add(name);
      continue;
    }
    seen.add(name);
    put(headers, name, value);
  }
  return { headers, repeated: [...repeated], ...(problem ? { problem } : {}) };
}

/**
 * The status code on a header block's first line (`NATS/1.0 503` → 503),
 * or `undefined` when the line carries none: the server's answers to a
 * request (503: no responders) come this way, with no `Name: value` lines.
 *
 * @example
 * ```ts
 * headerStatus(new TextEncoder().encode("NATS/1.0 503\r\n\r\n")); // 503
 * headerStatus(new TextEncoder().encode("NATS/1.0\r\nLw-Seq: 1\r\n\r\n")); // undefined
 * ```
 */
export function headerStatus(block: Uint8Array): number | undefined {
  const n = STATUS_LINE.length;
  if (block.length < n + 4 || block[n] !== 0x20) return undefined;
  if (!STATUS_LINE.every((b, i) => block[i] === b)) return undefined;
  let code = 0;
  for (let i = n + 1; i < n + 4; i++) {
    const d = block[i] - 0x30;
    if (d < 0 || d > 9) return undefined;
    code = code * 10 + d;
  }
  // three digits, then the end of the line or a description after a space
  const after = block[n + 4];
  return after === undefined || after === 0x20 || after === 13 ? code : undefined;
}

/** A header that cannot go on the wire: a name outside printable ASCII or with a colon, a value with CR or LF. */
export class HeaderEncodeError extends TypeError {
  constructor(readonly header: string, expected: string, found: string) {
    super(`header ${JSON.stringify(header)}: expected ${expected}, found ${found}`);
    this.name = "HeaderEncodeError";
  }
}

const utf8 = new TextEncoder();

/**
 * `headers` as a NATS header block (`NATS/1.0\r\nName: value\r\n…\r\n\r\n`):
 * names as spelled, values trimmed, as the NATS client writes them (and
 * {@linkcode parseHeaderBlock} reads them back), in one pass instead of the
 * client's header object, which scans every name on every `set`. Throws a
 * {@linkcode HeaderEncodeError} for a name with a byte outside 33–126 or a
 * colon, or a value with CR or LF (a header injected into the block).
 *
 * @example
 * ```ts
 * const block = encodeHeaderBlock({ "Lw-Seq": "7", "Lw-Request-Id": " r1 " });
 * new TextDecoder().decode(block); // "NATS/1.0\r\nLw-Seq: 7\r\nLw-Request-Id: r1\r\n\r\n"
 * ```
 */
export function encodeHeaderBlock(headers: Record<string, string>): Uint8Array {
  let text = "NATS/1.0\r\n";
  for (const name in headers) {
    if (!Object.hasOwn(headers, name)) continue;
    if (name.length === 0) throw new HeaderEncodeError(name, "a non-empty name", "an empty one");
    for (let i = 0; i < name.length; i++) {
      const c = name.charCodeAt(i);
      if (c < 33 || c > 126 || c === 0x3a) {
        throw new HeaderEncodeError(
          name,
          "a name of printable ASCII without a colon",
          `${JSON.stringify(name[i])} at ${i}`,
        );
      }
    }
    const value = String(headers[name]);
    if (value.includes("\r") || value.includes("\n")) {
      throw new HeaderEncodeError(name, "a value without CR or LF", JSON.stringify(value));
    }
    text += `${name}: ${value.trim()}\r\n`;
  }
  return utf8.encode(text + "\r\n");
}
