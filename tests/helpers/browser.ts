/**
 * Headless Chromium for the workbench's browser tests, driven by
 * playwright-core and pointed at Debian's `chromium` (tests/run.ts installs
 * it with apt-get when running as root). `findChromium()` says whether it is
 * here, so the tests can skip with a clear message where it is not.
 *
 * @module
 */
import { type Browser, chromium, type Page } from "playwright-core";
import { chromiumMissing, findChromium } from "./chromium.ts";

export { chromiumMissing, findChromium };

/** A page with the console errors and page errors it met. */
export interface WatchedPage {
  page: Page;
  errors: string[];
}

/** Launch headless Chromium with no network side traffic. */
export async function launchBrowser(): Promise<Browser> {
  const executablePath = findChromium();
  if (!executablePath) throw new Error(chromiumMissing());
  return await chromium.launch({
    executablePath,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
}

/** A new page (1280×800) collecting console errors, page errors and failed requests. */
export async function newWatchedPage(browser: Browser): Promise<WatchedPage> {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const errors: string[] = [];
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(`console: ${m.text()}`);
  });
  page.on("pageerror", (e) => errors.push(`page: ${e.message}`));
  page.on("requestfailed", (r) => {
    // an SSE stream torn down when the page closes is not an error
    if (!r.url().endsWith("/api/live")) {
      errors.push(`request failed: ${r.url()} ${r.failure()?.errorText ?? ""}`);
    }
  });
  return { page, errors };
}

/** Close the browser, never throwing. */
export async function closeBrowser(browser: Browser | null): Promise<void> {
  try {
    await browser?.close();
  } catch {
    // already gone
  }
}

/** Whether screenshots are to be (re)written: `LW_SCREENSHOTS=1` or `--screenshots`. */
export function screenshotsWanted(): boolean {
  return Deno.env.get("LW_SCREENSHOTS") === "1" || Deno.args.includes("--screenshots");
}
