/**
 * Linear probe files: one or more directions over an activation, each with a
 * bias, scored raw (`x·w + b`) or through a logistic (`σ(x·w + b)`).
 *
 * Accepted files:
 * - `.npy`: a `[d]` or `[n, d]` direction array; bias, link and names from a
 *   sidecar `<name>.json` next to it when present (bias 0 and link `raw`
 *   otherwise).
 * - `.safetensors`: `direction` or `weight` `[n, d]` or `[d]`; `bias` `[n]`,
 *   `[]` or `[1]`; `__metadata__` may carry `link` and `names` (a JSON array).
 * - JSON: `{"direction": [...]}` or `{"directions": [[...], ...]}`, plus
 *   `bias`, `link` and `names`; scikit-learn `LogisticRegression` exports
 *   (`coef_` `[1, d]`, `intercept_` `[1]`) default to the logistic link,
 *   which is what `predict_proba` computes for the positive class.
 *
 * @module
 */

import type { LinearProbe } from "../core/sae.ts";
import { NpyError, readNpy } from "./npy.ts";
import { readSafetensors, type SafetensorsTensor, tensorToF32 } from "./safetensors.ts";

/** A probe file that cannot be read or whose shapes disagree. */
export class ProbeFormatError extends TypeError {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ProbeFormatError";
  }
}

type Link = LinearProbe["link"];

/** Bias, link and names that may accompany a direction array. */
interface ProbeExtras {
  bias?: unknown;
  link?: unknown;
  names?: unknown;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function parseLink(v: unknown, where: string, fallback: Link): Link {
  if (v === undefined || v === null) return fallback;
  if (v === "raw" || v === "logistic") return v;
  // scikit-learn and torch spell the logistic link "sigmoid".
  if (v === "sigmoid") return "logistic";
  throw new ProbeFormatError(
    `${where}: expected link "logistic" or "raw", found ${JSON.stringify(v)}`,
  );
}

function parseNames(v: unknown, n: number, where: string): string[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v) || v.some((s) => typeof s !== "string")) {
    throw new ProbeFormatError(`${where}: expected "names" to be an array of strings`);
  }
  if (v.length !== n) {
    throw new ProbeFormatError(
      `${where}: expected ${n} names (one per direction), found ${v.length}`,
    );
  }
  return v as string[];
}

/** A bias given as a number, `[n]` or `[1]` (broadcast to every direction). */
function parseBias(v: unknown, n: number, where: string): Float32Array {
  if (v === undefined || v === null) return new Float32Array(n);
  const flat = Array.isArray(v) ? v.flat(1) : [v];
  if (flat.some((b) => typeof b !== "number" || !Number.isFinite(b))) {
    throw new ProbeFormatError(`${where}: expected "bias" to be finite numbers`);
  }
  if (flat.length === 1) return new Float32Array(n).fill(flat[0] as number);
  if (flat.length !== n) {
    throw new ProbeFormatError(
      `${where}: expected a bias of shape [${n}] (one per direction) or a scalar, found ${flat.length} values`,
    );
  }
  return Float32Array.from(flat as number[]);
}

function checkFinite(data: Float32Array, d: number, where: string): void {
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i])) {
      throw new ProbeFormatError(
        `${where}: direction ${Math.floor(i / d)}, element ${i % d} is ${
          data[i]
        }, expected a finite number`,
      );
    }
  }
}

function build(
  directions: Float32Array,
  shape: readonly number[],
  extras: ProbeExtras,
  source: string,
  defaultLink: Link = "raw",
): LinearProbe {
  if (shape.length !== 1 && shape.length !== 2) {
    throw new ProbeFormatError(
      `${source}: expected directions of shape [d] or [n, d], found [${shape.join(", ")}]`,
    );
  }
  const [n, dIn] = shape.length === 1 ? [1, shape[0]] : [shape[0], shape[1]];
  if (n < 1 || dIn < 1) {
    throw new ProbeFormatError(
      `${source}: expected at least one direction of width ≥ 1, found [${shape.join(", ")}]`,
    );
  }
  checkFinite(directions, dIn, source);
  const probe: LinearProbe = {
    kind: "probe",
    dIn,
    n,
    directions,
    bias: parseBias(extras.bias, n, source),
    link: parseLink(extras.link, source, defaultLink),
    source,
  };
  const names = parseNames(extras.names, n, source);
  if (names) probe.names = names;
  return probe;
}

