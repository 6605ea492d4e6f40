/**
 * Where Debian's `chromium` is, for the workbench's browser tests and for
 * tests/run.ts (which installs it when missing); no browser driver imported.
 *
 * @module
 */

/** Where to look for the browser: $CHROMIUM, then Debian's paths. */
const CANDIDATES = [
  Deno.env.get("CHROMIUM") ?? "",
  "/usr/bin/chromium",
  "/usr/bin/chromium-browser",
].filter(Boolean);

/** The Chromium binary, or null when none is installed. */
export function findChromium(): string | null {
  for (const path of CANDIDATES) {
    try {
      if (Deno.statSync(path).isFile) return path;
    } catch {
      // not here
    }
  }
  return null;
}

/** Why the browser tests skip, or "" when they can run. */
export function chromiumMissing(): string {
  return findChromium() ? "" : "workbench browser tests SKIPPED: no Chromium found (install " +
    "Debian's `chromium`: `sudo apt-get install chromium`, or point $CHROMIUM at a binary)";
}
