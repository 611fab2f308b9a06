// The Audiences view: every segment with its size (members now), status and evaluation mode, and
// the chart of the chosen one's size, entries and exits, hour by hour (Chart.js,
// vendor/chartjs.js), with the same points as a table for screen readers and keyboards.
import { $, api, el, showError, formatTime, views, loadSegmentList } from "./api.js";
import { Chart } from "./vendor/chartjs.js";

const COLOURS = { size: "#0b5cad", entered: "#1a7f37", exited: "#b3261e" };  // AA contrast on white
let chart = null;
let selected = null;

async function loadSegments() {
  showError($("segments-error"), null);
  let items;
  try {
    items = await loadSegmentList();
  } catch (error) {
    showError($("segments-error"), error);
    return;
  }
  const rows = items.map((s) => el("tr", { "data-key": s.key, class: s.key === selected ? "selected" : null },
    el("td", {}, el("button", { type: "button", class: "link", "aria-label": `Show the history of ${s.key}`,
      onclick: () => select(s.key) }, el("code", {}, s.key))),
    el("td", {}, s.name), el("td", { class: "num" }, s.size.toLocaleString("en")),
    el("td", {}, s.status), el("td", {}, s.evaluation),
    el("td", {}, el("button", { type: "button", class: "secondary small", "aria-label": `Open segment ${s.key} in the editor`,
      onclick: () => views.segments.edit(s) }, "Edit"))));
  if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: "6" }, "No segments yet.")));
  $("segments-table").tBodies[0].replaceChildren(...rows);
  if (!selected && items.length) select(items[0].key);
}

function draw(points) {
  const labels = points.map((p) => formatTime(p.at).replace(":00:00 UTC", ":00"));
  const data = {
    labels,
    datasets: [
      { type: "line", label: "Size", data: points.map((p) => p.size), borderColor: COLOURS.size,
        backgroundColor: COLOURS.size, pointRadius: 4, yAxisID: "size", tension: 0 },
      { type: "bar", label: "Entered", data: points.map((p) => p.entered), backgroundColor: COLOURS.entered, yAxisID: "changes" },
      { type: "bar", label: "Exited", data: points.map((p) => p.exited), backgroundColor: COLOURS.exited, yAxisID: "changes" },
    ],
  };
  if (chart) {
    chart.data = data;
    chart.update();
    return;
  }
  chart = new Chart($("history-chart"), {
    data,
    options: {
      animation: false, responsive: true, maintainAspectRatio: false,
      interaction: { mode: "index", intersect: false },
      scales: {
        size: { type: "linear", position: "left", beginAtZero: true, title: { display: true, text: "Members" } },
        changes: { type: "linear", position: "right", beginAtZero: true, grid: { drawOnChartArea: false },
                   title: { display: true, text: "Entered / exited per hour" } },
        x: { title: { display: true, text: "Hour (UTC)" } },
      },
      plugins: { legend: { position: "bottom" } },
    },
  });
}

async function select(key) {
  selected = key;
  for (const row of $("segments-table").tBodies[0].rows) {
    row.classList.toggle("selected", row.dataset.key === key);
  }
  showError($("history-error"), null);
  $("history-title").textContent = `Size over time: ${key}`;
  let history;
  try {
    history = await api(`/v1/segments/${encodeURIComponent(key)}/history`);
  } catch (error) {
    showError($("history-error"), error);
    return;
  }
  if (selected !== key) return;  // another segment was picked meanwhile
  const points = history.points;
  $("history-hint").textContent = points.length
    ? `${points.length} hour${points.length > 1 ? "s" : ""} of history; the last: ${points[points.length - 1].size.toLocaleString("en")} members.`
    : "Not evaluated yet: no history.";
  $("history-chart").setAttribute("aria-label", `Size, entries and exits of ${key} over ${points.length} hours`);
  draw(points);
  $("history-data").hidden = !points.length;
  $("history-table").tBodies[0].replaceChildren(...points.map((p) => el("tr", {},
    el("td", {}, formatTime(p.at)), el("td", { class: "num" }, p.size), el("td", { class: "num" }, p.entered),
    el("td", { class: "num" }, p.exited))));
}

export function setup() {
  $("refresh-segments").addEventListener("click", () => { loadSegments(); if (selected) select(selected); });
  views.audiences = { shown: loadSegments, select: (key) => { selected = key; loadSegments().then(() => select(key)); } };
  // forget the chart's segment when the sandbox changes
  views.audiences.reset = () => { selected = null; };
}
