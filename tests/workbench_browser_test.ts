/// <reference lib="dom" />
/**
 * The workbench page in a real browser (headless Chromium through
 * playwright-core): it loads with no console errors, lists the requests,
 * marks the planted prompt-injection tokens on the heatmap, shows a lint
 * error at its line, previews the fixed rule, and shows a live request.
 *
 * The servers are the real backends (tests/helpers/workbench_servers.ts):
 * `explore` over the demo's recorded trace, and a running `serve` monitor on
 * a real nats-server fed through the tap for the live page.
 * Screenshots of the main views go to docs/ with `LW_SCREENSHOTS=1` (or
 * `--screenshots` after `--`), so CI never rewrites them.
 *
 * @module
 */
import assert from "node:assert/strict";
import type { Browser, Page } from "playwright-core";
import {
  chromiumMissing,
  closeBrowser,
  launchBrowser,
  newWatchedPage,
  screenshotsWanted,
} from "./helpers/browser.ts";
import {
  exploreDemoTrace,
  exploreWritable,
  serveLive,
  type WorkbenchUnderTest,
} from "./helpers/workbench_servers.ts";

/** How to start the workbench in traces mode (demo trace) and in live mode. */
export interface WorkbenchServers {
  traces(): Promise<WorkbenchUnderTest>;
  /** Started with write access (the Save test); absent: that test is left out. */
  writable?(): Promise<WorkbenchUnderTest>;
  /** Absent where the backend has no live mode (then that test is left out). */
  live?(): Promise<WorkbenchUnderTest>;
  /** The request holding the planted injection, and its tokens' positions. */
  injection: { request: string; rule: string; positions: number[]; quiet: number[] };
  /** The request ids a rule on the injection latent fires on. */
  injectionFires: string[];
}

const SHOTS = screenshotsWanted();
const DOCS = new URL("../docs/", import.meta.url);

async function shot(page: Page, name: string, fullPage = false) {
  if (!SHOTS) return;
  await page.waitForTimeout(150); // let the charts finish drawing
  await page.screenshot({ path: new URL(name, DOCS).pathname, fullPage });
}

/** Wait until the page says the view `view` is drawn. */
async function ready(page: Page, view: string) {
  await page.waitForFunction(
    (v) => {
      const wb = (globalThis as unknown as { __workbench?: { ready: boolean; view: string } })
        .__workbench;
      return wb?.ready === true && wb.view === v;
    },
    view,
    { timeout: 15_000 },
  );
}

const BROKEN_RULE = `version: 2
rules:
  - id: injection-probe
    title: Injection latent above 2
    severity: high
    when: { sae: demo-res, latent: 0, abov: 2.0 }
`;

