/**
 * Redaction of the token text an alert carries (its evidence `text`, and the
 * description when its template embedded `{text}`), so that a secret typed
 * into a prompt ("hunter2024", "sk-live-…") does not leave the process
 * verbatim. Pure (hashing is synchronous, in process).
 *
 * Modes, from least to most strict (the stricter of two settings wins, see
 * {@linkcode stricterRedaction}):
 *
 * - `none`: text as the tap sent it;
 * - `hash`: each text replaced by a stable digest, `sha256:` + the first 16
 *   hex digits of SHA-256 of its UTF-8 bytes, or `hmac-sha256:` + 16 hex of
 *   HMAC-SHA-256 under a key when one is given, so equal secrets correlate
 *   without being shown;
 * - `tokens`: each text replaced by {@linkcode REDACTED_MARKER}.
 *
 * The description is re-rendered from its template with the redacted
 * `{text}` when the alert still carries its template and fields
 * ({@linkcode withDescriptionSource}; never serialised); an alert read back
 * from JSON has lost them, and there every occurrence of the joined token
 * text in the description is replaced instead.
 *
 * @module
 */
import { createHash, createHmac } from "node:crypto";
import type { Alert } from "./alert.ts";
import type { Frame } from "./frame/format.ts";
import type { Firing } from "./policy/engine.ts";
import { renderTemplate, type TemplateFields } from "./policy/template.ts";
import { joinTokenText } from "./render/token_text.ts";

/** The redaction modes, least strict first. */
export const REDACT_MODES = ["none", "hash", "tokens"] as const;

/** One of {@linkcode REDACT_MODES}. */
export type RedactMode = (typeof REDACT_MODES)[number];

/** What `tokens` mode puts in place of each text. */
export const REDACTED_MARKER = "[redacted]";

/** How to redact: the mode, and the key of `hash` mode (plain SHA-256 without one). */
export interface RedactOptions {
  mode: RedactMode;
  /** HMAC key for `hash` mode; absent or empty: plain SHA-256. */
  hashKey?: string;
}

/**
 * The stricter of two modes (`tokens` > `hash` > `none`): how a rule's,
 * the monitor's and a sink's settings combine.
 *
 * @example
 * ```ts
 * stricterRedaction("hash", "none"); // "hash"
 * stricterRedaction("hash", "tokens"); // "tokens"
 * ```
 */
export function stricterRedaction(a: RedactMode, b: RedactMode): RedactMode {
  return REDACT_MODES.indexOf(a) >= REDACT_MODES.indexOf(b) ? a : b;
}

/**
 * `text` redacted by `opts`: unchanged (`none`), its digest (`hash`), or
 * the marker (`tokens`).
 *
 * @example
 * ```ts
 * redactText("hunter2024", { mode: "tokens" }); // "[redacted]"
 * redactText("hunter2024", { mode: "hash" }); // "sha256:" + 16 hex digits
 * redactText("hunter2024", { mode: "hash", hashKey: "k" }); // "hmac-sha256:" + 16 hex digits
 * ```
 */
export function redactText(text: string, opts: RedactOptions): string {
  if (opts.mode === "none") return text;
  if (opts.mode === "tokens") return REDACTED_MARKER;
  const hex = opts.hashKey
    ? createHmac("sha256", opts.hashKey).update(text, "utf8").digest("hex")
    : createHash("sha256").update(text, "utf8").digest("hex");
  return `${opts.hashKey ? "hmac-sha256" : "sha256"}:${hex.slice(0, 16)}`;
}

/** A description's template and the fields it was rendered with. */
export interface DescriptionSource {
  template: string;
  fields: TemplateFields;
}

const DESCRIPTION_SOURCE: unique symbol = Symbol("latentwatch.descriptionSource");

type Sourced = Alert & { [DESCRIPTION_SOURCE]?: DescriptionSource };

/**
 * `alert` with its description's template and fields attached under a
 * symbol key, which `JSON.stringify` (and so every rendering) leaves out,
 * so that {@linkcode redactAlert} can re-render the description. Returns
 * the same object.
 *
 * @example
 * ```ts
 * import { ALERT } from "./render/test_alert.ts";
 * const a = withDescriptionSource({ ...ALERT }, { template: "saw {text}", fields: { text: "x" } });
 * JSON.stringify(a).includes("saw {text}"); // false
 * ```
 */
export function withDescriptionSource(alert: Alert, source: DescriptionSource): Alert {
  (alert as Sourced)[DESCRIPTION_SOURCE] = source;
  return alert;
}

