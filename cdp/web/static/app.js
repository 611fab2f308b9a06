// The cdp web interface: plain JavaScript, no library, no build step. Every call goes to the
// service's own /v1 API with the key the user pasted (kept in sessionStorage: this tab only).
"use strict";

const KEY_ITEM = "cdp.key";
const SANDBOX_ITEM = "cdp.sandbox";
const DEBOUNCE_MS = 250;

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
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

// ---- the API -------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message, hint, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.hint = hint;
    this.details = details;
  }
}

async function api(path, { method = "GET", body, signal } = {}) {
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
function showError(container, error) {
  container.replaceChildren();
  if (!error) return;
  const box = el("div", { class: "error-box" },
    el("strong", { class: "error-code" }, error.code || "error"), " ",
    el("span", { class: "error-message" }, error.message || String(error)));
  if (error.hint) box.append(el("p", { class: "hint" }, "Hint: " + error.hint));
  container.append(box);
}

window.addEventListener("unhandledrejection", (event) => {
  if (event.reason && event.reason.name === "AbortError") return;
  showError($("global-error"), event.reason instanceof ApiError ? event.reason
    : { code: "page_error", message: String(event.reason && event.reason.message || event.reason) });
});
window.addEventListener("error", (event) => {
  showError($("global-error"), { code: "page_error", message: event.message });
});

// ---- sign-in and navigation ----------------------------------------------------------------

const VIEWS = ["signin", "segments", "profiles", "why"];

function showView(name) {
  for (const view of VIEWS) $("view-" + view).hidden = view !== name;
  for (const button of document.querySelectorAll("#nav button")) {
    if (button.dataset.view === name) button.setAttribute("aria-current", "page");
    else button.removeAttribute("aria-current");
  }
  if (name === "segments") loadSegments();
  if (name === "why") loadWhySegments();
}

async function signIn(key) {
  sessionStorage.setItem(KEY_ITEM, key);
  showError($("signin-error"), null);
  let sandboxes;
  try {
    try {
      sandboxes = await api("/v1/sandboxes?limit=200");
    } catch (error) {
      // a key bound to one sandbox is refused elsewhere, and says which one is its own
      const own = error.code === "sandbox_forbidden" && error.details && error.details.key_sandbox;
      if (!own) throw error;
      sessionStorage.setItem(SANDBOX_ITEM, own);
      sandboxes = await api("/v1/sandboxes?limit=200");
    }
  } catch (error) {
    sessionStorage.removeItem(KEY_ITEM);
    showError($("signin-error"), error);
    return;
  }
  const select = $("sandbox");
  const chosen = sessionStorage.getItem(SANDBOX_ITEM) || "prod";
  select.replaceChildren(...sandboxes.items.map((s) =>
    el("option", { value: s.name, selected: s.name === chosen }, s.name)));
  if (!sandboxes.items.some((s) => s.name === chosen) && sandboxes.items.length) {
    sessionStorage.setItem(SANDBOX_ITEM, sandboxes.items[0].name);
  } else {
    sessionStorage.setItem(SANDBOX_ITEM, chosen);
  }
  await applyRole();
  $("nav").hidden = false;
  $("session").hidden = false;
  schema = null;
  loadSchema();
  showView("segments");
}

// What the key's role may not do is not offered: the roles each operation allows are the
// OpenAPI document's `x-roles`; elements with data-needs="METHOD /path" need that operation.
async function applyRole() {
  let me = null;
  let document_ = null;
  try {
    [me, document_] = await Promise.all([api("/v1/me"), fetch("/openapi.json").then((r) => r.json())]);
  } catch (error) {
    showError($("global-error"), error);
    return;
  }
  $("whoami").textContent = `${me.name} (${me.role})`;
  for (const node of document.querySelectorAll("[data-needs]")) {
    const [method, path] = node.dataset.needs.split(" ");
    const operation = ((document_.paths || {})[path] || {})[method.toLowerCase()] || {};
    node.hidden = !(operation["x-roles"] || []).includes(me.role);
  }
  const saveHidden = $("save-form").hidden;
  $("save-not-allowed").hidden = !saveHidden;
  $("save-not-allowed").textContent = saveHidden ? `Your role (${me.role}) may check and estimate segments, not save them.` : "";
}

function signOut() {
  sessionStorage.removeItem(KEY_ITEM);
  sessionStorage.removeItem(SANDBOX_ITEM);
  $("nav").hidden = true;
  $("session").hidden = true;
  $("api-key").value = "";
  showView("signin");
}

// ---- the segment editor ---------------------------------------------------------------------

const KEYWORDS = new Set(("and or not in between is null true false contains starts ends with like matches has any " +
  "all segment exists no event as where then within last today this since days day hours hour minutes minute " +
  "weeks week months month years year ago").split(" "));
const TOKEN = /("(?:[^"\\\n]|\\.)*"?|'(?:[^'\\\n]|\\.)*'?)|(\b\d+(?:\.\d+)?\b)|(`[^`\n]*`?)|([A-Za-z_][A-Za-z0-9_]*)|(\s+)|(.)/g;

