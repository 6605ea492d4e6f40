/**
 * Checks of a rule's actions and throttle: steering targets an SAE latent the
 * monitor loads (or a finite vector) with finite values, and suppression and
 * rate limits are positive.
 *
 * @module
 */
import type { RuleDef, SteerAction } from "./ast.ts";
import type { Ctx } from "./context.ts";

export function checkSteer(ctx: Ctx, s: SteerAction, rule: RuleDef): void {
  const bad = (reason: string) =>
    ctx.problems.push({ source: rule.source, rule: rule.id, code: "steer", reason });
  const latent = (sae: string, i: number, what: string) => {
    const info = ctx.signals.get(sae);
    if (!info || info.kind !== "sae") {
      bad(`${what}: expected an SAE the monitor loads, found '${sae}'`);
    } else if (!Number.isInteger(i) || i < 0 || i >= info.dSae) {
      bad(`${what}: expected a latent index in 0..${info.dSae - 1} of SAE '${sae}', found ${i}`);
    }
  };
  const direction = (d: { sae: string; latent: number } | { vector: number[] }, what: string) => {
    if ("vector" in d) {
      if (d.vector.length === 0 || !d.vector.every(Number.isFinite)) {
        bad(`${what}: expected a non-empty vector of finite numbers`);
      }
    } else latent(d.sae, d.latent, what);
  };
  switch (s.kind) {
    case "clamp":
      latent(s.sae, s.latent, "steer clamp");
      if (!Number.isFinite(s.value)) bad(`steer clamp: expected a finite value, found ${s.value}`);
      break;
    case "ablate":
      latent(s.sae, s.latent, "steer ablate");
      break;
    case "add":
      direction(s.direction, "steer add");
      if (!Number.isFinite(s.scale)) bad(`steer add: expected a finite scale, found ${s.scale}`);
      break;
    case "cap":
      direction(s.direction, "steer cap");
      if (!Number.isFinite(s.max)) bad(`steer cap: expected a finite max, found ${s.max}`);
      break;
    case "abort":
      break;
  }
}

export function checkThrottle(ctx: Ctx, rule: RuleDef): void {
  const { suppress, rateLimit } = rule.throttle;
  const bad = (reason: string) =>
    ctx.problems.push({ source: rule.source, rule: rule.id, code: "throttle", reason });
  if (suppress.kind === "tokens" && (!Number.isInteger(suppress.n) || suppress.n < 1)) {
    bad(`suppress: expected a whole number of tokens ≥ 1, found ${suppress.n}`);
  }
  if (suppress.kind === "seconds" && !(Number.isFinite(suppress.s) && suppress.s > 0)) {
    bad(`suppress: expected seconds > 0, found ${suppress.s}`);
  }
  if (rateLimit) {
    if (!Number.isInteger(rateLimit.alerts) || rateLimit.alerts < 1) {
      bad(`rate limit: expected a whole number of alerts ≥ 1, found ${rateLimit.alerts}`);
    }
    if (!(Number.isFinite(rateLimit.seconds) && rateLimit.seconds > 0)) {
      bad(`rate limit: expected seconds > 0, found ${rateLimit.seconds}`);
    }
  }
}
