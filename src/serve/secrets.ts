/**
 * Secrets a monitor reads from its environment at start-up, named by the
 * monitor file: the NATS password (`nats.password_env`). Shared by the
 * `nats` start-up step and `serve --check`, so both refuse the same way.
 *
 * @module
 */
import type { MonitorConfig } from "../config/monitor.ts";
import type { RedactOptions } from "../core/redact.ts";

/** A variable the monitor file names is not set. */
export class MissingSecretError extends TypeError {
  /** The environment variable. */
  readonly variable: string;
  constructor(message: string, variable: string) {
    super(message);
    this.name = "MissingSecretError";
    this.variable = variable;
  }
}

/**
 * The NATS password `nats.password_env` names (undefined when the monitor
 * names none). Throws {@linkcode MissingSecretError} when the variable is
 * unset.
 *
 * @example
 * ```ts
 * import { parseMonitorConfig } from "../config/monitor.ts";
 * const cfg = parseMonitorConfig(
 *   "monitor: m\nmodel: x\nhook: h\nsaes: [{id: s, path: ./sae}]\npolicies: [./p.yaml]\n" +
 *     "nats: {user: lw, password_env: LW_NATS_PASSWORD}\n",
 *   "/srv/lw/m.yaml",
 * );
 * natsPassword(cfg, (k) => ({ LW_NATS_PASSWORD: "lw0123" } as Record<string, string>)[k]); // "lw0123"
 * ```
 */
export function natsPassword(
  config: Pick<MonitorConfig, "file" | "nats">,
  env: (name: string) => string | undefined = (name) => Deno.env.get(name),
): string | undefined {
  const name = config.nats.passwordEnv;
  if (!name) return undefined;
  const pass = env(name);
  if (pass === undefined) {
    throw new MissingSecretError(
      `${config.file}: nats.password_env: expected environment variable ${name} to hold the NATS password, found it unset`,
      name,
    );
  }
  return pass;
}

/**
 * The bearer token of the workbench and state-changing endpoints that
 * `control.token_env` names (undefined when the monitor names none).
 * Throws {@linkcode MissingSecretError} when the variable is unset or empty.
 *
 * @example
 * ```ts
 * import { parseMonitorConfig } from "../config/monitor.ts";
 * const cfg = parseMonitorConfig(
 *   "monitor: m\nmodel: x\nhook: h\nsaes: [{id: s, path: ./sae}]\npolicies: [./p.yaml]\n" +
 *     "control: {listen: 0.0.0.0:8787, token_env: LW_UI_TOKEN}\n",
 *   "/srv/lw/m.yaml",
 * );
 * controlToken(cfg, (k) => ({ LW_UI_TOKEN: "t0k" } as Record<string, string>)[k]); // "t0k"
 * ```
 */
export function controlToken(
  config: Pick<MonitorConfig, "file" | "control">,
  env: (name: string) => string | undefined = (name) => Deno.env.get(name),
): string | undefined {
  const name = config.control?.tokenEnv;
  if (!name) return undefined;
  const token = env(name);
  if (!token) {
    throw new MissingSecretError(
      `${config.file}: control.token_env: expected environment variable ${name} to hold the ` +
        `control API's bearer token, found it ${token === undefined ? "unset" : "empty"}`,
      name,
    );
  }
  return token;
}

/**
 * The monitor's redaction (`redaction:`): its default mode, and the HMAC key
 * of `hash` mode read from the variable `redaction.hash_key_env` names.
 * Throws {@linkcode MissingSecretError} when that variable is unset or empty.
 *
 * @example
 * ```ts
 * import { parseMonitorConfig } from "../config/monitor.ts";
 * const cfg = parseMonitorConfig(
 *   "monitor: m\nmodel: x\nhook: h\nsaes: [{id: s, path: ./sae}]\npolicies: [./p.yaml]\n" +
 *     "redaction: {default: hash, hash_key_env: LW_REDACT_KEY}\n",
 *   "/srv/lw/m.yaml",
 * );
 * monitorRedaction(cfg, (k) => ({ LW_REDACT_KEY: "k3y" } as Record<string, string>)[k]);
 * // { mode: "hash", hashKey: "k3y" }
 * ```
 */
export function monitorRedaction(
  config: Pick<MonitorConfig, "file" | "redaction">,
  env: (name: string) => string | undefined = (name) => Deno.env.get(name),
): RedactOptions {
  const name = config.redaction.hashKeyEnv;
  if (!name) return { mode: config.redaction.default };
  const key = env(name);
  if (!key) {
    throw new MissingSecretError(
      `${config.file}: redaction.hash_key_env: expected environment variable ${name} to hold ` +
        `the key of hashed token text, found it ${key === undefined ? "unset" : "empty"}`,
      name,
    );
  }
  return { mode: config.redaction.default, hashKey: key };
}
