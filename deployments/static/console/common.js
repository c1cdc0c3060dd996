// What every section of the console shares: the element helpers, the signed-in API
// client, the charts, and the state (the token, the selected campaign, the stream).

export const $ = (id) => document.getElementById(id);
export const state = { token: sessionStorage.getItem("comms-token"), selected: null,
                       stream: null, charts: {}, lastSnapshot: null, section: null };

export function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

export function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    const td = document.createElement("td");
    if (cell instanceof Node) td.appendChild(cell); else td.textContent = cell ?? "";
    tr.appendChild(td);
  }
  return tr;
}

export function fillTable(id, rows, empty) {
  const body = $(id).querySelector("tbody");
  body.replaceChildren(...rows);
  if (!rows.length && empty) {
    const tr = row([empty]);
    tr.firstChild.colSpan = $(id).querySelectorAll("th").length;
    tr.firstChild.className = "muted";
    body.appendChild(tr);
  }
}

export class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail :
      (detail || []).map((d) => `${d.field}${d.line ? ` (line ${d.line})` : ""}: ${d.message}`).join("; "));
    this.status = status;
  }
}

export async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${state.token}`, ...(options.headers || {}) };
  let body = options.body;
  if (body && !(body instanceof FormData)) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(body);
  }
  const response = await fetch(path, { ...options, headers, body });
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (!response.ok) throw new ApiError(response.status, data && data.detail ? data.detail : text);
  return data;
}

export function chart(id, type, labels, data, label) {
  if (!window.Chart) return;
  const existing = state.charts[id];
  if (existing && existing.config.type === type) {
    existing.data.labels = labels;
    existing.data.datasets[0].data = data;
    existing.update("none");
    return;
  }
  if (existing) existing.destroy();
  state.charts[id] = new Chart($(id), {
    type, data: { labels, datasets: [{ label, data, backgroundColor: "#7d4fb0", borderColor: "#5b2a86",
                                       fill: type === "line", tension: 0.25, pointRadius: 0 }] },
    options: { responsive: true, maintainAspectRatio: false, animation: false,
               plugins: { legend: { display: false } },
               scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } },
  });
}

export function stat(label, value) {
  const node = el("div", null, "stat");
  node.append(el("span", label, "muted"), el("b", value));
  return node;
}

// Poll `refresh` every `ms` while signed in and while `section` is the one open.
export function every(ms, section, refresh) {
  setInterval(() => state.token && state.section === section && refresh(), ms);
}