/** A JSON number matrix `[[...], ...]` or vector `[...]` → data and shape. */
function jsonMatrix(v: unknown, key: string, source: string): [Float32Array, number[]] {
  if (!Array.isArray(v) || v.length === 0) {
    throw new ProbeFormatError(`${source}: expected "${key}" to be a non-empty array of numbers`);
  }
  const rows = Array.isArray(v[0]) ? v as unknown[][] : null;
  if (!rows) {
    if (v.some((x) => typeof x !== "number")) {
      throw new ProbeFormatError(`${source}: expected "${key}" to hold numbers only`);
    }
    return [Float32Array.from(v as number[]), [v.length]];
  }
  const d = rows[0].length;
  const out = new Float32Array(rows.length * d);
  rows.forEach((r, i) => {
    if (!Array.isArray(r) || r.length !== d) {
      throw new ProbeFormatError(
        `${source}: "${key}" row ${i} has ${
          Array.isArray(r) ? r.length : "no"
        } values, expected ${d} like row 0`,
      );
    }
    r.forEach((x, j) => {
      if (typeof x !== "number") {
        throw new ProbeFormatError(`${source}: "${key}"[${i}][${j}] is not a number`);
      }
      out[i * d + j] = x;
    });
  });
  return [out, [rows.length, d]];
}

/**
 * Parse a probe from its JSON form (see the module doc).
 *
 * @example
 * ```ts
 * const p = parseProbeJson({ direction: [1, 0, -1], bias: 0.5, link: "logistic" }, "inline");
 * p.n; // 1
 * ```
 */
export function parseProbeJson(raw: unknown, source: string): LinearProbe {
  if (!isRecord(raw)) throw new ProbeFormatError(`${source}: expected a JSON object`);
  const keys = ["direction", "directions", "coef_"].filter((k) => raw[k] !== undefined);
  if (keys.length !== 1) {
    throw new ProbeFormatError(
      `${source}: expected exactly one of "direction", "directions" or "coef_" (scikit-learn), found ${
        keys.length === 0 ? "none" : keys.join(", ")
      }`,
    );
  }
  const key = keys[0];
  const [data, shape] = jsonMatrix(raw[key], key, source);
  if (key === "directions" && shape.length !== 2) {
    throw new ProbeFormatError(
      `${source}: expected "directions" to be [[...], ...] (shape [n, d])`,
    );
  }
  const sklearn = key === "coef_";
  if (sklearn && shape.length === 2 && shape[0] > 1 && raw.link === undefined) {
    // Multinomial LogisticRegression normalises with a softmax over classes,
    // which per-direction scores cannot reproduce; make the user choose.
    throw new ProbeFormatError(
      `${source}: coef_ has ${
        shape[0]
      } rows (a multi-class model, scored with a softmax by scikit-learn); ` +
        `expected [1, d], or set "link" to score each row on its own`,
    );
  }
  if (raw.bias !== undefined && raw.intercept_ !== undefined) {
    throw new ProbeFormatError(`${source}: expected "bias" or "intercept_", found both`);
  }
  return build(
    data,
    shape,
    { bias: raw.bias ?? raw.intercept_, link: raw.link, names: raw.names },
    source,
    sklearn ? "logistic" : "raw",
  );
}

function tensorData(t: SafetensorsTensor, name: string, source: string): Float32Array {
  if (t.dtype !== "F32" && t.dtype !== "F16" && t.dtype !== "BF16" && t.dtype !== "F64") {
    throw new ProbeFormatError(
      `${source}: tensor '${name}' has dtype ${t.dtype}, expected a float (F32, F16, BF16 or F64)`,
    );
  }
  return tensorToF32(t);
}

