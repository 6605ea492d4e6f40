/**
 * Header records whose NATS header block is written ahead: a tap's decode
 * steps send the same headers step after step but for two values (`Lw-Pos`,
 * `Lw-Seq`), so the block is kept as text around those values instead of
 * being made from the record on every publish.
 *
 * Why: building the record and encoding its block took about 4 µs of the
 * tap's 15 µs per gated decode step on the twenty-eighth sitting's host
 * (`docs/performance-history.md`), the largest part the tap controls.
 *
 * @module
 */
import { ByteSlab } from "../core/byte_slab.ts";
import { headerWireBytes } from "../core/frame/encode.ts";
import { utf8Length } from "../core/utf8_length.ts";
import {
  checkHeaderValue,
  HEADER_BLOCK_END,
  HEADER_BLOCK_START,
  headerLine,
} from "./nats_headers.ts";

/**
 * Where a rendered record keeps its block: a symbol, not enumerable, so
 * `for…in` and `Object.keys` never see it and a spread copy (which may be
 * changed) does not take it along.
 */
const BLOCK = Symbol("latentwatch.headerBlock");

type WithBlock = Record<string, string> & { [BLOCK]?: Uint8Array };

/**
 * The header block made with `headers` by {@linkcode HeaderTemplate.render},
 * byte for byte what `encodeHeaderBlock` (`nats_headers.ts`) writes for it; `undefined`
 * for any other record.
 *
 * @example
 * ```ts
 * encodedBlockOf({ "Lw-Seq": "1" }); // undefined: encode it
 * ```
 */
export function encodedBlockOf(headers: Record<string, string>): Uint8Array | undefined {
  return (headers as WithBlock)[BLOCK];
}

/** Options of {@linkcode HeaderTemplate}. */
export interface HeaderTemplateOptions {
  /** The headers, in the order they are sent, with any value for the varying ones. */
  headers: Record<string, string>;
  /** Names of the headers whose values change from one render to the next (each in `headers`). */
  varying: readonly string[];
  /** Where rendered blocks are written (a slab of its own when absent). */
  slab?: ByteSlab;
}

/**
 * A header record with some values left open, its block written ahead.
 * {@linkcode HeaderTemplate.render} fills them in and returns a new record
 * (in the same order) that carries its block; a NATS bus publishes that block
 * as it is ({@linkcode encodedBlockOf}), any other bus reads the record. A
 * rendered record must not be changed: its block would no longer match.
 * Throws `HeaderEncodeError` where `encodeHeaderBlock` would.
 *
 * @example
 * ```ts
 * const t = new HeaderTemplate({
 *   headers: { "Lw-Version": "1", "Lw-Pos": "0", "Lw-Seq": "0" },
 *   varying: ["Lw-Pos", "Lw-Seq"],
 * });
 * const h = t.render(["12", "3"]); // { "Lw-Version": "1", "Lw-Pos": "12", "Lw-Seq": "3" }
 * t.wireBytes(["12", "3"]); // 50, the bytes of h's block
 * ```
 */
export class HeaderTemplate {
  readonly #base: Record<string, string>;
  readonly #names: readonly string[];
  /** The block's text before, between and after the varying values, in the block's order. */
  readonly #parts: string[] = [];
  /** For each varying value in the block's order, its index in `varying`. */
  readonly #order: number[] = [];
  readonly #fixedBytes: number;
  readonly #slab: ByteSlab;

  constructor(opts: HeaderTemplateOptions) {
    this.#base = { ...opts.headers };
    this.#names = [...opts.varying];
    const twice = this.#names.find((name, i) => this.#names.indexOf(name) !== i);
    if (twice !== undefined) {
      throw new RangeError(
        `header template: expected each varying name once, found "${twice}" twice`,
      );
    }
    this.#slab = opts.slab ?? new ByteSlab();
    let text = HEADER_BLOCK_START;
    for (const name in this.#base) {
      if (!Object.hasOwn(this.#base, name)) continue;
      const at = this.#names.indexOf(name);
      if (at < 0) {
        text += headerLine(name, this.#base[name]);
        continue;
      }
      // the line's text up to its value; the value and its CRLF come at render
      const line = headerLine(name, "");
      this.#parts.push(text + line.slice(0, -2));
      this.#order.push(at);
      text = "\r\n";
    }
    this.#parts.push(text + HEADER_BLOCK_END);
    let varyingBytes = 0;
    for (const name of this.#names) {
      if (!Object.hasOwn(this.#base, name)) {
        throw new RangeError(`header template: expected "${name}" among the headers, found none`);
      }
      varyingBytes += utf8Length(this.#base[name]);
    }
    this.#fixedBytes = headerWireBytes(this.#base) - varyingBytes;
  }

  /**
   * Size in bytes of the rendered record's block as `headerWireBytes`
   * counts it (values untrimmed, so never less than the block written), the
   * size a tap plans its frames with.
   */
  wireBytes(values: readonly string[]): number {
    let n = this.#fixedBytes;
    for (const v of values) n += utf8Length(v);
    return n;
  }

  /** The headers with `values` for the varying names (in `varying`'s order), carrying their block. */
  render(values: readonly string[]): Record<string, string> {
    const names = this.#names;
    if (values.length !== names.length) {
      throw new RangeError(
        `header template: expected ${names.length} values, found ${values.length}`,
      );
    }
    const out: WithBlock = { ...this.#base };
    for (let i = 0; i < names.length; i++) {
      checkHeaderValue(names[i], values[i]);
      out[names[i]] = values[i];
    }
    const parts = this.#parts;
    let text = parts[0];
    for (let i = 0; i < this.#order.length; i++) {
      text += values[this.#order[i]].trim() + parts[i + 1];
    }
    Object.defineProperty(out, BLOCK, { value: this.#slab.utf8(text) });
    return out;
  }
}
