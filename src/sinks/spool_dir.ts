/**
 * The spool's folder (`./spool.ts`): opening it (created when missing,
 * refused when a file), its exclusive `.lock`, the segment files it holds,
 * and the small synchronous file helpers the spool uses.
 *
 * @module
 */
import { SEGMENT_RE, SpoolError } from "./spool_format.ts";

/**
 * Open the spool folder `dir`: create it when missing, take its lock, and
 * list its segments, oldest first.
 *
 * @example
 * ```ts
 * const { lock, segments } = openSpoolDir(await Deno.makeTempDir());
 * segments; // []
 * lock.close();
 * ```
 */
export function openSpoolDir(dir: string): { lock: Deno.FsFile; segments: number[] } {
  let isDir: boolean | null = null;
  try {
    isDir = Deno.statSync(dir).isDirectory;
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  if (isDir === false) throw new SpoolError(dir, "a directory", "a file");
  if (isDir === null) Deno.mkdirSync(dir, { recursive: true });
  const lock = lockDir(dir);
  const segs = new Set<number>();
  for (const e of Deno.readDirSync(dir)) {
    const m = SEGMENT_RE.exec(e.name);
    if (m && e.isFile) segs.add(Number(m[1]));
  }
  return { lock, segments: [...segs].sort((a, b) => a - b) };
}

/** The file name of segment `seg`'s log or ack file. */
export function segName(seg: number, kind: "log" | "ack"): string {
  return `seg-${String(seg).padStart(16, "0")}.${kind}`;
}

/** The bytes of `path`, or none when it does not exist. */
export function readIfExists(path: string): Uint8Array {
  try {
    return Deno.readFileSync(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return new Uint8Array(0);
    throw err;
  }
}

/**
 * Take the exclusive lock on `<dir>/.lock` without waiting; a
 * {@linkcode SpoolError} when another open spool (in this or another process)
 * holds it.
 */
function lockDir(dir: string): Deno.FsFile {
  const path = `${dir}/.lock`;
  const file = Deno.openSync(path, { read: true, write: true, create: true });
  let locked = false;
  try {
    locked = file.tryLockSync(true);
  } catch (err) {
    file.close();
    throw new SpoolError(path, "an exclusive lock", `an error: ${(err as Error).message}`);
  }
  if (!locked) {
    file.close();
    const err = new SpoolError(path, "an exclusive lock", "it held");
    // say it in words first: the usual cause is a second sidecar on the same folder
    err.message = `spool folder ${dir} is in use by another process (${err.message})`;
    throw err;
  }
  return file;
}

export function writeAll(f: Deno.FsFile, bytes: Uint8Array): void {
  for (let done = 0; done < bytes.length;) done += f.writeSync(bytes.subarray(done));
}
