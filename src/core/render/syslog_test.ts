import assert from "node:assert/strict";
import { toCef } from "./cef.ts";
import { AlertRenderError, SYSLOG_SEVERITY } from "./common.ts";
import { octetFrame, sdEscape, SyslogFieldError, toSyslog5424 } from "./syslog.ts";
import { ALERT, MINIMAL, NASTY } from "./test_alert.ts";
import { SEVERITIES } from "../policy/ast.ts";

const OPTS = { hostname: "gw1", appName: "latentwatch", procId: "4242", format: "cef" } as const;

/** RFC 5424 §6 header grammar, up to STRUCTURED-DATA. */
const HEADER =
  /^<(\d{1,3})>1 (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)) ([\x21-\x7e]{1,255}) ([\x21-\x7e]{1,48}) ([\x21-\x7e]{1,128}) ([\x21-\x7e]{1,32}) /;

/** Read one SD-ELEMENT (or `-`) from `s`; returns its params and the rest. */
function readSd(s: string): { id?: string; params: Map<string, string>; rest: string } {
  const params = new Map<string, string>();
  if (s.startsWith("- ")) return { params, rest: s.slice(2) };
  assert.equal(s[0], "[");
  let i = 1;
  const name = () => {
    const start = i;
    while (i < s.length && !'= ]"'.includes(s[i])) i++;
    const n = s.slice(start, i);
    assert.ok(n.length >= 1 && n.length <= 32 && /^[\x21-\x7e]+$/.test(n), `SD-NAME '${n}'`);
    return n;
  };
  const id = name();
  while (s[i] === " ") {
    i++;
    const key = name();
    assert.equal(s.slice(i, i + 2), '="');
    i += 2;
    let v = "";
    for (; s[i] !== '"'; i++) {
      assert.ok(s[i] !== "]", "unescaped ']' in a PARAM-VALUE");
      if (s[i] === "\\" && '"\\]'.includes(s[i + 1])) i++;
      v += s[i];
    }
    i++;
    params.set(key, v);
  }
  assert.equal(s[i], "]");
  assert.equal(s[i + 1], " ");
  return { id, params, rest: s.slice(i + 2) };
}

Deno.test("toSyslog5424: the fixed alert as CEF, hand-computed", () => {
  assert.equal(
    toSyslog5424(ALERT, OPTS),
    // local0 (16) × 8 + err (3) for high = 131
    "<131>1 2026-05-01T12:00:00.123Z gw1 latentwatch 4242 alert " +
      '[latentwatch@32473 id="5c1f0e7a9b3d4c2e8f6a1b0c9d8e7f60" policy="prompt-injection" ' +
      'policyVersion="a1b2c3d4" severity="high" monitor="demo" model="gemma-2-2b" ' +
      'request="req-1" tenant="acme" traceId="4bf92f3577b34da6a3ce929d0e0e4736"] ' +
      toCef(ALERT, { dvchost: "gw1" }),
  );
});

Deno.test("toSyslog5424: adversarial strings in structured data, hand-escaped; BOM before UTF-8", () => {
  const line = toSyslog5424(NASTY, OPTS);
  assert.ok(line.startsWith("<130>1 "), line); // 16 × 8 + crit (2)
  assert.ok(line.includes(' policy="rule|with\\\\pipe" '), line);
  assert.ok(line.includes(' model="m|=\\\\" '), line);
  assert.ok(line.includes(' request="r\\"\\]\\\\" '), line);
  assert.ok(line.includes(' tenant="tenant = x"] \uFEFFCEF:0|'), line);
  assert.ok(!line.includes("traceId="), "no traceparent, no traceId");
  assert.ok(!line.includes("\n"));
  const noBom = toSyslog5424(NASTY, { ...OPTS, bom: false });
  assert.ok(noBom.includes('"] CEF:0|'));
  assert.ok(toSyslog5424(ALERT, { ...OPTS, bom: true }).includes('"] \uFEFFCEF:0|'));
});

