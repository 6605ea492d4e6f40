/**
 * Validate an OCSF event against the official schema of one release (see
 * `ocsf_schema.ts`): every attribute must be one the class, its objects, or
 * a profile the event lists in `metadata.profiles` define (`unmapped` is
 * free-form), values must have the attribute's data type (base types,
 * regex, length, range) and enum, required attributes must be there,
 * captions must match their `_id` siblings, `type_uid` must be `class_uid *
 * 100 + activity_id`, and observables must name attributes of the class.
 * Each issue carries the path of the value it is about (`evidences[0].name`).
 *
 * @module
 */
import type { OcsfAttribute, OcsfClass, OcsfObject, OcsfSchema, OcsfType } from "./ocsf_schema.ts";

/** One finding of the validator, at a path into the event (`finding_info.analytic.type_id`). */
export interface OcsfIssue {
  path: string;
  message: string;
}

/** The outcome: errors make the event invalid; warnings (missing recommended attributes, a time that looks like seconds) do not. */
export interface OcsfReport {
  valid: boolean;
  errors: OcsfIssue[];
  warnings: OcsfIssue[];
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);
const show = (v: unknown): string =>
  v === null
    ? "null"
    : Array.isArray(v)
    ? "an array"
    : typeof v === "object"
    ? "an object"
    : `${typeof v} ${JSON.stringify(v)}`;
const at = (path: string, key: string) => (path === "" ? key : `${path}.${key}`);

const INT32 = 2 ** 31;
/** Timestamps below this (March 1973 in ms) are more likely seconds than milliseconds. */
const MS_FLOOR = 1e11;

/**
 * Check one event against `schema`.
 *
 * @example
 * ```ts
 * import { loadOcsfSchema } from "./ocsf_schema.ts";
 * const schema = await loadOcsfSchema(new URL("../testdata/ocsf-1.3.0/", import.meta.url));
 * const report = validateOcsf(schema, { class_uid: 2004 });
 * report.valid; // false
 * report.errors[0].path; // e.g. "category_uid"
 * ```
 */
export function validateOcsf(schema: OcsfSchema, event: unknown): OcsfReport {
  const errors: OcsfIssue[] = [];
  const warnings: OcsfIssue[] = [];
  const err = (path: string, message: string) => errors.push({ path, message });
  const done = (): OcsfReport => ({ valid: errors.length === 0, errors, warnings });
  if (!isObj(event)) return err("", `an event is a JSON object, got ${show(event)}`), done();
  const cls = typeof event.class_uid === "number" ? schema.classOf(event.class_uid) : undefined;
  if (!cls) {
    err("class_uid", `${show(event.class_uid)} is no event class of OCSF ${schema.version}`);
    return done();
  }
  const md = isObj(event.metadata) ? event.metadata : {};
  if (md.version !== undefined && md.version !== schema.version) {
    err("metadata.version", `declares ${show(md.version)}, validated against ${schema.version}`);
  }
  const profiles = new Set<string>();
  if (Array.isArray(md.profiles)) {
    md.profiles.forEach((p, i) => {
      if (typeof p === "string" && schema.profiles.has(p)) profiles.add(p);
      else err(`metadata.profiles[${i}]`, `${show(p)} is no profile of OCSF ${schema.version}`);
    });
  }
  const ctx: Ctx = {
    schema,
    profiles,
    err,
    warn: (path, message) => warnings.push({ path, message }),
  };
  checkObject(ctx, cls, event, "");
  checkClass(ctx, cls, event);
  if (Array.isArray(event.observables)) {
    event.observables.forEach((o, i) => {
      if (isObj(o) && typeof o.name === "string") {
        checkObservableName(ctx, cls, o.name, `observables[${i}].name`);
      }
    });
  }
  return done();
}

/**
 * The issues of a report, one `path: message` line each.
 *
 * @example
 * ```ts
 * formatIssues([{ path: "is_alert", message: "not defined by OCSF 1.3.0 for detection_finding" }]);
 * // "is_alert: not defined by OCSF 1.3.0 for detection_finding"
 * ```
 */
export function formatIssues(issues: readonly OcsfIssue[]): string {
  return issues.map((i) => `${i.path}: ${i.message}`).join("\n");
}

interface Ctx {
  schema: OcsfSchema;
  profiles: ReadonlySet<string>;
  err(path: string, message: string): void;
  warn(path: string, message: string): void;
}

/** The attribute `key` of `def` as this event may use it, or why it may not. */
function lookup(ctx: Ctx, def: OcsfObject, key: string): OcsfAttribute | string {
  const attr = def.attributes[key];
  if (attr === undefined) {
    const base = key.endsWith("_dt") ? def.attributes[key.slice(0, -3)] : undefined;
    if (base?.type === "timestamp_t" && ctx.profiles.has("datetime")) {
      return { ...base, name: key, type: "datetime_t", requirement: "optional" };
    }
    return `not defined by OCSF ${ctx.schema.version} for ${def.name}` +
      (base?.type === "timestamp_t" ? " (the datetime profile is not applied)" : "");
  }
  if (attr.profile !== undefined && !ctx.profiles.has(attr.profile)) {
    return `belongs to profile '${attr.profile}', which metadata.profiles does not list`;
  }
  return attr;
}

