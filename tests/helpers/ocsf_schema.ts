/**
 * The OCSF schema of one release, resolved from the official schema files
 * (vendored under `tests/testdata/ocsf-<tag>/`): event classes with their
 * `extends` chains, objects with theirs, `$include` files (those under
 * `profiles/` tag their attributes with the profile), the dictionary's
 * attribute definitions merged under each class's or object's own, and the
 * data types with their base types. The validator (`ocsf_validator.ts`)
 * reads it. Not in any hot path: tests and tools only.
 *
 * @module
 */

/** A schema file that is missing, unreadable or not what the schema layout promises. */
export class OcsfSchemaError extends Error {
  override name = "OcsfSchemaError";
}

/** One enum value: its caption; `loose` when the caption is ours, not the schema's. */
export interface OcsfEnumValue {
  caption: string;
  loose?: boolean;
}

/** An attribute as a class or object defines it, merged over its dictionary entry. */
export interface OcsfAttribute {
  name: string;
  /** A data type (`string_t`, `timestamp_t`, …), `object` (free-form) or an object name. */
  type: string;
  isArray: boolean;
  requirement: "required" | "recommended" | "optional";
  enum?: Readonly<Record<string, OcsfEnumValue>>;
  /** The caption attribute beside an `_id` enum (`severity_id` → `severity`). */
  sibling?: string;
  /** The profile that adds the attribute; it is defined only when the event applies it. */
  profile?: string;
}

/** A resolved object or event class. */
export interface OcsfObject {
  name: string;
  caption: string;
  attributes: Readonly<Record<string, OcsfAttribute>>;
  /** `at_least_one` / `just_one` sets of attribute names. */
  constraints: { at_least_one?: string[]; just_one?: string[] };
}

/** A resolved event class: an object with its uids. */
export interface OcsfClass extends OcsfObject {
  uid: number;
  categoryUid: number;
  categoryCaption: string;
}

/** The primitive a data type reduces to. */
export type OcsfPrimitive =
  | "boolean_t"
  | "integer_t"
  | "long_t"
  | "float_t"
  | "string_t"
  | "json_t";

/** A data type with the limits it and its base types set. */
export interface OcsfType {
  name: string;
  base: OcsfPrimitive;
  regex: RegExp[];
  maxLen?: number;
  range?: [number, number];
  values?: unknown[];
}

/** One resolved release of the schema. */
export interface OcsfSchema {
  /** The release (`version.json`), e.g. `"1.3.0"`. */
  version: string;
  /** The event class of a `class_uid`, if the vendored files define it. */
  classOf(uid: number): OcsfClass | undefined;
  /** An object by name. @throws {OcsfSchemaError} when no vendored file defines it. */
  object(name: string): OcsfObject;
  /** A data type by name (`undefined` for an object name). */
  type(name: string): OcsfType | undefined;
  /** The profiles the release defines, by name. */
  profiles: ReadonlySet<string>;
}

type Raw = Record<string, unknown>;
type RawAttrs = Record<string, Raw>;

const PRIMITIVES = new Set(["boolean_t", "integer_t", "long_t", "float_t", "string_t", "json_t"]);

const isRecord = (v: unknown): v is Raw => typeof v === "object" && v !== null && !Array.isArray(v);

/** Deep merge of two attribute definitions: `over` wins, records merge key by key. */
function merge(base: unknown, over: unknown): unknown {
  if (!isRecord(base) || !isRecord(over)) return over === undefined ? base : over;
  const out: Raw = { ...base };
  for (const [k, v] of Object.entries(over)) out[k] = merge(base[k], v);
  return out;
}

async function readJson(root: URL, path: string): Promise<Raw> {
  let text: string;
  try {
    text = await Deno.readTextFile(new URL(path, root));
  } catch (e) {
    throw new OcsfSchemaError(`cannot read OCSF schema file ${path} under ${root}`, { cause: e });
  }
  try {
    const v = JSON.parse(text);
    if (!isRecord(v)) throw new TypeError("not a JSON object");
    return v;
  } catch (e) {
    throw new OcsfSchemaError(`OCSF schema file ${path} is not a JSON object`, { cause: e });
  }
}

async function listJson(root: URL, dir: string): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const e of Deno.readDir(new URL(dir, root))) {
      if (e.isDirectory) out.push(...await listJson(root, `${dir}${e.name}/`));
      else if (e.name.endsWith(".json")) out.push(`${dir}${e.name}`);
    }
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return out;
    throw new OcsfSchemaError(`cannot list ${dir} under ${root}`, { cause: e });
  }
  return out.sort();
}