Deno.test("toSyslog5424: grammar holds for every shape, format and severity", () => {
  for (const alert of [ALERT, MINIMAL, NASTY]) {
    for (const format of ["json", "cef", "ocsf", "ecs"] as const) {
      for (const severity of SEVERITIES) {
        const line = toSyslog5424({ ...alert, severity }, { ...OPTS, format });
        const m = HEADER.exec(line);
        assert.ok(m, line);
        assert.equal(Number(m[1]), 16 * 8 + SYSLOG_SEVERITY[severity]);
        const { id, params, rest } = readSd(line.slice(m[0].length));
        assert.equal(id, "latentwatch@32473");
        assert.equal(params.get("id"), alert.id);
        assert.equal(params.get("request"), alert.requestId);
        assert.equal(params.get("model"), alert.model);
        assert.equal(params.get("policy"), alert.policy.id);
        const msg = rest.replace(/^\uFEFF/, "");
        if (format === "json") {
          assert.deepEqual(JSON.parse(msg), JSON.parse(JSON.stringify({ ...alert, severity })));
        }
        if (format === "ocsf") assert.equal(JSON.parse(msg).class_uid, 2004);
        if (format === "ecs") assert.equal(JSON.parse(msg).event.kind, "alert");
        if (format === "cef") assert.ok(msg.startsWith("CEF:0|"));
      }
    }
  }
});

Deno.test("toSyslog5424: NILVALUE, facility, no structured data", () => {
  const line = toSyslog5424(MINIMAL, {
    hostname: "",
    appName: "latentwatch",
    format: "json",
    facility: 10,
    sdId: "",
    msgId: "-",
  });
  // authpriv (10) × 8 + info (6) = 86
  assert.equal(
    line,
    `<86>1 2026-05-01T12:00:00.000Z - latentwatch - - - ${JSON.stringify(MINIMAL)}`,
  );
});

Deno.test("toSyslog5424: header fields outside the grammar are named errors", () => {
  const bad = [
    { hostname: "gw 1" },
    { hostname: "h".repeat(256) },
    { appName: "a".repeat(49) },
    { appName: "lätent" },
    { procId: "p".repeat(129) },
    { msgId: "m".repeat(33) },
    { sdId: "latent watch@1" },
    { sdId: "a=b" },
    { sdId: "x".repeat(33) },
    { facility: 24 },
    { facility: 1.5 },
  ];
  for (const b of bad) {
    assert.throws(() => toSyslog5424(ALERT, { ...OPTS, ...b }), SyslogFieldError);
  }
  assert.equal(
    toSyslog5424(ALERT, { ...OPTS, hostname: "h".repeat(255) }).split(" ")[2].length,
    255,
  );
  assert.throws(() => toSyslog5424({ ...ALERT, time: "2026-05-01" }, OPTS), AlertRenderError);
});

Deno.test("sdEscape: quote, backslash, bracket", () => {
  assert.equal(sdEscape('a"b]c\\'), 'a\\"b\\]c\\\\');
  assert.equal(sdEscape("[x=y]"), "[x=y\\]");
});

Deno.test("octetFrame: MSG-LEN counts UTF-8 bytes", () => {
  const dec = new TextDecoder();
  // "<14>1 - - - - - - " is 18 bytes; "é" 2, "日" 3, "😀" 4
  assert.equal(dec.decode(octetFrame("<14>1 - - - - - - é")), "20 <14>1 - - - - - - é");
  assert.equal(dec.decode(octetFrame("日😀")), "7 日😀");
  assert.deepEqual(
    octetFrame(new Uint8Array([0xef, 0xbb, 0xbf])),
    new Uint8Array([
      0x33,
      0x20,
      0xef,
      0xbb,
      0xbf,
    ]),
  );
  const msg = toSyslog5424(NASTY, OPTS);
  const framed = octetFrame(msg);
  const sp = framed.indexOf(0x20);
  const len = Number(dec.decode(framed.slice(0, sp)));
  assert.equal(len, framed.length - sp - 1);
  assert.ok(len > msg.length, "non-ASCII: more bytes than UTF-16 units");
  assert.equal(new TextDecoder("utf-8", { ignoreBOM: true }).decode(framed.slice(sp + 1)), msg);
});
