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
/**
 * Also reads ASCII (names, whole blocks), for which it gives the string any
 * ASCII-compatible decoder would: Deno decodes UTF-8 in one fast call
 * (0.11–0.19 µs for a frame's 200-byte block here), where another label
 * (windows-1252) takes a general decoder and a heap buffer per call
 * (0.37–0.63 µs).
 */
const utf8Loose = new TextDecoder("utf-8");

/** Bytes shown quoted in a detail message, bounded. */
function quote(bytes: Uint8Array): string {
  const cut = bytes.subarray(0, 80);
  const more = bytes.length > cut.length ? `… (${bytes.length} bytes)` : "";
  return JSON.stringify(utf8Loose.decode(cut)) + more;
}

/** Longest name or value read without a decoder call (each `TextDecoder.decode` is a runtime call). */
const SHORT_ASCII = 256;
/** Longest header block read as one string (a frame's is about 200 bytes). */
const BLOCK_TEXT_MAX = 16384;
/** V8 makes a slice of this many characters or more a view of the whole string (`SlicedString`). */
const SLICED_STRING_MIN = 13;

/** Whether `bytes[from, to)` is ASCII. */
function isAscii(bytes: Uint8Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (bytes[i] > 0x7f) return false;
  return true;
}

/** ASCII bytes (at most {@linkcode SHORT_ASCII}) as a string. */
function asciiString(bytes: Uint8Array): string {
  return String.fromCharCode.apply(null, bytes as unknown as number[]);
}

/** Bytes that `String.prototype.trim` removes from an ASCII string: tab, LF, VT, FF, CR, space. */
const isAsciiSpace = (b: number) => b === 32 || (b >= 9 && b <= 13);

/** Where {@linkcode trimmedEnd}'s value starts (a module variable: no pair allocated per header). */
let trimmedStart = 0;

/**
 * The end of `bytes[from, to)` without the surrounding whitespace `trim`
 * removes, its start in {@linkcode trimmedStart}, when it is short ASCII
 * (`ascii`: the caller knows it is); -1 otherwise (decode it and trim the
 * string: `trim` also removes non-ASCII spaces).
 */
function trimmedEnd(bytes: Uint8Array, from: number, to: number, ascii: boolean): number {
  if (to - from > SHORT_ASCII || !(ascii || isAscii(bytes, from, to))) return -1;
  while (from < to && isAsciiSpace(bytes[from])) from++;
  while (to > from && isAsciiSpace(bytes[to - 1])) to--;
  trimmedStart = from;
  return to;
}

/**
 * Names read before, by a hash of their bytes: a tap sends the same dozen
 * names on every frame, so each is made into a string once. Bounded: emptied
 * when full (a peer sending ever new names only loses the cache's help).
 */
const nameCache = new Map<number, string>();
const NAME_CACHE_LIMIT = 512;
/** Longer names are read each time: the cache holds at most 512 × 64 bytes of a peer's names. */
const NAME_CACHE_MAX_BYTES = 64;

/** A header name's printable-ASCII bytes `block[from, to)` as a string, from the cache when seen before. */
function headerName(block: Uint8Array, from: number, to: number): string {
  let hash = to - from;
  for (let i = from; i < to; i++) hash = (Math.imul(hash, 31) + block[i]) | 0;
  const seen = nameCache.get(hash);
  if (seen !== undefined && spells(seen, block, from, to)) return seen;
  const bytes = block.subarray(from, to);
  const name = bytes.length <= SHORT_ASCII ? asciiString(bytes) : utf8Loose.decode(bytes);
  if (bytes.length > NAME_CACHE_MAX_BYTES) return name;
  if (nameCache.size >= NAME_CACHE_LIMIT) nameCache.clear();
  nameCache.set(hash, name);
  return name;
}