function checkObject(ctx: Ctx, def: OcsfObject, value: Obj, path: string): void {
  for (const [key, v] of Object.entries(value)) {
    const attr = lookup(ctx, def, key);
    if (typeof attr === "string") ctx.err(at(path, key), attr);
    else checkAttribute(ctx, attr, v, at(path, key));
  }
  for (const attr of Object.values(def.attributes)) {
    if (attr.profile !== undefined && !ctx.profiles.has(attr.profile)) continue;
    if (value[attr.name] !== undefined) continue;
    if (attr.requirement === "required") ctx.err(at(path, attr.name), "required, missing");
    else if (attr.requirement === "recommended") {
      ctx.warn(at(path, attr.name), "recommended, missing");
    }
  }
  const { at_least_one: some, just_one: one } = def.constraints;
  const present = (names: string[]) => names.filter((n) => value[n] !== undefined);
  if (some && present(some).length === 0) {
    ctx.err(path, `${def.name} needs at least one of ${some.join(", ")}`);
  }
  if (one && present(one).length !== 1) {
    ctx.err(path, `${def.name} needs exactly one of ${one.join(", ")}`);
  }
  for (const attr of Object.values(def.attributes)) {
    const id = value[attr.name];
    if (!attr.enum || !attr.sibling || typeof id !== "number") continue;
    const caption = value[attr.sibling];
    const entry = attr.enum[String(id)];
    if (caption === undefined || !entry || entry.loose || id === 99) continue;
    if (caption !== entry.caption) {
      ctx.err(
        at(path, attr.sibling),
        `${show(caption)} does not match ${attr.name} ${id}, whose caption is "${entry.caption}"`,
      );
    }
  }
}

function checkAttribute(ctx: Ctx, attr: OcsfAttribute, v: unknown, path: string): void {
  if (!attr.isArray) return checkValue(ctx, attr, v, path);
  if (!Array.isArray(v)) return ctx.err(path, `expected an array of ${attr.type}, got ${show(v)}`);
  v.forEach((el, i) => checkValue(ctx, attr, el, `${path}[${i}]`));
}

function checkValue(ctx: Ctx, attr: OcsfAttribute, v: unknown, path: string): void {
  const type = ctx.schema.type(attr.type);
  if (type) {
    if (!checkType(ctx, type, v, path)) return;
    if (type.name === "timestamp_t" && typeof v === "number" && v > 0 && v < MS_FLOOR) {
      ctx.warn(path, `${v} looks like seconds; OCSF timestamps are epoch milliseconds`);
    }
    if (attr.enum && !(String(v) in attr.enum)) {
      const known = Object.entries(attr.enum).map(([k, e]) => `${k} ${e.caption}`).join(", ");
      ctx.err(path, `${show(v)} is not a value of ${attr.name} (${known})`);
    }
    return;
  }
  if (!isObj(v)) return ctx.err(path, `expected object ${attr.type}, got ${show(v)}`);
  if (attr.type === "object") return; // free-form (`unmapped`)
  checkObject(ctx, ctx.schema.object(attr.type), v, path);
}

/** Whether `v` has data type `t` (reporting why not). */
function checkType(ctx: Ctx, t: OcsfType, v: unknown, path: string): boolean {
  const bad = (why = "") => (ctx.err(path, `expected ${t.name}${why}, got ${show(v)}`), false);
  switch (t.base) {
    case "json_t":
      return v !== null || bad(" (a value)");
    case "boolean_t":
      if (typeof v !== "boolean") return bad();
      break;
    case "integer_t":
      if (!Number.isInteger(v) || Math.abs(v as number) > INT32) return bad(" (32-bit integer)");
      break;
    case "long_t":
      if (!Number.isSafeInteger(v)) return bad(" (integer)");
      break;
    case "float_t":
      if (typeof v !== "number" || !Number.isFinite(v)) return bad(" (number)");
      break;
    case "string_t":
      if (typeof v !== "string") return bad(" (string)");
      if (t.maxLen !== undefined && v.length > t.maxLen) {
        return bad(` of at most ${t.maxLen} characters`);
      }
      if (t.regex.some((r) => !r.test(v))) return bad(` matching ${t.regex.at(-1)}`);
      break;
  }
  if (t.range && ((v as number) < t.range[0] || (v as number) > t.range[1])) {
    return bad(` in [${t.range[0]}, ${t.range[1]}]`);
  }
  if (t.values && !t.values.includes(v)) return bad(` one of ${JSON.stringify(t.values)}`);
  return true;
}

/** `type_uid` and `type_name` follow from the class and `activity_id` (the class's own uids and names are enums and siblings). */
function checkClass(ctx: Ctx, cls: OcsfClass, e: Obj): void {
  const eq = (key: string, want: unknown) => {
    if (e[key] !== undefined && e[key] !== want) {
      ctx.err(key, `${show(e[key])} is wrong for ${cls.name}: expected ${JSON.stringify(want)}`);
    }
  };
  if (!Number.isInteger(e.activity_id)) return;
  eq("type_uid", cls.uid * 100 + (e.activity_id as number));
  const activity = cls.attributes.activity_id?.enum?.[String(e.activity_id)];
  if (activity) eq("type_name", `${cls.caption}: ${activity.caption}`);
}

/** An observable's `name` must be a path to an attribute the class (and applied profiles) define. */
function checkObservableName(ctx: Ctx, cls: OcsfClass, name: string, path: string): void {
  let def: OcsfObject = cls;
  const steps = name.split(".").map((s) => s.replace(/\[\d*\]$/, ""));
  for (const [i, step] of steps.entries()) {
    const attr = lookup(ctx, def, step);
    const where = steps.slice(0, i + 1).join(".");
    if (typeof attr === "string") {
      return ctx.err(path, `'${name}' names no attribute of ${cls.name}: '${where}' is ${attr}`);
    }
    if (i === steps.length - 1) return;
    if (ctx.schema.type(attr.type) || attr.type === "object") {
      return ctx.err(
        path,
        `'${name}' names no attribute of ${cls.name}: '${where}' is free-form ${attr.type}`,
      );
    }
    def = ctx.schema.object(attr.type);
  }
}
