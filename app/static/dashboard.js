// Backprop dashboard: plain JS, no build step, nothing loaded from outside this server.
"use strict";

const KEY_STORAGE = "backprop.apiKey";
const REFRESH_MS = 2000;
const TERMINAL = ["succeeded", "failed", "cancelled"];
const W = 640, H = 320, PAD = { left: 76, right: 12, top: 12, bottom: 28 };

const state = { after: null, nextAfter: null, selected: null, source: null, points: [] };
const $ = (id) => document.getElementById(id);

function apiKey() { return localStorage.getItem(KEY_STORAGE) || ""; }

// The JSON body and the response (for its headers); a non-2xx answer throws its detail.
async function request(method, path) {
  const headers = { Accept: "application/json" };
  const key = apiKey();
  if (key) headers.Authorization = "Bearer " + key;
  const response = await fetch(path, { method, headers });
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const detail = body && body.detail ? JSON.stringify(body.detail) : response.statusText;
    throw new Error(response.status + ": " + detail);
  }
  return { body, response };
}

async function api(method, path) {
  return (await request(method, path)).body;
}

function fmt(value) {
  return value === null || value === undefined ? "" : Number(value).toPrecision(5);
}

async function refreshRuns() {
  const query = new URLSearchParams({ limit: "20" });
  if (state.after) query.set("after", state.after);
  try {
    const page = await api("GET", "/v1/runs?" + query);
    $("list-error").textContent = "";
    state.nextAfter = page.has_more ? page.next_after : null;
    $("next-page").disabled = !state.nextAfter;
    const body = $("runs").querySelector("tbody");
    body.replaceChildren(...page.data.map(runRow));
    const current = page.data.find((run) => run.id === state.selected);
    if (current) showRun(current);
  } catch (error) {
    $("list-error").textContent = String(error.message || error);
  }
}

function runRow(run) {
  const row = document.createElement("tr");
  row.dataset.runId = run.id;
  if (run.id === state.selected) row.classList.add("selected");
  const cells = [run.id, run.status, run.epoch + " / " + run.epochs, fmt(run.loss), run.created_at.slice(0, 19)];
  for (const [i, text] of cells.entries()) {
    const cell = document.createElement("td");
    if (i === 1) {
      const badge = document.createElement("span");
      badge.className = "status " + run.status;
      badge.textContent = text;
      cell.append(badge);
    } else {
      cell.textContent = text;
    }
    row.append(cell);
  }
  row.addEventListener("click", () => selectRun(run.id));
  return row;
}

function showRun(run) {
  $("run-status").textContent = run.status;
  $("run-status").className = "status " + run.status;
  $("run-progress").textContent =
    "epoch " + run.epoch + " of " + run.epochs + (run.loss !== null ? ", loss " + fmt(run.loss) : "") +
    (run.stop_reason ? " (" + run.stop_reason + ")" : "");
  $("run-config").textContent = JSON.stringify(run.config, null, 2);
  $("cancel").disabled = TERMINAL.includes(run.status);
  $("pause").disabled = !["queued", "running"].includes(run.status);
  $("resume").disabled = run.status !== "paused";
}

async function selectRun(runId) {
  state.selected = runId;
  for (const row of document.querySelectorAll("#runs tbody tr")) {
    row.classList.toggle("selected", row.dataset.runId === runId);
  }
  $("run-panel").hidden = false;
  $("run-id").textContent = runId;
  $("action-error").textContent = "";
  try {
    showRun(await api("GET", "/v1/runs/" + runId));
  } catch (error) {
    $("action-error").textContent = String(error.message || error);
  }
  openStream(runId);
}

// EventSource cannot send headers: the key goes in ?access_token= (accepted by /events only).
function openStream(runId) {
  if (state.source) state.source.close();
  const query = apiKey() ? "?access_token=" + encodeURIComponent(apiKey()) : "";
  const source = new EventSource("/v1/runs/" + runId + "/events" + query);
  state.source = source;
  state.points = [];  // a new stream starts with the stored history (a sample when it is long)
  drawChart();
  $("stream-state").textContent = "(live)";
  source.addEventListener("progress", (event) => {
    if (state.selected !== runId) return;
    const point = JSON.parse(event.data);
    state.points.push(point);
    drawChart();
  });
  source.addEventListener("status", (event) => {
    const data = JSON.parse(event.data);
    $("run-status").textContent = data.status;
    $("run-status").className = "status " + data.status;
  });
  source.addEventListener("end", () => {
    source.close();
    $("stream-state").textContent = "(ended)";
    api("GET", "/v1/runs/" + runId).then(showRun).catch(() => {});
  });
  source.onerror = () => { $("stream-state").textContent = "(reconnecting)"; };
}

