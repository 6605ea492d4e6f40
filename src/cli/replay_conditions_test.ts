/**
 * End to end on the demo trace (onnxruntime encodes it): the e-mail-then-
 * credential rule alerts on the credential latent that completed it, its
 * description reads both conditions by name, and every output lists every
 * condition. Expected values come from the plain-TypeScript reference
 * encoder run over the trace's activations here.
 */
import assert from "node:assert/strict";
import type { Alert } from "../core/alert.ts";
import { decodeFrame } from "../core/frame/decode.ts";
import { referenceEncode } from "../core/reference_encoder.ts";
import { toCef } from "../core/render/cef.ts";
import { toEcs } from "../core/render/ecs.ts";
import { toOcsf } from "../core/render/ocsf.ts";
import { toSyslog5424 } from "../core/render/syslog.ts";
import { writeExample } from "../demo/example_trace.ts";
import { loadSaeLens } from "../formats/saelens.ts";
import { readTrace } from "../traces/reader.ts";
import { formatAlertLine } from "./alerts.ts";
import { runReplayCommand } from "./replay.ts";
import { runTests } from "./policy_test_cmd.ts";

const RULES = `version: 2
rules:
  - id: credential-leak
    title: Credential after an e-mail address
    severity: high
    description: "{label} at {value}: e-mail {cond.email.value}, credential {cond.credential.value} (above {cond.credential.threshold})"
    when:
      all:
        - { sae: demo-res, latent: 1, pool: { max: 8 }, above: 5, name: email }
        - { sae: demo-res, latent: 2, above: 3, name: credential }
`;

/** Latents 1 (e-mail) and 2 (credential) of req-3-pii per position, by the reference encoder. */
async function referenceValues(dir: string): Promise<Map<number, [number, number]>> {
  const sae = await loadSaeLens(`${dir}/testdata/sae`);
  const out = new Map<number, [number, number]>();
  for await (const r of readTrace(`${dir}/testdata/demo.trace.gz`)) {
    const f = decodeFrame(r.subject, r.headers, r.data);
    if (f.requestId !== "req-3-pii") continue;
    referenceEncode(sae, f.data, f.tokens, Uint32Array.of(1, 2)).forEach((row, i) => {
      const at = (k: number) => {
        const j = [...row.indices].indexOf(k);
        return j < 0 ? 0 : row.values[j];
      };
      out.set(f.position + i, [at(1), at(2)]);
    });
  }
  return out;
}

/** stdout lines of a command run in this process (exit 0 expected). */
async function captured(run: () => Promise<number>): Promise<string[]> {
  const lines: string[] = [];
  const log = console.log;
  console.log = (s: string) => lines.push(s);
  try {
    assert.equal(await run(), 0);
  } finally {
    console.log = log;
  }
  return lines;
}

const replay = (args: string[]) => captured(() => runReplayCommand([...args, "--quiet"]));

const close = (got: number, want: number, what: string) =>
  assert.ok(
    Math.abs(got - want) <= 1e-4 * Math.max(1, Math.abs(want)),
    `${what}: ${got} vs ${want}`,
  );

