// The Profiles view (search, one profile: identities, merges, attributes with provenance,
// memberships, events on a timeline) and the Why view (the engine's explanation, part by part).
import { $, api, el, showError, formatTime, flatten, showView, views, loadSegmentList } from "./api.js";

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
            el("th", { scope: "col" }, "First seen"), el("th", { scope: "col" }, "Last seen"))),
          el("tbody", {}, profile.identities.map((i) => el("tr", {}, el("td", {}, i.namespace),
            el("td", {}, el("code", {}, i.id)), el("td", {}, formatTime(i.first_seen)), el("td", {}, formatTime(i.last_seen)))))),
        linked(profile)),
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

// How the identities came together: the identity graph (its size against the sandbox's limit),
// the profiles merged into this one, and the identities the limit removed.
function linked(profile) {
  const graph = profile.graph || {};
  const merged = profile.merged_ids || [];
  const removed = graph.removed || [];
  return el("div", { class: "linked" },
    el("p", {}, `${profile.identities.length} identit${profile.identities.length === 1 ? "y" : "ies"} linked in one identity graph` +
      (graph.limit ? ` (the sandbox's limit: ${graph.limit})` : "") + "; " +
      (merged.length ? `${merged.length} profile${merged.length > 1 ? "s" : ""} merged into this one:` : "no other profile merged into it.")),
    merged.length ? el("ul", { "aria-label": "Merged profiles" }, merged.map((id) => el("li", {}, el("code", {}, id)))) : null,
    removed.length ? el("p", { class: "muted" }, "Removed by the graph limit: " +
      removed.map((r) => `${r.namespace}:${r.id}`).join(", ")) : null);
}

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
    const items = await loadSegmentList();
    const current = select.value;
    select.replaceChildren(...items.map((s) => el("option", { value: s.key, selected: s.key === current }, `${s.name} (${s.key})`)));
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

export function setup() {
  $("search-form").addEventListener("submit", searchProfiles);
  $("lookup-form").addEventListener("submit", lookupProfile);
  $("why-form").addEventListener("submit", explain);
  views.profiles = { open: openProfile };
  views.why = { shown: loadWhySegments };
}
