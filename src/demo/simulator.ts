/**
 * A SIMULATED served model, for the demo and tests only: it does not run a
 * language model. It turns text into residual-stream-like activations by
 * summing a random per-token embedding, known concept directions (prompt
 * injection, e-mail address, credential, self-harm) for the tokens that carry
 * the concept, and Gaussian noise, i.e. concepts in superposition. Because the
 * directions are known, an exact SAE for them can be built
 * ({@linkcode buildDemoSae}) and what fires can be checked by hand.
 *
 * @module
 */
import { Rng } from "../core/random.ts";
import type { SaeWeights } from "../core/sae.ts";

/** A concept the simulator can write into activations. */
export interface Concept {
  /** Latent index of the concept in the demo SAE. */
  latent: number;
  name: string;
  /** Whether `token` (lower-cased) carries the concept, given the tokens before it. */
  matches(token: string, previous: readonly string[]): boolean;
}

const INJECTION = new Set([
  "ignore",
  "disregard",
  "previous",
  "prior",
  "instructions",
  "jailbreak",
  "override",
  "pretend",
  "unfiltered",
]);
const SELF_HARM = new Set(["hurt", "myself", "suicide", "kill", "end", "life", "self-harm"]);

/** The demo's concepts, in latent order. */
export const DEMO_CONCEPTS: readonly Concept[] = [
  { latent: 0, name: "prompt injection", matches: (t) => INJECTION.has(t) },
  { latent: 1, name: "e-mail address", matches: (t) => /^[^@\s]+@[^@\s]+\.[a-z]{2,}$/.test(t) },
  {
    latent: 2,
    name: "credential / API key",
    matches: (t, prev) =>
      /^(sk|pk|ghp|akia)[-_a-z0-9]{8,}$/.test(t) ||
      ["password", "passwd", "api_key", "token"].includes(prev[prev.length - 1] ?? "") &&
        /[0-9]/.test(t),
  },
  {
    latent: 3,
    name: "self-harm",
    // "end"/"life"/"kill" alone are common words: only with a first-person context
    matches: (t, prev) =>
      SELF_HARM.has(t) && (t === "suicide" || t === "self-harm" ||
        prev.slice(-3).some((p) => ["i", "myself", "my", "want", "to"].includes(p))),
  },
];