Deno.test("replay: the e-mail-then-credential rule leads with the credential, lists both conditions everywhere", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${dir}/testdata`);
    await Deno.writeTextFile(`${dir}/rules.yaml`, RULES);
    await writeExample(`${dir}/testdata`, "../rules.yaml");
    const ref = await referenceValues(dir);
    // the rule first holds where the credential latent is active, the e-mail one 8 tokens back at most
    const fire = [...ref.keys()].sort((a, b) => a - b).find((p) => {
      const emailMax = Math.max(
        ...[...ref].filter(([q]) => q <= p && q > p - 8).map(([, v]) => v[0]),
      );
      return emailMax > 5 && ref.get(p)![1] > 3;
    })!;
    const email = Math.max(
      ...[...ref].filter(([q]) => q <= fire && q > fire - 8).map(([, v]) => v[0]),
    );
    const cred = ref.get(fire)![1];
    assert.equal(ref.get(fire)![0], 0, "the e-mail latent is quiet on the firing token");
    const args = [`${dir}/testdata/demo.trace.gz`, "--monitor", `${dir}/testdata/monitor.yaml`];

    // native alerts (--alerts: as serve builds them)
    const alerts = (await replay([...args, "--alerts"])).map((l) => JSON.parse(l) as Alert);
    assert.equal(alerts.length, 1);
    const a = alerts[0];
    assert.equal(a.requestId, "req-3-pii");
    assert.equal(a.tokens.start, fire);
    assert.equal(a.latent.index, 2);
    assert.equal(a.latent.label, "credential / API key");
    assert.equal(a.latent.threshold, 3);
    close(a.latent.max, cred, "latent.max");
    assert.equal(a.completedBy, "credential");
    assert.deepEqual(
      a.conditions!.map((c) => [c.name, c.index, c.pool, c.op, c.threshold, c.held, c.completed]),
      [
        ["email", 1, { kind: "max", window: 8 }, "above", 5, true, undefined],
        ["credential", 2, { kind: "token" }, "above", 3, true, true],
      ],
    );
    close(a.conditions![0].value, email, "email value");
    close(a.conditions![1].value, cred, "credential value");
    // the description, numbers to 6 significant digits
    const m =
      /^credential \/ API key at ([\d.]+): e-mail ([\d.]+), credential ([\d.]+) \(above 3\)$/
        .exec(a.description ?? "");
    assert.ok(m, a.description);
    close(Number(m[1]), cred, "{value}");
    close(Number(m[2]), email, "{cond.email.value}");
    close(Number(m[3]), cred, "{cond.credential.value}");

    // each rendering names both conditions with value, threshold and window
    const six = (v: number) => String(Number(v.toPrecision(6)));
    const texts = a.conditions!.map((c) =>
      `${c.name}: sae demo-res:${c.index} '${c.label}' ${
        c.name === "email" ? "max 8" : "token"
      } above ${c.threshold} = ${six(c.value)} (held${c.completed ? ", completed the rule" : ""})`
    );
    const cef = toCef(a);
    assert.ok(cef.includes(` lwCompletedBy=credential `), cef);
    assert.ok(cef.endsWith(`lwConditions=${texts.join("; ").replaceAll("=", "\\=")}`), cef);
    const sys = toSyslog5424(a, { hostname: "h", appName: "latentwatch", format: "json" });
    assert.ok(sys.includes(`completedBy="credential" cond1="${texts[0]}" cond2="${texts[1]}"]`));
    for (const doc of [toEcs(a).latentwatch, toOcsf(a).unmapped]) {
      const d = doc as { conditions: unknown; completed_by: unknown };
      assert.deepEqual(d.conditions, a.conditions);
      assert.equal(d.completed_by, "credential");
    }
    const tail = formatAlertLine(a, { color: false }).split("\n");
    assert.match(tail[0], / latent=demo-res:2 "credential \/ API key" .* by=credential$/);
    assert.deepEqual(tail.slice(1), texts.map((t) => `    ${t}`));

    // replay's readable output and --json
    const readable = (await replay(args)).join("\n");
    assert.match(readable, /latent demo-res\/2 "credential \/ API key" value/);
    assert.ok(
      readable.includes(`conditions (completed by credential):\n      ${texts.join("\n      ")}`),
      readable,
    );
    const json = (await replay([...args, "--json"])).map((l) => JSON.parse(l));
    assert.equal(json[0].completedBy, "credential");
    assert.deepEqual(json[0].conditions, a.conditions);

    // policy test --verbose names the condition that completed the rule
    await Deno.writeTextFile(
      `${dir}/rules.test.yaml`,
      `trace: testdata/demo.trace.gz\nmonitor: testdata/monitor.yaml\ntests:\n` +
        `  - name: leak\n    expect: [{rule: credential-leak, request: req-3-pii, positions: [${fire}]}]\n`,
    );
    const tested = (await captured(() => runTests([`${dir}/rules.test.yaml`, "--verbose"])))
      .join("\n");
    assert.match(
      tested,
      new RegExp(
        `fired: \\[HIGH\\] credential-leak request req-3-pii tokens ${fire} latent ` +
          `demo-res/2 "credential / API key" value [\\d.]+ \\(condition credential\\)`,
      ),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
