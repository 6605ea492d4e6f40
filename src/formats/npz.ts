/**
 * Reader and writer for NumPy `.npz` archives: a ZIP file with one `.npy`
 * member per array (`numpy.savez` stores them, `numpy.savez_compressed`
 * deflates them). Gemma Scope 1 ships its SAEs as `params.npz`.
 *
 * @module
 */

import { type NpyArray, readNpy, writeNpy } from "./npy.ts";
import { readZip, writeZip } from "./zip.ts";

/**
 * Read every array of an `.npz` archive, keyed by member name without the
 * `.npy` suffix (as `numpy.load(...)[key]` names them).
 *
 * @param bytes the whole archive
 * @param source the file name, used in error messages
 * @throws {import("./zip.ts").ZipError} for a damaged archive
 * @throws {import("./npy.ts").NpyError} for a member that is not a float `.npy`
 *
 * @example
 * ```ts
 * const params = await readNpz(await Deno.readFile("params.npz"), "params.npz");
 * params.get("W_enc")?.shape; // [d_in, d_sae]
 * ```
 */
export async function readNpz(bytes: Uint8Array, source: string): Promise<Map<string, NpyArray>> {
  const zip = readZip(bytes, source);
  const out = new Map<string, NpyArray>();
  for (const name of zip.entries.keys()) {
    if (name.endsWith("/")) continue; // directory entries carry no array
    const key = name.endsWith(".npy") ? name.slice(0, -4) : name;
    out.set(key, readNpy(await zip.read(name), `${source}[${key}]`));
  }
  return out;
}

/**
 * Encode float32 arrays as an `.npz` archive laid out as `numpy.savez`
 * writes it (stored members named `<key>.npy`, version 1.0 headers).
 *
 * @example
 * ```ts
 * const npz = writeNpz({ W_enc: { data: new Float32Array(6), shape: [2, 3] } });
 * await Deno.writeFile("params.npz", npz);
 * ```
 */
export function writeNpz(
  arrays: Record<string, { data: Float32Array; shape: number[] }>,
): Uint8Array {
  const files: Record<string, Uint8Array> = {};
  for (const [key, { data, shape }] of Object.entries(arrays)) {
    files[`${key}.npy`] = writeNpy(data, shape, "f32");
  }
  return writeZip(files);
}
