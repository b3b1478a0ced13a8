// Sweeps view: the list of sweeps; a sweep's trials as a table and an objective-vs-parameter
// scatter chart (the parameter picked in a select). The tab shows only when the server has
// /v1/sweeps (read from /openapi.json, so a server without sweeps logs no 404).
import { $, api, cell, errorText, num, statusBadge, tableRow, when } from "./util.js";
import { drawAxes, extent, plotBox, scale, svg } from "./chart.js";

const sweeps = { after: null, nextAfter: null, selected: null, sweep: null, names: {} };

// Whether the server serves the sweeps API.
export async function sweepsAvailable() {
  try {
    const response = await fetch("/openapi.json", { headers: { Accept: "application/json" } });
    if (!response.ok) return false;
    const spec = await response.json();
    return Boolean(spec.paths && spec.paths["/v1/sweeps"]);
  } catch {
    return false;
  }
}

export async function refreshSweeps(reset = false) {
  if (reset) sweeps.after = null;
  const query = new URLSearchParams({ limit: "20" });
  if (sweeps.after) query.set("after", sweeps.after);
  try {
    const page = await api("GET", "/v1/sweeps?" + query);
    $("sweeps-error").textContent = "";
    sweeps.nextAfter = page.has_more ? page.next_after : null;
    $("sweeps-next-page").disabled = !sweeps.nextAfter;
    $("sweeps").querySelector("tbody").replaceChildren(...page.data.map(sweepRow));
    if (sweeps.selected) await loadSweep(sweeps.selected);
  } catch (error) {
    $("sweeps-error").textContent = errorText(error);
  }
}

export function nextSweepsPage() { sweeps.after = sweeps.nextAfter; refreshSweeps(); }

function objectiveText(objective) {
  return objective ? objective.metric + " (" + objective.mode + ")" : "";
}

function bestObjective(sweep) {
  const best = sweep.best_trial;
  if (best === null || best === undefined) return "";
  const trial = typeof best === "object" ? best : (sweep.trials || []).find((t) => t.number === best);
  return trial ? num(trial.objective) : "";
}

function sweepRow(sweep) {
  const trials = sweep.trials ? sweep.trials.length : "";
  const row = tableRow([
    cell("td", sweep.name || sweep.id),
    cell("td", ""),
    cell("td", sweep.method || ""),
    cell("td", trials + " / " + (sweep.max_trials ?? "")),
    cell("td", objectiveText(sweep.objective)),
    cell("td", bestObjective(sweep), "num"),
    cell("td", when(sweep.created_at)),
  ]);
  row.children[1].append(statusBadge(sweep.status));
  row.dataset.sweepId = sweep.id;
  row.classList.toggle("selected", sweep.id === sweeps.selected);
  row.addEventListener("click", () => selectSweep(sweep.id));
  return row;
}

export async function selectSweep(sweepId) {
  sweeps.selected = sweepId;
  for (const row of document.querySelectorAll("#sweeps tbody tr")) {
    row.classList.toggle("selected", row.dataset.sweepId === sweepId);
  }
  $("sweep-panel").hidden = false;
  $("sweep-id").textContent = sweepId;
  await loadSweep(sweepId);
}

// The trials' run names, from the runs list filtered by the sweep (best effort).
async function runNames(sweepId) {
  try {
    const page = await api("GET", "/v1/runs?" + new URLSearchParams({ sweep_id: sweepId, limit: "100" }));
    return Object.fromEntries(page.data.map((run) => [run.id, run.name]));
  } catch {
    return {};
  }
}

async function loadSweep(sweepId) {
  $("sweep-error").textContent = "";
  try {
    const [sweep, names] = await Promise.all([api("GET", "/v1/sweeps/" + sweepId), runNames(sweepId)]);
    if (sweeps.selected !== sweepId) return;
    sweeps.sweep = sweep;
    sweeps.names = names;
    $("sweep-name").textContent = sweep.name || "";
    $("sweep-status").replaceChildren(statusBadge(sweep.status));
    $("sweep-summary").textContent =
      (sweep.method || "") + ", " + (sweep.trials || []).length + " of " + sweep.max_trials +
      " trials, parallelism " + sweep.parallelism + ", objective " + objectiveText(sweep.objective) +
      (bestObjective(sweep) ? ", best " + bestObjective(sweep) : "");
    fillParameters(sweep);
    drawTrials(sweep);
    drawScatter();
    $("trials").dataset.loaded = "true";
  } catch (error) {
    $("sweep-error").textContent = errorText(error);
  }
}

