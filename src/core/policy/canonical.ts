/**
 * The canonical text of a definition (JSON with keys sorted, `source` left
 * out), which rule hashes and test deduplication compare.
 *
 * @module
 */

/** JSON with object keys sorted and `source` fields left out: the content of a definition. */
export function canonical(v: unknown): string {
  const out: string[] = [];
  canonicalInto(v, out);
  return out.join("");
}

const setText = new WeakMap<ReadonlySet<unknown>, string>();

function canonicalInto(v: unknown, out: string[]): void {
  if (Array.isArray(v)) {
    out.push("[");
    for (let i = 0; i < v.length; i++) {
      if (i > 0) out.push(",");
      canonicalInto(v[i], out);
    }
    out.push("]");
  } else if (v instanceof Set) {
    // exception sets are shared between rules: sort each once
    let s = setText.get(v);
    if (s === undefined) setText.set(v, s = canonical([...v].sort()));
    out.push(s);
  } else if (v !== null && typeof v === "object") {
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o).filter((k) => k !== "source" && o[k] !== undefined).sort();
    out.push("{");
    keys.forEach((k, i) => {
      out.push(`${i > 0 ? "," : ""}${JSON.stringify(k)}:`);
      canonicalInto(o[k], out);
    });
    out.push("}");
  } else out.push(JSON.stringify(v) ?? "null");
}