let schema = null;
let currentErrors = [];

async function loadSchema() {
  try {
    schema = await api("/v1/schema");
    if (document.activeElement === $("pql")) updateCompletions();  // typed before the schema arrived
  } catch (error) {
    schema = null;  // completion is a convenience; the editor still validates through the API
  }
}

function fieldNames() {
  if (!schema) return [];
  const names = new Set();
  for (const name of Object.keys(schema.profile || {})) names.add(name);
  for (const name of Object.keys(schema.event || {})) names.add(name);
  return [...names].sort();
}

// Offsets in the text from 1-based line/column; `end` exclusive.
function offsetOf(text, line, column) {
  const lines = text.split("\n");
  let offset = 0;
  for (let i = 0; i < line - 1 && i < lines.length; i++) offset += lines[i].length + 1;
  return Math.min(offset + Math.max(column - 1, 0), text.length);
}

function renderHighlight() {
  const text = $("pql").value;
  const classes = new Array(text.length).fill("");
  let match;
  TOKEN.lastIndex = 0;
  while ((match = TOKEN.exec(text)) !== null) {
    let cls = "";
    if (match[1] !== undefined) cls = "tok-string";
    else if (match[2] !== undefined) cls = "tok-number";
    else if (match[3] !== undefined) cls = "tok-name";
    else if (match[4] !== undefined) cls = KEYWORDS.has(match[4].toLowerCase()) ? "tok-keyword" : "tok-name";
    for (let i = match.index; i < match.index + match[0].length; i++) classes[i] = cls;
  }
  const errorAt = new Array(text.length + 1).fill(false);
  let errorAtEnd = false;
  for (const error of currentErrors) {
    const start = offsetOf(text, error.line, error.column);
    let end = offsetOf(text, error.end_line || error.line, error.end_column || error.column);
    if (end <= start) end = start + 1;  // a point (e.g. the end of the text): mark one character
    for (let i = start; i < end; i++) {
      if (i >= text.length) errorAtEnd = true;
      else errorAt[i] = true;
    }
  }
  const layer = $("pql-highlight");
  layer.replaceChildren();
  let i = 0;
  while (i < text.length) {
    let j = i + 1;
    while (j < text.length && classes[j] === classes[i] && errorAt[j] === errorAt[i]) j++;
    const span = el("span", { class: classes[i] || null }, text.slice(i, j));
    layer.append(errorAt[i] ? el("mark", { class: "error-span" }, span) : span);
    i = j;
  }
  if (errorAtEnd) layer.append(el("mark", { class: "error-span error-end" }, " "));
  layer.append("\n");  // so a final newline in the text area has its line here too
  layer.scrollTop = $("pql").scrollTop;
}

function debounce(fn, ms) {
  let timer = null;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
}

let checkController = null;
let estimateController = null;

