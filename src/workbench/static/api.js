// The workbench page's calls to the backend (/ui/api/...), same-origin with
// credentials so the cookie set by `/ui/?token=...` travels with them.

/** The API's base: "api/" relative to the page (served at /ui/). */
const BASE = new URL("api/", document.baseURI);

/** GET a JSON document; throws an Error with the status on failure. */
export async function getJSON(path, params = {}) {
  const url = new URL(path, BASE);
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, String(v));
  }
  const res = await fetch(url, { credentials: "same-origin" });
  if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
  return await res.json();
}

/** POST (or PUT) a JSON body; returns {status, body}. */
export async function sendJSON(path, body, method = "POST") {
  const res = await fetch(new URL(path, BASE), {
    method,
    credentials: "same-origin",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  let data = null;
  try {
    data = await res.json();
  } catch {
    data = null;
  }
  return { status: res.status, body: data };
}

/** An EventSource on the live stream, or null where SSE is unavailable. */
export function liveEvents() {
  if (typeof EventSource === "undefined") return null;
  return new EventSource(new URL("live", BASE), { withCredentials: true });
}

/** Escape text for HTML. */
export function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) =>
    ({
      "&": "&amp;",
      "<": "&lt;",
      ">": "&gt;",
      '"': "&quot;",
      "'": "&#39;",
    })[c]);
}

/** Create an element with attributes and children. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

/** Format a number for display. */
export function fmt(v, digits = 3) {
  if (typeof v !== "number" || !Number.isFinite(v)) return String(v ?? "");
  return Math.abs(v) >= 1000 ? v.toFixed(0) : Number(v.toFixed(digits)).toString();
}

/** Debounce a function by `ms`. */
export function debounce(fn, ms) {
  let t = 0;
  return (...args) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...args), ms);
  };
}

/** Show a message in the status line (role=status, polite). */
export function status(msg, kind = "info") {
  const s = document.getElementById("status");
  if (!s) return;
  s.textContent = msg;
  s.dataset.kind = kind;
}

/** The ECharts global loaded from /ui/vendor/echarts.min.js, or null. */
export function charts() {
  return globalThis.echarts ?? null;
}

/** Colours for a token's token strip and the charts. */
export const COLORS = {
  alert: "#c0392b",
  steer: "#8e44ad",
  threshold: "#d35400",
  line: "#1f5f99",
  benign: "#2c7a3f",
};