/** Whether `s` is exactly the ASCII bytes `block[from, to)`. */
function spells(s: string, block: Uint8Array, from: number, to: number): boolean {
  if (s.length !== to - from) return false;
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) !== block[from + i]) return false;
  return true;
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
  // one pass over each line's bytes (the gated path reads a dozen headers per decode step):
  // no Set, no closure, no subarray scanned twice
  const headers: Record<string, string> = {};
  let repeated: Set<string> | null = null;
  let problem: HeaderProblem | undefined;
  const n = block.length;
  // the whole block as one string when it is ASCII (as a tap's always is): values are then
  // slices of it, not a view and a string each
  const text = n <= BLOCK_TEXT_MAX && isAscii(block, 0, n) ? utf8Loose.decode(block) : null;
  let start = 0;
  let line = 0;
  while (start < n) {
    // the line ends at CRLF; a CR or LF alone inside it is remembered
    let end = start;
    let bare = false;
    while (end < n) {
      const b = block[end];
      if (b === 13) {
        if (block[end + 1] === 10) break;
        bare = true;
      } else if (b === 10) bare = true;
      end++;
    }
    const lineStart = start;
    start = end + 2;
    line++;
    if (line === 1) {
      if (!isStatusLine(block, lineStart, end)) {
        problem ??= {
          reason: "header_syntax",
          detail: `line 1: expected "NATS/1.0", found ${quote(block.subarray(lineStart, end))}`,
        };
      }
      continue;
    }
    if (end === lineStart) continue; // the blank line closing the block
    if (bare) {
      problem ??= {
        reason: "header_syntax",
        detail: `line ${line}: expected no bare CR or LF, found ${
          quote(block.subarray(lineStart, end))
        }`,
      };
      continue;
    }
    // the name runs to the first colon: printable ASCII (33–126)
    let colon = -1;
    let bad = -1;
    for (let i = lineStart; i < end; i++) {
      const b = block[i];
      if (b === 0x3a) {
        colon = i;
        break;
      }
      if (bad < 0 && (b < 33 || b > 126)) bad = i;
    }
    if (colon < 0) {
      problem ??= {
        reason: "header_syntax",
        detail: `line ${line}: expected "Name: value", found ${
          quote(block.subarray(lineStart, end))
        }`,
      };
      continue;
    }
    if (colon === lineStart || bad >= 0) {
      const nameBytes = block.subarray(lineStart, colon);
      const what = colon === lineStart
        ? "an empty name"
        : `${quote(nameBytes)} (byte 0x${block[bad].toString(16).padStart(2, "0")} at ${
          bad - lineStart
        })`;
      problem ??= {
        reason: "header_name",
        detail:
          `line ${line}: expected a name of printable ASCII (33–126, no colon), found ${what}`,
      };
      continue;
    }
    const name = headerName(block, lineStart, colon); // printable ASCII, checked above
    let value: string;
    const to = trimmedEnd(block, colon + 1, end, text !== null); // the block was checked whole
    if (to >= 0) {
      const from = trimmedStart;
      // a slice as long as V8's sliced strings would keep the whole block's string alive for as
      // long as the value is kept (a request id in per-request state): those are copied out
      value = text !== null && to - from < SLICED_STRING_MIN
        ? text.slice(from, to)
        : asciiString(block.subarray(from, to));
    } else {
      const valueBytes = block.subarray(colon + 1, end);
      try {
        value = utf8Strict.decode(valueBytes).trim();
      } catch (err) {
        problem ??= {
          reason: "header_encoding",
          detail: `line ${line}: ${name}: expected a UTF-8 value, found ${quote(valueBytes)} (${
            (err as Error).message
          })`,
        };
        continue;
      }
    }
    if (Object.hasOwn(headers, name)) {
      (repeated ??= new Set()).add(name);
      continue;
    }
    put(headers, name, value);
  }
  return { headers, repeated: repeated ? [...repeated] : [], ...(problem ? { problem } : {}) };
}

/** Whether `block[from, to)` is `NATS/1.0`, alone or followed by a space (a status). */
function isStatusLine(block: Uint8Array, from: number, to: number): boolean {
  const n = STATUS_LINE.length;
  if (to - from < n) return false;
  for (let i = 0; i < n; i++) if (block[from + i] !== STATUS_LINE[i]) return false;
  return to - from === n || block[from + n] === 0x20;
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
  // "NATS/1.0", a space, three digits
  if (block.length < n + 4 || !isStatusLine(block, 0, block.length)) return undefined;
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

/** The status line that opens a header block. */
export const HEADER_BLOCK_START = "NATS/1.0\r\n";
/** The blank line that closes a header block. */
export const HEADER_BLOCK_END = "\r\n";

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
  let text = HEADER_BLOCK_START;
  for (const name in headers) {
    if (!Object.hasOwn(headers, name)) continue;
    text += headerLine(name, headers[name]);
  }
  return utf8.encode(text + HEADER_BLOCK_END);
}

/**
 * One header's line of a block, `Name: value\r\n`, the value trimmed, as
 * {@linkcode encodeHeaderBlock} writes it (and throws for).
 *
 * @example
 * ```ts
 * headerLine("Lw-Seq", " 7"); // "Lw-Seq: 7\r\n"
 * ```
 */
export function headerLine(name: string, rawValue: string): string {
  checkHeaderName(name);
  const value = String(rawValue);
  checkHeaderValue(name, value);
  return `${name}: ${value.trim()}\r\n`;
}

/** Throws a {@linkcode HeaderEncodeError} for a value with CR or LF (a header injected into the block). */
export function checkHeaderValue(name: string, value: string): void {
  if (value.includes("\r") || value.includes("\n")) {
    throw new HeaderEncodeError(name, "a value without CR or LF", JSON.stringify(value));
  }
}

function checkHeaderName(name: string): void {
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
}
