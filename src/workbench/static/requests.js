// Requests view: the list with filters (has alert, rule, tenant, text), and
// live updates from /ui/api/live when the backend is a running monitor.
import { debounce, el, getJSON, liveEvents, status } from "./api.js";

/** A count given as a number or as the list itself. */
const num = (v) => Array.isArray(v) ? v.length : Number(v ?? 0) || 0;

function row(r) {
  const alerts = num(r.alerts);
  return el(
    "tr",
    { "data-request-id": r.id, "data-alerts": alerts, class: alerts > 0 ? "has-alert" : "" },
    el("td", {}, el("a", { href: `#/request/${encodeURIComponent(r.id)}` }, r.id)),
    el("td", { class: "num" }, String(num(r.tokens))),
    el(
      "td",
      { class: "num" },
      alerts > 0 ? el("span", { class: "badge alert", title: "alerts" }, String(alerts)) : "0",
    ),
    el("td", {}, (r.rules ?? []).map((id) => el("span", { class: "badge rule" }, id))),
    el("td", {}, r.tenant ?? ""),
    el("td", { class: "text" }, r.text ?? ""),
  );
}

/** Whether a summary passes the filters (for live events, filtered here). */
function passes(r, f) {
  if (f.alert && !(num(r.alerts) > 0)) return false;
  if (f.rule && !(r.rules ?? []).includes(f.rule)) return false;
  if (f.tenant && !String(r.tenant ?? "").includes(f.tenant)) return false;
  if (f.text && !String(r.text ?? "").toLowerCase().includes(f.text.toLowerCase())) return false;
  return true;
}

export async function renderRequests(ctx) {
  const { info, main } = ctx;
  const ruleSel = el(
    "select",
    { id: "f-rule", name: "rule" },
    el("option", { value: "" }, "any rule"),
    (info.rules ?? []).map((r) => el("option", { value: r.id }, r.id)),
  );
  const alertBox = el("input", { type: "checkbox", id: "f-alert", name: "alert" });
  const tenant = el("input", { type: "search", id: "f-tenant", name: "tenant", size: 12 });
  const text = el("input", { type: "search", id: "f-text", name: "text", size: 24 });
  const live = info.mode === "live";
  const liveMark = el("span", { class: "live", id: "live-state", hidden: !live }, "● live");
  const form = el(
    "form",
    { class: "filters", role: "search", "aria-label": "Filter requests" },
    el("label", { for: "f-alert" }, alertBox, " has alert"),
    el("label", { for: "f-rule" }, "Rule ", ruleSel),
    el("label", { for: "f-tenant" }, "Tenant ", tenant),
    el("label", { for: "f-text" }, "Text ", text),
    liveMark,
  );
  const tbody = el("tbody", { id: "requests-body" });
  const count = el("p", { class: "count", id: "requests-count", "aria-live": "polite" });
  const table = el(
    "table",
    { class: "requests", id: "requests" },
    el("caption", { class: "visually-hidden" }, "Requests"),
    el(
      "thead",
      {},
      el(
        "tr",
        {},
        ["Request", "Tokens", "Alerts", "Rules", "Tenant", "Text"].map((h) =>
          el("th", { scope: "col" }, h)
        ),
      ),
    ),
    tbody,
  );
  main.append(el("h2", {}, "Requests"), form, count, table);

  const filters = () => ({
    alert: alertBox.checked,
    rule: ruleSel.value,
    tenant: tenant.value.trim(),
    text: text.value.trim(),
  });
  let seq = 0;
  const load = async () => {
    const f = filters();
    const mine = ++seq;
    const data = await getJSON("requests", {
      alert: f.alert ? 1 : "",
      rule: f.rule,
      tenant: f.tenant,
      text: f.text,
      limit: 500,
    });
    if (mine !== seq) return;
    const list = data.requests ?? [];
    tbody.replaceChildren(...list.map(row));
    count.textContent = `${list.length} request(s)`;
    main.dataset.loaded = String(list.length);
  };
  const reload = debounce(() => load().catch((e) => status(e.message, "error")), 200);
  form.addEventListener("submit", (e) => e.preventDefault());
  for (const c of [alertBox, ruleSel]) c.addEventListener("change", reload);
  for (const c of [tenant, text]) c.addEventListener("input", reload);
  await load();

  if (live) {
    const es = liveEvents();
    if (es) {
      es.addEventListener("open", () => liveMark.classList.add("on"));
      es.addEventListener("error", () => liveMark.classList.remove("on"));
      es.addEventListener("request", (ev) => {
        let r;
        try {
          r = JSON.parse(ev.data);
        } catch {
          return;
        }
        if (!r || !r.id || !passes(r, filters())) return;
        tbody.querySelector(`tr[data-request-id="${CSS.escape(r.id)}"]`)?.remove();
        const tr = row(r);
        tr.classList.add("fresh");
        tbody.prepend(tr);
        // a bounded table: the oldest rows go past 500
        while (tbody.children.length > 500) tbody.lastElementChild.remove();
        count.textContent = `${tbody.children.length} request(s)`;
      });
      ctx.onCleanup(() => es.close());
    }
  }
}
