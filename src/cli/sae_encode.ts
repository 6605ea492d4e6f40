/**
 * `latentwatch sae encode`: run an SAE over a `[T, d_in]` NumPy array of
 * activations and print one JSON line of active latents per token.
 *
 * @module
 */
import type { SparseLatents } from "../core/sae.ts";
import { loadSae, type LoadSaeOptions } from "../formats/load.ts";
import { createOrtEncoder } from "../runtime/ort_encoder.ts";
import {
  formatF32,
  readActivations,
  type RunOptions,
  warnFallback,
  writeAll,
} from "./sae_support.ts";

/** One token's active latents as its JSON line. */
function formatToken(token: number, l: SparseLatents): string {
  let s = `{"token": ${token}, "latents": [`;
  for (let p = 0; p < l.indices.length; p++) {
    s += `${p === 0 ? "" : ", "}[${l.indices[p]}, ${formatF32(l.values[p])}]`;
  }
  return s + "]}\n";
}

/** `latentwatch sae encode <path> --input a.npy`: one JSON line per token on stdout; returns the exit code. */
export async function encode(
  path: string,
  load: LoadSaeOptions,
  inputPath: string,
  { batch, threads, provider, sub }: RunOptions,
): Promise<number> {
  const sae = await loadSae(path, load);
  const acts = await readActivations(inputPath, sae.dIn, "d_in", sae.source);
  const tokens = acts.shape[0];
  const encoder = await createOrtEncoder(sae, {
    intraOpThreads: threads,
    onProgress: load.onProgress,
    provider,
  });
  warnFallback(sub, encoder);
  const utf8 = new TextEncoder();
  try {
    for (let start = 0; start < tokens; start += batch) {
      const n = Math.min(batch, tokens - start);
      const latents = await encoder.encode(
        acts.data.subarray(start * sae.dIn, (start + n) * sae.dIn),
        n,
      );
      let out = "";
      for (let t = 0; t < n; t++) out += formatToken(start + t, latents[t]);
      await writeAll(utf8.encode(out));
    }
  } catch (e) {
    // A closed pipe (`| head`) is a normal way for a reader to stop.
    if (e instanceof Deno.errors.BrokenPipe) return 0;
    throw e;
  } finally {
    await encoder.close();
  }
  return 0;
}