function drawChart() {
  const chart = $("chart");
  const points = state.points.filter((p) => p.loss !== null && Number.isFinite(p.loss));
  chart.dataset.points = String(points.length);
  const values = points.flatMap((p) => (p.val_loss !== null ? [p.loss, p.val_loss] : [p.loss]));
  const axes = chart.querySelector(".axes");
  axes.replaceChildren();
  if (points.length === 0) {
    chart.querySelector(".loss").setAttribute("points", "");
    chart.querySelector(".val-loss").setAttribute("points", "");
    drawRate(chart, [], null);
    return;
  }
  const x0 = points[0].epoch, x1 = Math.max(points[points.length - 1].epoch, x0 + 1);
  let y0 = Math.min(...values), y1 = Math.max(...values);
  if (y1 === y0) { y1 += 1e-12 + Math.abs(y0) * 0.1; }
  const sx = (x) => PAD.left + ((x - x0) / (x1 - x0)) * (W - PAD.left - PAD.right);
  const sy = (y) => H - PAD.bottom - ((y - y0) / (y1 - y0)) * (H - PAD.top - PAD.bottom);
  const line = (key) => points.filter((p) => p[key] !== null)
    .map((p) => sx(p.epoch).toFixed(1) + "," + sy(p[key]).toFixed(1)).join(" ");
  chart.querySelector(".loss").setAttribute("points", line("loss"));
  chart.querySelector(".val-loss").setAttribute("points", line("val_loss"));
  const ns = "http://www.w3.org/2000/svg";
  const label = (x, y, text, anchor) => {
    const t = document.createElementNS(ns, "text");
    t.setAttribute("x", x); t.setAttribute("y", y); t.setAttribute("text-anchor", anchor);
    t.textContent = text;
    axes.append(t);
  };
  const rule = (xa, ya, xb, yb) => {
    const l = document.createElementNS(ns, "line");
    l.setAttribute("x1", xa); l.setAttribute("y1", ya); l.setAttribute("x2", xb); l.setAttribute("y2", yb);
    axes.append(l);
  };
  rule(PAD.left, H - PAD.bottom, W - PAD.right, H - PAD.bottom);
  rule(PAD.left, PAD.top, PAD.left, H - PAD.bottom);
  label(PAD.left - 4, sy(y1) + 4, fmt(y1), "end");
  label(PAD.left - 4, sy(y0), fmt(y0), "end");
  label(PAD.left, H - 8, "epoch " + x0, "start");
  label(W - PAD.right, H - 8, "epoch " + x1, "end");
  drawRate(chart, points, { sx, label });
}

// The history's lr column (runs with an lr_schedule): its own scale, labelled on the right.
function drawRate(chart, points, scale) {
  const rates = points.filter((p) => p.lr !== undefined && p.lr !== null && Number.isFinite(p.lr));
  chart.dataset.lrPoints = String(rates.length);
  $("lr-legend").hidden = rates.length === 0;
  const line = chart.querySelector(".lr");
  if (rates.length === 0 || scale === null) {
    line.setAttribute("points", "");
    return;
  }
  let r0 = Math.min(...rates.map((p) => p.lr)), r1 = Math.max(...rates.map((p) => p.lr));
  if (r1 === r0) { r1 = r0 + Math.abs(r0) * 0.1 + 1e-12; }
  const sr = (r) => H - PAD.bottom - ((r - r0) / (r1 - r0)) * (H - PAD.top - PAD.bottom);
  line.setAttribute("points", rates.map((p) => scale.sx(p.epoch).toFixed(1) + "," + sr(p.lr).toFixed(1)).join(" "));
  scale.label(W - PAD.right - 2, sr(r1) + 10, "lr " + fmt(r1), "end");
  scale.label(W - PAD.right - 2, sr(r0) - 4, "lr " + fmt(r0), "end");
}

// ------------------------------------------------------------------ datasets view
// Every value from the server goes into the page through textContent, never innerHTML.

