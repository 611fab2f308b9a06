// The cdp web interface (docs/web.md): ES modules served as they are written — no build step for
// the page's own code; the third-party libraries are the committed bundles in vendor/ (web/).
// Every call goes to the service's own /v1 API with the key the user pasted (kept in
// sessionStorage: this tab only).
import { $, api, el, showError, showView, currentView, views, session, allowed, ApiError, KEY_ITEM, SANDBOX_ITEM,
         loadSegmentList } from "./api.js";
import * as segments from "./segments.js";
import * as audiences from "./audiences.js";
import * as profiles from "./profiles.js";
import * as activation from "./activation.js";
import * as dataflow from "./dataflow.js";

window.addEventListener("unhandledrejection", (event) => {
  if (event.reason && event.reason.name === "AbortError") return;
  showError($("global-error"), event.reason instanceof ApiError ? event.reason
    : { code: "page_error", message: String(event.reason && event.reason.message || event.reason) });
});
window.addEventListener("error", (event) => {
  showError($("global-error"), { code: "page_error", message: event.message });
});

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
  await loadSandbox();
  showView("audiences");
}

// What the key's role may not do is not offered: the roles each operation allows are the
// OpenAPI document's `x-roles`; elements with data-needs="METHOD /path" need that operation.
async function applyRole() {
  try {
    [session.me, session.openapi] = await Promise.all([api("/v1/me"), fetch("/openapi.json").then((r) => r.json())]);
  } catch (error) {
    showError($("global-error"), error);
    return;
  }
  $("whoami").textContent = `${session.me.name} (${session.me.role})`;
  for (const node of document.querySelectorAll("[data-needs]")) {
    const [method, path] = node.dataset.needs.split(" ");
    node.hidden = !allowed(method, path);
  }
  const saveHidden = $("save-form").hidden;
  $("save-not-allowed").hidden = !saveHidden;
  $("save-not-allowed").textContent = saveHidden ? `Your role (${session.me.role}) may check and estimate segments, not save them.` : "";
}

// What the editor completes from: the schema in force, the functions, the segment keys. A
// failure here only loses completion; the editor still validates through the API.
async function loadSandbox() {
  session.schema = null;
  session.segments = [];
  const [schema, functions] = await Promise.allSettled([api("/v1/schema"), api("/v1/expressions/functions"),
                                                        loadSegmentList()]);
  session.schema = schema.status === "fulfilled" ? schema.value : null;
  session.functions = functions.status === "fulfilled" ? functions.value : [];
}

function signOut() {
  sessionStorage.removeItem(KEY_ITEM);
  sessionStorage.removeItem(SANDBOX_ITEM);
  session.me = null;
  $("nav").hidden = true;
  $("session").hidden = true;
  $("api-key").value = "";
  showView("signin");
}

document.addEventListener("DOMContentLoaded", () => {
  segments.setup();
  audiences.setup();
  profiles.setup();
  activation.setup();
  dataflow.setup();
  $("signin-form").addEventListener("submit", (event) => { event.preventDefault(); signIn($("api-key").value.trim()); });
  $("sign-out").addEventListener("click", signOut);
  $("sandbox").addEventListener("change", async () => {
    sessionStorage.setItem(SANDBOX_ITEM, $("sandbox").value);
    views.audiences.reset();
    await loadSandbox();
    const visible = currentView();
    showView(visible === "signin" ? "audiences" : visible);
    views.segments.recheck();
  });
  for (const button of document.querySelectorAll("#nav button")) {
    button.addEventListener("click", () => showView(button.dataset.view));
  }
  const key = sessionStorage.getItem(KEY_ITEM);
  if (key) signIn(key); else showView("signin");
});
