/**
 * The pre-6.0 rules on their own: expected values are SAELens 6.18's
 * (`handle_config_defaulting`, `handle_pre_6_0_config` in
 * sae_lens/loading/pretrained_sae_loaders.py), written out by hand.
 */
import assert from "node:assert/strict";
import type { SettingProvenance } from "../core/sae.ts";
import { SaeFormatError } from "./errors.ts";
import {
  isLegacyConfig,
  isRecord,
  type Json,
  legacyActivation,
  type NoteRule,
  renameLegacyKeys,
} from "./saelens_legacy.ts";

/** A note function that keeps what it is told. */
function notes(): { seen: SettingProvenance[]; note: NoteRule } {
  const seen: SettingProvenance[] = [];
  return { seen, note: (setting, value, rule) => void seen.push({ setting, value, rule }) };
}

function activation(cfg: Json, renamedFrom: Record<string, string> = {}) {
  const { seen, note } = notes();
  return { ...legacyActivation({ cfg, renamedFrom, source: "s/cfg.json", note }), seen };
}

Deno.test("saelens legacy: isRecord is a JSON object, not null or an array", () => {
  assert.equal(isRecord({}), true);
  assert.equal(isRecord({ k: 1 }), true);
  for (const v of [null, undefined, [], [1], "x", 3, true]) {
    assert.equal(isRecord(v), false, String(v));
  }
});

Deno.test("saelens legacy: the layout comes from the top-level version when truthy, else metadata's", () => {
  const cases: [Json, boolean, string | undefined][] = [
    [
      {},
      true,
      "no sae_lens_version: converted by handle_pre_6_0_config (SAELens handle_config_defaulting)",
    ],
    [
      { sae_lens_version: "" },
      true,
      "no sae_lens_version: converted by handle_pre_6_0_config (SAELens handle_config_defaulting)",
    ],
    [{ sae_lens_version: "6.18.0" }, false, undefined],
    [{ metadata: { sae_lens_version: "6.0.0" } }, false, undefined],
    [{ sae_lens_version: "", metadata: { sae_lens_version: "6.1.0" } }, false, undefined],
    // a truthy top-level version wins over metadata's
    [
      { sae_lens_version: "5.9.1", metadata: { sae_lens_version: "6.1.0" } },
      true,
      'sae_lens_version "5.9.1" is below 6.0.0-rc.0: converted by handle_pre_6_0_config (SAELens handle_config_defaulting)',
    ],
    [
      { metadata: { sae_lens_version: "6.0.0.dev1" } },
      true,
      'metadata.sae_lens_version "6.0.0.dev1" is below 6.0.0-rc.0: converted by handle_pre_6_0_config (SAELens handle_config_defaulting)',
    ],
  ];
  for (const [raw, legacy, rule] of cases) {
    const { seen, note } = notes();
    assert.equal(isLegacyConfig(raw, "c.json", note), legacy, JSON.stringify(raw));
    assert.deepEqual(
      seen,
      rule === undefined ? [] : [{ setting: "config layout", value: "pre-6.0", rule }],
      JSON.stringify(raw),
    );
  }
  assert.throws(
    () => isLegacyConfig({ metadata: { sae_lens_version: "six" } }, "c.json", () => {}),
    {
      name: "SaeFormatError",
      message:
        `c.json: key 'metadata.sae_lens_version': expected a version string (PEP 440, e.g. '6.18.0'), found "six"`,
    },
  );
  assert.throws(() => isLegacyConfig({ sae_lens_version: 6 }, "c.json", () => {}), SaeFormatError);
});