const PREVIEW_ROWS = 20;
const datasets = { after: null, nextAfter: null, selected: null, offset: 0, total: 0 };

function showView(name) {
  $("runs-view").hidden = name !== "runs";
  $("datasets-view").hidden = name !== "datasets";
  for (const [id, active] of [["view-runs", name === "runs"], ["view-datasets", name === "datasets"]]) {
    $(id).classList.toggle("active", active);
    $(id).setAttribute("aria-pressed", String(active));
  }
  if (name === "datasets") refreshDatasets();
}

// A stored number as a short string: integers whole, others to 6 significant digits.
function num(value) {
  if (value === null || value === undefined) return "";
  const n = Number(value);
  if (!Number.isFinite(n)) return String(value);
  return Number.isInteger(n) ? String(n) : String(Number(n.toPrecision(6)));
}

function cell(tag, text, className) {
  const element = document.createElement(tag);
  element.textContent = text;
  if (className) element.className = className;
  return element;
}

function tableRow(cells) {
  const row = document.createElement("tr");
  row.append(...cells);
  return row;
}

async function refreshDatasets() {
  const query = new URLSearchParams({ limit: "20" });
  if (datasets.after) query.set("after", datasets.after);
  try {
    const page = await api("GET", "/v1/datasets?" + query);
    $("datasets-error").textContent = "";
    datasets.nextAfter = page.has_more ? page.next_after : null;
    $("datasets-next-page").disabled = !datasets.nextAfter;
    $("datasets").querySelector("tbody").replaceChildren(...page.data.map(datasetRow));
  } catch (error) {
    $("datasets-error").textContent = String(error.message || error);
  }
}

function targetsText(dataset) {
  if (dataset.classes) return dataset.classes.length + " classes";
  return dataset.target_type === "labels" ? "labels" : String(dataset.n_targets);
}

function datasetRow(dataset) {
  const row = tableRow([
    cell("td", dataset.name),
    cell("td", dataset.n_samples + " \u00d7 " + dataset.n_features),
    cell("td", targetsText(dataset)),
    cell("td", dataset.created_at.slice(0, 19)),
  ]);
  row.dataset.datasetId = dataset.id;
  if (dataset.id === datasets.selected) row.classList.add("selected");
  row.addEventListener("click", () => selectDataset(dataset.id));
  return row;
}

async function selectDataset(datasetId) {
  datasets.selected = datasetId;
  for (const row of document.querySelectorAll("#datasets tbody tr")) {
    row.classList.toggle("selected", row.dataset.datasetId === datasetId);
  }
  $("dataset-panel").hidden = false;
  $("dataset-id").textContent = datasetId;
  $("dataset-error").textContent = "";
  $("preview").dataset.loaded = "false";
  $("stats").dataset.loaded = "false";
  try {
    const dataset = await api("GET", "/v1/datasets/" + datasetId);
    if (datasets.selected !== datasetId) return;
    datasets.meta = dataset;
    datasets.total = dataset.n_samples;
    $("dataset-name").textContent = dataset.name;
    $("dataset-summary").textContent =
      dataset.n_samples + " rows \u00d7 " + dataset.n_features + " features, " +
      dataset.n_targets + " target(s) (" + dataset.target_type + "), created " +
      dataset.created_at.slice(0, 19) + ", sha256 " + dataset.sha256.slice(0, 12);
    await Promise.all([loadPreview(0), loadStats(datasetId)]);
  } catch (error) {
    $("dataset-error").textContent = String(error.message || error);
  }
}

function columnNames(dataset) {
  const features = dataset.feature_names.length === dataset.n_features
    ? dataset.feature_names : Array.from({ length: dataset.n_features }, (_, i) => "x" + i);
  const targets = dataset.target_names.length === dataset.n_targets
    ? dataset.target_names : Array.from({ length: dataset.n_targets }, (_, i) => "y" + i);
  return { features, targets };
}

// A target cell: a class label shows its class name when the dataset has classes.
function targetText(dataset, value) {
  if (dataset.classes && Number.isInteger(value) && dataset.classes[value] !== undefined) {
    return dataset.classes[value];
  }
  return num(value);
}

