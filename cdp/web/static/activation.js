// The Activation view: a segment onto one or more destinations with the attributes and identities
// they receive and a schedule (POST /v1/activations, one per destination). A refusal shows each
// violated policy and its lineage drawn as a path: field → dataset → label → policy. Below, the
// activations with the members sent and those left out for want of consent, and a destination's
// delivery log.
import { $, api, el, showError, formatTime, showView, views, session, allowed, loadSegmentList } from "./api.js";

let destinations = [];
let deliveriesFor = null;  // { id, name, next }

function checkbox(group, value, text, detail) {
  const id = `${group}-${value}`.replace(/[^A-Za-z0-9_-]/g, "_");
  return el("div", { class: "choice" },
    el("input", { type: "checkbox", id, name: group, value }),
    el("label", { for: id }, text), detail ? el("span", { class: "muted small" }, " ", detail) : null);
}

function checked(group) {
  return [...document.querySelectorAll(`input[name="${group}"]:checked`)].map((input) => input.value);
}

async function loadChoices() {
  const [segmentList, destinationPage, namespaces] = await Promise.all([
    loadSegmentList(), api("/v1/destinations?limit=200"), api("/v1/identity/namespaces")]);
  destinations = destinationPage.items;
  const segment = $("activate-segment");
  const current = segment.value;
  segment.replaceChildren(...segmentList.map((s) => el("option", { value: s.key, selected: s.key === current },
    `${s.name} (${s.key}, ${s.size.toLocaleString("en")} members)`)));
  const legend = (text) => el("legend", {}, text);
  $("activate-destinations").replaceChildren(legend("Destinations"), ...(destinations.length
    ? destinations.map((d) => checkbox("destination", String(d.id), d.name,
        `${d.type}; ${d.marketing_actions.join(", ")}${d.consent ? `; needs ${d.consent} = "y"` : ""}`))
    : [el("p", { class: "muted" }, "No destinations yet: a data steward creates them (POST /v1/destinations).")]));
  const fields = Object.keys((session.schema && session.schema.profile) || {}).sort();
  $("activate-attributes").replaceChildren(legend("Mapped attributes"),
    ...fields.map((name) => checkbox("attribute", name, name, session.schema.profile[name])));
  $("activate-identities").replaceChildren(legend("Identities sent"),
    ...namespaces.map((n) => checkbox("identity", n.code, n.code, n.name)));
}

// The ISO time of a datetime-local input read as UTC, or undefined when empty.
function utc(input) {
  return input.value ? new Date(input.value + "Z").toISOString() : undefined;
}

// One violation: the policy, the action, the labels, and each lineage step as a path.
function violationView(violation) {
  const policy = violation.policy;
  return el("li", { class: "violation" },
    el("p", {}, el("strong", {}, `Policy “${policy.name}”`), ` denies ${violation.marketing_action} when `,
      el("code", {}, policy.deny), `; labels in play: ${violation.labels.join(", ")}.`),
    el("ul", { class: "paths", "aria-label": `Lineage for ${policy.name}` }, violation.lineage.map((step) =>
      el("li", {}, el("ol", { class: "path", "aria-label": `${step.attribute} to ${policy.name}` },
        el("li", { class: "node field" }, el("span", { class: "kind" }, step.use === "export" ? "exported field" : "field read"),
          el("code", {}, step.attribute), step.via_segment ? el("span", { class: "muted small" }, ` via ${step.via_segment}`) : null),
        el("li", { class: "node dataset" }, el("span", { class: "kind" }, "dataset"), step.dataset.name),
        el("li", { class: "node label" }, el("span", { class: "kind" }, step.level === "field" ? "field label" : "dataset label"),
          step.label),
        el("li", { class: "node policy" }, el("span", { class: "kind" }, "policy"), policy.name))))));
}