function fromSafetensors(bytes: Uint8Array, source: string): LinearProbe {
  const file = readSafetensors(bytes, source);
  const names = ["direction", "weight"].filter((k) => file.tensors.has(k));
  if (names.length !== 1) {
    throw new ProbeFormatError(
      `${source}: expected one tensor 'direction' or 'weight', found ${
        names.length ? names.join(" and ") : `only ${[...file.tensors.keys()].join(", ") || "none"}`
      }`,
    );
  }
  const dir = file.tensors.get(names[0])!;
  const biasT = file.tensors.get("bias");
  const meta = file.metadata ?? {};
  let metaNames: unknown;
  if (meta.names !== undefined) {
    try {
      metaNames = JSON.parse(meta.names);
    } catch {
      throw new ProbeFormatError(`${source}: __metadata__.names must be a JSON array of strings`);
    }
  }
  let bias: number[] | undefined;
  if (biasT) {
    if (biasT.shape.length > 1) {
      throw new ProbeFormatError(
        `${source}: expected 'bias' of shape [n] or [], found [${biasT.shape.join(", ")}]`,
      );
    }
    bias = [...tensorData(biasT, "bias", source)];
  }
  return build(
    tensorData(dir, names[0], source),
    dir.shape,
    { bias, link: meta.link, names: metaNames },
    source,
  );
}

async function fromNpy(bytes: Uint8Array, path: string): Promise<LinearProbe> {
  const arr = readNpy(bytes, path);
  const sidecar = path.replace(/\.npy$/, ".json");
  let extras: ProbeExtras = {};
  let text: string | null = null;
  try {
    text = await Deno.readTextFile(sidecar);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) {
      throw new ProbeFormatError(`${sidecar}: cannot read: ${(e as Error).message}`, { cause: e });
    }
  }
  if (text !== null) {
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch (e) {
      throw new ProbeFormatError(`${sidecar}: not valid JSON: ${(e as Error).message}`, {
        cause: e,
      });
    }
    if (!isRecord(raw)) throw new ProbeFormatError(`${sidecar}: expected a JSON object`);
    if (raw.direction !== undefined || raw.directions !== undefined) {
      throw new ProbeFormatError(
        `${sidecar}: the sidecar of ${path} holds bias, link and names; the directions come from the .npy`,
      );
    }
    extras = raw;
  }
  return build(arr.data, arr.shape, extras, path);
}

/**
 * Load a linear probe from `.npy` (+ optional `<name>.json` sidecar),
 * `.safetensors` or `.json`.
 *
 * @throws {ProbeFormatError} on a shape, dtype, link or bias that does not fit,
 * naming the file and what was expected
 *
 * @example
 * ```ts
 * const probe = await loadProbe("probes/deception.safetensors");
 * probe.n; // number of scores per token
 * ```
 */
export async function loadProbe(path: string): Promise<LinearProbe> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    throw new ProbeFormatError(`${path}: cannot read the probe: ${(e as Error).message}`, {
      cause: e,
    });
  }
  if (path.endsWith(".npy")) {
    try {
      return await fromNpy(bytes, path);
    } catch (e) {
      if (e instanceof NpyError) throw new ProbeFormatError(e.message, { cause: e });
      throw e;
    }
  }
  if (path.endsWith(".safetensors")) return fromSafetensors(bytes, path);
  if (path.endsWith(".json")) {
    let raw: unknown;
    try {
      raw = JSON.parse(new TextDecoder().decode(bytes));
    } catch (e) {
      throw new ProbeFormatError(`${path}: not valid JSON: ${(e as Error).message}`, { cause: e });
    }
    return parseProbeJson(raw, path);
  }
  throw new ProbeFormatError(
    `${path}: expected a probe file ending in .npy, .safetensors or .json`,
  );
}
