// The page's plumbing, shared by every view: the /v1 API with the session's key, building DOM
// nodes, structured errors, times. No library: these are a few lines each.
export const KEY_ITEM = "cdp.key";
export const SANDBOX_ITEM = "cdp.sandbox";

export const $ = (id) => document.getElementById(id);

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export class ApiError extends Error {
  constructor(status, code, message, hint, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.hint = hint;
    this.details = details;
  }
}

export async function api(path, { method = "GET", body, signal } = {}) {
  const headers = { "Authorization": "Bearer " + (sessionStorage.getItem(KEY_ITEM) || "") };
  const sandbox = sessionStorage.getItem(SANDBOX_ITEM);
  if (sandbox) headers["X-Sandbox"] = sandbox;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (exc) {
    if (exc.name === "AbortError") throw exc;
    throw new ApiError(0, "network_error", "The service did not answer: " + exc.message, "Is `cdp serve` running?");
  }
  if (response.status === 204) return null;
  let payload = null;
  try { payload = await response.json(); } catch (_) { /* not JSON: handled below */ }
  if (!response.ok) {
    const error = (payload && payload.error) || {};
    const details = error.details || {};
    throw new ApiError(response.status, error.code || "http_" + response.status,
                       error.message || response.statusText || "the request failed",
                       error.hint || details.hint || null, details);
  }
  return payload;
}

// The structured error: its code, message and hint (never a blank page).
export function showError(container, error) {
  container.replaceChildren();
  if (!error) return;
  const box = el("div", { class: "error-box" },
    el("strong", { class: "error-code" }, error.code || "error"), " ",
    el("span", { class: "error-message" }, error.message || String(error)));
  if (error.hint) box.append(el("p", { class: "hint" }, "Hint: " + error.hint));
  container.append(box);
}

export function debounce(fn, ms) {
  let timer = null;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
}

export function formatTime(text) {
  if (!text) return "";
  const date = new Date(text);
  return isNaN(date) ? text : date.toISOString().replace("T", " ").replace(/\.\d+Z$|Z$/, " UTC");
}

export function flatten(value, prefix = "", out = []) {
  if (value && typeof value === "object" && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) flatten(v, prefix ? prefix + "." + k : k, out);
  } else {
    out.push([prefix, value]);
  }
  return out;
}

// The views, by name: each module registers what happens when its view is shown, so views can
// open one another (a sample member opens its profile) without importing each other in a cycle.
export const views = {};

export function showView(name) {
  for (const node of document.querySelectorAll("main > section[id^='view-']")) node.hidden = node.id !== "view-" + name;
  for (const button of document.querySelectorAll("#nav button")) {
    if (button.dataset.view === name) button.setAttribute("aria-current", "page");
    else button.removeAttribute("aria-current");
  }
  if (views[name] && views[name].shown) views[name].shown();
}

export function currentView() {
  const visible = document.querySelector("main > section[id^='view-']:not([hidden])");
  return visible ? visible.id.slice("view-".length) : null;
}

// The session: who is signed in, what the role may do (the OpenAPI document's x-roles), the
// schema in force and the segments, loaded once per sandbox and shared by the views.
export const session = { me: null, openapi: null, schema: null, functions: [], segments: [] };

export function allowed(method, path) {
  if (!session.openapi || !session.me) return false;
  const operation = ((session.openapi.paths || {})[path] || {})[method.toLowerCase()] || {};
  return (operation["x-roles"] || []).includes(session.me.role);
}

export async function loadSegmentList() {
  const page = await api("/v1/segments?limit=200");
  session.segments = page.items;
  return page.items;
}