function bestNumber(sweep) {
  const best = sweep.best_trial;
  if (best === null || best === undefined) return null;
  return typeof best === "object" ? best.number : best;
}

function drawTrials(sweep) {
  const best = bestNumber(sweep);
  $("trials").querySelector("tbody").replaceChildren(...(sweep.trials || []).map((trial) => {
    const params = Object.entries(trial.parameters || {}).map(([path, value]) => path + "=" + num(value)).join(", ");
    const run = cell("td", "");
    if (sweeps.names[trial.run_id]) run.append(cell("span", sweeps.names[trial.run_id] + " ", "run-name"));
    run.append(cell("code", trial.run_id || "", "run-id"));
    const row = tableRow([
      cell("td", String(trial.number), "num"), run, cell("td", params), cell("td", ""),
      cell("td", num(trial.objective), "num"), cell("td", num(trial.epoch), "num"), cell("td", num(trial.rung), "num"),
    ]);
    row.children[3].append(statusBadge(trial.status));
    row.dataset.trial = String(trial.number);
    row.classList.toggle("best", trial.number === best);
    return row;
  }));
}

function fillParameters(sweep) {
  const select = $("sweep-param");
  const previous = select.value;
  const paths = Object.keys(sweep.parameters || {});
  select.replaceChildren(...paths.map((path) => {
    const option = cell("option", path);
    option.value = path;
    return option;
  }));
  select.value = paths.includes(previous) ? previous : paths[0] || "";
}

// A log x axis for log_uniform parameters; categories (strings, booleans) at even positions.
export function drawScatter() {
  const sweep = sweeps.sweep;
  const chart = $("sweep-chart");
  const dots = chart.querySelector(".dots");
  const axes = chart.querySelector(".axes");
  dots.replaceChildren();
  axes.replaceChildren();
  chart.dataset.dots = "0";
  const path = $("sweep-param").value;
  if (!sweep || !path) return;
  const trials = (sweep.trials || []).filter((t) =>
    t.objective !== null && t.objective !== undefined && Number.isFinite(t.objective) && t.parameters && path in t.parameters);
  if (trials.length === 0) return;
  const distribution = (sweep.parameters || {})[path] || {};
  const values = trials.map((t) => t.parameters[path]);
  const numeric = values.every((v) => typeof v === "number");
  const categories = numeric ? [] : [...new Set(values.map(String))];
  const xs = numeric ? values : values.map((v) => categories.indexOf(String(v)));
  const log = numeric && "log_uniform" in distribution && xs.every((x) => x > 0);
  const box = plotBox(chart);
  const [x0, x1] = numeric ? extent(xs) : [-0.5, categories.length - 0.5];
  const [y0, y1] = extent(trials.map((t) => t.objective));
  const sx = scale(x0, x1, box.left + 10, box.right - 10, log);
  const sy = scale(y0, y1, box.bottom - 6, box.top + 6);
  const labels = { x: path + (log ? " (log)" : ""), y: sweep.objective ? sweep.objective.metric : "objective" };
  if (!numeric) Object.assign(labels, { xTicks: categories.map((_, i) => i), xText: (i) => categories[i] });
  drawAxes(axes, box, sx, sy, labels);
  const best = bestNumber(sweep);
  trials.forEach((trial, i) => {
    const dot = svg("circle", {
      cx: sx.map(xs[i]).toFixed(1), cy: sy.map(trial.objective).toFixed(1), r: trial.number === best ? 6 : 4,
      class: "trial " + trial.status + (trial.number === best ? " best" : ""), "data-trial": trial.number,
    });
    dot.append(svg("title", {}, "trial " + trial.number + ": " + path + "=" + num(trial.parameters[path]) + ", " + num(trial.objective)));
    dots.append(dot);
  });
  chart.dataset.dots = String(trials.length);
  chart.dataset.param = path;
}
