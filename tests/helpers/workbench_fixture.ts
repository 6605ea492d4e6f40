/**
 * A stand-in for the workbench's backend, for developing and testing the page
 * before (and apart from) the real one: a TEST DOUBLE, not the backend. It
 * serves `src/workbench/static/` at `/ui/`, the chart library from
 * `node_modules` at `/ui/vendor/`, and fixed JSON of the shapes the real
 * `/ui/api/` answers (see docs/workbench.md), over the fixture's five
 * requests. Its lint knows one mistake (an unknown key inside `{ ... }`) and
 * its preview evaluates `latent: N, above: T` rules only.
 *
 * @module
 */
import { Hono } from "hono";
import { streamSSE } from "hono/streaming";
import {
  LATENTS,
  latentValues,
  POLICY_TEXT,
  REQUESTS,
  RULES,
  SAE,
} from "./workbench_fixture_data.ts";

const ROOT = new URL("../../", import.meta.url);
const STATIC = new URL("src/workbench/static/", ROOT);
const VENDOR: Record<string, URL> = {
  "echarts.min.js": new URL("node_modules/echarts/dist/echarts.min.js", ROOT),
};
const TYPES: Record<string, string> = {
  html: "text/html; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  css: "text/css; charset=utf-8",
};
const POLICY_FILE = "policies/fixture.yaml";
const KNOWN_KEYS = new Set([
  "sae",
  "latent",
  "label",
  "above",
  "below",
  "pool",
  "mean",
  "max",
  "macro",
  "name",
  "tenant",
  "clamp",
  "value",
  "alerts",
  "per_seconds",
  "tokens",
  "probe",
]);

/** A running stand-in: its base URL (ending in `/ui/`), live push, close. */
export interface WorkbenchFixture {
  base: string;
  /** Push a request summary to the live stream (and the list). */
  publish(summary: Record<string, unknown>): void;
  close(): Promise<void>;
}

interface Rule {
  id: string;
  severity: string;
  latent: number;
  above: number;
}

function firing(rule: Rule, values: number[]): number[] {
  return values.flatMap((v, i) => v > rule.above ? [i] : []);
}

function valuesOf(latent: number, id: string): number[] {
  const r = REQUESTS.find((x) => x.id === id)!;
  const l = LATENTS.find((x) => x.latent === latent);
  return l ? latentValues(l, r) : r.tokens.map(() => 0);
}

function alertsOf(id: string, rules: Rule[]) {
  return rules.flatMap((rule) => {
    const at = firing(rule, valuesOf(rule.latent, id));
    if (!at.length) return [];
    return [{
      id: `${id}/${rule.id}`,
      rule: rule.id,
      severity: rule.severity,
      start: at[0],
      end: at[at.length - 1] + 1,
      positions: at,
    }];
  });
}

function summary(r: (typeof REQUESTS)[number]) {
  const alerts = alertsOf(r.id, RULES);
  return {
    id: r.id,
    tokens: r.tokens.length,
    alerts: alerts.length,
    rules: alerts.map((a) => a.rule),
    tenant: r.tenant,
    text: r.tokens.slice(1).join(" "),
  };
}

/** The fixture's lint: unknown keys inside `{ ... }`, tabs. */
export function fixtureLint(text: string) {
  const problems: {
    line: number;
    col: number;
    severity: string;
    message: string;
    formatted: string;
  }[] = [];
  text.split("\n").forEach((line, i) => {
    const add = (col: number, message: string) =>
      problems.push({
        line: i + 1,
        col,
        severity: "error",
        message,
        formatted: `${POLICY_FILE}:${i + 1}:${col}: error: ${message}`,
      });
    const tab = line.indexOf("\t");
    if (tab >= 0) add(tab + 1, "tab in indentation");
    const open = line.indexOf("{");
    if (open < 0) return;
    for (const m of line.slice(open).matchAll(/([A-Za-z_]+)\s*:/g)) {
      if (!KNOWN_KEYS.has(m[1])) add(open + m.index! + 1, `unknown key '${m[1]}'`);
    }
  });
  return problems;
}

/** The rules in a policy text, for the fixture's preview. */
export function fixtureRules(text: string): Rule[] {
  return text.split(/^\s*-\s*id:\s*/m).slice(1).flatMap((block) => {
    const id = block.split("\n")[0].trim();
    const latent = /latent:\s*(\d+)/.exec(block);
    const above = /above:\s*([\d.]+)/.exec(block);
    if (!latent || !above) return [];
    const sev = /severity:\s*(\w+)/.exec(block)?.[1] ?? "medium";
    return [{ id, severity: sev, latent: Number(latent[1]), above: Number(above[1]) }];
  });
}

