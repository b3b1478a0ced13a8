// Backprop dashboard: plain JS modules, no build step, nothing loaded from outside this server.
// Every value from the server goes into the page through textContent, never innerHTML.
import { $, KEY_STORAGE, api, apiKey, cell, errorText, fmt, num, percent, request, runLabel, statusBadge, tableRow, when } from "./util.js";
import { drawAxes, epochTicks, extent, plotBox, plottable, scale } from "./chart.js";
import { compareRuns, drawCompare } from "./compare.js";
import { drawScatter, nextSweepsPage, refreshSweeps, sweepsAvailable } from "./sweeps.js";

const REFRESH_MS = 2000;
const TERMINAL = ["succeeded", "failed", "cancelled"];

const state = { after: null, nextAfter: null, selected: null, source: null, points: [], ticked: [] };

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
    $("list-error").textContent = errorText(error);
  }
}

// The accuracy the run reports (validation first), or null.
function accuracy(run) {
  const metrics = run.metrics || {};
  for (const key of ["val_accuracy", "accuracy"]) {
    if (metrics[key] !== undefined && metrics[key] !== null) return metrics[key];
  }
  return null;
}

function tickBox(run) {
  const box = document.createElement("input");
  box.type = "checkbox";
  box.className = "tick";
  box.title = "compare";
  box.setAttribute("aria-label", "compare " + runLabel(run));
  box.checked = state.ticked.includes(run.id);
  box.addEventListener("click", (event) => event.stopPropagation());
  box.addEventListener("change", () => {
    state.ticked = box.checked ? [...state.ticked, run.id] : state.ticked.filter((id) => id !== run.id);
    compareRuns(state.ticked);
  });
  const td = cell("td", "", "pick");
  td.append(box);
  return td;
}

function nameCell(run) {
  const td = cell("td", "", "name");
  td.append(cell("span", runLabel(run), "run-name"));
  if (run.name) td.append(cell("code", run.id, "run-id"));
  td.title = run.id;
  return td;
}

function runRow(run) {
  const status = cell("td", "");
  status.append(statusBadge(run.status));
  const row = tableRow([
    tickBox(run),
    nameCell(run),
    status,
    cell("td", run.epoch + " / " + run.epochs, "num"),
    cell("td", percent(accuracy(run)), "num accuracy"),
    cell("td", run.loss === null ? "" : Number(run.loss).toPrecision(4), "num loss"),
    cell("td", run.best_epoch === null || run.best_epoch === undefined ? "" : String(run.best_epoch), "num best-epoch"),
    cell("td", when(run.created_at), "created"),
  ]);
  row.dataset.runId = run.id;
  if (run.id === state.selected) row.classList.add("selected");
  row.addEventListener("click", () => selectRun(run.id));
  return row;
}

