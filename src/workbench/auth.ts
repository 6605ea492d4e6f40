/**
 * Who may use the workbench: anyone on a loopback listener; on any other
 * address a bearer token (`control.token_env`), given as
 * `Authorization: Bearer <token>`, or once as `/ui/?token=...`, which sets
 * an HttpOnly SameSite=Strict cookie. Compared in constant time.
 *
 * @module
 */
import type { Context, MiddlewareHandler } from "hono";
import { isLoopbackHost } from "../config/monitor_schema.ts";

/** The cookie `/ui/?token=` sets. */
export const TOKEN_COOKIE = "latentwatch_ui_token";

/** Whether `host` (of a `host:port` listen address) is a loopback address. */
export const isLoopback: (host: string) => boolean = isLoopbackHost;

/** Equal strings, compared in time independent of where they differ. */
export function constantTimeEqual(a: string, b: string): boolean {
  const x = new TextEncoder().encode(a);
  const y = new TextEncoder().encode(b);
  let diff = x.length ^ y.length;
  for (let i = 0; i < Math.max(x.length, y.length); i++) diff |= (x[i] ?? 0) ^ (y[i] ?? 0);
  return diff === 0;
}

function cookieToken(c: Context): string | undefined {
  for (const part of (c.req.header("Cookie") ?? "").split(";")) {
    const [k, ...v] = part.trim().split("=");
    if (k !== TOKEN_COOKIE) continue;
    try {
      return decodeURIComponent(v.join("="));
    } catch {
      return undefined; // a malformed cookie is no token
    }
  }
  return undefined;
}

/**
 * Middleware requiring `token`. Without one, only requests naming a
 * loopback host pass (a DNS-rebinding guard). A `?token=` that matches sets
 * the cookie and redirects to the same path without it.
 *
 * @example
 * ```ts
 * import { Hono } from "hono";
 * import { requireToken } from "./auth.ts";
 * const app = new Hono();
 * app.use("/ui/*", requireToken("s3cret"));
 * ```
 */
export function requireToken(token: string | undefined): MiddlewareHandler {
  return async (c, next) => {
    if (token === undefined) {
      // open only to loopback: a page elsewhere that rebinds its name to 127.0.0.1 is refused
      const host = new URL(c.req.url).hostname;
      if (isLoopback(host)) return await next();
      return c.json(
        {
          error:
            `expected a loopback Host (127.0.0.1, localhost, [::1]) without a token, found '${host}'`,
        },
        403,
      );
    }
    const q = c.req.query("token");
    if (q !== undefined && constantTimeEqual(q, token)) {
      const url = new URL(c.req.url);
      url.searchParams.delete("token");
      return c.body(null, 303, {
        Location: url.pathname + url.search,
        "Set-Cookie": `${TOKEN_COOKIE}=${
          encodeURIComponent(token)
        }; Path=/ui; HttpOnly; SameSite=Strict`,
      });
    }
    const auth = c.req.header("Authorization") ?? "";
    const bearer = auth.startsWith("Bearer ") ? auth.slice(7) : undefined;
    const given = bearer ?? cookieToken(c);
    if (given !== undefined && constantTimeEqual(given, token)) return await next();
    return c.json(
      {
        error:
          "expected 'Authorization: Bearer <token>' (control.token_env), found none or another",
      },
      401,
      { "WWW-Authenticate": "Bearer" },
    );
  };
}

/**
 * Middleware refusing cross-site writes: a POST or PUT must carry
 * `Content-Type: application/json` (which a form or a plain cross-site fetch
 * cannot send without a preflight) and no `Origin` other than the page's own.
 *
 * @example
 * ```ts
 * import { Hono } from "hono";
 * import { sameSiteWrites } from "./auth.ts";
 * const app = new Hono();
 * app.use("/ui/api/*", sameSiteWrites());
 * ```
 */
export function sameSiteWrites(): MiddlewareHandler {
  return async (c, next) => {
    if (c.req.method !== "POST" && c.req.method !== "PUT") return await next();
    const type = c.req.header("Content-Type") ?? "";
    if (!type.toLowerCase().startsWith("application/json")) {
      return c.json({ error: `expected Content-Type: application/json, found '${type}'` }, 415);
    }
    const origin = c.req.header("Origin");
    const site = c.req.header("Sec-Fetch-Site");
    if ((origin !== undefined && origin !== new URL(c.req.url).origin) || site === "cross-site") {
      return c.json(
        { error: `expected a request from this page's origin, found '${origin ?? site}'` },
        403,
      );
    }
    return await next();
  };
}
