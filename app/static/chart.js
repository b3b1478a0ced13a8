// Hand-drawn SVG charts: linear or log scales with labelled ticks, line series, scatter.
// No chart library: the page's CSP allows no inline style and nothing off this server,
// and a few hundred lines of SVG cover what the dashboard draws.

const NS = "http://www.w3.org/2000/svg";
export const PALETTE = ["#1f6fd1", "#e07b00", "#2a9d4b", "#c2185b", "#6a4fb3", "#00838f", "#8d6e00", "#d84315"];

export function svg(tag, attrs, text) {
  const element = document.createElementNS(NS, tag);
  for (const [name, value] of Object.entries(attrs || {})) element.setAttribute(name, String(value));
  if (text !== undefined) element.textContent = text;
  return element;
}

// About `count` round values (1, 2 or 5 times a power of ten) spanning [lo, hi].
export function linearTicks(lo, hi, count = 5) {
  const span = hi - lo;
  if (!(span > 0)) return [lo];
  const raw = span / count, power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
  const ticks = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) {
    ticks.push(Math.abs(t) < step * 1e-9 ? 0 : Number(t.toPrecision(12)));
  }
  return ticks;
}

// Powers of ten in [lo, hi] (lo > 0), with 2 and 5 between them when the range is short.
export function logTicks(lo, hi) {
  const a = Math.floor(Math.log10(lo)), b = Math.ceil(Math.log10(hi));
  const steps = b - a <= 2 ? [1, 2, 5] : [1];
  const ticks = [];
  for (let e = a; e <= b; e++) {
    for (const m of steps) {
      const t = Number((m * 10 ** e).toPrecision(12));
      if (t >= lo * (1 - 1e-9) && t <= hi * (1 + 1e-9)) ticks.push(t);
    }
  }
  return ticks.length > 0 ? ticks : [lo, hi];
}

// A scale from data [lo, hi] onto pixels [a, b]; `log` maps log10 (data must be > 0).
export function scale(lo, hi, a, b, log = false) {
  if (log) {
    const l0 = Math.log10(lo), l1 = hi > lo ? Math.log10(hi) : l0 + 1;
    return { log, lo, hi, map: (v) => a + ((Math.log10(v) - l0) / (l1 - l0)) * (b - a), ticks: () => logTicks(lo, hi) };
  }
  const top = hi > lo ? hi : lo + (Math.abs(lo) * 0.1 || 1);
  return { log, lo, hi: top, map: (v) => a + ((v - lo) / (top - lo)) * (b - a), ticks: () => linearTicks(lo, top) };
}

export function tickText(value) {
  if (value === 0) return "0";
  const size = Math.abs(value);
  return size >= 1e5 || size < 1e-3 ? value.toExponential(0).replace("e+", "e") : String(Number(value.toPrecision(4)));
}

// Frame, grid lines and labelled ticks of both axes into `group` (an SVG <g>).
export function drawAxes(group, box, sx, sy, labels = {}) {
  group.replaceChildren();
  const { left, right, top, bottom } = box;
  for (const t of sy.ticks()) {
    const y = sy.map(t);
    group.append(svg("line", { x1: left, y1: y, x2: right, y2: y, class: "grid" }));
    group.append(svg("text", { x: left - 5, y: y + 3, "text-anchor": "end", class: "tick-y" }, tickText(t)));
  }
  for (const t of (labels.xTicks || sx.ticks())) {
    const x = sx.map(t);
    group.append(svg("line", { x1: x, y1: bottom, x2: x, y2: bottom + 4 }));
    group.append(svg("text", { x, y: bottom + 15, "text-anchor": "middle", class: "tick-x" }, labels.xText ? labels.xText(t) : tickText(t)));
  }
  group.append(svg("line", { x1: left, y1: bottom, x2: right, y2: bottom }));
  group.append(svg("line", { x1: left, y1: top, x2: left, y2: bottom }));
  if (labels.x) group.append(svg("text", { x: right, y: bottom + 28, "text-anchor": "end", class: "axis-label" }, labels.x));
  if (labels.y) group.append(svg("text", { x: left, y: top - 4, "text-anchor": "start", class: "axis-label" }, labels.y));
}

// Integer ticks for epochs.
export function epochTicks(x0, x1) {
  return linearTicks(x0, x1).filter((t) => Number.isInteger(t));
}

// The box of a chart's plotting area inside its viewBox.
export function plotBox(chart, pad = { left: 64, right: 14, top: 16, bottom: 34 }) {
  const [, , w, h] = chart.getAttribute("viewBox").split(" ").map(Number);
  return { left: pad.left, right: w - pad.right, top: pad.top, bottom: h - pad.bottom, width: w, height: h };
}

// Values that a (log) scale can show.
export function plottable(value, log) {
  return value !== null && value !== undefined && Number.isFinite(value) && (!log || value > 0);
}

// The [lo, hi] of some values.
export function extent(values) {
  return [Math.min(...values), Math.max(...values)];
}
