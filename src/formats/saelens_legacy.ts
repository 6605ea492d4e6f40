/**
 * SAELens pre-6.0 `cfg.json` files, as SAELens 6.18 reads them: which
 * configs are pre-6.0 (`handle_config_defaulting`: no `sae_lens_version`,
 * or one below `6.0.0-rc.0` in PEP 440 order), and what
 * `handle_pre_6_0_config` converts in them before the config classes see
 * them (key renames in file order; the architecture and `k` from
 * `activation_fn` and `activation_fn_kwargs`). The rest of the rules are in
 * {@linkcode ./saelens_config.ts}.
 *
 * @module
 */
import type { SettingProvenance } from "../core/sae.ts";
import { badKey } from "./errors.ts";

/** A parsed JSON object. */
export type Json = Record<string, unknown>;

/**
 * A JSON object (not null, not an array).
 *
 * @example
 * ```ts
 * isRecord({ k: 8 }); // true
 * isRecord([8]); // false
 * ```
 */
export function isRecord(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Where each rule lives in SAELens (sae_lens/loading/pretrained_sae_loaders.py and the config classes). */
export const PRE6 = "SAELens pre-6.0 rule, handle_pre_6_0_config";

/** Records which rule decided a setting (pushes onto the config's provenance). */
export type NoteRule = (setting: string, value: SettingProvenance["value"], rule: string) => void;

/**
 * SAELens's version test (`handle_config_defaulting`): is `version` below
 * `6.0.0-rc.0` under PEP 440 ordering (what `packaging.version.Version`
 * compares)? Returns `null` for a string PEP 440 cannot parse (SAELens raises).
 *
 * @example
 * ```ts
 * isBelowV6rc0("5.9.1"); // true
 * isBelowV6rc0("6.0.0-rc.1"); // false
 * ```
 */
export function isBelowV6rc0(version: string): boolean | null {
  const m =
    /^\s*v?(?:(\d+)!)?(\d+(?:\.\d+)*)(?:[-_.]?(a|alpha|b|beta|c|rc|pre|preview)[-_.]?(\d+)?)?(?:-(\d+)|[-_.]?(post|rev|r)[-_.]?(\d+)?)?(?:[-_.]?(dev)[-_.]?(\d+)?)?(?:\+[a-z0-9]+(?:[-_.][a-z0-9]+)*)?\s*$/i
      .exec(version);
  if (!m) return null;
  if (m[1] !== undefined && Number(m[1]) > 0) return false; // a later epoch
  const release = m[2].split(".").map(Number);
  for (let i = 0; i < Math.max(3, release.length); i++) {
    const d = (release[i] ?? 0) - (i === 0 ? 6 : 0);
    if (d !== 0) return d < 0;
  }
  // The release is 6.0.0: the suffixes decide.
  const pre = m[3]?.toLowerCase();
  const post = m[5] !== undefined || m[6] !== undefined;
  const dev = m[8] !== undefined;
  if (pre === undefined) return dev && !post; // 6.0.0.devN sorts before every pre-release
  if (pre === "a" || pre === "alpha" || pre === "b" || pre === "beta") return true;
  if (Number(m[4] ?? 0) > 0) return false; // rc1 and later
  return dev && !post; // rc0.devN < rc0
}

/**
 * `handle_config_defaulting`: whether a config is pre-6.0, read from its
 * top-level `sae_lens_version` when truthy, else `metadata.sae_lens_version`;
 * a pre-6.0 config is noted as `config layout` with the reason.
 *
 * @param raw the parsed cfg.json
 * @param source the config path, used in error messages
 * @param note records the rule (called only for a pre-6.0 config)
 * @throws {SaeFormatError} on a version PEP 440 cannot parse, or one that is not a string
 *
 * @example
 * ```ts
 * isLegacyConfig({ metadata: { sae_lens_version: "6.18.0" } }, "cfg.json", () => {}); // false
 * isLegacyConfig({ sae_lens_version: "5.9.1" }, "cfg.json", () => {}); // true
 * ```
 */
export function isLegacyConfig(raw: Json, source: string, note: NoteRule): boolean {
  // handle_config_defaulting: the top-level version when truthy, else metadata's.
  let version: unknown = raw.sae_lens_version;
  let versionKey = "sae_lens_version";
  if (!version && isRecord(raw.metadata)) {
    version = raw.metadata.sae_lens_version;
    versionKey = "metadata.sae_lens_version";
  }
  let legacy: boolean;
  if (!version) legacy = true;
  else {
    const below = typeof version === "string" ? isBelowV6rc0(version) : null;
    if (below === null) {
      badKey(source, versionKey, "a version string (PEP 440, e.g. '6.18.0')", version);
    }
    legacy = below as boolean;
  }
  if (legacy) {
    note(
      "config layout",
      "pre-6.0",
      `${
        version
          ? `${versionKey} ${JSON.stringify(version)} is below 6.0.0-rc.0`
          : "no sae_lens_version"
      }: converted by handle_pre_6_0_config (SAELens handle_config_defaulting)`,
    );
  }
  return legacy;
}

/** A config's keys as SAELens sees them, with the key each renamed one came from. */
export interface RenamedKeys {
  cfg: Json;
  /** New key → the key the file used (only keys that kept a renamed value). */
  renamedFrom: Record<string, string>;
}

/**
 * The config's keys, renamed as `handle_pre_6_0_config` does for a pre-6.0
 * config (`hook_point` → `hook_name`, `hook_point_head_index` →
 * `hook_head_index`, `activation_fn_str` → `activation_fn`), in file order
 * so a later key wins over an earlier one; a 6.x config's keys are kept.
 *
 * @example
 * ```ts
 * const { cfg, renamedFrom } = renameLegacyKeys({ hook_point: "blocks.0.hook_resid_pre" }, true);
 * cfg.hook_name; // "blocks.0.hook_resid_pre"
 * renamedFrom.hook_name; // "hook_point"
 * ```
 */
export function renameLegacyKeys(raw: Json, legacy: boolean): RenamedKeys {
  // handle_pre_6_0_config renames keys in file order, so a later key wins over an earlier one.
  const RENAMES: Record<string, string> = {
    hook_point: "hook_name",
    hook_point_head_index: "hook_head_index",
    activation_fn_str: "activation_fn",
  };
  const cfg: Json = {};
  const renamedFrom: Record<string, string> = {};
  for (const [key, value] of Object.entries(raw)) {
    const to = legacy ? RENAMES[key] ?? key : key;
    cfg[to] = value;
    if (to !== key) renamedFrom[to] = key;
    else delete renamedFrom[to];
  }
  return { cfg, renamedFrom };
}

/** The architecture and `k` of a pre-6.0 config, before the config classes' checks. */
export interface LegacyActivation {
  /** The `architecture` value (not yet checked against the known ones). */
  architecture: unknown;
  /** The `k` value, if any (not yet checked). */
  k: unknown;
  /** The key `k` came from: `k` or `activation_fn_kwargs.k`. */
  kFrom: string;
}

/** Options of {@linkcode legacyActivation}. */
export interface LegacyActivationOptions {
  /** The renamed keys ({@linkcode renameLegacyKeys}). */
  cfg: Json;
  renamedFrom: Record<string, string>;
  /** The config path, used in error messages. */
  source: string;
  /** Records each rule that decided a setting. */
  note: NoteRule;
}

/**
 * `handle_pre_6_0_config` on the activation of a pre-6.0 config: no
 * `architecture` is `standard`; `activation_fn` `topk` with
 * `activation_fn_kwargs.k` makes it `topk` (without `k` the architecture
 * is kept, as SAELens 6 does); `k` comes from `activation_fn_kwargs` whenever
 * the architecture is `topk` and the kwargs are there. A `tanh-relu` or
 * unknown activation is refused.
 *
 * @throws {SaeFormatError} on a refused activation, malformed kwargs, or kwargs without `k` for `topk`
 *
 * @example
 * ```ts
 * const got = legacyActivation({
 *   cfg: { activation_fn: "topk", activation_fn_kwargs: { k: 8 } },
 *   renamedFrom: {},
 *   source: "cfg.json",
 *   note: () => {},
 * });
 * // { architecture: "topk", k: 8, kFrom: "activation_fn_kwargs.k" }
 * ```
 */
export function legacyActivation(
  { cfg, renamedFrom, source, note }: LegacyActivationOptions,
): LegacyActivation {
  const bad = (key: string, expected: string, found: unknown): never =>
    badKey(source, key, expected, found);
  let architecture: unknown = cfg.architecture;
  let k: unknown = cfg.k;
  let kFrom = "k";
  if (architecture === undefined) {
    architecture = "standard";
    note("architecture", "standard", `no architecture key: default 'standard' (${PRE6})`);
  }
  const fnKey = renamedFrom.activation_fn ?? "activation_fn";
  const activationFn = cfg.activation_fn ?? "relu";
  const kwargs = cfg.activation_fn_kwargs;
  if (kwargs !== undefined && kwargs !== null && !isRecord(kwargs)) {
    bad("activation_fn_kwargs", 'an object such as {"k": 32}', kwargs);
  }
  const kwargK = isRecord(kwargs) ? kwargs.k : undefined;
  if (activationFn === "topk" && kwargK !== undefined && kwargK !== null) {
    if (architecture !== "topk") {
      note(
        "architecture",
        "topk",
        `from ${fnKey} 'topk' with activation_fn_kwargs.k (${PRE6}; was ${
          JSON.stringify(architecture)
        })`,
      );
    }
    architecture = "topk";
  } else if (activationFn === "topk") {
    // SAELens keeps the architecture (ReLU unless it says otherwise); SAELens ≤ 5 refused.
    note(
      "architecture",
      architecture as string,
      `${fnKey} 'topk' without activation_fn_kwargs.k: SAELens 6 keeps architecture ${
        JSON.stringify(architecture)
      } and ignores the activation (${PRE6})`,
    );
  } else if (activationFn === "tanh-relu") {
    // SAELens 6 drops activation_fn and would run ReLU; SAELens ≤ 5 computed tanh(relu(h)).
    bad(
      fnKey,
      "'relu' or 'topk' (a 'tanh-relu' SAE computes tanh(relu(h)), which latentwatch does not run; SAELens 6 ignores the key and would run it as ReLU)",
      activationFn,
    );
  } else if (activationFn !== "relu") {
    bad(fnKey, "'relu', 'topk' or 'tanh-relu' (the activations SAELens ever had)", activationFn);
  }
  if (architecture === "topk" && kwargs !== undefined) {
    // handle_pre_6_0_config: activation_fn_kwargs["k"] whenever the architecture is topk.
    if (kwargK === undefined || kwargK === null) {
      bad(
        "activation_fn_kwargs.k",
        "a positive integer (SAELens reads k from activation_fn_kwargs whenever a pre-6.0 config's architecture is 'topk', and fails without it)",
        kwargK,
      );
    }
    k = kwargK;
    kFrom = "activation_fn_kwargs.k";
  }
  return { architecture, k, kFrom };
}
