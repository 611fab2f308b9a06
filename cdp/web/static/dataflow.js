// The Data flow view: GET /v1/dataflow drawn as a graph with Cytoscape.js (vendor/cytoscape.js) —
// datasets → segments → activations → destinations, one column each, labels on the arrows, an
// activation the policies refuse in red. The same graph is a list below, for screen readers and
// keyboards; picking a node (either way) shows its details. Cytoscape.js (the largest bundle) is
// loaded the first time this view is opened, not with the page.
import { $, api, el, showError, views } from "./api.js";

const COLUMNS = ["dataset", "segment", "activation", "destination"];
const KIND_NAMES = { dataset: "Dataset", segment: "Segment", activation: "Activation", destination: "Destination" };
const COLOURS = { dataset: "#0b5cad", segment: "#8250df", activation: "#1a7f37", destination: "#953800",
                  violation: "#b3261e", edge: "#57606a" };  // AA contrast on white
const COLUMN_GAP = 320;
const ROW_GAP = 90;

let graph = null;
let flow = { nodes: [], edges: [] };

// One column per kind, nodes spread evenly: the reading order of the flow, left to right.
function positions(nodes) {
  const byKind = Object.fromEntries(COLUMNS.map((k) => [k, nodes.filter((n) => n.kind === k)]));
  const tallest = Math.max(1, ...COLUMNS.map((k) => byKind[k].length));
  const placed = {};
  COLUMNS.forEach((kind, column) => {
    const list = byKind[kind];
    const offset = ((tallest - list.length) * ROW_GAP) / 2;
    list.forEach((node, row) => { placed[node.id] = { x: column * COLUMN_GAP, y: offset + row * ROW_GAP }; });
  });
  return placed;
}

function caption(node) {
  const labels = node.labels.length ? `\n[${node.labels.join(", ")}]` : "";
  return `${node.name}${labels}`;
}

async function draw() {
  const { cytoscape } = await import("./vendor/cytoscape.js");
  const placed = positions(flow.nodes);
  const elements = [
    ...flow.nodes.map((n) => ({ group: "nodes", data: { id: n.id, caption: caption(n), kind: n.kind,
      policy: n.policy || "" }, position: placed[n.id] })),
    ...flow.edges.map((e, i) => ({ group: "edges", data: { id: `edge-${i}`, source: e.source, target: e.target,
      caption: e.labels.join(", "), policy: e.policy || "" } })),
  ];
  if (graph) graph.destroy();
  graph = cytoscape({
    container: $("dataflow-graph"),
    elements,
    layout: { name: "preset", fit: true, padding: 40 },
    autoungrabify: true, boxSelectionEnabled: false,
    style: [
      { selector: "node", style: { "shape": "round-rectangle", "width": 170, "height": 50, "background-color": "#fff",
        "border-width": 2, "border-color": COLOURS.edge, "label": "data(caption)", "color": "#1b1f24",
        "font-size": 13, "text-wrap": "wrap", "text-max-width": 160, "text-valign": "center", "text-halign": "center" } },
      ...COLUMNS.map((kind) => ({ selector: `node[kind = '${kind}']`, style: { "border-color": COLOURS[kind] } })),
      { selector: "node[policy = 'violation']", style: { "border-color": COLOURS.violation, "border-width": 3,
        "border-style": "dashed" } },
      { selector: "node:selected", style: { "background-color": "#ddf4ff", "border-width": 4 } },
      { selector: "edge", style: { "curve-style": "bezier", "target-arrow-shape": "triangle", "width": 2,
        "line-color": COLOURS.edge, "target-arrow-color": COLOURS.edge, "label": "data(caption)", "font-size": 10,
        "text-rotation": "autorotate",
        "color": "#1b1f24", "text-background-color": "#fff", "text-background-opacity": 1, "text-background-padding": 2 } },
      { selector: "edge[policy = 'violation']", style: { "line-color": COLOURS.violation,
        "target-arrow-color": COLOURS.violation, "line-style": "dashed" } },
    ],
  });
  graph.on("tap", "node", (event) => detail(event.target.id()));
}

function detail(id) {
  const node = flow.nodes.find((n) => n.id === id);
  if (!node) return;
  if (graph) { graph.$(":selected").unselect(); graph.getElementById(id).select(); }
  const into = flow.edges.filter((e) => e.target === id).map((e) => name(e.source));
  const out = flow.edges.filter((e) => e.source === id).map((e) => name(e.target));
  const facts = [["Kind", KIND_NAMES[node.kind]], ["Labels", node.labels.join(", ") || "none"],
    ["Status", node.status || ""], ["Policies", node.policy || ""], ["From", into.join(", ")], ["To", out.join(", ")],
    ...Object.entries(node.details || {}).map(([k, v]) => [k.replace(/_/g, " "), Array.isArray(v) ? v.join(", ") : String(v ?? "")])];
  $("dataflow-detail").replaceChildren(el("h3", {}, node.name),
    el("dl", { class: "facts" }, facts.filter(([, v]) => v !== "").flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])));
}

function name(id) {
  const node = flow.nodes.find((n) => n.id === id);
  return node ? `${KIND_NAMES[node.kind].toLowerCase()} ${node.name}` : id;
}

function list() {
  $("dataflow-list").replaceChildren(...(flow.edges.length ? flow.edges.map((e) => el("li", { class: e.policy === "violation" ? "no" : null },
    el("button", { type: "button", class: "link", onclick: () => detail(e.source) }, name(e.source)), " → ",
    el("button", { type: "button", class: "link", onclick: () => detail(e.target) }, name(e.target)),
    e.labels.length ? ` (labels ${e.labels.join(", ")})` : "",
    e.policy === "violation" ? " — refused by a policy" : ""))
    : [el("li", {}, "Nothing flows yet: no segment reads a dataset.")]));
}

async function load() {
  showError($("dataflow-error"), null);
  try {
    flow = await api("/v1/dataflow");
  } catch (error) {
    showError($("dataflow-error"), error);
    return;
  }
  // an activation is named by its segment and its destination's name (the API names the destination by id)
  for (const node of flow.nodes.filter((n) => n.kind === "activation")) {
    const from = flow.edges.find((e) => e.target === node.id);
    const to = flow.edges.find((e) => e.source === node.id);
    const segment = from && flow.nodes.find((n) => n.id === from.source);
    const destination = to && flow.nodes.find((n) => n.id === to.target);
    if (segment && destination) node.name = `${segment.name} → ${destination.name}`;
  }
  $("dataflow-graph").setAttribute("aria-label", `Data-flow graph: ${flow.nodes.length} nodes, ${flow.edges.length} ` +
    "arrows (the list below says the same)");
  list();
  await draw();
}

export function setup() {
  $("refresh-dataflow").addEventListener("click", load);
  views.dataflow = { shown: load, graph: () => graph };
}