async function activate(event) {
  event.preventDefault();
  const result = $("activate-result");
  result.replaceChildren();
  const chosen = checked("destination");
  if (!chosen.length) {
    showError(result, { code: "no_destination", message: "Pick at least one destination." });
    return;
  }
  const body = { segment: $("activate-segment").value, attributes: checked("attribute"), identities: checked("identity"),
                 start: utc($("activate-start")), end: utc($("activate-end")) };
  for (const id of chosen) {
    const destination = destinations.find((d) => String(d.id) === id);
    const box = el("div", { class: "outcome" });
    result.append(box);
    try {
      const created = await api("/v1/activations", { method: "POST", body: { ...body, destination: Number(id) } });
      box.append(el("p", { class: "ok" }, `Activated ${created.segment} on ${destination.name}: ${created.status}, ` +
        `until ${formatTime(created.end)}.`));
    } catch (error) {
      const violations = (error.details && error.details.violations) || [];
      if (error.code !== "policy_violation" || !violations.length) {
        showError(box, error);
        continue;
      }
      box.append(el("div", { class: "refused", role: "alert" },
        el("p", {}, el("strong", { class: "error-code" }, "policy_violation"), " ",
          `Refused: ${body.segment} on ${destination.name}. Nothing was created or sent.`),
        el("ul", { class: "violations", "aria-label": "Violated policies" }, violations.map(violationView))));
    }
  }
  await loadActivations();
}

async function loadActivations() {
  showError($("activations-error"), null);
  let page;
  try {
    page = await api("/v1/activations?limit=200");
  } catch (error) {
    showError($("activations-error"), error);
    return;
  }
  const rows = page.items.map((a) => el("tr", {},
    el("td", {}, el("code", {}, a.segment)),
    el("td", {}, el("button", { type: "button", class: "link", "aria-label": `Delivery log of ${a.destination_name}`,
      onclick: () => openDeliveries(a.destination, a.destination_name) }, a.destination_name)),
    el("td", {}, a.status, a.paused_reason ? el("span", { class: "muted small" }, ` — ${a.paused_reason}`) : null),
    el("td", { class: "num" }, a.members_exported.toLocaleString("en")),
    el("td", { class: "num" }, a.excluded_no_consent.toLocaleString("en")),
    el("td", {}, a.attributes.join(", ")),
    el("td", {}, formatTime(a.end))));
  if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: "7" }, "No activations yet.")));
  $("activations-table").tBodies[0].replaceChildren(...rows);
}

async function openDeliveries(id, name, cursor = null) {
  const section = $("deliveries");
  section.hidden = false;
  $("deliveries-title").textContent = `Delivery log: ${name}`;
  showError($("deliveries-error"), null);
  let page;
  try {
    page = await api(`/v1/destinations/${id}/deliveries?limit=50` + (cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""));
  } catch (error) {
    showError($("deliveries-error"), error);
    return;
  }
  deliveriesFor = { id, name, next: page.next };
  const rows = page.items.map((d) => el("tr", { class: "delivery-" + d.status },
    el("td", {}, formatTime(d.at)), el("td", {}, d.status), el("td", { class: "num" }, d.attempts),
    el("td", { class: "num" }, d.changes), el("td", { class: "num" }, d.excluded_no_consent ?? ""),
    el("td", {}, d.response_status ?? ""), el("td", {}, d.error || d.file || "")));
  const body = $("deliveries-table").tBodies[0];
  if (cursor) body.append(...rows);
  else body.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: "7" }, "No deliveries yet."))]));
  $("more-deliveries").hidden = !page.next;
}

async function shown() {
  const mayActivate = allowed("POST", "/v1/activations");
  $("activate-not-allowed").hidden = mayActivate;
  $("activate-not-allowed").textContent = mayActivate ? "" : `Your role (${session.me && session.me.role}) may see activations, not create them.`;
  try {
    await loadChoices();
  } catch (error) {
    showError($("activate-result"), error);
  }
  await loadActivations();
  if (deliveriesFor) openDeliveries(deliveriesFor.id, deliveriesFor.name);
}

export function setup() {
  $("activate-form").addEventListener("submit", activate);
  $("refresh-activations").addEventListener("click", () => { loadActivations(); if (deliveriesFor) openDeliveries(deliveriesFor.id, deliveriesFor.name); });
  $("more-deliveries").addEventListener("click", () => openDeliveries(deliveriesFor.id, deliveriesFor.name, deliveriesFor.next));
  views.activation = {
    shown,
    reset: () => { deliveriesFor = null; $("deliveries").hidden = true; },
    // from the editor's "Activate it": this view, with the segment just saved picked
    start: async (key) => {
      showView("activation");
      await loadChoices().catch(() => {});
      $("activate-segment").value = key;
      $("activate-segment").focus();
    },
  };
}