function preview(body: { text: string; curve?: { rule: string }; positives?: string[] }) {
  const problems = fixtureLint(body.text);
  const rules = problems.length ? [] : fixtureRules(body.text);
  const requests = REQUESTS.map((r) => {
    const alerts = alertsOf(r.id, rules);
    return {
      id: r.id,
      fired: alerts.length > 0,
      alerts,
      tokens: r.tokens,
      conditions: rules.map((rule) => {
        const values = valuesOf(rule.latent, r.id);
        return {
          rule: rule.id,
          name: `${SAE}#${rule.latent}`,
          op: ">",
          threshold: rule.above,
          values,
          firedAt: firing(rule, values),
        };
      }),
    };
  });
  const out: Record<string, unknown> = { problems, requests };
  const rule = rules.find((r) => r.id === body.curve?.rule);
  if (rule) {
    const pos = new Set(body.positives?.length ? body.positives : ["req-2-injection"]);
    const points = [];
    for (let t = 0; t <= 4.0001; t += 0.25) {
      const fires = (id: string) => valuesOf(rule.latent, id).some((v) => v > t);
      const benign = REQUESTS.filter((r) => !pos.has(r.id));
      const positives = REQUESTS.filter((r) => pos.has(r.id));
      points.push({
        threshold: Number(t.toFixed(2)),
        benignRate: benign.filter((r) => fires(r.id)).length / Math.max(1, benign.length),
        detection: positives.filter((r) => fires(r.id)).length / Math.max(1, positives.length),
      });
    }
    out.curve = { rule: rule.id, points };
  }
  return out;
}

