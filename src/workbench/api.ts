/**
 * The workbench's HTTP API under `/ui/api/` and its static page under
 * `/ui/` (Hono), mounted on the control API by `serve` and on a local
 * listener by `explore`. Every shape is documented in docs/workbench.md.
 *
 * @module
 */
import { Hono } from "hono";
import { streamSSE } from "hono/streaming";
import { LiveStore } from "./live_source.ts";
import { fileURLToPath } from "node:url";
import { extname, join, normalize } from "node:path";
import { bodyLimit } from "hono/body-limit";
import { requireToken, sameSiteWrites } from "./auth.ts";
import { lintPolicyText, previewPolicy, PreviewRequestError } from "./policy_preview.ts";
import type { Evaluation, TraceStore } from "./trace_source.ts";
import {
  LabelIndex,
  latentPage,
  NotFoundError,
  requestSignals,
  requestText,
  strongestLatents,
  summarize,
} from "./views.ts";

/** What the workbench shows: the loaded traces, evaluated with the monitor's policies. */
export interface WorkbenchSource {
  mode: "traces" | "live";
  store: TraceStore;
  /** The monitor's policies over the store. */
  evaluation: Evaluation;
  /** Request ids marked positive when a preview names none (`explore --positives`). */
  positives?: string[];
}

/** Options of {@linkcode workbenchApi}. */
export interface WorkbenchOptions {
  /** Save policy files back (`PUT /ui/api/policy`). */
  writable?: boolean;
  /** Bearer token every `/ui/` route requires (none: open, for loopback listeners). */
  token?: string;
  /** Folder of the page's files (default `src/workbench/static/`). */
  staticDir?: string;
  /** Resolves when the server shuts down: live streams end then. */
  closed?: Promise<void>;
}

/**
 * `/ui/vendor/<name>` → a file of an npm package of deno.json's imports, as
 * Deno resolves it on disk (under `node_modules/`).
 */
export const VENDOR_FILES: Readonly<Record<string, () => string>> = {
  "echarts.min.js": () => import.meta.resolve("echarts/dist/echarts.min.js"),
};

const STATIC = fileURLToPath(new URL("./static/", import.meta.url));

/** Largest request body (a policy text) the API reads. */
const MAX_BODY_BYTES = 1 << 20;
/** Most requests one listing returns, and most label search results. */
const MAX_LIST = 5000;
const MAX_LABELS = 200;
/** Longest label query (fuzzy search cost grows with it). */
const MAX_QUERY = 200;
/** Live streams open at once, and events queued for one slow reader. */
const MAX_LIVE_STREAMS = 16;
const MAX_SSE_BACKLOG = 256;
const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".svg": "image/svg+xml",
  ".png": "image/png",
};

/**
 * Build the workbench routes (all under `/ui/`).
 *
 * @example
 * ```ts
 * import { workbenchApi, type WorkbenchSource } from "./api.ts";
 * declare const source: WorkbenchSource;
 * const app = workbenchApi(source, { writable: false });
 * const info = await (await app.request("/ui/api/info")).json();
 * ```
 */