async function checkExpression() {
  const text = $("pql").value;
  if (checkController) checkController.abort();
  if (estimateController) estimateController.abort();
  showError($("estimate-error"), null);
  if (!text.trim()) {
    currentErrors = [];
    $("pql-errors").replaceChildren();
    $("pql-status").textContent = "";
    $("canonical").textContent = "";
    $("estimate").textContent = "";
    showSample([]);
    renderHighlight();
    return;
  }
  const controller = new AbortController();
  checkController = controller;
  $("pql-status").textContent = "Checking…";
  let result;
  try {
    result = await api("/v1/expressions/check", { method: "POST", body: { expression: text }, signal: controller.signal });
  } catch (error) {
    if (error.name === "AbortError" || controller.signal.aborted) return;
    const errors = (error.details && error.details.errors) || [];
    currentErrors = errors;
    $("canonical").textContent = "";
    $("estimate").textContent = "";
    showSample([]);
    $("pql-status").textContent = errors.length ? `${errors.length} error${errors.length > 1 ? "s" : ""}` : "";
    $("pql-errors").replaceChildren(...(errors.length ? errors.map((e) => el("li", { class: "error-box" },
      el("span", { class: "position" }, `line ${e.line}, column ${e.column}`), " ",
      el("strong", { class: "error-code" }, e.code), " ",
      el("span", { class: "error-message" }, e.message),
      e.hint ? el("p", { class: "hint" }, "Hint: " + e.hint) : null))
      : [el("li", {}, (() => { const box = el("div"); showError(box, error); return box; })())]));
    renderHighlight();
    return;
  }
  if (controller.signal.aborted) return;
  currentErrors = [];
  renderHighlight();
  $("pql-errors").replaceChildren(...(result.warnings || []).map((w) =>
    el("li", { class: "warning-box" }, `line ${w.line ?? "?"}, column ${w.column ?? "?"}: ${w.message || JSON.stringify(w)}`)));
  $("pql-status").textContent = "Valid";
  $("canonical").textContent = result.canonical;
  estimate(text);
}

async function estimate(text) {
  if (estimateController) estimateController.abort();
  const controller = new AbortController();
  estimateController = controller;
  $("estimate").textContent = "Estimating…";
  try {
    const result = await api("/v1/segments/estimate", { method: "POST", body: { expression: text }, signal: controller.signal });
    if (controller.signal.aborted) return;
    const approx = result.sampled ? "≈ " : "";
    const bound = result.error_bound ? ` (± ${result.error_bound})` : "";
    $("estimate").textContent = `${approx}${result.count.toLocaleString("en")} of ${result.total_profiles.toLocaleString("en")} profiles${bound}`;
    showSample(result.sample.slice(0, 10));
  } catch (error) {
    if (error.name === "AbortError" || controller.signal.aborted) return;
    $("estimate").textContent = "";
    showSample([]);
    showError($("estimate-error"), error);
  }
}

// Up to ten members of the estimate, each opening its profile.
function showSample(ids) {
  $("sample").replaceChildren(...ids.map((id) => el("li", {}, el("button", { type: "button", class: "link",
    onclick: () => { showView("profiles"); openProfile("/v1/profiles/" + encodeURIComponent(id)); } }, id))));
  $("sample-box").hidden = !ids.length;
}

const checkSoon = debounce(checkExpression, DEBOUNCE_MS);

// Completion of field names: the word before the cursor, against the schema in force.
function updateCompletions() {
  const textarea = $("pql");
  const before = textarea.value.slice(0, textarea.selectionStart);
  const word = (before.match(/[A-Za-z_][A-Za-z0-9_.]*$/) || [""])[0];
  const list = $("completions");
  const matches = word.length >= 2 ? fieldNames().filter((n) => n.startsWith(word) && n !== word).slice(0, 8) : [];
  if (!matches.length) { list.hidden = true; list.replaceChildren(); return; }
  list.replaceChildren(...matches.map((name, index) => el("li", {
    role: "option", tabindex: "-1", "aria-selected": index === 0 ? "true" : "false", "data-name": name,
    onmousedown: (event) => { event.preventDefault(); accept(name); },
    onkeydown: (event) => completionKey(event, name),
  }, name)));
  list.hidden = false;
}

