// Shared helpers: the API call with the saved key, number formats, DOM cells.
// Every value from the server goes into the page through textContent, never innerHTML.

export const KEY_STORAGE = "backprop.apiKey";
export const $ = (id) => document.getElementById(id);

export function apiKey() { return localStorage.getItem(KEY_STORAGE) || ""; }

// The JSON body and the response (for its headers); a non-2xx answer throws its detail.
export async function request(method, path) {
  const headers = { Accept: "application/json" };
  const key = apiKey();
  if (key) headers.Authorization = "Bearer " + key;
  const response = await fetch(path, { method, headers });
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const detail = body && body.detail ? JSON.stringify(body.detail) : response.statusText;
    const error = new Error(response.status + ": " + detail);
    error.status = response.status;
    throw error;
  }
  return { body, response };
}

export async function api(method, path) {
  return (await request(method, path)).body;
}

export function errorText(error) { return String(error.message || error); }

// 5 significant digits (the run's loss and the chart's labels).
export function fmt(value) {
  return value === null || value === undefined ? "" : Number(value).toPrecision(5);
}

// A stored number as a short string: integers whole, others to 6 significant digits.
export function num(value) {
  if (value === null || value === undefined) return "";
  const n = Number(value);
  if (!Number.isFinite(n)) return String(value);
  return Number.isInteger(n) ? String(n) : String(Number(n.toPrecision(6)));
}

// A fraction in [0, 1] as a percentage with one decimal ("97.5%").
export function percent(value) {
  return value === null || value === undefined ? "" : (100 * Number(value)).toFixed(1) + "%";
}

// An ISO timestamp as "YYYY-MM-DD HH:MM:SS" (UTC, as stored).
export function when(iso) { return iso ? iso.slice(0, 19).replace("T", " ") : ""; }

export function cell(tag, text, className) {
  const element = document.createElement(tag);
  element.textContent = text;
  if (className) element.className = className;
  return element;
}

export function tableRow(cells) {
  const row = document.createElement("tr");
  row.append(...cells);
  return row;
}

export function statusBadge(status) {
  return cell("span", status, "status " + status);
}

// A run's readable label: its name, else its id.
export function runLabel(run) { return run.name || run.id; }