/** Register the browser tests against `servers` under `name`. */
export function workbenchBrowserTests(name: string, servers: WorkbenchServers) {
  const skip = chromiumMissing();
  if (skip) console.warn(skip);
  const opts = { ignore: skip !== "", sanitizeOps: false, sanitizeResources: false };

  Deno.test({
    name: `workbench (${name}): pages load clean, requests, heatmap marks, lint, preview`,
    ...opts,
    fn: async (t) => {
      const server = await servers.traces();
      let browser: Browser | null = null;
      try {
        browser = await launchBrowser();
        const { page, errors } = await newWatchedPage(browser);
        await page.goto(server.base, { waitUntil: "load" });
        await ready(page, "requests");

        await t.step("the requests list shows the requests", async () => {
          await page.waitForSelector(`tr[data-request-id="${servers.injection.request}"]`);
          const ids = await page.$$eval(
            "#requests-body tr",
            (rows) => rows.map((r) => (r as HTMLElement).dataset.requestId),
          );
          assert(ids.length >= 2, `requests listed: ${ids.join(", ")}`);
          assert(ids.includes(servers.injection.request));
          await shot(page, "workbench-requests.png");
          await page.check("#f-alert");
          await page.waitForFunction(() =>
            [...document.querySelectorAll("#requests-body tr")].every((r) =>
              Number((r as HTMLElement).dataset.alerts) > 0
            )
          );
        });

        await t.step("the heatmap marks the planted injection tokens", async () => {
          await page.click(`tr[data-request-id="${servers.injection.request}"] a`);
          await ready(page, "request");
          await page.waitForSelector("#heatmap[data-drawn='1']");
          // a planted token carries the rule's alert, or at least crosses its threshold
          const marked = await page.$$eval("#token-strip li", (els) =>
            els.map((e) => ({
              pos: Number((e as HTMLElement).dataset.pos),
              alert: (e as HTMLElement).dataset.alert ?? "",
              over: (e as HTMLElement).dataset.over ?? "",
            })));
          const rule = servers.injection.rule;
          const hit = (p: number) =>
            marked.some((m) => m.pos === p && `${m.alert} ${m.over}`.split(" ").includes(rule));
          for (const p of servers.injection.positions) assert(hit(p), `token ${p} marked`);
          for (const p of servers.injection.quiet) assert(!hit(p), `token ${p} not marked`);
          assert(marked.some((m) => m.alert.split(" ").includes(rule)), "the alert is marked");
          const rows = Number(await page.getAttribute("#heatmap", "data-rows"));
          assert(rows >= 2, `heatmap rows: ${rows}`);
          await shot(page, "workbench-heatmap.png");
        });

        await t.step("a latent's page opens from the heatmap's rows", async () => {
          await page.click("#heatmap-rows tbody tr:first-child a");
          await ready(page, "latent");
          await page.waitForSelector("#latent-top tbody tr");
          assert((await page.textContent("#latent-label"))?.trim());
          assert(await page.$("#latent-top .focus"), "the focus token is highlighted");
          await shot(page, "workbench-latent.png");
        });

        await t.step("label search finds a latent", async () => {
          await page.goto(`${server.base}#/labels`);
          await ready(page, "labels");
          await page.fill("#label-q", "promt injection");
          await page.waitForSelector("#label-results li[data-latent]");
        });

        await t.step("a rule with a mistake shows the lint error at its line", async () => {
          await page.goto(`${server.base}#/rules`);
          await ready(page, "rules");
          await page.fill("#policy-text", BROKEN_RULE);
          await page.waitForSelector('#lint-problems li.error[data-line="6"]');
          await page.waitForSelector('#gutter li.error[data-line="6"]');
          const col = Number(await page.getAttribute("#lint-problems li.error", "data-col"));
          assert(col > 1, `column ${col}`);
        });

        await t.step("fixing it shows the preview with the expected requests", async () => {
          const fixed = BROKEN_RULE.replace("abov:", "above:");
          await page.fill("#policy-text", fixed);
          await page.waitForSelector('#preview[data-state="done"]');
          assert.deepEqual(await page.$$("#lint-problems li.error"), []);
          const fired = await page.$$eval(
            "#preview-requests details[data-fired='1']",
            (els) => els.map((e) => (e as HTMLElement).dataset.requestId).sort(),
          );
          assert.deepEqual(fired, [...servers.injectionFires].sort());
          await page.waitForSelector("#preview-requests details[open] .cond-chart[data-drawn='1']");
          assert(await page.$("#preview-requests details[open] pre.alert-json"));
          await page.fill("#positives", servers.injectionFires.join(", "));
          await page.selectOption("#curve-rule", "injection-probe");
          await page.waitForSelector("#curve[data-drawn='1']");
          assert(await page.isDisabled("#save"), "Save is disabled without write access");
          await page.locator("#policy-text").blur();
          await shot(page, "workbench-rule.png", true);
        });

        assert.deepEqual(errors, [], "no console errors");
        await page.close();
      } finally {
        await closeBrowser(browser);
        await server.close();
      }
    },
  });

  if (servers.writable) {
    const writable = servers.writable;
    Deno.test({
      name: `workbench (${name}): Save writes the policy where the page may write`,
      ...opts,
      fn: async () => {
        const server = await writable();
        let browser: Browser | null = null;
        try {
          browser = await launchBrowser();
          const { page, errors } = await newWatchedPage(browser);
          await page.goto(`${server.base}#/rules`, { waitUntil: "load" });
          await ready(page, "rules");
          await page.waitForSelector('#preview[data-state="done"]');
          assert(await page.isEnabled("#save"), "Save is enabled with write access");
          await page.fill("#policy-text", BROKEN_RULE.replace("abov:", "above:"));
          await page.waitForSelector('#preview[data-state="done"]');
          await page.click("#save");
          await page.waitForFunction(() =>
            document.getElementById("save-note")?.textContent?.startsWith("saved")
          );
          assert.deepEqual(errors, [], "no console errors");
          await page.close();
        } finally {
          await closeBrowser(browser);
          await server.close();
        }
      },
    });
  }

  if (!servers.live) return;
  const live = servers.live;
  Deno.test({
    name: `workbench (${name}): a live request appears on the requests page`,
    ...opts,
    fn: async () => {
      const server = await live();
      let browser: Browser | null = null;
      try {
        browser = await launchBrowser();
        const { page, errors } = await newWatchedPage(browser);
        await page.goto(server.base, { waitUntil: "load" });
        await ready(page, "requests");
        await page.waitForSelector("#live-state.on");
        const id = await server.publish!();
        await page.waitForSelector(`#requests-body tr[data-request-id="${id}"]`, {
          timeout: 15_000,
        });
        assert.deepEqual(errors, [], "no console errors");
        await page.close();
      } finally {
        await closeBrowser(browser);
        await server.close();
      }
    },
  });
}

/** The real backends: `explore` over the demo's trace (read-only and writable), `serve` live. */
const servers: WorkbenchServers = {
  traces: exploreDemoTrace,
  writable: exploreWritable,
  live: serveLive,
  injection: {
    request: "req-2-injection",
    rule: "prompt-injection",
    positions: [4, 6, 7], // "Ignore", "previous", "instructions"
    quiet: [0, 1, 2, 3],
  },
  injectionFires: ["req-2-injection"],
};

workbenchBrowserTests("explore and serve", servers);