function accept(name) {
  const textarea = $("pql");
  const position = textarea.selectionStart;
  const before = textarea.value.slice(0, position);
  const word = (before.match(/[A-Za-z_][A-Za-z0-9_.]*$/) || [""])[0];
  textarea.value = before.slice(0, before.length - word.length) + name + textarea.value.slice(position);
  const caret = position - word.length + name.length;
  textarea.focus();
  textarea.setSelectionRange(caret, caret);
  $("completions").hidden = true;
  renderHighlight();
  checkSoon();
}

function completionKey(event, name) {
  const item = event.currentTarget;
  if (event.key === "Enter" || event.key === "Tab") { event.preventDefault(); accept(name); }
  else if (event.key === "ArrowDown" && item.nextElementSibling) { event.preventDefault(); item.nextElementSibling.focus(); }
  else if (event.key === "ArrowUp") { event.preventDefault(); (item.previousElementSibling || $("pql")).focus(); }
  else if (event.key === "Escape") { $("completions").hidden = true; $("pql").focus(); }
}

async function loadSegments() {
  showError($("segments-error"), null);
  let page;
  try {
    page = await api("/v1/segments?limit=200");
  } catch (error) {
    showError($("segments-error"), error);
    return;
  }
  const rows = page.items.map((s) => el("tr", {},
    el("td", {}, el("button", { type: "button", class: "link", "aria-label": `Open segment ${s.key}`,
      onclick: () => openSegment(s) }, el("code", {}, s.key))), el("td", {}, s.name), el("td", { class: "num" }, s.size.toLocaleString("en")),
    el("td", {}, s.status), el("td", {}, s.evaluation)));
  if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: "5" }, "No segments yet.")));
  $("segments-table").tBodies[0].replaceChildren(...rows);
  return page.items;
}

// A saved segment: its expression into the editor, its size, entries and exits per hour.
async function openSegment(segment) {
  $("pql").value = segment.expression;
  $("segment-key").value = segment.key;
  $("segment-name").value = segment.name;
  currentErrors = [];
  renderHighlight();
  checkSoon();
  const detail = $("segment-detail");
  detail.hidden = false;
  detail.replaceChildren(el("h4", {}, `History of ${segment.key}`));
  try {
    const history = await api(`/v1/segments/${encodeURIComponent(segment.key)}/history`);
    detail.append(history.points.length
      ? el("table", { "aria-label": `History of ${segment.key}` },
          el("thead", {}, el("tr", {}, ["Hour (UTC)", "Size", "Entered", "Exited"].map((h) => el("th", { scope: "col" }, h)))),
          el("tbody", {}, history.points.map((p) => el("tr", {}, el("td", {}, formatTime(p.at)),
            el("td", { class: "num" }, p.size), el("td", { class: "num" }, p.entered), el("td", { class: "num" }, p.exited)))))
      : el("p", { class: "muted" }, "Not evaluated yet: no history."));
  } catch (error) {
    const box = el("div", { role: "alert" });
    showError(box, error);
    detail.append(box);
  }
}

async function saveSegment(event) {
  event.preventDefault();
  const result = $("save-result");
  result.replaceChildren();
  try {
    const saved = await api("/v1/segments", { method: "POST", body: {
      key: $("segment-key").value.trim(), name: $("segment-name").value.trim(), expression: $("pql").value } });
    result.append(el("p", { class: "ok" }, `Saved segment ${saved.key}.`));
    await loadSegments();
  } catch (error) {
    showError(result, error);
  }
}

// ---- profiles ---------------------------------------------------------------------------------

async function searchProfiles(event) {
  event.preventDefault();
  showError($("profiles-error"), null);
  const q = $("profile-search").value.trim();
  let page;
  try {
    page = await api("/v1/profiles?limit=50&q=" + encodeURIComponent(q));
  } catch (error) {
    showError($("profiles-error"), error);
    return;
  }
  const items = page.items.map((p) => el("li", {}, el("button", { type: "button", class: "link",
    onclick: () => openProfile("/v1/profiles/" + encodeURIComponent(p.id)) },
    `${[p.first_name, p.last_name].filter(Boolean).join(" ") || p.id}`),
    " ", el("span", { class: "muted" }, p.email || p.identities.map((i) => `${i.namespace}:${i.id}`).join(", "))));
  if (!items.length) items.push(el("li", {}, `No profile matches “${q}”.`));
  $("search-results").replaceChildren(...items);
}