Deno.test("saelens legacy: renames apply to pre-6.0 keys only, in file order", () => {
  const raw = { hook_point: "h.q", hook_point_head_index: 2, activation_fn_str: "topk", d_in: 4 };
  assert.deepEqual(renameLegacyKeys(raw, true), {
    cfg: { hook_name: "h.q", hook_head_index: 2, activation_fn: "topk", d_in: 4 },
    renamedFrom: {
      hook_name: "hook_point",
      hook_head_index: "hook_point_head_index",
      activation_fn: "activation_fn_str",
    },
  });
  assert.deepEqual(renameLegacyKeys(raw, false), { cfg: { ...raw }, renamedFrom: {} });
  // the later key wins, and says where its value came from
  const later = renameLegacyKeys(
    JSON.parse('{"activation_fn_str":"topk","activation_fn":"relu"}'),
    true,
  );
  assert.deepEqual(later, { cfg: { activation_fn: "relu" }, renamedFrom: {} });
  const laterStr = renameLegacyKeys(
    JSON.parse('{"activation_fn":"relu","activation_fn_str":"topk"}'),
    true,
  );
  assert.deepEqual(laterStr, {
    cfg: { activation_fn: "topk" },
    renamedFrom: { activation_fn: "activation_fn_str" },
  });
});

Deno.test("saelens legacy: activation_fn topk with kwargs.k makes a topk SAE with that k", () => {
  const got = activation({ activation_fn: "topk", activation_fn_kwargs: { k: 8 } });
  assert.deepEqual([got.architecture, got.k, got.kFrom], ["topk", 8, "activation_fn_kwargs.k"]);
  assert.deepEqual(got.seen.map((n) => [n.setting, n.value]), [
    ["architecture", "standard"],
    ["architecture", "topk"],
  ]);
  assert.equal(
    got.seen[1].rule,
    `from activation_fn 'topk' with activation_fn_kwargs.k (SAELens pre-6.0 rule, handle_pre_6_0_config; was "standard")`,
  );
  // named after the key the file used
  const renamed = activation(
    { architecture: "topk", activation_fn: "topk", activation_fn_kwargs: { k: 3 }, k: 9 },
    { activation_fn: "activation_fn_str" },
  );
  assert.deepEqual([renamed.architecture, renamed.k, renamed.kFrom], [
    "topk",
    3,
    "activation_fn_kwargs.k",
  ]);
  assert.deepEqual(renamed.seen, []);
});

Deno.test("saelens legacy: without kwargs.k the architecture stays; topk reads kwargs.k or k", () => {
  const kept = activation({
    architecture: "gated",
    activation_fn: "topk",
    activation_fn_kwargs: {},
  });
  assert.deepEqual([kept.architecture, kept.k, kept.kFrom], ["gated", undefined, "k"]);
  assert.equal(
    kept.seen[0].rule,
    `activation_fn 'topk' without activation_fn_kwargs.k: SAELens 6 keeps architecture "gated" and ignores the activation (SAELens pre-6.0 rule, handle_pre_6_0_config)`,
  );
  const plain = activation({ architecture: "topk", k: 4 });
  assert.deepEqual([plain.architecture, plain.k, plain.kFrom, plain.seen], ["topk", 4, "k", []]);
  const relu = activation({});
  assert.deepEqual([relu.architecture, relu.k, relu.kFrom], ["standard", undefined, "k"]);
  assert.equal(
    relu.seen[0].rule,
    "no architecture key: default 'standard' (SAELens pre-6.0 rule, handle_pre_6_0_config)",
  );
});

Deno.test("saelens legacy: refused activations and kwargs name the key the file used", () => {
  const refuse = (cfg: Json, renamedFrom: Record<string, string>, ...parts: string[]) =>
    assert.throws(
      () => activation(cfg, renamedFrom),
      (err: unknown) => {
        assert.ok(err instanceof SaeFormatError);
        assert.ok(err.message.startsWith("s/cfg.json: key '"), err.message);
        for (const p of parts) assert.ok(err.message.includes(p), `${err.message} lacks ${p}`);
        return true;
      },
    );
  refuse(
    { activation_fn: "tanh-relu" },
    { activation_fn: "activation_fn_str" },
    "'activation_fn_str'",
    "tanh(relu(h))",
    '"tanh-relu"',
  );
  refuse(
    { activation_fn: "gelu" },
    {},
    "'activation_fn'",
    "the activations SAELens ever had",
    '"gelu"',
  );
  refuse({ activation_fn_kwargs: [3] }, {}, "'activation_fn_kwargs'", "[3]");
  refuse(
    { architecture: "topk", activation_fn_kwargs: { k: null } },
    {},
    "'activation_fn_kwargs.k'",
    "found null",
  );
});