/**
 * `alert` with its token text redacted by `opts`, combined with what it
 * already had (`alert.redaction`) by the stricter-wins rule. A new object
 * when anything changes (the alert given is shared by every sink and is
 * never modified); the same object when the combined mode is what it had.
 *
 * Redacted: each `evidence[].text`, and the description when its template
 * used `{text}` (re-rendered; see the module notes). The result says its
 * mode in `redaction`.
 *
 * @example
 * ```ts
 * import { ALERT } from "./render/test_alert.ts";
 * const r = redactAlert(ALERT, { mode: "tokens" });
 * r.evidence[0].text; // "[redacted]"
 * r.redaction; // "tokens"
 * ```
 */
export function redactAlert(alert: Alert, opts: RedactOptions): Alert {
  const had: RedactMode = alert.redaction ?? "none";
  const mode = stricterRedaction(had, opts.mode);
  if (mode === had) return alert;
  const how: RedactOptions = { ...opts, mode };
  const source = (alert as Sourced)[DESCRIPTION_SOURCE];
  const out: Sourced = {
    ...alert,
    evidence: alert.evidence.map((e) =>
      e.text === undefined ? e : { ...e, text: redactText(e.text, how) }
    ),
    redaction: mode as "hash" | "tokens",
  };
  if (alert.description !== undefined) {
    out.description = redactDescription(alert, source, how);
  }
  if (source) {
    out[DESCRIPTION_SOURCE] = {
      template: source.template,
      fields: redactFields(source.fields, how),
    };
  }
  return out;
}

/** Template fields with `text` (the firing tokens' text) redacted. */
function redactFields(fields: TemplateFields, how: RedactOptions): TemplateFields {
  const text = fields.text;
  return typeof text === "string" ? { ...fields, text: redactText(text, how) } : fields;
}

/** The description with its embedded token text redacted. */
function redactDescription(
  alert: Alert,
  source: DescriptionSource | undefined,
  how: RedactOptions,
): string {
  if (source) return renderTemplate(source.template, redactFields(source.fields, how));
  // read back from JSON: the joined text of the firing tokens is what `{text}` rendered
  const joined = joinTokenText(alert.evidence);
  if (!joined || alert.redaction !== undefined) return alert.description!;
  return alert.description!.split(joined).join(redactText(joined, how));
}

/**
 * `frames` with their token text redacted by `opts` (the workbench's live
 * view of serve shows whole requests): the same array under `none`, else
 * new frames for those that carry text.
 *
 * @example
 * ```ts
 * import type { Frame } from "./frame/format.ts";
 * declare const frames: Frame[];
 * redactFrameText(frames, { mode: "tokens" })[0].tokenText; // ["[redacted]", ...]
 * ```
 */
export function redactFrameText(frames: readonly Frame[], opts: RedactOptions): readonly Frame[] {
  if (opts.mode === "none") return frames;
  return frames.map((f) =>
    f.tokenText ? { ...f, tokenText: f.tokenText.map((t) => redactText(t, opts)) } : f
  );
}

/**
 * A firing (as `replay` prints it, with the text of its tokens) with its
 * token text redacted by the stricter of its rule's `redact` and `opts`:
 * `text`, the description (re-rendered) and a dedup key whose template
 * reads `{text}`. The same object when that is `none`.
 *
 * @example
 * ```ts
 * import type { Firing } from "./policy/engine.ts";
 * declare const firing: Firing & { text?: (string | undefined)[] };
 * redactFiring(firing, { mode: "none" }).description; // as the rule's `redact` says
 * ```
 */
export function redactFiring<F extends Firing & { text?: (string | undefined)[] }>(
  firing: F,
  opts: RedactOptions,
): F {
  const mode = stricterRedaction(firing.rule.def.redact ?? "none", opts.mode);
  if (mode === "none") return firing;
  const how: RedactOptions = { ...opts, mode };
  const def = firing.rule.def;
  const fields = firing.descriptionFields && redactFields(firing.descriptionFields, how);
  return {
    ...firing,
    ...(firing.text
      ? { text: firing.text.map((t) => t === undefined ? t : redactText(t, how)) }
      : {}),
    ...(fields && def.description
      ? { description: renderTemplate(def.description, fields), descriptionFields: fields }
      : {}),
    ...(def.throttle.dedupKey.includes("{text}")
      ? { dedupKey: redactText(firing.dedupKey, how) }
      : {}),
  };
}
