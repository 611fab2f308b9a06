// The segment editor view: as you type, the expression is checked by the service (each error
// underlined at its span, listed with its position, message and hint), then estimated (size and a
// sample of members); stale requests are cancelled. Save stores it as a segment.
import { $, api, el, showError, debounce, showView, views, session, allowed, loadSegmentList } from "./api.js";
import { createPqlEditor } from "./pql.js";

const DEBOUNCE_MS = 250;

let editor = null;
let checkController = null;
let estimateController = null;

function clearResults() {
  $("canonical").textContent = "";
  $("estimate").textContent = "";
  showSample([]);
}

async function checkExpression() {
  const text = editor.text;
  if (checkController) checkController.abort();
  if (estimateController) estimateController.abort();
  showError($("estimate-error"), null);
  if (!text.trim()) {
    editor.showDiagnostics([]);
    $("pql-errors").replaceChildren();
    $("pql-status").textContent = "";
    clearResults();
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
    editor.showDiagnostics(errors);
    clearResults();
    $("pql-status").textContent = errors.length ? `${errors.length} error${errors.length > 1 ? "s" : ""}` : "";
    $("pql-errors").replaceChildren(...(errors.length ? errors.map((e) => el("li", { class: "error-box" },
      el("span", { class: "position" }, `line ${e.line}, column ${e.column}`), " ",
      el("strong", { class: "error-code" }, e.code), " ",
      el("span", { class: "error-message" }, e.message),
      e.hint ? el("p", { class: "hint" }, "Hint: " + e.hint) : null))
      : [el("li", {}, (() => { const box = el("div"); showError(box, error); return box; })())]));
    return;
  }
  if (controller.signal.aborted) return;
  const warnings = result.warnings || [];
  editor.showDiagnostics(warnings.filter((w) => w.line), "warning");
  $("pql-errors").replaceChildren(...warnings.map((w) =>
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
    onclick: () => { showView("profiles"); views.profiles.open("/v1/profiles/" + encodeURIComponent(id)); } }, id))));
  $("sample-box").hidden = !ids.length;
}

const checkSoon = debounce(checkExpression, DEBOUNCE_MS);

async function saveSegment(event) {
  event.preventDefault();
  const result = $("save-result");
  result.replaceChildren();
  try {
    const saved = await api("/v1/segments", { method: "POST", body: {
      key: $("segment-key").value.trim(), name: $("segment-name").value.trim(), expression: editor.text,
      evaluation: $("segment-evaluation").value } });
    result.append(el("p", { class: "ok" }, `Saved segment ${saved.key}.`, " ",
      el("button", { type: "button", class: "link", onclick: () => { showView("audiences"); views.audiences.select(saved.key); } },
        "See it in Audiences"),
      allowed("POST", "/v1/activations") ? [" · ", el("button", { type: "button", class: "link",
        onclick: () => views.activation.start(saved.key) }, "Activate it")] : null));
    await loadSegmentList();
  } catch (error) {
    showError(result, error);
  }
}

// A saved segment into the editor (from the Audiences list).
function edit(segment) {
  showView("segments");
  editor.text = segment.expression;
  $("segment-key").value = segment.key;
  $("segment-name").value = segment.name;
  $("segment-evaluation").value = segment.evaluation;
  $("save-result").replaceChildren();
  editor.focus();
}

export function setup() {
  const nonce = (document.querySelector('meta[name="csp-nonce"]') || {}).content;
  editor = createPqlEditor($("pql"), {
    labelId: "pql-label", describedBy: "pql-status pql-errors", nonce,
    onChange: () => { editor.showDiagnostics([]); checkSoon(); },
    source: () => ({ schema: session.schema, functions: session.functions, segments: session.segments }),
  });
  $("pql-label").addEventListener("click", () => editor.focus());
  $("save-form").addEventListener("submit", saveSegment);
  views.segments = { shown: () => { if (!session.segments.length) loadSegmentList().catch(() => {}); },
                     edit, recheck: checkSoon };
}