/** Start the stand-in on 127.0.0.1 (a free port). */
export function startWorkbenchFixture(
  opts: { mode?: "live" | "traces"; writable?: boolean } = {},
): WorkbenchFixture {
  const mode = opts.mode ?? "traces";
  const extra: ReturnType<typeof summary>[] = [];
  const listeners = new Set<(data: string) => void>();
  const streams = new Set<{ abort(): void }>();
  let policyText = POLICY_TEXT;
  const app = new Hono();
  app.get("/ui", (c) => c.redirect("/ui/"));
  app.get("/ui/api/info", (c) =>
    c.json({
      mode,
      monitor: "fixture-monitor",
      model: "demo-model",
      hook: "blocks.4.hook_resid_post",
      saes: [{ id: SAE, dSae: 32, labelled: LATENTS.length }],
      rules: RULES.map((r, i) => ({
        id: r.id,
        title: r.title,
        severity: r.severity,
        file: POLICY_FILE,
        line: 3 + i * 4,
      })),
      writable: opts.writable ?? false,
      policyFiles: [POLICY_FILE],
    }));
  app.get("/ui/api/requests", (c) => {
    const q = c.req.query();
    let list = [...extra, ...REQUESTS.map(summary)];
    if (q.alert === "1") list = list.filter((r) => r.alerts > 0);
    if (q.rule) list = list.filter((r) => r.rules.includes(q.rule));
    if (q.tenant) list = list.filter((r) => r.tenant.includes(q.tenant));
    if (q.text) list = list.filter((r) => r.text.toLowerCase().includes(q.text.toLowerCase()));
    return c.json({ requests: list.slice(0, Number(q.limit ?? 500)) });
  });
  app.get("/ui/api/requests/:id", (c) => {
    const r = REQUESTS.find((x) => x.id === c.req.param("id"));
    if (!r) return c.json({ error: "no such request" }, 404);
    const alerts = alertsOf(r.id, RULES);
    const signals = RULES.map((rule) => {
      const l = LATENTS.find((x) => x.latent === rule.latent)!;
      return {
        key: `${SAE}#${rule.latent}`,
        label: l.label,
        sae: SAE,
        latent: rule.latent,
        values: latentValues(l, r),
        thresholds: [{ rule: rule.id, op: ">", value: rule.above }],
      };
    });
    const latents = LATENTS.map((l) => ({
      sae: SAE,
      latent: l.latent,
      label: l.label,
      values: latentValues(l, r),
    }));
    const steering = alerts.filter((a) => a.rule === "prompt-injection").flatMap((a) =>
      a.positions.map((p) => ({ position: p, op: `clamp ${SAE}#0 = 0`, rule: a.rule }))
    );
    return c.json({ id: r.id, tokens: r.tokens, signals, latents, alerts, steering });
  });
  app.get("/ui/api/latents/:sae/:latent", (c) => {
    const l = LATENTS.find((x) => x.latent === Number(c.req.param("latent")));
    if (!l) return c.json({ error: "no such latent" }, 404);
    const top = REQUESTS.flatMap((r) =>
      latentValues(l, r).map((value, position) => ({
        request: r.id,
        position,
        value,
        context: r.tokens.slice(Math.max(0, position - 4), position + 5),
        focus: Math.min(position, 4),
      }))
    ).sort((a, b) => b.value - a.value).slice(0, 8);
    const nearest = LATENTS.filter((x) => x !== l).map((x) => ({
      latent: x.latent,
      label: x.label,
      cosine: Number((0.9 / (1 + Math.abs(x.latent - l.latent))).toFixed(3)),
    })).sort((a, b) => b.cosine - a.cosine);
    const tokens = REQUESTS.reduce((n, r) => n + r.tokens.length, 0);
    const active = REQUESTS.reduce(
      (n, r) => n + latentValues(l, r).filter((v) => v > 0.5).length,
      0,
    );
    return c.json({
      sae: SAE,
      latent: l.latent,
      label: l.label,
      decoderNorm: 1 + l.latent / 100,
      density: active / tokens,
      top,
      nearest,
    });
  });
  app.get("/ui/api/labels", (c) => {
    const q = (c.req.query("q") ?? "").toLowerCase().replace(/\s+/g, "");
    const results = LATENTS.map((l) => {
      const label = l.label.toLowerCase().replace(/\s+/g, "");
      const score = label.includes(q)
        ? 1
        : [...q].filter((ch) => label.includes(ch)).length / Math.max(1, q.length) * 0.8;
      return { sae: SAE, latent: l.latent, label: l.label, score: Number(score.toFixed(3)) };
    }).filter((r) => r.score >= 0.6).sort((a, b) => b.score - a.score);
    return c.json({ results });
  });
  app.get(
    "/ui/api/policy",
    (c) => c.json({ file: POLICY_FILE, text: policyText, writable: opts.writable ?? false }),
  );
  app.post("/ui/api/policy/lint", async (c) => {
    const body = await c.req.json();
    return c.json({ problems: fixtureLint(String(body.text ?? "")) });
  });
  app.post("/ui/api/policy/preview", async (c) => c.json(preview(await c.req.json())));
  app.put("/ui/api/policy", async (c) => {
    if (!opts.writable) return c.json({ error: "read-only" }, 403);
    const body = await c.req.json();
    if (fixtureLint(String(body.text)).length) return c.json({ error: "does not lint" }, 422);
    policyText = String(body.text);
    return c.json({ file: POLICY_FILE, saved: true });
  });
  app.get("/ui/api/live", (c) =>
    streamSSE(c, async (stream) => {
      const send = (data: string) => void stream.writeSSE({ event: "request", data });
      listeners.add(send);
      streams.add(stream);
      stream.onAbort(() => {
        listeners.delete(send);
        streams.delete(stream);
      });
      while (!stream.aborted) await stream.sleep(1000);
    }));
  app.get("/ui/vendor/:file", async (c) => {
    const src = VENDOR[c.req.param("file")];
    if (!src) return c.text("not found", 404);
    return c.body(await Deno.readFile(src), 200, { "content-type": TYPES.js });
  });
  app.get("/ui/:file{.*}", async (c) => {
    const name = c.req.param("file") || "index.html";
    if (!/^[\w.-]+$/.test(name)) return c.text("not found", 404);
    try {
      const body = await Deno.readFile(new URL(name, STATIC));
      return c.body(body, 200, { "content-type": TYPES[name.split(".").pop()!] ?? "text/plain" });
    } catch {
      return c.text("not found", 404);
    }
  });
  const ac = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen: () => {} },
    app.fetch,
  );
  const { port } = server.addr as Deno.NetAddr;
  return {
    base: `http://127.0.0.1:${port}/ui/`,
    publish(s) {
      extra.unshift(s as ReturnType<typeof summary>);
      const data = JSON.stringify(s);
      for (const l of listeners) l(data);
    },
    async close() {
      for (const s of streams) s.abort();
      ac.abort();
      await server.finished;
    },
  };
}

/** Run it by hand: `deno run -A tests/helpers/workbench_fixture.ts [live]`. */
if (import.meta.main) {
  const f = startWorkbenchFixture({
    mode: Deno.args[0] === "live" ? "live" : "traces",
    writable: true,
  });
  console.log(`workbench stand-in (test double) at ${f.base}`);
}
