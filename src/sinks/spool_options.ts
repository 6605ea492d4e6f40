/**
 * The settings of the spool (`./spool.ts`): its bounds (`maxBytes`,
 * `maxRecords`), the size at which a new segment starts, when it calls
 * `fdatasync`, and how those settings are checked and their defaults filled
 * in when the spool opens ({@linkcode resolveSpoolOptions}).
 *
 * @module
 */
import { SpoolError } from "./spool_format.ts";

/** Settings of a {@linkcode Spool}. */
export interface SpoolOptions {
  /** Bytes of segment and ack files at most (default 256 MiB). */
  maxBytes?: number;
  /** Records waiting at most (default 100 000). */
  maxRecords?: number;
  /** A new segment starts past this size (default 4 MiB, at most `maxBytes / 4`). */
  segmentBytes?: number;
  /**
   * When to `fdatasync` (default `never`):
   *
   * - `never`: a record is in the page cache once {@linkcode Spool.append}
   *   returns: it survives a crash (or SIGKILL) of the sidecar, not a crash
   *   of the host.
   * - `batch`: one `fdatasync` per {@linkcode Spool.appendMany} call (an
   *   `append` is a call of one) before it returns: the records survive a
   *   host crash. Ack records are not synced: after a host crash an alert
   *   already delivered may be sent again (the stream's dedup keeps it once
   *   inside its duplicate window).
   * - `always`: as `batch`, and every ack record is synced too, so a host
   *   crash resends nothing already acknowledged.
   */
  fsync?: SpoolFsync;
  /**
   * How a file's data is synced (default `file.syncDataSync()`, i.e.
   * `fdatasync`); tests inject failures here.
   */
  syncData?: (file: Deno.FsFile) => void;
}

/** When a {@linkcode Spool} calls `fdatasync` (see {@linkcode SpoolOptions.fsync}). */
export type SpoolFsync = "never" | "batch" | "always";

/** {@linkcode SpoolOptions} checked, with every default filled in. */
export type ResolvedSpoolOptions = Required<SpoolOptions>;

/**
 * Check the settings of the spool in `dir` and fill in their defaults; a
 * {@linkcode SpoolError} names the first setting out of range.
 *
 * @example
 * ```ts
 * const o = resolveSpoolOptions("/tmp/spool", { maxBytes: 64 << 20 });
 * o.segmentBytes; // 4 MiB: the default, under maxBytes / 4
 * o.fsync; // "never"
 * ```
 */
export function resolveSpoolOptions(dir: string, opts: SpoolOptions = {}): ResolvedSpoolOptions {
  const maxBytes = opts.maxBytes ?? 256 * 1024 * 1024;
  const maxRecords = opts.maxRecords ?? 100_000;
  if (opts.fsync !== undefined && !["never", "batch", "always"].includes(opts.fsync)) {
    throw new SpoolError(dir, "fsync never, batch or always", String(opts.fsync));
  }
  if (!(maxBytes >= 1024)) throw new SpoolError(dir, "maxBytes ≥ 1024", String(maxBytes));
  if (!(maxRecords >= 1)) throw new SpoolError(dir, "maxRecords ≥ 1", String(maxRecords));
  const segmentBytes = Math.max(
    1024,
    Math.min(opts.segmentBytes ?? 4 * 1024 * 1024, Math.floor(maxBytes / 4)),
  );
  return {
    maxBytes,
    maxRecords,
    segmentBytes,
    fsync: opts.fsync ?? "never",
    syncData: opts.syncData ?? ((file) => file.syncDataSync()),
  };
}
