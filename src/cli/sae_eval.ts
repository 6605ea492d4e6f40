/**
 * `latentwatch sae eval`: how well an SAE or transcoder reconstructs a
 * NumPy array of activations (or a target array for a transcoder), as text
 * or JSON.
 *
 * @module
 */
import { saeDOut, type SparseLatents } from "../core/sae.ts";
import { evaluateReconstruction } from "../core/decode.ts";
import { loadSae, type LoadSaeOptions } from "../formats/load.ts";
import { createOrtEncoder } from "../runtime/ort_encoder.ts";
import {
  CliInputError,
  readActivations,
  type RunOptions,
  warnFallback,
  writeAll,
} from "./sae_support.ts";
/** `latentwatch sae eval <path> --input a.npy`: reconstruction quality as text or JSON; returns the exit code. */
export async function evaluate(
  path: string,
  load: LoadSaeOptions,
  inputPath: string,
  targetPath: string | undefined,
  { batch, threads, provider, sub }: RunOptions,
  json: boolean | undefined,
): Promise<number> {
  const sae = await loadSae(path, load);
  const acts = await readActivations(inputPath, sae.dIn, "d_in", sae.source);
  const tokens = acts.shape[0];
  if (tokens === 0) throw new CliInputError(`${inputPath}: expected at least one token, found 0`);
  let target: Float32Array | undefined;
  if (targetPath !== undefined) {
    const t = await readActivations(targetPath, saeDOut(sae), "d_out", sae.source);
    if (t.shape[0] !== tokens) {
      throw new CliInputError(
        `${targetPath}: expected ${tokens} tokens like ${inputPath}, found ${t.shape[0]}`,
      );
    }
    target = t.data;
  } else if (sae.kind === "transcoder") {
    throw new CliInputError(
      `${sae.source} is a transcoder (it predicts ${
        sae.hookNameOut ?? "another activation"
      }, not its input): pass --target <out.npy> with the activations it should output`,
    );
  }
  const encoder = await createOrtEncoder(sae, {
    intraOpThreads: threads,
    onProgress: load.onProgress,
    provider,
  });
  warnFallback(sub, encoder);
  const latents: SparseLatents[] = [];
  try {
    for (let start = 0; start < tokens; start += batch) {
      const n = Math.min(batch, tokens - start);
      latents.push(
        ...await encoder.encode(acts.data.subarray(start * sae.dIn, (start + n) * sae.dIn), n),
      );
    }
  } finally {
    await encoder.close();
  }
  const r = evaluateReconstruction(sae, acts.data, tokens, latents, target);
  const dead = r.deadLatents / r.dSae;
  if (json) {
    console.log(JSON.stringify({
      tokens: r.tokens,
      mse: r.mse,
      fvu: r.fvu,
      mean_l0: r.meanL0,
      dead_latents: r.deadLatents,
      dead_fraction: dead,
      d_sae: r.dSae,
    }));
    return 0;
  }
  const g = (v: number) => Number.isFinite(v) ? String(Number(v.toPrecision(6))) : String(v);
  await writeAll(
    new TextEncoder().encode(
      [
        `tokens: ${r.tokens}`,
        `mse: ${g(r.mse)}`,
        `fvu: ${g(r.fvu)}`,
        `mean_l0: ${g(r.meanL0)}`,
        `dead_latents: ${r.deadLatents} of ${r.dSae} (${g(dead)})`,
        "",
      ].join("\n"),
    ),
  );
  return 0;
}
