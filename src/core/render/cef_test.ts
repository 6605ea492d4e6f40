import assert from "node:assert/strict";
import { CEF_HEADER_LIMITS, cefExtensionEscape, cefHeaderEscape, toCef } from "./cef.ts";
import { AlertRenderError, CEF_SEVERITY } from "./common.ts";
import { ALERT, MINIMAL, NASTY } from "./test_alert.ts";

/**
 * An independent CEF reader written from the spec's rules: seven header
 * fields split on pipes not preceded by a backslash escape, then extension
 * pairs `key=value` separated by a space before the next unescaped `key=`.
 */
function parseCef(line: string): { header: string[]; ext: Map<string, string> } {
  const header: string[] = [];
  let cur = "";
  let i = 0;
  for (; i < line.length && header.length < 7; i++) {
    const c = line[i];
    if (c === "\\") {
      const n = line[++i];
      assert.ok(n === "\\" || n === "|", `bad header escape \\${n}`);
      cur += n;
    } else if (c === "|") {
      header.push(cur);
      cur = "";
    } else {
      assert.ok(c !== "\n" && c !== "\r", "line break in the header");
      cur += c;
    }
  }
  const rest = line.slice(i);
  const ext = new Map<string, string>();
  // keys: a run of [A-Za-z0-9] followed by an unescaped '='
  const re = /(?:^| )([A-Za-z0-9]+)=/g;
  const starts: { key: string; at: number; end: number }[] = [];
  for (let m; (m = re.exec(rest));) {
    // an escaped '=' is never a key separator
    let bs = 0;
    for (let j = m.index + m[0].length - 2; j >= 0 && rest[j] === "\\"; j--) bs++;
    if (bs % 2 === 0) starts.push({ key: m[1], at: m.index, end: m.index + m[0].length });
  }
  starts.forEach((s, k) => {
    const raw = rest.slice(s.end, k + 1 < starts.length ? starts[k + 1].at : rest.length);
    assert.ok(!/[\r\n]/.test(raw), `raw line break in ${s.key}`);
    let v = "";
    for (let j = 0; j < raw.length; j++) {
      if (raw[j] !== "\\") {
        assert.ok(raw[j] !== "=", `unescaped '=' in value of ${s.key}`);
        v += raw[j];
        continue;
      }
      const n = raw[++j];
      v += n === "n" ? "\n" : n === "r" ? "\r" : n;
      assert.ok("\\=nr".includes(n), `bad extension escape \\${n}`);
    }
    ext.set(s.key, v);
  });
  return { header, ext };
}

Deno.test("toCef: the fixed alert, hand-computed", () => {
  assert.equal(
    toCef(ALERT),
    "CEF:0|latentwatch|latentwatch|0.1.0|prompt-injection|Prompt injection features active|8|" +
      "rt=1777636800123 externalId=5c1f0e7a9b3d4c2e8f6a1b0c9d8e7f60 " +
      "msg=prompt-injection latent 1234 at 5.25 on tokens 12-14 act=clamp cat=AML.T0051.000 " +
      "cs1Label=model cs1=gemma-2-2b cs2Label=hook cs2=blocks.12.hook_resid_post " +
      "cs3Label=requestId cs3=req-1 cs4Label=tenant cs4=acme " +
      "cs5Label=signal cs5=sae:res12:1234 instruction override " +
      "cs6Label=atlasTechniques cs6=AML.T0051.000,AML.T0054 " +
      "cn1Label=tokenStart cn1=12 cn2Label=tokenEnd cn2=14 cn3Label=tokenCount cn3=2 " +
      "cfp1Label=value cfp1=5.25 cfp2Label=threshold cfp2=3 " +
      "flexString1Label=policyVersion flexString1=a1b2c3d4 " +
      "flexString2Label=traceId flexString2=4bf92f3577b34da6a3ce929d0e0e4736",
  );
});

