// A latent's page (label, decoder norm, density, top activating tokens with
// context, nearest latents by decoder cosine) and the label search.
import { debounce, el, fmt, getJSON, status } from "./api.js";

const latentHref = (sae, latent) => `#/latent/${encodeURIComponent(sae)}/${latent}`;

function context(t) {
  const ctx = t.context ?? [];
  const focus = Number(t.focus ?? -1);
  return el(
    "span",
    { class: "context" },
    ctx.map((tok, i) => el("span", { class: i === focus ? "focus" : "ctx-tok" }, tok)),
  );
}

export async function renderLatent(ctx, sae, latent) {
  const { main } = ctx;
  const d = await getJSON(`latents/${encodeURIComponent(sae)}/${encodeURIComponent(latent)}`);
  main.dataset.latent = `${d.sae}:${d.latent}`;
  const density = typeof d.density === "number"
    ? `${fmt(d.density * 100, 4)} % of tokens`
    : String(d.density ?? "—");
  main.append(
    el("p", {}, el("a", { href: "#/requests" }, "← requests")),
    el("h2", {}, `Latent ${d.sae} #${d.latent}`),
    el(
      "dl",
      { class: "facts", id: "latent-facts" },
      el("dt", {}, "Label"),
      el("dd", { id: "latent-label" }, d.label || "(no label)"),
      el("dt", {}, "Decoder norm"),
      el("dd", {}, fmt(d.decoderNorm)),
      el("dt", {}, "Density"),
      el("dd", {}, density),
    ),
    el("h3", {}, "Top activating tokens"),
    el(
      "table",
      { class: "toplist", id: "latent-top" },
      el(
        "thead",
        {},
        el(
          "tr",
          {},
          ["Value", "Request", "Token", "Context"].map((h) => el("th", { scope: "col" }, h)),
        ),
      ),
      el(
        "tbody",
        {},
        (d.top ?? []).map((t) =>
          el(
            "tr",
            {},
            el("td", { class: "num" }, fmt(t.value)),
            el(
              "td",
              {},
              el("a", { href: `#/request/${encodeURIComponent(t.request)}` }, t.request),
            ),
            el("td", { class: "num" }, String(t.position)),
            el("td", {}, context(t)),
          )
        ),
      ),
    ),
    el("h3", {}, "Nearest latents (decoder cosine)"),
    el(
      "ol",
      { class: "nearest", id: "latent-nearest" },
      (d.nearest ?? []).map((n) =>
        el(
          "li",
          {},
          el("a", { href: latentHref(d.sae, n.latent) }, `#${n.latent}`),
          ` ${n.label ?? ""} `,
          el("span", { class: "muted" }, `cos ${fmt(n.cosine)}`),
        )
      ),
    ),
  );
}

export function renderLabels(ctx) {
  const { main } = ctx;
  const input = el("input", {
    type: "search",
    id: "label-q",
    name: "q",
    placeholder: "e.g. prompt injection",
    autocomplete: "off",
    size: 40,
  });
  const list = el("ol", { class: "results", id: "label-results", "aria-live": "polite" });
  main.append(
    el("h2", {}, "Label search"),
    el(
      "form",
      { role: "search", class: "filters", onsubmit: (e) => e.preventDefault() },
      el("label", { for: "label-q" }, "Label ", input),
    ),
    list,
  );
  let seq = 0;
  const search = async () => {
    const q = input.value.trim();
    const mine = ++seq;
    if (!q) {
      list.replaceChildren();
      return;
    }
    const data = await getJSON("labels", { q, limit: 50 });
    if (mine !== seq) return;
    const results = data.results ?? [];
    list.replaceChildren(
      ...(results.length ? results : []).map((r) =>
        el(
          "li",
          { "data-latent": `${r.sae}:${r.latent}` },
          el("a", { href: latentHref(r.sae, r.latent) }, `${r.sae} #${r.latent}`),
          ` ${r.label} `,
          el("span", { class: "muted" }, `score ${fmt(r.score)}`),
        )
      ),
    );
    if (!results.length) list.append(el("li", { class: "muted" }, "no match"));
  };
  input.addEventListener(
    "input",
    debounce(() => search().catch((e) => status(e.message, "error")), 200),
  );
  input.focus();
}