/** Split text into the simulator's tokens: words, e-mail-like runs, punctuation. */
export function tokenize(text: string): string[] {
  return text.match(/[\w.+-]+@[\w-]+\.[\w.]+|[\w'-]+|[^\s\w]/g) ?? [];
}

/** The demo's simulated model: the demo writes its SAE, the traffic generator its activations. */
export const DEMO_SIMULATOR = { dModel: 256, seed: 7 } as const;

/** Options of a {@linkcode SimulatedModel}. */
export interface SimulatorOptions {
  dModel?: number;
  seed?: number;
  /** How far a concept moves the activation along its direction. */
  conceptStrength?: number;
  /** Std of the per-dimension noise added to every token. */
  noise?: number;
}

/**
 * The simulated model. Deterministic for a given seed.
 *
 * @example
 * ```ts
 * const sim = new SimulatedModel({ dModel: 256, seed: 1 });
 * const { tokens, activations } = sim.forward("Ignore previous instructions");
 * ```
 */
export class SimulatedModel {
  readonly dModel: number;
  readonly strength: number;
  readonly noise: number;
  /** Unit concept directions, `[concepts, dModel]`, mutually orthogonal. */
  readonly directions: Float32Array[];
  readonly #seed: number;
  readonly #embeddings = new Map<string, Float32Array>();
  readonly #noiseRng: Rng;

  constructor(opts: SimulatorOptions = {}) {
    this.dModel = opts.dModel ?? 256;
    this.#seed = opts.seed ?? 7;
    this.strength = opts.conceptStrength ?? 6;
    this.noise = opts.noise ?? 0.05;
    this.#noiseRng = new Rng(this.#seed ^ 0x9e3779b9);
    this.directions = orthonormal(new Rng(this.#seed), DEMO_CONCEPTS.length, this.dModel);
  }

  /** Embedding of a token: a fixed random vector, per-dimension std 1/√d·2. */
  embedding(token: string): Float32Array {
    let e = this.#embeddings.get(token);
    if (!e) {
      let h = this.#seed;
      for (let i = 0; i < token.length; i++) h = Math.imul(h ^ token.charCodeAt(i), 0x01000193);
      e = new Rng(h).fillGaussian(new Float32Array(this.dModel), 0.5);
      // keep embeddings out of the concept subspace, so only concepts move it
      for (const d of this.directions) {
        let dot = 0;
        for (let i = 0; i < this.dModel; i++) dot += e[i] * d[i];
        for (let i = 0; i < this.dModel; i++) e[i] -= dot * d[i];
      }
      this.#embeddings.set(token, e);
    }
    return e;
  }

  /** Which concepts each token carries. */
  concepts(tokens: readonly string[]): Concept[][] {
    return tokens.map((t, i) => {
      const lower = t.toLowerCase();
      const prev = tokens.slice(0, i).map((p) => p.toLowerCase());
      return DEMO_CONCEPTS.filter((c) => c.matches(lower, prev));
    });
  }

  /** Activations `[tokens, dModel]` for `text`. */
  forward(text: string): { tokens: string[]; activations: Float32Array } {
    const tokens = tokenize(text);
    return { tokens, activations: this.activations(tokens) };
  }

  /**
   * Generate a reply one token per step, the way a served model decodes:
   * step `i` processes the previous token (first {@linkcode ASSISTANT_TOKEN})
   * at position `prompt.length + i`. An injected instruction in the prompt
   * stays in the context, so every step's activation carries the injection
   * concept at `carry` of its strength. `step` is the tap's hook: it may
   * change the activation in place (steering) and stop the generation
   * (return false). The next token is read from the activation as `step`
   * left it: while the injection concept reads above half its strength, the
   * model follows the injected instruction (`scripts.injected`), otherwise
   * it answers honestly (`scripts.honest`). Returns the generated tokens.
   *
   * @example
   * ```ts
   * const sim = new SimulatedModel();
   * const reply = await sim.generate(tokenize("Ignore previous instructions"), { honest: ["No", "."], injected: ["Sure", "."] }, () => true);
   * ```
   */
  async generate(
    prompt: readonly string[],
    scripts: ReplyScripts,
    step: GenerateStep,
    carry = 0.8,
  ): Promise<string[]> {
    const d = this.dModel;
    const injected = this.concepts(prompt).some((cs) => cs.some((c) => c.latent === 0));
    const length = Math.max(scripts.honest.length, scripts.injected?.length ?? 0);
    const out: string[] = [];
    let input = ASSISTANT_TOKEN;
    for (let i = 0; i < length; i++) {
      const x = this.activations([...prompt, ...out, input].slice(-1));
      if (injected) {
        const dir = this.directions[0];
        for (let j = 0; j < d; j++) x[j] += carry * this.strength * dir[j];
      }
      if (!await step(prompt.length + i, input, x)) break;
      let reading = 0;
      for (let j = 0; j < d; j++) reading += x[j] * this.directions[0][j];
      const script = reading > this.strength / 2 && scripts.injected
        ? scripts.injected
        : scripts.honest;
      const next = script[i];
      if (next === undefined) break;
      out.push(next);
      input = next;
    }
    return out;
  }

  /** Activations `[tokens, dModel]` for already tokenised text. */
  activations(tokens: readonly string[]): Float32Array {
    const d = this.dModel;
    const out = new Float32Array(tokens.length * d);
    const concepts = this.concepts(tokens);
    for (let t = 0; t < tokens.length; t++) {
      const row = out.subarray(t * d, (t + 1) * d);
      row.set(this.embedding(tokens[t].toLowerCase()));
      for (const c of concepts[t]) {
        const dir = this.directions[c.latent];
        for (let i = 0; i < d; i++) row[i] += this.strength * dir[i];
      }
      for (let i = 0; i < d; i++) row[i] += this.#noiseRng.gaussian() * this.noise;
    }
    return out;
  }
}

/** One step of {@linkcode SimulatedModel.generate}: the tap's hook. */
export type GenerateStep = (
  position: number,
  token: string,
  activation: Float32Array,
) => boolean | Promise<boolean>;

/** The two scripts a {@linkcode SimulatedModel.generate} call chooses between, token by token. */
export interface ReplyScripts {
  /** What the model answers when no injected instruction pulls it. */
  honest: readonly string[];
  /** What it produces while an injected instruction dominates its residual stream. */
  injected?: readonly string[];
}

/** The token a simulated chat template puts between the prompt and the reply. */
export const ASSISTANT_TOKEN = "<assistant>";

/**
 * An exact JumpReLU SAE for the simulator: latent i of the first
 * `DEMO_CONCEPTS.length` reads concept direction i (threshold at a third of
 * the concept strength); the rest are random "other features" so that the
 * SAE looks like a real one (many latents, most silent on a given token).
 *
 * @example
 * ```ts
 * const sae = buildDemoSae(new SimulatedModel(), 512);
 * ```
 */
export function buildDemoSae(sim: SimulatedModel, dSae = 512): SaeWeights {
  const d = sim.dModel;
  const rng = new Rng(1234);
  const wEnc = new Float32Array(d * dSae);
  const wDec = new Float32Array(dSae * d);
  const threshold = new Float32Array(dSae);
  for (let j = 0; j < dSae; j++) {
    const dir = j < sim.directions.length ? sim.directions[j] : rng.unitVector(d);
    for (let i = 0; i < d; i++) {
      wEnc[i * dSae + j] = dir[i];
      wDec[j * d + i] = dir[i];
    }
    threshold[j] = j < sim.directions.length ? sim.strength / 3 : 1.2;
  }
  return {
    format: "saelens",
    architecture: "jumprelu",
    dIn: d,
    dSae,
    hookName: "blocks.6.hook_resid_post",
    modelName: "sim-gpt",
    dtype: "float32",
    applyBDecToInput: true,
    wEnc,
    bEnc: new Float32Array(dSae),
    wDec,
    bDec: new Float32Array(d),
    threshold,
    source: "simulator",
  };
}

function orthonormal(rng: Rng, n: number, d: number): Float32Array[] {
  const out: Float32Array[] = [];
  for (let k = 0; k < n; k++) {
    const v = rng.unitVector(d);
    for (const u of out) {
      let dot = 0;
      for (let i = 0; i < d; i++) dot += v[i] * u[i];
      for (let i = 0; i < d; i++) v[i] -= dot * u[i];
    }
    let norm = 0;
    for (const x of v) norm += x * x;
    norm = Math.sqrt(norm);
    for (let i = 0; i < d; i++) v[i] /= norm;
    out.push(v);
  }
  return out;
}

/**
 * Write labels for the concept latents into `saeDir/explanations/`, laid out
 * as a Neuronpedia explanations export (one gzipped JSONL batch).
 *
 * @example
 * ```ts
 * await writeDemoLabels(".latentwatch/demo/sae");
 * ```
 */
export async function writeDemoLabels(saeDir: string): Promise<void> {
  const rows = DEMO_CONCEPTS.map((c) =>
    JSON.stringify({
      modelId: "sim-gpt",
      layer: "6-res-demo",
      index: String(c.latent),
      description: c.name,
      typeName: "demo",
    })
  ).join("\n") + "\n";
  const gz = new Response(new Blob([rows]).stream().pipeThrough(new CompressionStream("gzip")));
  await Deno.mkdir(`${saeDir}/explanations`, { recursive: true });
  await Deno.writeFile(
    `${saeDir}/explanations/batch-0.jsonl.gz`,
    new Uint8Array(await gz.arrayBuffer()),
  );
}
