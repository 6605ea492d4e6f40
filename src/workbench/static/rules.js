// Rule workbench: a policy editor with line numbers and inline lint (as you
// type, debounced), a preview over the loaded requests (which fire, each
// condition's value per token with its threshold, the alerts as JSON), the
// firing-rate curve of a chosen rule, and Save where the page may write.
import { charts, debounce, el, fmt, getJSON, sendJSON, status } from "./api.js";
import { conditionChart, curveChart } from "./rules_charts.js";

/** Rule ids written in the text (`- id: x`), for the curve's choice. */
function ruleIdsIn(text) {
  const ids = [];
  for (const m of text.matchAll(/^\s*-\s*id:\s*["']?([\w.\-]+)/gm)) ids.push(m[1]);
  return ids;
}

function problemText(p) {
  return p.formatted || `${p.line}:${p.col} ${p.severity}: ${p.message}`;
}

export async function renderRules(ctx) {
  const { info, main } = ctx;
  const files = info.policyFiles ?? [];
  const fileSel = el(
    "select",
    { id: "policy-file", name: "file" },
    files.map((f) => el("option", { value: f }, f)),
  );
  const gutter = el("ol", { class: "gutter", id: "gutter", "aria-hidden": "true" });
  const area = el("textarea", {
    id: "policy-text",
    name: "text",
    spellcheck: "false",
    autocomplete: "off",
    wrap: "off",
    "aria-label": "Policy text",
    "aria-describedby": "editor-hint lint-problems",
  });
  const problems = el("ul", { id: "lint-problems", class: "problems", "aria-live": "polite" });
  const lintState = el("span", { id: "lint-state", class: "muted" }, "");
  const save = el("button", { type: "button", id: "save", disabled: !info.writable }, "Save");
  const saveNote = el(
    "span",
    { id: "save-note", class: "muted" },
    info.writable ? "" : "read-only: started without write access",
  );
  const curveSel = el(
    "select",
    { id: "curve-rule", name: "curve" },
    el("option", { value: "" }, "no curve"),
  );
  const positives = el("input", {
    id: "positives",
    name: "positives",
    size: 30,
    placeholder: "request ids, comma separated",
  });
  const previewBox = el("div", { id: "preview", class: "preview", "aria-live": "polite" });
  const curveBox = el("div", {
    id: "curve",
    class: "curve-chart",
    role: "img",
    "aria-label": "Firing rate on benign requests and detection on positives by threshold",
  });
  curveBox.hidden = true;

  main.append(
    el("h2", {}, "Rule workbench"),
    el(
      "div",
      { class: "toolbar" },
      el("label", { for: "policy-file" }, "Policy file ", fileSel),
      save,
      saveNote,
    ),
    el("div", { class: "editor" }, gutter, area),
    el(
      "p",
      { id: "editor-hint", class: "muted hint" },
      "Tab indents; Escape then Tab leaves the editor.",
    ),
    el("div", { class: "lint" }, el("h3", {}, "Lint ", lintState), problems),
    el(
      "div",
      { class: "toolbar" },
      el("label", { for: "curve-rule" }, "Curve for rule ", curveSel),
      el("label", { for: "positives" }, "Positives ", positives),
    ),
    curveBox,
    el("h3", {}, "Preview"),
    previewBox,
  );

  let problemsNow = [];
  const drawGutter = () => {
    const n = area.value.split("\n").length;
    const bad = new Map();
    for (const p of problemsNow) bad.set(p.line, [...(bad.get(p.line) ?? []), p]);
    const items = [];
    for (let i = 1; i <= n; i++) {
      const ps = bad.get(i);
      items.push(
        el(
          "li",
          {
            "data-line": i,
            class: ps ? `mark ${ps.some((p) => p.severity === "error") ? "error" : "warning"}` : "",
            title: ps ? ps.map(problemText).join("\n") : null,
          },
          String(i),
        ),
      );
    }
    gutter.replaceChildren(...items);
    gutter.scrollTop = area.scrollTop;
  };
  area.addEventListener("scroll", () => (gutter.scrollTop = area.scrollTop));

  const goTo = (line, col) => {
    const lines = area.value.split("\n");
    let off = 0;
    for (let i = 0; i < line - 1 && i < lines.length; i++) off += lines[i].length + 1;
    off += Math.max(0, (col ?? 1) - 1);
    area.focus();
    area.setSelectionRange(off, off);
  };

  const refreshCurveRules = () => {
    const ids = [...new Set([...ruleIdsIn(area.value), ...(info.rules ?? []).map((r) => r.id)])];
    const cur = curveSel.value;
    curveSel.replaceChildren(
      el("option", { value: "" }, "no curve"),
      ...ids.map((id) => el("option", { value: id, selected: id === cur }, id)),
    );
  };

  let seq = 0;
  let disposers = [];
  const dispose = () => {
    for (const d of disposers) d();
    disposers = [];
  };
  ctx.onCleanup(dispose);

  const run = async () => {
    const mine = ++seq;
    const text = area.value;
    const file = fileSel.value || undefined;
    lintState.textContent = "linting…";
    const lint = await sendJSON("policy/lint", { text, file });
    if (mine !== seq) return;
    problemsNow = lint.body?.problems ?? [];
    drawGutter();
    problems.replaceChildren(
      ...problemsNow.map((p) =>
        el(
          "li",
          { class: `problem ${p.severity}`, "data-line": p.line, "data-col": p.col },
          el("button", {
            type: "button",
            class: "link",
            onclick: () => goTo(p.line, p.col),
          }, `line ${p.line}, col ${p.col}`),
          " ",
          problemText(p),
        )
      ),
    );
    const errors = problemsNow.filter((p) => p.severity === "error").length;
    lintState.textContent = errors
      ? `${errors} error(s)`
      : problemsNow.length
      ? `${problemsNow.length} warning(s)`
      : "no problems";
    main.dataset.lint = errors ? "error" : "ok";
    refreshCurveRules();
    if (errors) {
      previewBox.dataset.state = "stale";
      return;
    }
    const body = { text, file };
    if (curveSel.value) body.curve = { rule: curveSel.value };
    const pos = positives.value.split(",").map((s) => s.trim()).filter(Boolean);
    if (pos.length) body.positives = pos;
    previewBox.dataset.state = "running";
    const pv = await sendJSON("policy/preview", body);
    if (mine !== seq) return;
    if (pv.status !== 200 || !pv.body) {
      previewBox.replaceChildren(el("p", { class: "error" }, `preview failed: HTTP ${pv.status}`));
      previewBox.dataset.state = "failed";
      return;
    }
    dispose();
    drawPreview(previewBox, pv.body, disposers);
    drawCurve(curveBox, pv.body.curve, disposers);
    previewBox.dataset.state = "done";
  };
  const schedule = debounce(() => run().catch((e) => status(e.message, "error")), 350);
  area.addEventListener("input", () => {
    drawGutter();
    schedule();
  });
  curveSel.addEventListener("change", schedule);
  positives.addEventListener("change", schedule);
  // Tab indents; Escape then Tab leaves the editor (no keyboard trap)
  let escaped = false;
  area.addEventListener("keydown", (e) => {
    if (e.key === "Escape") {
      escaped = true;
      return;
    }
    const leave = escaped;
    escaped = false;
    if (e.key === "Tab" && !leave && !e.shiftKey && !e.ctrlKey && !e.altKey) {
      e.preventDefault();
      area.setRangeText("  ", area.selectionStart, area.selectionEnd, "end");
      area.dispatchEvent(new Event("input"));
    }
  });

  const load = async () => {
    if (!fileSel.value) {
      drawGutter();
      return;
    }
    const p = await getJSON("policy", { file: fileSel.value });
    area.value = p.text ?? "";
    if (p.writable === false) save.disabled = true;
    drawGutter();
    await run();
  };
  fileSel.addEventListener("change", () => load().catch((e) => status(e.message, "error")));
  save.addEventListener("click", async () => {
    save.disabled = true;
    const r = await sendJSON("policy", { file: fileSel.value, text: area.value }, "PUT");
    save.disabled = !info.writable;
    if (r.status === 200) saveNote.textContent = `saved ${fileSel.value}`;
    else if (r.status === 403) saveNote.textContent = "not saved: the page has no write access";
    else if (r.status === 422) saveNote.textContent = "not saved: the policy does not lint";
    else saveNote.textContent = `not saved: HTTP ${r.status}`;
    status(saveNote.textContent, r.status === 200 ? "info" : "error");
  });
  await load();
}

function drawPreview(box, pv, disposers) {
  const reqs = [...(pv.requests ?? [])].sort((a, b) => Number(b.fired) - Number(a.fired));
  const fired = reqs.filter((r) => r.fired);
  const summary = el(
    "p",
    { id: "preview-summary" },
    `${fired.length} of ${reqs.length} request(s) fire`,
    fired.length ? `: ${fired.map((r) => r.id).join(", ")}` : "",
  );
  const list = el("div", { id: "preview-requests" });
  reqs.forEach((r, i) => {
    const det = el(
      "details",
      { "data-request-id": r.id, "data-fired": r.fired ? "1" : "0", class: r.fired ? "fired" : "" },
      el(
        "summary",
        {},
        el("span", { class: r.fired ? "badge alert" : "badge" }, r.fired ? "fires" : "quiet"),
        ` ${r.id} `,
        el("span", { class: "muted" }, `${(r.alerts ?? []).length} alert(s)`),
      ),
    );
    let drawn = false;
    const draw = () => {
      if (drawn) return;
      drawn = true;
      const conds = r.conditions ?? [];
      det.append(
        conds.length
          ? el(
            "div",
            { class: "conds" },
            conds.map((c) => {
              const cbox = el("div", {
                class: "cond-chart",
                "data-rule": c.rule,
                "data-cond": c.name,
                role: "img",
                "aria-label": `${c.rule}: ${
                  c.condition ?? ""
                } (${c.name}) ${c.op} ${c.threshold} per token`,
              });
              const holder = el(
                "figure",
                { class: "cond" },
                el(
                  "figcaption",
                  {},
                  `${c.rule}: ${c.condition ?? ""} (${c.name}) ${c.op} ${fmt(c.threshold)}`,
                ),
                cbox,
              );
              queueMicrotask(() => disposers.push(conditionChart(cbox, r.tokens ?? [], c)));
              return holder;
            }),
          )
          : el("p", { class: "muted" }, "no conditions"),
        (r.alerts ?? []).length
          ? el("pre", { class: "alert-json" }, JSON.stringify(r.alerts, null, 2))
          : "",
      );
    };
    det.addEventListener("toggle", () => det.open && draw());
    if (r.fired && i < 3) {
      det.open = true;
      draw();
    }
    list.append(det);
  });
  const probs = pv.problems ?? [];
  box.replaceChildren(
    summary,
    probs.length ? el("p", { class: "muted" }, `${probs.length} lint note(s)`) : "",
    list,
  );
}

function drawCurve(box, curve, disposers) {
  if (!curve || !Array.isArray(curve.points) || !charts()) {
    box.hidden = true;
    return;
  }
  box.hidden = false;
  box.dataset.rule = curve.rule;
  disposers.push(curveChart(box, curve));
}