async function lookupProfile(event) {
  event.preventDefault();
  const params = new URLSearchParams({ namespace: $("lookup-namespace").value.trim(), id: $("lookup-value").value.trim() });
  openProfile("/v1/profiles/lookup?" + params);
}

function flatten(value, prefix = "", out = []) {
  if (value && typeof value === "object" && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) flatten(v, prefix ? prefix + "." + k : k, out);
  } else {
    out.push([prefix, value]);
  }
  return out;
}

function formatTime(text) {
  if (!text) return "";
  const date = new Date(text);
  return isNaN(date) ? text : date.toISOString().replace("T", " ").replace(/\.\d+Z$|Z$/, " UTC");
}

async function openProfile(path) {
  showError($("profiles-error"), null);
  let profile;
  try {
    profile = await api(path + (path.includes("?") ? "&" : "?") + "events_limit=200");
  } catch (error) {
    showError($("profiles-error"), error);
    return;
  }
  const attributes = profile.attributes || {};
  const person = attributes.person || {};
  const title = [person.first_name, person.last_name].filter(Boolean).join(" ") || profile.id;
  const article = $("profile");
  const provenance = profile.provenance || {};
  const events = [...(profile.events || [])].sort((a, b) => (a.timestamp < b.timestamp ? 1 : a.timestamp > b.timestamp ? -1 : 0));
  article.replaceChildren(
    el("h3", {}, title),
    el("p", { class: "muted" }, `Profile ${profile.id}`,
      profile.merged_ids && profile.merged_ids.length ? ` — merged from ${profile.merged_ids.join(", ")}` : ""),
    el("div", { class: "grid" },
      el("section", { "aria-label": "Identities" }, el("h4", {}, "Identities"),
        el("table", { "aria-label": "Identities" },
          el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Namespace"), el("th", { scope: "col" }, "Identity"),
            el("th", { scope: "col" }, "First seen"))),
          el("tbody", {}, profile.identities.map((i) => el("tr", {}, el("td", {}, i.namespace),
            el("td", {}, el("code", {}, i.id)), el("td", {}, formatTime(i.first_seen))))))),
      el("section", { "aria-label": "Memberships" }, el("h4", {}, "Memberships"),
        profile.memberships && profile.memberships.length
          ? el("ul", {}, profile.memberships.map((m) => el("li", {},
              el("code", {}, m.segment), ` ${m.name} — ${m.status}`,
              m.entered_at ? `, entered ${formatTime(m.entered_at)}` : "",
              m.exited_at ? `, exited ${formatTime(m.exited_at)}` : "", " ",
              el("button", { type: "button", class: "link", "aria-label": `Why is this profile in ${m.segment}?`,
                onclick: () => why(m.segment, profile.id) }, "Why?"))))
          : el("p", { class: "muted" }, "In no segment."))),
    el("section", { "aria-label": "Attributes" }, el("h4", {}, "Attributes"),
      el("table", { "aria-label": "Attributes" },
        el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Field"), el("th", { scope: "col" }, "Value"),
          el("th", { scope: "col" }, "From"))),
        el("tbody", {}, flatten(attributes).map(([name, value]) => el("tr", {}, el("td", {}, el("code", {}, name)),
          el("td", {}, Array.isArray(value) ? value.join(", ") : String(value)),
          el("td", { class: "muted" }, provenance[name] ? provenance[name].dataset_name : "")))))),
    el("section", { "aria-label": "Events" }, el("h4", {}, `Events (${profile.events_total ?? events.length}, newest first)`),
      events.length
        ? el("ol", { class: "timeline", "aria-label": "Event timeline" }, events.map((e) => el("li", {},
            el("time", { datetime: e.timestamp }, formatTime(e.timestamp)), " ", el("strong", {}, e.type), " ",
            el("span", { class: "muted" }, flatten(e).filter(([k]) => !["id", "type", "timestamp", "dataset_id"].includes(k))
              .map(([k, v]) => `${k}=${Array.isArray(v) ? JSON.stringify(v) : v}`).join(" · ")))))
        : el("p", { class: "muted" }, "No events.")),
  );
  article.hidden = false;
  $("why-profile").value = profile.id;
}

