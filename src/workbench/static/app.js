// latentwatch workbench: the page's entry point. A hash router over the
// views (requests, one request's heatmap, a latent, label search, rules);
// plain ES modules, no build step. `window.__workbench` exposes the page's
// state for tests (info, the view drawn, whether it is ready).
import { el, getJSON, status } from "./api.js";
import { renderRequests } from "./requests.js";
import { renderRequest } from "./heatmap.js";
import { renderLabels, renderLatent } from "./latent.js";
import { renderRules } from "./rules.js";

const state = { info: null, view: "", ready: false, cleanup: null };
globalThis.__workbench = state;

function about(info) {
  const parts = [
    info.mode === "live" ? "live monitor" : "traces",
    info.monitor,
    info.model,
    info.hook,
    `${(info.saes ?? []).length} SAE(s)`,
    `${(info.rules ?? []).length} rule(s)`,
    info.writable ? "writable" : "read-only",
  ].filter(Boolean);
  document.getElementById("about").textContent = parts.join(" · ");
}

/** Draw the view the hash names. */
async function route() {
  const main = document.getElementById("main");
  if (state.cleanup) {
    try {
      state.cleanup();
    } catch { /* a view's cleanup never blocks the next one */ }
    state.cleanup = null;
  }
  state.ready = false;
  document.body.dataset.ready = "0";
  const hash = decodeURIComponent(location.hash.replace(/^#\/?/, ""));
  const [view, ...rest] = hash.split("/");
  const name = view || "requests";
  state.view = name;
  document.body.dataset.view = name;
  for (const a of document.querySelectorAll("nav a")) {
    if (a.dataset.view === name) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  main.replaceChildren();
  status("");
  const ctx = {
    info: state.info,
    main,
    onCleanup: (fn) => {
      state.cleanup = fn;
    },
  };
  try {
    if (name === "request") await renderRequest(ctx, rest.join("/"));
    else if (name === "latent") await renderLatent(ctx, rest[0], rest[1]);
    else if (name === "labels") await renderLabels(ctx);
    else if (name === "rules") await renderRules(ctx);
    else await renderRequests(ctx);
  } catch (e) {
    main.append(el("p", { class: "error", role: "alert", text: `Could not load: ${e.message}` }));
  }
  state.ready = true;
  document.body.dataset.ready = "1";
}

async function start() {
  try {
    state.info = await getJSON("info");
  } catch (e) {
    state.info = { mode: "traces", saes: [], rules: [], writable: false, policyFiles: [] };
    status(`Could not read /ui/api/info: ${e.message}`, "error");
  }
  about(state.info);
  // a token given once in the address is now a cookie: drop it from the bar
  const url = new URL(location.href);
  if (url.searchParams.has("token")) {
    url.searchParams.delete("token");
    history.replaceState(null, "", url);
  }
  addEventListener("hashchange", route);
  await route();
}

start();
