import assert from "node:assert/strict";

import { writeExample } from "../demo/example_trace.ts";
import { DEMO_CONCEPTS } from "../demo/simulator.ts";
import { workbenchApi } from "./api.ts";
import { loadTraceSource } from "./load.ts";
import { formatFinding, lintPolicies } from "../cli/policy.ts";

/** What the page sends with its writes (others are refused as cross-site). */
const JSON_TYPE = { "Content-Type": "application/json" };

// The demo's planted model: latent 0 is "prompt injection" on these words.
const INJECTION_WORDS = [
  "ignore",
  "disregard",
  "previous",
  "prior",
  "instructions",
  "jailbreak",
  "override",
  "pretend",
  "unfiltered",
];

async function setUp() {
  const dir = await Deno.makeTempDir({ prefix: "lw-workbench-" });
  const policy = await Deno.readTextFile(new URL("../../policies/demo.yaml", import.meta.url));
  await Deno.writeTextFile(`${dir}/policy.yaml`, policy);
  const truth = await writeExample(dir, "./policy.yaml");
  const source = await loadTraceSource(`${dir}/monitor.yaml`, [`${dir}/demo.trace.gz`]);
  return {
    dir,
    policy,
    policyFile: `${dir}/policy.yaml`,
    truth,
    source,
    [Symbol.asyncDispose]: async () => {
      await source.store.monitor.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

const json = async (app: ReturnType<typeof workbenchApi>, path: string, init?: RequestInit) => {
  const res = await app.request(path, init);
  return { status: res.status, body: await res.json() };
};

Deno.test("workbench API over the demo trace", async (t) => {
  await using s = await setUp();
  const app = workbenchApi(s.source, { writable: true });
  const injected = s.truth.filter((r) => r.concepts.has(0));
  assert(injected.length > 0, "the demo trace has prompt-injection requests");
  assert.deepEqual(DEMO_CONCEPTS[0].name, "prompt injection");

  await t.step("info", async () => {
    const { body } = await json(app, "/ui/api/info");
    assert.deepEqual(body.mode, "traces");
    assert.deepEqual(body.saes, [{ id: "demo-res", dSae: 16, labelled: true }]);
    assert(body.rules.some((r: { id: string }) => r.id === "prompt-injection"));
    assert.deepEqual(body.policyFiles, [s.policyFile]);
    assert.deepEqual(body.writable, true);
  });

  await t.step("requests: filter by rule lists the injection requests", async () => {
    const all = await json(app, "/ui/api/requests");
    assert.deepEqual(all.body.requests.length, s.truth.length);
    const hit = await json(app, "/ui/api/requests?alert=1&rule=prompt-injection");
    const ids = hit.body.requests.map((r: { id: string }) => r.id);
    assert.deepEqual(ids, injected.map((r) => r.id));
    const text = await json(app, "/ui/api/requests?text=capital");
    assert.deepEqual(text.body.requests.map((r: { id: string }) => r.id), ["req-1-benign"]);
  });

  await t.step(
    "request: the injection signal is above threshold exactly on planted tokens",
    async () => {
      for (const r of injected) {
        const { status, body } = await json(app, `/ui/api/requests/${r.id}`);
        assert.deepEqual(status, 200);
        assert.deepEqual(body.tokens, r.tokens);
        const sig = body.signals.find((x: { key: string }) => x.key === "sae:demo-res:0");
        assert(
          sig,
          `expected signal sae:demo-res:0, found ${
            body.signals.map((x: { key: string }) => x.key)
          }`,
        );
        assert.deepEqual(sig.label, "prompt injection");
        const th = sig.thresholds.find((x: { rule: string; op: string }) =>
          x.rule === "prompt-injection" && x.op === "above"
        );
        assert.deepEqual(th.value, 2);
        const above: number[] = sig.values.flatMap((v: number, i: number) =>
          v > th.value ? [i] : []
        );
        assert.deepEqual(above, r.concepts.get(0));
        for (const p of above) {
          assert(
            INJECTION_WORDS.includes(r.tokens[p].toLowerCase()),
            r.tokens[p],
          );
        }
        assert(
          body.alerts.some((a: { rule: string; start: number }) =>
            a.rule === "prompt-injection" && r.concepts.get(0)!.includes(a.start)
          ),
        );
        assert(body.steering.some((x: { rule: string }) => x.rule === "prompt-injection"));
        assert(body.latents.some((l: { latent: number }) => l.latent === 0));
      }
      assert.deepEqual((await app.request("/ui/api/requests/nope")).status, 404);
    },
  );

  await t.step("labels: fuzzy search", async () => {
    const { body } = await json(app, "/ui/api/labels?q=" + encodeURIComponent("promt  injecton"));
    assert.deepEqual(body.results[0].latent, 0);
    assert.deepEqual(body.results[0].label, "prompt injection");
  });

  await t.step("latent page: top tokens are injection words", async () => {
    const { body } = await json(app, "/ui/api/latents/demo-res/0");
    assert.deepEqual(body.label, "prompt injection");
    assert(body.decoderNorm > 0);
    assert(body.density > 0 && body.density < 0.5, `density ${body.density}`);
    assert(body.top.length > 0);
    for (const t of body.top) {
      assert(INJECTION_WORDS.includes(t.context[t.focus].toLowerCase()), t.context[t.focus]);
    }
    assert.deepEqual(body.nearest.length, 10);
    assert.deepEqual((await app.request("/ui/api/latents/demo-res/16")).status, 404);
  });

  await t.step("preview: a typo is a lint problem at its line", async () => {
    const bad = s.policy.replace(
      "severity: high\n    description: >-",
      "severity: hihg\n    description: >-",
    );
    const line = bad.split("\n").findIndex((l) => l.includes("hihg")) + 1;
    assert(line > 0);
    const { body } = await json(app, "/ui/api/policy/preview", {
      method: "POST",
      headers: JSON_TYPE,
      body: JSON.stringify({ text: bad, file: s.policyFile }),
    });
    const errs = body.problems.filter((p: { severity: string }) => p.severity === "error");
    assert.deepEqual(errs.length, 1, JSON.stringify(body.problems));
    assert.deepEqual(errs[0].line, line);
    assert(errs[0].formatted.startsWith(`${s.policyFile}:${line}:`), errs[0].formatted);
    assert.deepEqual(body.requests, []);
    const lint = await json(app, "/ui/api/policy/lint", {
      method: "POST",
      headers: JSON_TYPE,
      body: JSON.stringify({ text: bad, file: s.policyFile }),
    });
    assert.deepEqual(lint.body.problems, body.problems);
  });

  await t.step("lint: the same lines `policy lint` prints for the same file", async () => {
    const bad = s.policy
      .replace("latent: 1, above: 2.0 }", "latent: 99, above: 2.0 }")
      .replace("tags: [pii]", "tags: [pii, AML.T9]");
    // policy lint reads the file: the monitor's own, restored after
    await Deno.writeTextFile(s.policyFile, bad);
    const cli = await lintPolicies([s.policyFile], { monitor: `${s.dir}/monitor.yaml` });
    await Deno.writeTextFile(s.policyFile, s.policy);
    const expected = [...cli.errors, ...cli.warnings].map(formatFinding).sort();
    assert.ok(cli.errors.length > 0 && cli.warnings.length > 0, JSON.stringify(cli));
    const { body } = await json(app, "/ui/api/policy/lint", {
      method: "POST",
      headers: JSON_TYPE,
      body: JSON.stringify({ text: bad, file: s.policyFile }),
    });
    const found = body.problems.map((p: { formatted: string }) => p.formatted).sort();
    assert.deepEqual(found, expected);
  });

  await t.step(
    "preview: the fixed rule fires on the injection requests, curve monotone",
    async () => {
      const { body } = await json(app, "/ui/api/policy/preview", {
        method: "POST",
        headers: JSON_TYPE,
        body: JSON.stringify({
          text: s.policy,
          file: s.policyFile,
          curve: { rule: "prompt-injection" },
          positives: injected.map((r) => r.id),
        }),
      });
      assert.deepEqual(
        body.problems.filter((p: { severity: string }) => p.severity === "error"),
        [],
      );
      const fired = body.requests.filter((r: { alerts: { policy: { id: string } }[] }) =>
        r.alerts.some((a) => a.policy.id === "prompt-injection")
      ).map((r: { id: string }) => r.id);
      assert.deepEqual(fired, injected.map((r) => r.id));
      const req = body.requests.find((r: { id: string }) => r.id === injected[0].id);
      const cond = req.conditions.find((c: { rule: string; threshold: number }) =>
        c.rule === "prompt-injection" && c.threshold === 2
      );
      assert(cond.firedAt.length > 0);
      for (const p of cond.firedAt) assert(injected[0].concepts.get(0)!.includes(p));
      // the macro's other test: ≥ 2 of the last 4 tokens above 3 (count pool, above 1);
      // by hand from the planted positions: a window of 4 holds two of them here
      const planted = injected[0].concepts.get(0)!;
      const byHand = injected[0].tokens.flatMap((_, p) =>
        planted.filter((q) => q <= p && q > p - 4).length > 1 ? [p] : []
      );
      assert(byHand.length > 0);
      const count = req.conditions.find((c: { rule: string; threshold: number }) =>
        c.rule === "prompt-injection" && c.threshold === 1
      );
      assert.deepEqual(count.values.flatMap((v: number, i: number) => v > 1 ? [i] : []), byHand);
      assert.deepEqual(count.raw, cond.raw);
      // the preview's alert lists the rule's conditions by the names its condition traces carry
      type Named = { name: string; completed?: true };
      const alert = req.alerts.find((a: { policy: { id: string } }) =>
        a.policy.id === "prompt-injection"
      ) as { conditions: Named[]; completedBy: string };
      const traced = req.conditions.filter((c: { rule: string }) => c.rule === "prompt-injection")
        .map((c: { condition: string }) => c.condition);
      assert.deepEqual(alert.conditions.map((c) => c.name).sort(), [...new Set(traced)].sort());
      assert.ok(alert.conditions.some((c) => c.name === alert.completedBy && c.completed));
      const pts = body.curve.points;
      assert(pts.length >= 2);
      for (let i = 1; i < pts.length; i++) {
        assert(pts[i].threshold > pts[i - 1].threshold);
        assert(pts[i].benignRate <= pts[i - 1].benignRate);
        assert(pts[i].detection <= pts[i - 1].detection);
      }
      const at2 = pts.find((p: { threshold: number }) => p.threshold === 2);
      assert.deepEqual(at2.detection, 1);
      assert.deepEqual(at2.benignRate, 0);
    },
  );

  await t.step("policy: read, save only when it lints and only when writable", async () => {
    const got = await json(app, "/ui/api/policy");
    assert.deepEqual(got.body.text, s.policy);
    const bad = s.policy.replace("severity: low", "severity: lwo");
    const put422 = await json(app, "/ui/api/policy", {
      method: "PUT",
      headers: JSON_TYPE,
      body: JSON.stringify({ file: s.policyFile, text: bad }),
    });
    assert.deepEqual(put422.status, 422);
    assert(put422.body.problems.length > 0);
    const edited = s.policy.replace("above: 2.0 }", "above: 2.5 }");
    const ok = await json(app, "/ui/api/policy", {
      method: "PUT",
      headers: JSON_TYPE,
      body: JSON.stringify({ file: s.policyFile, text: edited }),
    });
    assert.deepEqual(ok.status, 200);
    assert.deepEqual(ok.body.saved, true);
    assert.deepEqual(await Deno.readTextFile(s.policyFile), edited);
    const ro = workbenchApi(s.source, { writable: false });
    const put403 = await json(ro, "/ui/api/policy", {
      method: "PUT",
      headers: JSON_TYPE,
      body: JSON.stringify({ file: s.policyFile, text: s.policy }),
    });
    assert.deepEqual(put403.status, 403);
    assert.deepEqual(await Deno.readTextFile(s.policyFile), edited);
  });

  await t.step("static page and vendored files", async () => {
    const page = await app.request("/ui/");
    assert.deepEqual(page.status, 200);
    assert((await page.text()).includes("<html"));
    const v = await app.request("/ui/vendor/echarts.min.js");
    assert.deepEqual(v.status, 200);
    assert((await v.text()).length > 100_000);
    assert.deepEqual((await app.request("/ui/../deno.json")).status, 404);
  });

  await t.step("bad input is a 4xx with the reason, never a 500", async () => {
    const post = (path: string, body: unknown, headers: Record<string, string> = JSON_TYPE) =>
      app.request(path, { method: "POST", headers, body: JSON.stringify(body) });
    const cases: [Response, number, RegExp][] = [
      [
        await post("/ui/api/policy/preview", {
          text: s.policy,
          curve: { rule: "x" },
          positives: "abc",
        }),
        400,
        /positives\?: \[request id\]/,
      ],
      [
        await post("/ui/api/policy/preview", { text: s.policy, curve: "x" }),
        400,
        /curve\?: \{rule\}/,
      ],
      [
        await post("/ui/api/policy/lint", { text: s.policy, file: 5 }),
        400,
        /a policy file of the monitor/,
      ],
      [
        await post("/ui/api/policy/lint", { text: s.policy }, { "Content-Type": "text/plain" }),
        415,
        /application\/json/,
      ],
      [
        await post("/ui/api/policy/lint", { text: s.policy }, {
          ...JSON_TYPE,
          Origin: "http://evil.example",
        }),
        403,
        /this page's origin, found 'http:\/\/evil\.example'/,
      ],
      [
        await post("/ui/api/policy/lint", { text: "x".repeat(2 << 20) }),
        413,
        /at most 1048576 bytes/,
      ],
      [await app.request("/ui/api/requests?limit=1000000000"), 400, /1\.\.5000/],
      [await app.request("/ui/api/labels?limit=99999"), 400, /1\.\.200/],
      [await app.request(`/ui/api/labels?q=${"a".repeat(300)}`), 400, /at most 200 characters/],
    ];
    for (const [res, status, message] of cases) {
      const body = await res.json();
      assert.equal(res.status, status, JSON.stringify(body));
      assert.match(body.error, message);
    }
    // the same origin passes
    const same = await post("/ui/api/policy/lint", { text: s.policy }, {
      ...JSON_TYPE,
      Origin: "http://localhost",
    });
    assert.equal(same.status, 200);
    assert.equal((await app.request("/ui/nope.js")).status, 404);
    assert.deepEqual(await (await app.request("/ui/nope.js")).json(), { error: "not found" });
  });

  await t.step("no token: a request naming another host is refused", async () => {
    assert.equal((await app.request("http://127.0.0.1:8790/ui/api/info")).status, 200);
    const other = await app.request("http://attacker.invalid:8790/ui/api/info");
    assert.equal(other.status, 403);
    assert.match(
      (await other.json()).error,
      /expected a loopback Host .* found 'attacker\.invalid'/,
    );
  });

  await t.step("token: without it 401, with the header or the cookie 200", async () => {
    const locked = workbenchApi(s.source, { token: "s3cret-token" });
    assert.deepEqual((await locked.request("/ui/api/info")).status, 401);
    assert.deepEqual((await locked.request("/ui/")).status, 401);
    const bad = await locked.request("/ui/api/info", { headers: { Authorization: "Bearer nope" } });
    assert.deepEqual(bad.status, 401);
    const good = await locked.request("/ui/api/info", {
      headers: { Authorization: "Bearer s3cret-token" },
    });
    assert.deepEqual(good.status, 200);
    const put = await locked.request("/ui/api/policy", {
      method: "PUT",
      headers: JSON_TYPE,
      body: "{}",
    });
    assert.deepEqual(put.status, 401);
    // a malformed cookie is no token (401), not a crash
    const mangled = await locked.request("/ui/api/info", {
      headers: { Cookie: "latentwatch_ui_token=%E0" },
    });
    assert.equal(mangled.status, 401);
    const set = await locked.request("/ui/?token=s3cret-token");
    assert.deepEqual(set.status, 303);
    const cookie = set.headers.get("Set-Cookie")!;
    assert(/HttpOnly/.test(cookie) && /SameSite=Strict/.test(cookie), cookie);
    const viaCookie = await locked.request("/ui/api/info", {
      headers: { Cookie: cookie.split(";")[0] },
    });
    assert.deepEqual(viaCookie.status, 200);
  });
});
