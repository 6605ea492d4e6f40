// One request: the heatmap of tokens (x) × rows (y), the policies' signals
// first, then the strongest latents, with alerts and steering marked on the
// tokens. The token strip above the chart carries the marks in the DOM too
// (data-alert, data-steer) so they can be read without the canvas.
import { charts, COLORS, el, esc, fmt, getJSON } from "./api.js";

/** Positions an alert covers: its `positions`, else the span [start, end) (at least start). */
export function alertPositions(a) {
  if (Array.isArray(a.positions)) return a.positions;
  const s = Number(a.start ?? 0);
  const e = Math.max(s + 1, Number(a.end ?? s + 1));
  const out = [];
  for (let i = s; i < e; i++) out.push(i);
  return out;
}

/** A steering op as text: a string as is, `{clamp: {sae, latent, value}}` in short. */
export function opText(op) {
  if (op === undefined || op === null) return "";
  if (typeof op !== "object") return String(op);
  if (typeof op.kind === "string") {
    const { kind, sae, latent, ...rest } = op;
    const args = Object.entries(rest).map(([k, v]) => k === "value" ? `= ${v}` : `${k} ${v}`);
    return [kind, latent !== undefined ? `${sae ?? ""}#${latent}` : "", ...args].filter(Boolean)
      .join(" ");
  }
  return Object.entries(op).map(([k, v]) => {
    if (v && typeof v === "object" && "latent" in v) {
      const val = "value" in v ? ` = ${v.value}` : "scale" in v ? ` × ${v.scale}` : "";
      return `${k} ${v.sae ?? ""}#${v.latent}${val}`;
    }
    return `${k} ${JSON.stringify(v)}`;
  }).join(", ");
}

/** Whether `v` crosses a threshold `{op, value}` (above/below, or a comparison sign). */
export function crosses(v, t) {
  const op = String(t.op ?? "above");
  if (op === "below" || op.startsWith("<")) return op === "<=" ? v <= t.value : v < t.value;
  return op === ">=" ? v >= t.value : v > t.value;
}

/** Rows of the heatmap: signals, then latents not already a signal. */
function rowsOf(req) {
  const rows = [];
  const seen = new Set();
  for (const s of req.signals ?? []) {
    if (s.sae !== undefined && s.latent !== undefined) seen.add(`${s.sae}:${s.latent}`);
    rows.push({
      key: `signal:${s.key}`,
      kind: "signal",
      name: s.label || s.key,
      label: s.label ?? "",
      sae: s.sae,
      latent: s.latent,
      probe: s.probe,
      values: s.values ?? [],
      thresholds: s.thresholds ?? [],
    });
  }
  for (const l of req.latents ?? []) {
    const id = `${l.sae}:${l.latent}`;
    if (seen.has(id)) continue;
    seen.add(id);
    rows.push({
      key: `latent:${id}`,
      kind: "latent",
      name: `${l.sae}#${l.latent}${l.label ? ` ${l.label}` : ""}`,
      label: l.label ?? "",
      sae: l.sae,
      latent: l.latent,
      values: l.values ?? [],
      thresholds: [],
    });
  }
  return rows;
}

function tokenStrip(tokens, marks) {
  return el(
    "ol",
    { class: "tokens", id: "token-strip", "aria-label": "Tokens" },
    tokens.map((t, i) => {
      const m = marks[i];
      const title = [
        `token ${i}`,
        m.alerts.length ? `alert: ${m.alerts.join(", ")}` : "",
        m.steer.length ? `steered: ${m.steer.join(", ")}` : "",
        m.over.length ? `over the threshold of ${m.over.join(", ")}` : "",
      ].filter(Boolean).join(" · ");
      return el(
        "li",
        {
          class: `tok${m.alerts.length ? " alert" : ""}${m.over.length ? " over" : ""}${
            m.steer.length ? " steer" : ""
          }`,
          "data-pos": i,
          "data-alert": m.alerts.length ? m.alerts.join(" ") : null,
          "data-steer": m.steer.length ? m.steer.join(" ") : null,
          "data-over": m.over.length ? m.over.join(" ") : null,
          title,
        },
        t,
      );
    }),
  );
}