// ---- why ----------------------------------------------------------------------------------------

// The why view for this segment and profile, asked at once.
async function why(segment, profileId) {
  showView("why");
  await loadWhySegments();
  $("why-segment").value = segment;
  $("why-profile").value = profileId;
  $("why-form").requestSubmit();
}

let whySegmentsLoading = null;

function loadWhySegments() {  // one request at a time: callers share it
  whySegmentsLoading = whySegmentsLoading || fetchWhySegments().finally(() => { whySegmentsLoading = null; });
  return whySegmentsLoading;
}

async function fetchWhySegments() {
  const select = $("why-segment");
  try {
    const page = await api("/v1/segments?limit=200");
    const current = select.value;
    select.replaceChildren(...page.items.map((s) => el("option", { value: s.key, selected: s.key === current }, `${s.name} (${s.key})`)));
  } catch (error) {
    showError($("why-error"), error);
  }
}

// Through the CSSOM: the page's Content-Security-Policy refuses style attributes.
function indent(node, depth) {
  node.style.marginLeft = `${depth * 1.5}em`;
  return node;
}

async function explain(event) {
  event.preventDefault();
  showError($("why-error"), null);
  const result = $("why-result");
  result.replaceChildren();
  try {
    const answer = await api("/v1/evaluate", { method: "POST", body: {
      segment: $("why-segment").value, profile_id: $("why-profile").value.trim(), explain: true } });
    result.append(el("p", { class: answer.qualifies ? "ok" : "no" },
      answer.qualifies ? "The profile qualifies." : "The profile does not qualify."),
      el("ol", { class: "explain", "aria-label": "Explanation" }, (answer.explain || []).map((row) =>
        indent(el("li", { "data-depth": row.depth }, el("code", {}, row.expression), " → ",
          el("strong", { class: "value-" + row.value.toLowerCase().replace(/[^a-z]/g, "") }, row.value)), row.depth))));
  } catch (error) {
    showError($("why-error"), error);
  }
}

// ---- start ----------------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("signin-form").addEventListener("submit", (event) => { event.preventDefault(); signIn($("api-key").value.trim()); });
  $("sign-out").addEventListener("click", signOut);
  $("sandbox").addEventListener("change", () => {
    sessionStorage.setItem(SANDBOX_ITEM, $("sandbox").value);
    schema = null;
    loadSchema();
    const visible = VIEWS.find((v) => !$("view-" + v).hidden);
    showView(visible === "signin" ? "segments" : visible);
    checkSoon();
  });
  for (const button of document.querySelectorAll("#nav button")) {
    button.addEventListener("click", () => showView(button.dataset.view));
  }
  const pql = $("pql");
  pql.addEventListener("input", () => { currentErrors = []; renderHighlight(); updateCompletions(); checkSoon(); });
  pql.addEventListener("scroll", () => { $("pql-highlight").scrollTop = pql.scrollTop; });
  pql.addEventListener("keydown", (event) => {
    const list = $("completions");
    if (list.hidden) return;
    if (event.key === "ArrowDown") { event.preventDefault(); list.firstElementChild.focus(); }
    else if (event.key === "Escape") { list.hidden = true; }
    else if (event.key === "Tab" && list.firstElementChild) { event.preventDefault(); accept(list.firstElementChild.dataset.name); }
  });
  $("save-form").addEventListener("submit", saveSegment);
  $("refresh-segments").addEventListener("click", loadSegments);
  $("search-form").addEventListener("submit", searchProfiles);
  $("lookup-form").addEventListener("submit", lookupProfile);
  $("why-form").addEventListener("submit", explain);
  renderHighlight();
  const key = sessionStorage.getItem(KEY_ITEM);
  if (key) signIn(key); else showView("signin");
});