async function loadPreview(offset) {
  const dataset = datasets.meta;
  if (!dataset) return;
  const query = new URLSearchParams({ offset: String(offset), limit: String(PREVIEW_ROWS) });
  try {
    const { body, response } = await request("GET", "/v1/datasets/" + dataset.id + "/data?" + query);
    if (datasets.selected !== dataset.id) return;
    datasets.offset = offset;
    const total = Number(response.headers.get("X-Total-Count") || dataset.n_samples);
    const hasMore = response.headers.get("X-Has-More") === "true";
    const { features, targets } = columnNames(dataset);
    const head = $("preview").querySelector("thead tr");
    head.replaceChildren(
      cell("th", "#", "num"),
      ...features.map((name) => cell("th", name, "num")),
      ...targets.map((name) => cell("th", name, dataset.classes ? "target" : "num target")),
    );
    const rows = body.X.map((x, i) => {
      const y = Array.isArray(body.y[i]) ? body.y[i] : [body.y[i]];
      return tableRow([
        cell("td", String(offset + i), "num"),
        ...x.map((value) => cell("td", num(value), "num")),
        ...y.map((value) => cell("td", targetText(dataset, value), dataset.classes ? "target" : "num target")),
      ]);
    });
    $("preview").querySelector("tbody").replaceChildren(...rows);
    $("preview-prev").disabled = offset === 0;
    $("preview-next").disabled = !hasMore;
    $("preview-range").textContent = body.X.length === 0
      ? "no rows" : "rows " + offset + "\u2013" + (offset + body.X.length - 1) + " of " + total;
    $("preview").dataset.offset = String(offset);
    $("preview").dataset.loaded = "true";
  } catch (error) {
    $("dataset-error").textContent = String(error.message || error);
  }
}

function statsRow(column, kind) {
  const row = tableRow([
    cell("td", column.name),
    cell("td", kind),
    ...[column.count, column.missing, column.min, column.max, column.mean, column.std]
      .map((value) => cell("td", num(value), "num")),
  ]);
  row.dataset.column = column.name;
  return row;
}

async function loadStats(datasetId) {
  const stats = await api("GET", "/v1/datasets/" + datasetId + "/stats");
  if (datasets.selected !== datasetId) return;
  $("stats").querySelector("tbody").replaceChildren(
    ...stats.features.map((column) => statsRow(column, "feature")),
    ...stats.targets.map((column) => statsRow(column, "target")),
  );
  const counts = stats.class_counts ? Object.entries(stats.class_counts) : [];
  $("class-counts-block").hidden = counts.length === 0;
  $("class-counts").querySelector("tbody").replaceChildren(...counts.map(([name, count]) => {
    const row = tableRow([cell("td", name), cell("td", String(count), "num")]);
    row.dataset.className = name;
    return row;
  }));
  $("stats").dataset.loaded = "true";
}

async function act(action) {
  if (!state.selected) return;
  $("action-error").textContent = "";
  try {
    showRun(await api("POST", "/v1/runs/" + state.selected + "/" + action));
    if (action === "resume") openStream(state.selected);
    refreshRuns();
  } catch (error) {
    $("action-error").textContent = String(error.message || error);
  }
}

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  localStorage.setItem(KEY_STORAGE, $("api-key").value.trim());
  state.after = null;
  refreshRuns();
  if (state.selected) selectRun(state.selected);
  if (!$("datasets-view").hidden) { datasets.after = null; refreshDatasets(); }
});
$("view-runs").addEventListener("click", () => showView("runs"));
$("view-datasets").addEventListener("click", () => showView("datasets"));
$("datasets-first-page").addEventListener("click", () => { datasets.after = null; refreshDatasets(); });
$("datasets-next-page").addEventListener("click", () => { datasets.after = datasets.nextAfter; refreshDatasets(); });
$("preview-prev").addEventListener("click", () => loadPreview(Math.max(0, datasets.offset - PREVIEW_ROWS)));
$("preview-next").addEventListener("click", () => loadPreview(datasets.offset + PREVIEW_ROWS));
$("api-key").value = apiKey();
$("first-page").addEventListener("click", () => { state.after = null; refreshRuns(); });
$("next-page").addEventListener("click", () => { state.after = state.nextAfter; refreshRuns(); });
$("cancel").addEventListener("click", () => act("cancel"));
$("pause").addEventListener("click", () => act("pause"));
$("resume").addEventListener("click", () => act("resume"));
refreshRuns();
setInterval(refreshRuns, REFRESH_MS);
