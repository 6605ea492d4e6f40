/**
 * `family` signal tests resolved: the concept latent and its members checked
 * against the SAE, and each member's weight (its decoder cosine with the
 * concept's) read through {@linkcode SignalInfo.decoderCosines}, which the
 * adapter that loads the SAE supplies. Pure.
 *
 * @module
 */
import type { SignalRef, SourceRef } from "./ast.ts";
import type { SignalInfo } from "./compiled.ts";
import { type Ctx, problem, type ResolvedSignal } from "./context.ts";

type FamilyRef = Extract<SignalRef, { kind: "family" }>;

/** The family's one signal (index: the concept latent), or null after a problem. */
export function resolveFamily(
  ctx: Ctx,
  rule: string | undefined,
  sig: FamilyRef,
  source: SourceRef,
  info: SignalInfo,
): ResolvedSignal[] | null {
  const bad = (reason: string) => {
    problem(ctx, rule, source, "family", `family of latent ${sig.of}: ${reason}`);
    return null;
  };
  const inRange = (i: number) => Number.isInteger(i) && i >= 0 && i < info.dSae;
  if (!inRange(sig.of)) {
    problem(
      ctx,
      rule,
      source,
      "latent-range",
      `expected a latent index in 0..${info.dSae - 1} (SAE '${sig.sae}' has d_sae ${info.dSae}), ` +
        `found ${sig.of}`,
    );
    return null;
  }
  if (!info.decoderCosines) {
    problem(
      ctx,
      rule,
      source,
      "no-decoder",
      `family of latent ${sig.of}: expected SAE '${sig.sae}' with its decoder loaded (members are weighted by decoder ` +
        "cosine), found none: family tests need the monitor's SAE, not a bare width",
    );
    return null;
  }
  const cosines = info.decoderCosines(sig.of);
  let members: number[];
  if (Array.isArray(sig.members)) {
    if (sig.members.length === 0) return bad("expected at least one member, found none");
    const out = sig.members.filter((m) => !inRange(m));
    if (out.length > 0) {
      return bad(
        `expected members in 0..${info.dSae - 1} (SAE '${sig.sae}' has d_sae ${info.dSae}), ` +
          `found ${out.slice(0, 5).join(", ")}`,
      );
    }
    members = [...new Set(sig.members)];
    const against = members.filter((m) => !(cosines[m] > 0));
    if (against.length > 0) {
      return bad(
        "expected members whose decoder points along the concept (cosine > 0), found " +
          against.slice(0, 5).map((m) => `${m} (cosine ${cosines[m].toFixed(3)})`).join(", "),
      );
    }
  } else {
    const min = sig.members.minCosine;
    if (!(min > 0 && min <= 1)) return bad(`expected min_cosine in (0, 1], found ${min}`);
    members = [];
    for (let i = 0; i < cosines.length; i++) if (cosines[i] >= min) members.push(i);
    // the concept's own latent has cosine 1 up to rounding
    if (!members.includes(sig.of)) members.unshift(sig.of);
    members.sort((a, b) => a - b);
  }
  if (members.length > ctx.limits.listItems) {
    return bad(
      `expected at most ${ctx.limits.listItems} members (limit listItems), found ` +
        `${members.length}; raise min_cosine`,
    );
  }
  const weights = members.map((m) => m === sig.of ? 1 : cosines[m]);
  const label = info.labels?.get(sig.of);
  return [{
    encoder: sig.sae,
    kind: "latent",
    index: sig.of,
    ...(label !== undefined ? { label } : {}),
    family: { members, weights, combine: sig.combine },
  }];
}