/**
 * Load and resolve the schema files under `dir` (a folder laid out like the
 * `ocsf/ocsf-schema` repository: `version.json`, `dictionary.json`,
 * `categories.json`, `events/`, `objects/`, `profiles/`, `includes/`).
 *
 * @throws {OcsfSchemaError} when a file is missing or malformed, or a class,
 *   object or `$include` names something the files do not define.
 * @example
 * ```ts
 * const schema = await loadOcsfSchema(new URL("../testdata/ocsf-1.3.0/", import.meta.url));
 * schema.classOf(2004)?.caption; // "Detection Finding"
 * ```
 */
export async function loadOcsfSchema(dir: string | URL): Promise<OcsfSchema> {
  const root = new URL(dir.toString().endsWith("/") ? dir.toString() : `${dir}/`);
  const files = new Map<string, Raw>();
  const paths = [
    "version.json",
    "dictionary.json",
    "categories.json",
    ...await listJson(root, "events/"),
    ...await listJson(root, "objects/"),
    ...await listJson(root, "profiles/"),
    ...await listJson(root, "includes/"),
  ];
  for (const p of paths) files.set(p, await readJson(root, p));
  const file = (p: string): Raw => {
    const f = files.get(p);
    if (!f) throw new OcsfSchemaError(`OCSF schema file ${p} is not under ${root}`);
    return f;
  };
  const version = String(file("version.json").version);
  const dictionary = file("dictionary.json");
  const dictAttrs = (dictionary.attributes ?? {}) as RawAttrs;
  const rawTypes = ((dictionary.types as Raw)?.attributes ?? {}) as RawAttrs;
  const categories = (file("categories.json").attributes ?? {}) as RawAttrs;
  const byName = (dirName: string) =>
    new Map(
      paths.filter((p) => p.startsWith(dirName)).map((p) => [String(file(p).name), file(p)]),
    );
  const rawClasses = byName("events/");
  const rawObjects = byName("objects/");
  const profiles = new Set([...byName("profiles/").keys()]);

  /** A definition's own attributes, its `$include` files merged first. */
  const ownAttributes = (def: Raw): RawAttrs => {
    const { $include, ...own } = (def.attributes ?? {}) as RawAttrs & { $include?: unknown };
    const includes = $include === undefined ? [] : [$include].flat() as string[];
    let out: RawAttrs = {};
    for (const inc of includes) {
      const incFile = file(inc);
      const profile = inc.startsWith("profiles/") ? String(incFile.name) : undefined;
      for (const [k, v] of Object.entries((incFile.attributes ?? {}) as RawAttrs)) {
        const tagged = profile !== undefined && !("profile" in v) ? { ...v, profile } : v;
        out = { ...out, [k]: merge(out[k], tagged) as Raw };
      }
    }
    for (const [k, v] of Object.entries(own)) out = { ...out, [k]: merge(out[k], v) as Raw };
    return out;
  };

  /** Attributes and constraints along the `extends` chain, the child's winning. */
  const chain = (
    raws: Map<string, Raw>,
    name: string,
    what: string,
  ): { attrs: RawAttrs; constraints: Raw; def: Raw } => {
    const def = raws.get(name);
    if (!def) throw new OcsfSchemaError(`OCSF ${version} defines no ${what} '${name}'`);
    const parent = typeof def.extends === "string"
      ? chain(raws, def.extends, what)
      : { attrs: {}, constraints: {} };
    const attrs: RawAttrs = { ...parent.attrs };
    for (const [k, v] of Object.entries(ownAttributes(def))) attrs[k] = merge(attrs[k], v) as Raw;
    return { attrs, constraints: { ...parent.constraints, ...(def.constraints as Raw) }, def };
  };

  const resolveAttr = (owner: string, name: string, local: Raw): OcsfAttribute => {
    const dict = dictAttrs[name];
    if (!dict) {
      throw new OcsfSchemaError(`${owner}.${name} is not in the OCSF ${version} dictionary`);
    }
    const a = merge(dict, local) as Raw;
    const type = a.type === "object_t" ? String(a.object_type) : String(a.type);
    const en = isRecord(a.enum)
      ? Object.fromEntries(
        Object.entries(a.enum).map(([k, v]) => [k, { caption: String((v as Raw).caption) }]),
      )
      : undefined;
    return {
      name,
      type,
      isArray: a.is_array === true,
      requirement: (a.requirement as OcsfAttribute["requirement"]) ?? "optional",
      ...(en ? { enum: en } : {}),
      ...(typeof a.sibling === "string" ? { sibling: a.sibling } : {}),
      ...(typeof a.profile === "string" ? { profile: a.profile } : {}),
    };
  };

  const build = (raws: Map<string, Raw>, name: string, what: string): OcsfObject => {
    const { attrs, constraints, def } = chain(raws, name, what);
    return {
      name,
      caption: String(def.caption),
      attributes: Object.fromEntries(
        Object.entries(attrs).map(([k, v]) => [k, resolveAttr(name, k, v)]),
      ),
      constraints: constraints as OcsfObject["constraints"],
    };
  };

  const objects = new Map<string, OcsfObject>();
  const object = (name: string): OcsfObject => {
    let o = objects.get(name);
    if (!o) {
      o = build(rawObjects, name, "object");
      if (name === "observable") o = withObservableTypes(o);
      objects.set(name, o);
    }
    return o;
  };

  /** The observable `type_id` enum: every type, attribute and object that declares a number. */
  const withObservableTypes = (o: OcsfObject): OcsfObject => {
    const en: Record<string, OcsfEnumValue> = { ...o.attributes.type_id?.enum };
    const add = (n: unknown, caption: unknown, loose = false) => {
      if (typeof n === "number") en[String(n)] = { caption: String(caption), loose };
    };
    for (const t of Object.values(rawTypes)) add(t.observable, t.caption);
    for (const a of Object.values(dictAttrs)) add(a.observable, a.caption);
    for (const ob of rawObjects.values()) {
      add(ob.observable, ob.caption);
      for (const [k, a] of Object.entries((ob.attributes ?? {}) as RawAttrs)) {
        if (k !== "$include") add(a.observable, `${ob.caption} ${a.caption ?? k}`, true);
      }
    }
    const typeId = { ...o.attributes.type_id, enum: en };
    return { ...o, attributes: { ...o.attributes, type_id: typeId } };
  };

  const classes = new Map<number, OcsfClass>();
  /** A class's category, its own or the nearest one along its `extends` chain. */
  const categoryOf = (def: Raw): unknown =>
    def.category ??
      (typeof def.extends === "string" && rawClasses.has(def.extends)
        ? categoryOf(rawClasses.get(def.extends)!)
        : undefined);
  for (const [name, def] of rawClasses) {
    const categoryName = categoryOf(def);
    if (typeof def.uid !== "number" || typeof categoryName !== "string") continue;
    const category = categories[categoryName];
    if (!category) {
      throw new OcsfSchemaError(`class ${name} names unknown category '${categoryName}'`);
    }
    const categoryUid = Number(category.uid);
    const cls = build(rawClasses, name, "event class");
    const uid = categoryUid * 1000 + def.uid;
    const only = (key: string, id: number, caption: string) => ({
      ...cls.attributes[key],
      enum: { [String(id)]: { caption } },
    });
    classes.set(uid, {
      ...cls,
      attributes: {
        ...cls.attributes,
        class_uid: only("class_uid", uid, cls.caption),
        category_uid: only("category_uid", categoryUid, String(category.caption)),
      },
      uid,
      categoryUid,
      categoryCaption: String(category.caption),
    });
  }

  const types = new Map<string, OcsfType>();
  const type = (name: string): OcsfType | undefined => {
    if (types.has(name)) return types.get(name);
    const raw = rawTypes[name];
    if (!raw) return undefined;
    const parent = typeof raw.type === "string" ? type(raw.type) : undefined;
    if (!parent && !PRIMITIVES.has(name)) {
      throw new OcsfSchemaError(`data type ${name} has no known base type`);
    }
    const maxLens = [raw.max_len, parent?.maxLen].filter((n): n is number => typeof n === "number");
    const t: OcsfType = {
      name,
      base: parent?.base ?? name as OcsfPrimitive,
      regex: [
        ...(parent?.regex ?? []),
        ...(typeof raw.regex === "string" ? [new RegExp(raw.regex)] : []),
      ],
      ...(maxLens.length > 0 ? { maxLen: Math.min(...maxLens) } : {}),
      ...(Array.isArray(raw.range)
        ? { range: raw.range as [number, number] }
        : parent?.range
        ? { range: parent.range }
        : {}),
      ...(Array.isArray(raw.values) ? { values: raw.values } : {}),
    };
    types.set(name, t);
    return t;
  };

  return { version, classOf: (uid) => classes.get(uid), object, type, profiles };
}