Deno.test("toCef: adversarial strings, hand-escaped", () => {
  const line = toCef(NASTY, { dvchost: "gw|1=x" });
  assert.ok(
    line.startsWith(
      "CEF:0|latentwatch|latentwatch|0.1.0|rule\\|with\\\\pipe|" +
        "Title \\| with \\\\ back slash = é|10|",
    ),
    line,
  );
  assert.ok(line.includes(' msg=a\\=b\\\\c|d\\r\\ne"f]g ü 日本 act=clamp '), line);
  assert.ok(line.includes(" dvchost=gw|1\\=x "), line);
  assert.ok(line.includes(" cs1=m|\\=\\\\ "), line);
  assert.ok(line.includes(' cs2=h]" '), line);
  assert.ok(line.includes(' cs3=r"]\\\\ '), line);
  assert.ok(line.includes(" cs4=tenant \\= x "), line);
  assert.ok(line.endsWith(" flexString1Label=policyVersion flexString1=v\\=1"), line);
  assert.ok(!/[\r\n]/.test(line));
});

Deno.test("toCef: a spec reader gets every field back unchanged", () => {
  for (const alert of [ALERT, MINIMAL, NASTY]) {
    const { header, ext } = parseCef(toCef(alert, { dvchost: "h=1\\" }));
    assert.equal(header.length, 7);
    assert.equal(header[0], "CEF:0");
    assert.equal(header[4], alert.policy.id);
    assert.equal(header[5], alert.title.replace(/\r\n|[\r\n]/g, " "));
    assert.equal(header[6], String(CEF_SEVERITY[alert.severity]));
    assert.equal(ext.get("msg"), alert.description ?? alert.title);
    assert.equal(ext.get("cs1"), alert.model);
    assert.equal(ext.get("cs2"), alert.hook);
    assert.equal(ext.get("cs3"), alert.requestId);
    assert.equal(ext.get("cs4"), alert.tenant);
    assert.equal(ext.get("dvchost"), "h=1\\");
    assert.equal(ext.get("rt"), String(Date.parse(alert.time)));
    assert.equal(ext.get("externalId"), alert.id);
    for (const [k] of ext) assert.ok(!k.includes(" "));
    // a label travels only with its value
    for (const [k] of ext) if (k.endsWith("Label")) assert.ok(ext.has(k.slice(0, -5)), k);
  }
});

Deno.test("toCef: minimal alert leaves out what it lacks", () => {
  const { ext } = parseCef(toCef(MINIMAL));
  for (const k of ["cs4", "cs4Label", "cs6", "cfp2", "flexString1", "flexString2", "dvchost"]) {
    assert.ok(!ext.has(k), k);
  }
  assert.equal(ext.get("act"), "alert");
  assert.equal(ext.get("cat"), "latentwatch");
});

Deno.test("toCef: severity 0-10 bands, header lengths cut before escaping", () => {
  assert.deepEqual(Object.values(CEF_SEVERITY), [1, 3, 5, 8, 10]);
  for (const v of Object.values(CEF_SEVERITY)) assert.ok(v >= 0 && v <= 10);
  const long = toCef({ ...MINIMAL, title: "|".repeat(600), policy: { ...MINIMAL.policy } }, {
    product: { vendor: "v".repeat(70), name: "é".repeat(70), version: "1".repeat(40) },
  });
  const { header } = parseCef(long);
  assert.equal(header[1].length, CEF_HEADER_LIMITS.vendor);
  assert.equal([...header[2]].length, CEF_HEADER_LIMITS.product);
  assert.equal(header[3].length, CEF_HEADER_LIMITS.version);
  assert.equal(header[5], "|".repeat(CEF_HEADER_LIMITS.name));
});

Deno.test("cef escapes: backslash first, each character once", () => {
  assert.equal(cefHeaderEscape("a\\|b"), "a\\\\\\|b");
  assert.equal(cefHeaderEscape("x\r\ny\nz"), "x y z");
  assert.equal(cefHeaderEscape("k=v"), "k=v");
  assert.equal(cefExtensionEscape("\\="), "\\\\\\=");
  assert.equal(cefExtensionEscape("a\r\nb|c"), "a\\r\\nb|c");
  assert.equal(cefExtensionEscape("日本 ü"), "日本 ü");
});

Deno.test("toCef: an unparseable time is a named error", () => {
  assert.throws(() => toCef({ ...MINIMAL, time: "yesterday" }), AlertRenderError);
});