export async function renderRequest(ctx, id) {
  const { main } = ctx;
  const req = await getJSON(`requests/${encodeURIComponent(id)}`);
  const tokens = req.tokens ?? [];
  const marks = tokens.map(() => ({ alerts: [], steer: [], over: [] }));
  for (const a of req.alerts ?? []) {
    for (const p of alertPositions(a)) if (marks[p]) marks[p].alerts.push(a.rule);
  }
  for (const s of req.steering ?? []) {
    if (marks[s.position]) marks[s.position].steer.push(`${s.rule ?? ""} ${opText(s.op)}`.trim());
  }
  for (const sig of req.signals ?? []) {
    for (const t of sig.thresholds ?? []) {
      (sig.values ?? []).forEach((v, i) => {
        if (marks[i] && crosses(v, t) && !marks[i].over.includes(t.rule)) {
          marks[i].over.push(t.rule);
        }
      });
    }
  }
  const rows = rowsOf(req);
  main.dataset.request = req.id;
  main.append(
    el("p", {}, el("a", { href: "#/requests" }, "← requests")),
    el("h2", {}, "Latents over tokens: ", el("code", {}, req.id)),
    el(
      "ul",
      { class: "alerts", id: "request-alerts" },
      (req.alerts ?? []).map((a) =>
        el(
          "li",
          { "data-rule": a.rule, class: `sev-${a.severity ?? "info"}` },
          el("strong", {}, a.rule),
          ` (${a.severity ?? ""}) tokens ${alertPositions(a).join(", ")}`,
        )
      ),
      (req.steering ?? []).map((s) =>
        el("li", { class: "steer" }, `steering at token ${s.position}: ${opText(s.op)} (${s.rule})`)
      ),
    ),
    tokenStrip(tokens, marks),
  );
  const box = el("div", {
    class: "heatmap",
    id: "heatmap",
    role: "img",
    "aria-label": `Heatmap of ${rows.length} signals and latents over ${tokens.length} tokens`,
    "data-rows": rows.length,
    "data-tokens": tokens.length,
  });
  box.style.height = `${Math.max(220, 60 + rows.length * 26)}px`;
  main.append(box);
  // the rows as a list too: labels, links to latent pages, thresholds
  main.append(
    el("h3", {}, "Rows"),
    el(
      "table",
      { class: "rows", id: "heatmap-rows" },
      el(
        "thead",
        {},
        el(
          "tr",
          {},
          ["Row", "Label", "Max", "Thresholds"].map((h) => el("th", { scope: "col" }, h)),
        ),
      ),
      el(
        "tbody",
        {},
        rows.map((r) =>
          el(
            "tr",
            { "data-row": r.key },
            el(
              "td",
              {},
              r.sae !== undefined && r.latent !== undefined
                ? el("a", { href: `#/latent/${encodeURIComponent(r.sae)}/${r.latent}` }, r.name)
                : r.name,
            ),
            el("td", {}, r.label),
            el("td", { class: "num" }, fmt(Math.max(0, ...r.values))),
            el("td", {}, r.thresholds.map((t) => `${t.rule} ${t.op} ${fmt(t.value)}`).join("; ")),
          )
        ),
      ),
    ),
  );
  drawHeatmap(ctx, box, tokens, marks, rows);
}

function drawHeatmap(ctx, box, tokens, marks, rows) {
  const ec = charts();
  if (!ec) {
    box.replaceChildren(el("p", { class: "error" }, "The chart library did not load."));
    return;
  }
  const data = [];
  let max = 0;
  rows.forEach((r, y) => {
    r.values.forEach((v, x) => {
      data.push([x, y, v]);
      if (v > max) max = v;
    });
  });
  const chart = ec.init(box, null, { renderer: "canvas" });
  const xCats = tokens.map((_, i) => String(i));
  chart.setOption({
    animation: false,
    grid: { left: 220, right: 80, top: 20, bottom: 70 },
    tooltip: {
      formatter: (p) => {
        const [x, y, v] = p.data;
        const r = rows[y];
        const th = r.thresholds.map((t) => `${t.rule}: ${t.op} ${fmt(t.value)}`);
        return [
          `<b>${esc(r.name)}</b>`,
          r.label ? `label: ${esc(r.label)}` : "",
          `token ${x}: “${esc(tokens[x])}”`,
          `value: <b>${fmt(v)}</b>`,
          th.length ? `thresholds: ${esc(th.join("; "))}` : "",
          marks[x].alerts.length ? `alert: ${esc(marks[x].alerts.join(", "))}` : "",
          marks[x].steer.length ? `steered: ${esc(marks[x].steer.join(", "))}` : "",
        ].filter(Boolean).join("<br>");
      },
    },
    xAxis: {
      type: "category",
      data: xCats,
      splitArea: { show: true },
      axisLabel: {
        interval: 0,
        rotate: 45,
        formatter: (v) => {
          const i = Number(v);
          const t = tokens[i].length > 12 ? `${tokens[i].slice(0, 11)}…` : tokens[i];
          const m = marks[i];
          if (m.alerts.length) return `{alert|${t}${m.steer.length ? " ⚑" : ""}}`;
          if (m.over.length) return `{over|${t}${m.steer.length ? " ⚑" : ""}}`;
          return m.steer.length ? `{steer|${t} ⚑}` : t;
        },
        rich: {
          alert: { color: COLORS.alert, fontWeight: "bold" },
          steer: { color: COLORS.steer, fontWeight: "bold" },
          over: { color: COLORS.threshold, fontWeight: "bold" },
        },
      },
    },
    yAxis: {
      type: "category",
      data: rows.map((r) => r.key),
      inverse: true,
      triggerEvent: true,
      axisLabel: {
        formatter: (k) => {
          const r = rows.find((x) => x.key === k);
          const n = r ? r.name : k;
          return n.length > 30 ? `${n.slice(0, 29)}…` : n;
        },
      },
    },
    visualMap: {
      min: 0,
      max: max > 0 ? max : 1,
      calculable: true,
      orient: "vertical",
      right: 0,
      top: "middle",
      inRange: { color: ["#f7fbff", "#6baed6", "#08306b"] },
    },
    series: [{
      type: "heatmap",
      data,
      emphasis: { itemStyle: { borderColor: "#000", borderWidth: 1 } },
    }],
  });
  const open = (r) => {
    if (r && r.sae !== undefined && r.latent !== undefined) {
      location.hash = `#/latent/${encodeURIComponent(r.sae)}/${r.latent}`;
    }
  };
  chart.on("click", (p) => {
    if (p.componentType === "yAxis") open(rows.find((r) => r.key === p.value));
    else if (p.componentType === "series" && Array.isArray(p.data)) open(rows[p.data[1]]);
  });
  const onResize = () => chart.resize();
  addEventListener("resize", onResize);
  ctx.onCleanup(() => {
    removeEventListener("resize", onResize);
    chart.dispose();
  });
  box.dataset.drawn = "1";
}