export function workbenchApi(source: WorkbenchSource, opts: WorkbenchOptions = {}): Hono {
  const app = new Hono();
  const { store } = source;
  const m = store.monitor;
  const policyFiles = m.config.policies;
  const labels = new LabelIndex(store);
  app.use("/ui/*", requireToken(opts.token));
  app.use("/ui", requireToken(opts.token));
  app.use("/ui/api/*", sameSiteWrites());
  app.use(
    "/ui/api/*",
    bodyLimit({
      maxSize: MAX_BODY_BYTES,
      onError: (c) => c.json({ error: `expected a body of at most ${MAX_BODY_BYTES} bytes` }, 413),
    }),
  );

  app.get("/ui/api/info", (c) =>
    c.json({
      mode: source.mode,
      monitor: m.config.monitor,
      model: m.config.model,
      hook: m.config.hook,
      saes: [...m.models.saes].map(([id, w]) => ({
        id,
        dSae: w.dSae,
        labelled: (w.labels?.size ?? 0) > 0,
      })),
      probes: [...m.models.probes.keys()],
      rules: m.set.rules.map((r) => ({
        id: r.id,
        title: r.def.title,
        severity: r.def.severity,
        file: r.def.source.file,
        line: r.def.source.line,
      })),
      writable: opts.writable === true,
      policyFiles,
      traces: store.paths,
      positives: source.positives ?? [],
      requests: store.requests.size,
    }));

  app.get("/ui/api/requests", (c) => {
    const alert = c.req.query("alert");
    const rule = c.req.query("rule") || undefined;
    const tenant = c.req.query("tenant") || undefined;
    const text = c.req.query("text")?.toLowerCase() || undefined;
    const limit = Number(c.req.query("limit") ?? 1000);
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIST) {
      return c.json(
        { error: `limit: expected an integer in 1..${MAX_LIST}, found '${c.req.query("limit")}'` },
        400,
      );
    }
    const out = [];
    for (const r of store.requests.values()) {
      const s = summarize(r, source.evaluation);
      if (alert === "1" && s.alerts === 0) continue;
      if (rule && !s.rules.includes(rule)) continue;
      if (tenant && s.tenant !== tenant) continue;
      if (text && !requestText(r).toLowerCase().includes(text)) continue;
      out.push(s);
      if (out.length >= limit) break;
    }
    return c.json({ requests: out });
  });

  app.get("/ui/api/requests/:id", (c) => {
    const id = c.req.param("id");
    const r = store.requests.get(id);
    if (!r) return c.json({ error: `no request '${id}' in the loaded traces` }, 404);
    const firings = source.evaluation.byRequest.get(id) ?? [];
    return c.json({
      id,
      ...(r.tenant !== undefined ? { tenant: r.tenant } : {}),
      tokens: r.tokens,
      signals: requestSignals(store, r, m.set),
      latents: strongestLatents(store, r),
      alerts: firings.flatMap((f) =>
        f.alert
          ? [{
            id: f.alert.id,
            rule: f.rule,
            severity: f.alert.severity,
            start: f.alert.tokens.start,
            end: f.alert.tokens.end,
            title: f.alert.title,
            description: f.alert.description,
          }]
          : []
      ),
      steering: firings.flatMap((f) =>
        f.steer.map((s) => ({ position: f.positions[0], op: s, rule: f.rule }))
      ),
    });
  });

  app.get("/ui/api/latents/:sae/:latent", (c) => {
    try {
      return c.json(latentPage(store, c.req.param("sae"), Number(c.req.param("latent"))));
    } catch (err) {
      if (err instanceof NotFoundError) return c.json({ error: err.message }, 404);
      throw err;
    }
  });

  app.get("/ui/api/labels", (c) => {
    const limit = Number(c.req.query("limit") ?? 20);
    const q = c.req.query("q") ?? "";
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LABELS) {
      return c.json(
        {
          error: `limit: expected an integer in 1..${MAX_LABELS}, found '${c.req.query("limit")}'`,
        },
        400,
      );
    }
    if (q.length > MAX_QUERY) {
      return c.json(
        { error: `q: expected at most ${MAX_QUERY} characters, found ${q.length}` },
        400,
      );
    }
    return c.json({ results: labels.search(q, limit) });
  });

  const knownFile = (file: string | undefined) => file === undefined || policyFiles.includes(file);
  const fileError = (file: string) => ({
    error: `no policy file '${file}' in the monitor (expected one of: ${policyFiles.join(", ")})`,
  });

  app.get("/ui/api/policy", async (c) => {
    const file = c.req.query("file") ?? policyFiles[0];
    if (!knownFile(file)) return c.json(fileError(file), 404);
    return c.json({ file, text: await Deno.readTextFile(file), writable: opts.writable === true });
  });

  const body = async (c: { req: { json(): Promise<unknown> } }) => {
    const b = await c.req.json().catch(() => null) as Record<string, unknown> | null;
    if (!b || typeof b.text !== "string") return null;
    if (b.file !== undefined && (typeof b.file !== "string" || !knownFile(b.file))) return null;
    return b;
  };
  const isStrings = (v: unknown) => Array.isArray(v) && v.every((x) => typeof x === "string");

  app.post("/ui/api/policy/lint", async (c) => {
    const b = await body(c);
    if (!b) {
      return c.json({
        error: "expected a JSON body {text, file?} (file: a policy file of the monitor)",
      }, 400);
    }
    const file = (b.file as string | undefined) ?? policyFiles[0];
    return c.json({ problems: lintPolicyText(store, b.text as string, file).problems });
  });

  app.post("/ui/api/policy/preview", async (c) => {
    const b = await body(c);
    const curveOk = b?.curve === undefined ||
      (typeof b.curve === "object" && b.curve !== null &&
        typeof (b.curve as { rule?: unknown }).rule === "string");
    if (!b || !curveOk || (b.positives !== undefined && !isStrings(b.positives))) {
      return c.json({
        error: "expected a JSON body {text, file?, curve?: {rule}, positives?: [request id]}",
      }, 400);
    }
    const file = (b.file as string | undefined) ?? policyFiles[0];
    try {
      return c.json(
        await previewPolicy(store, b.text as string, file, {
          curve: b.curve as { rule: string } | undefined,
          positives: (b.positives as string[] | undefined) ?? source.positives,
        }),
      );
    } catch (err) {
      if (err instanceof PreviewRequestError) return c.json({ error: err.message }, 400);
      throw err;
    }
  });

  app.put("/ui/api/policy", async (c) => {
    if (!opts.writable) {
      return c.json({ error: "read-only: started without write access (--write)" }, 403);
    }
    const b = await body(c);
    if (!b || typeof b.file !== "string") {
      return c.json({ error: "expected a JSON body {file, text}" }, 400);
    }
    if (!knownFile(b.file)) return c.json(fileError(b.file), 404);
    const { problems } = lintPolicyText(store, b.text as string, b.file);
    if (problems.some((p) => p.severity === "error")) return c.json({ problems }, 422);
    // written beside it and renamed: the policy watcher never reads half a file
    const temp = `${b.file}.${crypto.randomUUID().slice(0, 8)}.tmp`;
    await Deno.writeTextFile(temp, b.text as string);
    await Deno.rename(temp, b.file);
    return c.json({ saved: true, problems });
  });

  let liveStreams = 0;
  app.get("/ui/api/live", (c) => {
    const live = store instanceof LiveStore ? store : undefined;
    if (!live) {
      return c.json(
        { error: "no live feed: the workbench shows traces (explore), not a running monitor" },
        404,
      );
    }
    if (liveStreams >= MAX_LIVE_STREAMS) {
      return c.json({
        error: `expected at most ${MAX_LIVE_STREAMS} live streams, found that many open`,
      }, 429);
    }
    liveStreams++;
    return streamSSE(c, async (stream) => {
      const ended = new Promise<void>((resolve) => stream.onAbort(() => resolve()));
      await stream.write(": latentwatch workbench\n\n");
      // a slow reader gets no backlog past MAX_SSE_BACKLOG events: those are skipped
      let pending = 0;
      const unsubscribe = live.subscribe((id) => {
        const r = live.requests.get(id);
        if (!r || pending >= MAX_SSE_BACKLOG) return;
        pending++;
        stream.writeSSE({
          event: "request",
          data: JSON.stringify(summarize(r, source.evaluation)),
        }).catch(() => {}).finally(() => pending--);
      });
      const timer = setInterval(() => stream.write(": heartbeat\n\n").catch(() => {}), 15_000);
      try {
        await Promise.race([ended, opts.closed ?? new Promise<never>(() => {})]);
      } finally {
        clearInterval(timer);
        unsubscribe();
        liveStreams--;
      }
    });
  });

  app.get("/ui/vendor/:name", async (c) => {
    const resolve = VENDOR_FILES[c.req.param("name")];
    if (!resolve) return c.json({ error: `no vendored file '${c.req.param("name")}'` }, 404);
    return await fileResponse(fileURLToPath(resolve()));
  });

  const staticDir = opts.staticDir ?? STATIC;
  app.get("/ui", (c) => c.redirect("/ui/"));
  app.get("/ui/*", async (c) => {
    const rel = c.req.path.slice("/ui/".length) || "index.html";
    const path = normalize(join(staticDir, rel));
    if (!path.startsWith(normalize(staticDir))) return c.json({ error: "not found" }, 404);
    return await fileResponse(path);
  });
  return app;
}

async function fileResponse(path: string): Promise<Response> {
  try {
    const data = await Deno.readFile(path);
    return new Response(data, {
      headers: { "Content-Type": TYPES[extname(path)] ?? "application/octet-stream" },
    });
  } catch (err) {
    if (err instanceof Deno.errors.NotFound || err instanceof Deno.errors.IsADirectory) {
      return Response.json({ error: "not found" }, { status: 404 });
    }
    throw err;
  }
}
