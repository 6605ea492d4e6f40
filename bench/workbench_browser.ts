/// <reference lib="dom" />
/**
 * The workbench as a policy author meets it, in headless Chromium: `explore`
 * started on a trace of 1,000 requests × 64 tokens (bench/workbench_trace.ts),
 * then the time from starting it to the first request's heatmap drawn in the
 * page, and from a rule edit typed into the page to its preview drawn.
 * Needs Debian's `chromium`; prints one JSON line. Not a timed test.
 *
 * `deno run -A bench/workbench_browser.ts [requests]`
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { writeWorkbenchTrace } from "./workbench_trace.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const CHROMIUM = "/usr/bin/chromium";

/** What one run measured, in milliseconds. */
export interface WorkbenchTimings {
  requests: number;
  tokens_per_request: number;
  /** `explore` spawned → its address printed (trace read and encoded). */
  explore_ready_ms: number;
  /** Page opened on the first request → its heatmap drawn. */
  heatmap_ms: number;
  /** Spawn → first heatmap drawn: what "opening a trace" costs the author. */
  open_to_heatmap_ms: number;
  /** A rule edit typed → its preview drawn (median of 5 edits; includes the page's 350 ms debounce). */
  edit_to_preview_ms: number;
}

const RULE = (threshold: number) =>
  `version: 2\nrules:\n  - id: bench-probe\n    title: Injection latent\n    severity: high\n` +
  `    when: { sae: demo-res, latent: 0, above: ${threshold} }\n`;

/**
 * Measure; null when Chromium is not installed.
 *
 * @example
 * ```ts
 * const t = await benchWorkbenchBrowser(1000);
 * ```
 */
export async function benchWorkbenchBrowser(requests: number): Promise<WorkbenchTimings | null> {
  try {
    await Deno.stat(CHROMIUM);
  } catch {
    return null;
  }
  const dir = await Deno.makeTempDir({ prefix: "lw-bench-wb-" });
  const trace = await writeWorkbenchTrace(dir, requests, `${ROOT}policies/demo.yaml`);
  const t0 = performance.now();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      `${ROOT}src/main.ts`,
      "explore",
      trace,
      "--monitor",
      `${dir}/monitor.yaml`,
      "--listen",
      "127.0.0.1:0",
    ],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
  try {
    let out = "";
    while (!/http:\/\/\S+\/ui\//.test(out)) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`explore ended before printing its address: ${out}`);
      out += value;
    }
    const ready = performance.now() - t0;
    const base = /http:\/\/\S+\/ui\//.exec(out)![0];
    const page = await browser.newPage();
    const h0 = performance.now();
    await page.goto(`${base}#/request/bench-0`, { waitUntil: "load" });
    await page.waitForSelector("#heatmap[data-drawn='1']", { timeout: 60_000 });
    const drawn = performance.now();
    await page.goto(`${base}#/rules`, { waitUntil: "load" });
    await page.waitForFunction(() =>
      document.body.dataset.view === "rules" && document.body.dataset.ready === "1"
    );
    const edits: number[] = [];
    for (let i = 0; i < 5; i++) {
      // mark the shown preview as old, so "done" below is this edit's preview
      await page.evaluate(() => document.getElementById("preview")!.dataset.state = "old");
      const e0 = performance.now();
      await page.fill("#policy-text", RULE(2 + i * 0.25));
      await page.waitForSelector('#preview[data-state="done"]', { timeout: 60_000 });
      edits.push(performance.now() - e0);
    }
    edits.sort((a, b) => a - b);
    return {
      requests,
      tokens_per_request: 64,
      explore_ready_ms: Math.round(ready),
      heatmap_ms: Math.round(drawn - h0),
      open_to_heatmap_ms: Math.round(drawn - t0),
      edit_to_preview_ms: Math.round(edits[2]),
    };
  } finally {
    await browser.close();
    child.kill("SIGTERM");
    await child.status;
    await reader.cancel().catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) {
  console.log(JSON.stringify(await benchWorkbenchBrowser(Number(Deno.args[0] ?? 1000))));
}
