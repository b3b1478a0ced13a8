// Compare view: the runs ticked in the table, their curves overlaid in one chart
// (a legend with their names, a metric select, a log toggle) and the config fields that differ.
import { $, api, cell, errorText, fmt, num, runLabel, tableRow } from "./util.js";
import { PALETTE, drawAxes, epochTicks, extent, plotBox, plottable, scale, svg } from "./chart.js";

const MAX_POINTS = 500;
const compared = { ids: [], runs: [], histories: {}, comparison: null, token: 0 };

// Draw the compare panel for these run ids (hidden when none are ticked).
export async function compareRuns(ids) {
  compared.ids = [...ids];
  const token = ++compared.token;
  $("compare-panel").hidden = ids.length === 0;
  $("compare-error").textContent = "";
  if (ids.length === 0) return;
  try {
    const query = new URLSearchParams({ ids: ids.join(",") });
    const [comparison, ...histories] = await Promise.all([
      api("GET", "/v1/runs/compare?" + query),
      ...ids.map((id) => api("GET", "/v1/runs/" + id + "/history?max_points=" + MAX_POINTS)),
    ]);
    if (token !== compared.token) return;
    compared.comparison = comparison;
    compared.runs = comparison.runs;
    compared.histories = Object.fromEntries(ids.map((id, i) => [id, histories[i]]));
    fillMetrics();
    drawCompare();
    drawFields(comparison);
  } catch (error) {
    if (token === compared.token) $("compare-error").textContent = errorText(error);
  }
}

// The columns every compared history has (loss first), as the metric select's options.
function fillMetrics() {
  const select = $("compare-metric");
  const previous = select.value || "loss";
  const columns = Object.values(compared.histories).map((h) =>
    Object.keys(h).filter((k) => k !== "epoch" && k !== "lr" && Array.isArray(h[k]) && h[k].some((v) => v !== null)));
  const shared = columns.length ? columns[0].filter((c) => columns.every((cs) => cs.includes(c))) : [];
  select.replaceChildren(...shared.map((name) => {
    const option = cell("option", name);
    option.value = name;
    return option;
  }));
  select.value = shared.includes(previous) ? previous : shared[0] || "";
}

export function drawCompare() {
  const chart = $("compare-chart");
  const metric = $("compare-metric").value;
  const log = $("compare-log").checked;
  const series = compared.runs.map((run, i) => {
    const history = compared.histories[run.id] || { epoch: [] };
    const values = history[metric] || [];
    const points = history.epoch.map((e, j) => [e, values[j]]).filter(([, v]) => plottable(v, log));
    return { run, points, color: PALETTE[i % PALETTE.length] };
  });
  const curves = chart.querySelector(".curves");
  curves.replaceChildren();
  const all = series.flatMap((s) => s.points);
  chart.dataset.curves = "0";
  drawLegend(series);
  const axes = chart.querySelector(".axes");
  if (all.length === 0) { axes.replaceChildren(); return; }
  const box = plotBox(chart);
  const [x0, x1] = extent(all.map(([e]) => e));
  const [y0, y1] = extent(all.map(([, v]) => v));
  const sx = scale(x0, Math.max(x1, x0 + 1), box.left, box.right);
  const sy = scale(y0, y1, box.bottom, box.top, log);
  drawAxes(axes, box, sx, sy, { xTicks: epochTicks(sx.lo, sx.hi), x: "epoch", y: metric + (log ? " (log)" : "") });
  for (const s of series.filter((item) => item.points.length > 0)) {
    const d = s.points.map(([e, v], j) => (j ? "L" : "M") + sx.map(e).toFixed(1) + "," + sy.map(v).toFixed(1)).join("");
    curves.append(svg("path", { d, stroke: s.color, class: "curve", "data-run-id": s.run.id }));
  }
  chart.dataset.curves = String(curves.children.length);
  chart.dataset.log = String(log);
}

function drawLegend(series) {
  $("compare-legend").replaceChildren(...series.map((s) => {
    const item = document.createElement("li");
    item.dataset.runId = s.run.id;
    const swatch = svg("svg", { width: 18, height: 8, class: "key" });
    swatch.append(svg("line", { x1: 0, y1: 4, x2: 18, y2: 4, stroke: s.color, "stroke-width": 3 }));
    item.append(swatch, cell("span", runLabel(s.run), "run-name"));
    if (s.run.name) item.append(cell("code", s.run.id, "run-id"));
    if (s.points.length === 0) item.append(cell("span", " (not recorded)", "muted"));
    return item;
  }));
}

// The config fields that differ and each run's final and best loss, one column per run.
function drawFields(comparison) {
  const head = $("compare-fields").querySelector("thead tr");
  head.replaceChildren(cell("th", "field"), ...comparison.runs.map((run) => cell("th", runLabel(run))));
  const show = (value) => (typeof value === "number" ? num(value) : JSON.stringify(value ?? null));
  const results = [
    ["final loss", (run) => fmt(run.final.loss)],
    ["best loss", (run) => fmt(run.best.best_loss)],
    ["best epoch", (run) => String(run.best.epoch ?? "")],
  ].map(([name, value]) => tableRow([cell("th", name), ...comparison.runs.map((run) => cell("td", value(run), "num"))]));
  const differing = comparison.fields.filter((field) => field.differs).map((field) =>
    tableRow([cell("th", field.field), ...field.values.map((value) => cell("td", show(value), "differs"))]));
  $("compare-fields").querySelector("tbody").replaceChildren(...results, ...differing);
}