function showRun(run) {
  $("run-status").textContent = run.status;
  $("run-status").className = "status " + run.status;
  $("run-name").textContent = run.name || "";
  $("run-progress").textContent =
    "epoch " + run.epoch + " of " + run.epochs + (run.loss !== null ? ", loss " + fmt(run.loss) : "") +
    (run.best_epoch !== null && run.best_epoch !== undefined ? ", best epoch " + run.best_epoch : "") +
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
    $("action-error").textContent = errorText(error);
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

// loss and val_loss against the epoch, linear or log (the toggle), with labelled ticks.
function drawChart() {
  const chart = $("chart");
  const log = $("log-scale").checked;
  const points = state.points.filter((p) => plottable(p.loss, log));
  chart.dataset.points = String(points.length);
  chart.dataset.log = String(log);
  const values = points.flatMap((p) => (plottable(p.val_loss, log) ? [p.loss, p.val_loss] : [p.loss]));
  const axes = chart.querySelector(".axes");
  if (points.length === 0) {
    axes.replaceChildren();
    chart.querySelector(".loss").setAttribute("points", "");
    chart.querySelector(".val-loss").setAttribute("points", "");
    drawRate(chart, [], null);
    return;
  }
  const box = plotBox(chart, { left: 64, right: 64, top: 16, bottom: 34 });
  const x0 = points[0].epoch, x1 = Math.max(points[points.length - 1].epoch, x0 + 1);
  const [y0, y1] = extent(values);
  const sx = scale(x0, x1, box.left, box.right);
  const sy = scale(y0, y1, box.bottom, box.top, log);
  drawAxes(axes, box, sx, sy, { xTicks: epochTicks(x0, x1), x: "epoch", y: "loss" + (log ? " (log)" : "") });
  const line = (key) => points.filter((p) => plottable(p[key], log))
    .map((p) => sx.map(p.epoch).toFixed(1) + "," + sy.map(p[key]).toFixed(1)).join(" ");
  chart.querySelector(".loss").setAttribute("points", line("loss"));
  chart.querySelector(".val-loss").setAttribute("points", line("val_loss"));
  drawRate(chart, points, { sx, box, axes });
}

// The history's lr column (runs with an lr_schedule): its own linear scale, labelled on the right.
function drawRate(chart, points, frame) {
  const rates = points.filter((p) => plottable(p.lr, false));
  chart.dataset.lrPoints = String(rates.length);
  $("lr-legend").hidden = rates.length === 0;
  const line = chart.querySelector(".lr");
  if (rates.length === 0 || frame === null) {
    line.setAttribute("points", "");
    return;
  }
  const { sx, box, axes } = frame;
  const [r0, r1] = extent(rates.map((p) => p.lr));
  const sr = scale(r0, r1, box.bottom, box.top);
  line.setAttribute("points", rates.map((p) => sx.map(p.epoch).toFixed(1) + "," + sr.map(p.lr).toFixed(1)).join(" "));
  const ns = "http://www.w3.org/2000/svg";
  for (const r of [sr.lo, sr.hi]) {
    const t = document.createElementNS(ns, "text");
    t.setAttribute("x", String(box.right + 4));
    t.setAttribute("y", String(sr.map(r) + 3));
    t.setAttribute("class", "tick-lr");
    t.textContent = fmt(r);
    axes.append(t);
  }
}

// ------------------------------------------------------------------ views

const PREVIEW_ROWS = 20;
const datasets = { after: null, nextAfter: null, selected: null, offset: 0, total: 0 };
const VIEWS = ["runs", "datasets", "sweeps"];

function showView(name) {
  for (const view of VIEWS) {
    $(view + "-view").hidden = name !== view;
    $("view-" + view).classList.toggle("active", name === view);
    $("view-" + view).setAttribute("aria-pressed", String(name === view));
  }
  if (name === "datasets") refreshDatasets();
  if (name === "sweeps") refreshSweeps();
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
    $("datasets-error").textContent = errorText(error);
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
    $("dataset-error").textContent = errorText(error);
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
    $("dataset-error").textContent = errorText(error);
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
    $("action-error").textContent = errorText(error);
  }
}

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  localStorage.setItem(KEY_STORAGE, $("api-key").value.trim());
  state.after = null;
  refreshRuns();
  if (state.selected) selectRun(state.selected);
  if (!$("datasets-view").hidden) { datasets.after = null; refreshDatasets(); }
  if (!$("sweeps-view").hidden) refreshSweeps(true);
  if (state.ticked.length > 0) compareRuns(state.ticked);
});
for (const view of VIEWS) $("view-" + view).addEventListener("click", () => showView(view));
$("log-scale").addEventListener("change", drawChart);
$("compare-log").addEventListener("change", drawCompare);
$("compare-metric").addEventListener("change", drawCompare);
$("compare-refresh").addEventListener("click", () => compareRuns(state.ticked));
$("compare-clear").addEventListener("click", () => {
  state.ticked = [];
  for (const box of document.querySelectorAll("#runs input.tick")) box.checked = false;
  compareRuns([]);
});
$("sweeps-first-page").addEventListener("click", () => refreshSweeps(true));
$("sweeps-next-page").addEventListener("click", nextSweepsPage);
$("sweep-param").addEventListener("change", drawScatter);
sweepsAvailable().then((available) => { $("view-sweeps").hidden = !available; });
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
