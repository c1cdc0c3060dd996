// The operator dashboard: sign in, dispatch campaigns, watch them live (server-sent
// events read with fetch, so the token stays in a header), marketing, chat, reports,
// email signup, webhooks, system, outbox.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { token: sessionStorage.getItem("comms-token"), selected: null, stream: null,
                charts: {}, lastSnapshot: null };

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    const td = document.createElement("td");
    if (cell instanceof Node) td.appendChild(cell); else td.textContent = cell ?? "";
    tr.appendChild(td);
  }
  return tr;
}

function fillTable(id, rows, empty) {
  const body = $(id).querySelector("tbody");
  body.replaceChildren(...rows);
  if (!rows.length && empty) {
    const tr = row([empty]);
    tr.firstChild.colSpan = $(id).querySelectorAll("th").length;
    tr.firstChild.className = "muted";
    body.appendChild(tr);
  }
}

class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail :
      (detail || []).map((d) => `${d.field}${d.line ? ` (line ${d.line})` : ""}: ${d.message}`).join("; "));
    this.status = status;
  }
}

async function api(path, options = {}) {
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

// Sign in ---------------------------------------------------------------------------
// User and password buy a token that lasts an hour (kept for this tab only); the admin
// token serves once, to create the first admin.
async function signIn(token) {
  state.token = token;
  let me;
  try {
    me = await api("/api/auth/me");
  } catch (err) {
    state.token = null;
    sessionStorage.removeItem("comms-token");
    $("signin-error").textContent = err.status === 401 ? "Your session ended: sign in again." :
      `Could not sign in: ${err.message || "server unreachable"}`;
    $("signin").classList.remove("hidden");
    $("app").classList.add("hidden");
    return false;
  }
  $("whoami").textContent = `${me.username} · ${me.role}`;
  sessionStorage.setItem("comms-token", token);
  $("signin").classList.add("hidden");
  $("app").classList.remove("hidden");
  startLive();
  refreshSystem();
  refreshOutbox();
  refreshSms();
  refreshSignup();
  refreshAudit();
  refreshWebhooks();
  preview();
  showReports();
  return true;
}

async function passwordSignIn(username, password, errorId) {
  try {
    const reply = await api("/api/auth/token", { method: "POST", body: { username, password } });
    $(errorId).textContent = "";
    return signIn(reply.token);
  } catch (err) {
    $(errorId).textContent = err.status === 401 ? "Wrong user name or password." :
      err.status === 429 ? "Too many attempts: wait a minute." :
      `Could not sign in: ${err.message || "server unreachable"}`;
    return false;
  }
}

$("signin-form").addEventListener("submit", (event) => {
  event.preventDefault();
  passwordSignIn($("username").value.trim(), $("password").value, "signin-error");
});
$("first-admin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const username = $("new-admin").value.trim();
  const password = $("new-admin-password").value;
  state.token = $("bootstrap-token").value.trim();
  try {
    await api("/api/users", { method: "POST", body: { username, password, role: "admin" } });
  } catch (err) {
    state.token = null;
    $("first-admin-error").textContent = err.status === 401 ? "Wrong admin token." :
      err.message;
    return;
  }
  state.token = null;
  await passwordSignIn(username, password, "first-admin-error");
});
$("signout").addEventListener("click", () => {
  sessionStorage.removeItem("comms-token");
  location.reload();
});

// Dispatcher ------------------------------------------------------------------------
// Generating and importing are jobs: follow one to its end, showing its progress.
async function followJob(started, bar, label) {
  bar.hidden = false;
  bar.value = 0;
  try {
    for (;;) {
      const job = await api(`/api/jobs/${started.job_id}`);
      bar.value = job.progress;
      if (job.status === "done") return job.result;
      if (job.status === "failed") throw new Error(`${label} failed: ${job.error}`);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  } finally { bar.hidden = true; }
}

$("gen-button").addEventListener("click", async () => {
  $("gen-result").textContent = "Generating…";
  try {
    const started = await api("/api/customers/generate", { method: "POST",
      body: { count: Number($("gen-count").value) } });
    const result = await followJob(started, $("gen-progress"), "Generating");
    $("gen-result").textContent = `Created ${result.created} customers, tagged ${result.tag}.`;
    $("outbox-filter").value = result.tag.replace(/^demo-/, ".");
    $("audience-tag").value = result.tag;
    preview();
  } catch (err) { $("gen-result").textContent = err.message; }
});

$("csv-button").addEventListener("click", async () => {
  const file = $("csv-file").files[0];
  const report = $("csv-report");
  if (!file) { report.textContent = "Choose a CSV file first."; return; }
  const form = new FormData();
  form.append("file", file);
  const tag = `import-${Date.now().toString(36)}`;
  try {
    report.textContent = "Importing…";
    const started = await api(`/api/customers/import?tag=${tag}`, { method: "POST", body: form });
    const result = await followJob(started, $("csv-progress"), "Importing");
    report.replaceChildren(el("p", `Imported ${result.imported} customers (tag ${tag}); ` +
      `${result.invalid.length} invalid, ${result.duplicates.length} duplicates.`));
    const problems = [...result.invalid.map((i) => [i.row, i.field, i.reason]),
                      ...result.duplicates.map((d) => [d.row, "email", d.reason])];
    if (problems.length) {
      const table = el("table");
      table.appendChild(row(["Row", "Field", "Reason"]));
      problems.sort((a, b) => a[0] - b[0]).forEach((p) => table.appendChild(row(p)));
      report.appendChild(table);
    }
    $("audience-tag").value = tag;
  } catch (err) { report.textContent = err.message; }
});

let previewTimer = null;
function schedulePreview() { clearTimeout(previewTimer); previewTimer = setTimeout(preview, 300); }
async function preview() {
  const box = $("preview");
  try {
    const result = await api("/api/campaigns/preview", { method: "POST", body: templates() });
    box.classList.remove("error");
    box.textContent = result.sms
      ? `To: ${result.sms.to}\nSMS: ${result.sms.segments} part(s), ${result.sms.encoding}, ` +
        `${result.sms.characters} characters\n\n${result.body_text}`
      : `To: ${result.customer}\nSubject: ${result.subject}\n\n${result.body_text}`;
  } catch (err) {
    box.classList.add("error");
    box.textContent = err.message;
  }
}
for (const id of ["subject", "body-text", "body-html"]) $(id).addEventListener("input", schedulePreview);
$("channel").addEventListener("change", schedulePreview);

function templates() {
  if ($("channel").value === "sms") return { channel: "sms", body_text: $("body-text").value };
  return { channel: "email", subject: $("subject").value, body_text: $("body-text").value,
           body_html: $("body-html").value.trim() ? $("body-html").value : null };
}

$("launch-button").addEventListener("click", async () => {
  $("launch-error").textContent = "";
  $("launch-button").disabled = true;
  try {
    const tag = $("audience-tag").value.trim();
    const created = await api("/api/campaigns", { method: "POST", body: {
      name: $("campaign-name").value || "Campaign", ...templates(),
      tracking: { opens: $("track-opens").checked, clicks: $("track-clicks").checked },
      audience: tag ? { tag } : {} } });
    const rate = Number($("rate").value);
    await api(`/api/campaigns/${created.id}/launch`, { method: "POST", body: {
      workers: Number($("workers").value), batch_size: Number($("batch-size").value),
      rate_limit_per_s: rate > 0 ? rate : null } });
    select(created.id);
  } catch (err) {
    $("launch-error").textContent = err.message;
  } finally {
    $("launch-button").disabled = false;
  }
});

// Campaigns -------------------------------------------------------------------------
function progressBar(fraction) {
  const bar = el("div", null, "progress");
  const fill = el("span");
  fill.style.width = `${Math.round(fraction * 100)}%`;
  bar.appendChild(fill);
  bar.title = `${Math.round(fraction * 100)}%`;
  return bar;
}

function eta(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 60) return `${Math.round(seconds)} s`;
  return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
}

function renderCampaigns(campaigns) {
  fillTable("campaigns-table", campaigns.map((c) => {
    const tr = row([c.name, el("span", c.status, `badge ${c.status}`), progressBar(c.progress),
                    c.counts.sent, c.counts.failed, c.counts.dead, eta(c.eta_s)]);
    tr.className = `selectable${c.id === state.selected ? " selected" : ""}`;
    tr.dataset.id = c.id;
    tr.addEventListener("click", () => select(c.id));
    return tr;
  }), "No campaigns yet: launch one from the dispatcher.");
}

function select(id) {
  state.selected = id;
  $("campaign-detail").classList.remove("hidden");
  startLive();
}

function chart(id, type, labels, data, label) {
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

function renderDetail(c) {
  if (!c) return;
  $("detail-name").textContent = c.name;
  $("detail-status").textContent = c.status;
  $("detail-status").className = `badge ${c.status}`;
  const pct = Math.round(c.progress * 100);
  $("detail-bar").style.width = `${pct}%`;
  $("detail-progress").textContent = `${pct}%`;
  $("detail-sent").textContent = c.counts.sent;
  $("detail-pending").textContent = c.counts.pending;
  $("detail-failed").textContent = c.counts.failed;
  $("detail-dead").textContent = c.counts.dead;
  const engaged = (kind, on) => on ? `${c.counts[kind]} (${(c.rates[kind] * 100).toFixed(1)}%)` : "–";
  $("detail-delivered").textContent = c.channel === "sms"
    ? `${c.counts.delivered} (${(c.rates.delivered * 100).toFixed(1)}%)` : "–";
  $("detail-opened").textContent = engaged("opened", c.tracking.opens);
  $("detail-clicked").textContent = engaged("clicked", c.tracking.clicks);
  $("detail-rate").textContent = (c.recent_throughput_per_s ?? c.throughput_per_s).toFixed(1);
  $("detail-eta").textContent = eta(c.eta_s);
  $("detail-inflight").textContent = c.tasks_in_flight ?? "–";
  $("detail-error").textContent = c.failure_reason || "";
  $("pause").disabled = c.status !== "running";
  $("resume").disabled = c.status !== "paused";
  $("cancel").disabled = !["running", "paused"].includes(c.status);
  const samples = c.timeline || [];
  const rates = samples.slice(1).map((s, i) => {
    const dt = (new Date(s.t) - new Date(samples[i].t)) / 1000;
    return dt > 0 ? (s.sent - samples[i].sent) / dt : 0;
  });
  const start = samples.length ? new Date(samples[0].t) : null;
  chart("throughput-chart", "line",
        samples.slice(1).map((s) => `${Math.round((new Date(s.t) - start) / 1000)}s`), rates, "msg/s");
  const workers = Object.entries(c.by_worker || {}).sort((a, b) => b[1] - a[1]);
  $("worker-count").textContent = workers.length;
  chart("workers-chart", "bar", workers.map((w) => w[0]), workers.map((w) => w[1]), "sent");
  const nodes = Object.entries(c.by_node || {});
  chart("nodes-chart", "bar", nodes.map((n) => n[0]), nodes.map((n) => n[1]), "sent");
}

for (const action of ["pause", "resume", "cancel"]) {
  $(action).addEventListener("click", async () => {
    if (!state.selected) return;
    try {
      await api(`/api/campaigns/${state.selected}/${action}`, { method: "POST" });
    } catch (err) { $("detail-error").textContent = err.message; }
  });
}

// Marketing and chat ----------------------------------------------------------------
function renderMarketing(m) {
  const stats = $("marketing-stats");
  stats.replaceChildren(...[["Scheduled", m.counts.scheduled], ["Sent", m.counts.sent],
    ["Accepted", m.counts.accepted], ["Expired", m.counts.expired],
    ["Conversion", `${(m.conversion_rate * 100).toFixed(1)}%`]].map(([label, value]) => {
      const stat = el("div", null, "stat");
      stat.append(el("span", label, "muted"), el("b", value));
      return stat;
    }));
  state.offers = m.scheduled.map((o) => ({ ...o, due: Date.now() + o.fires_in_s * 1000 }));
  renderOffers();
}

function renderOffers() {
  fillTable("offers-table", (state.offers || []).map((o) => row([
    o.id.slice(0, 14), o.customer_id ? o.customer_id.slice(0, 10) : "anonymous",
    `${Math.max(0, Math.round((o.due - Date.now()) / 1000))} s`])), "Nothing scheduled.");
}
setInterval(renderOffers, 1000);

function renderChat(c) {
  $("chat-total").textContent = `${c.total_sessions} sessions in all`;
  fillTable("handoffs-table", c.open_handoffs.map((h) => row([
    h.session_id.slice(0, 10), h.customer_id ? h.customer_id.slice(0, 10) : "anonymous",
    new Date(h.created_at).toLocaleTimeString()])), "No open handoffs.");
  const presence = (s) => {
    if (s.online === undefined) return "";
    return el("span", s.online ? "● online" : "offline", s.online ? "online" : "muted");
  };
  fillTable("sessions-table", c.sessions.slice(0, 10).map((s) => {
    const tr = row([s.id.slice(0, 10), presence(s), s.node, s.messages,
      new Date(s.updated_at).toLocaleTimeString()]);
    tr.dataset.session = s.id;
    return tr;
  }), "No sessions yet.");
}

// Live stream -----------------------------------------------------------------------
async function startLive() {
  if (state.stream) state.stream.abort();
  const controller = new AbortController();
  state.stream = controller;
  const query = state.selected ? `?campaign=${encodeURIComponent(state.selected)}` : "";
  try {
    const response = await fetch(`/api/live${query}`, {
      headers: { Authorization: `Bearer ${state.token}` }, signal: controller.signal });
    if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
    $("live-state").textContent = "live";
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const frame = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const data = frame.split("\n").filter((l) => l.startsWith("data: "))
          .map((l) => l.slice(6)).join("\n");
        if (data && !frame.startsWith("event: problem")) render(JSON.parse(data));
      }
    }
  } catch (err) {
    if (controller.signal.aborted) return;
  }
  if (state.stream === controller) {
    $("live-state").textContent = "reconnecting…";
    setTimeout(startLive, 2000);
  }
}

function render(snapshot) {
  state.lastSnapshot = snapshot;
  renderCampaigns(snapshot.campaigns);
  renderDetail(snapshot.campaign);
  renderMarketing(snapshot.marketing);
  renderChat(snapshot.chat);
}

// Reports ---------------------------------------------------------------------------
function isoDay(d) { return d.toISOString().slice(0, 10); }
$("report-to").value = isoDay(new Date());
$("report-from").value = isoDay(new Date(Date.now() - 29 * 86400000));

function reportQuery(format) {
  const params = new URLSearchParams({ from: $("report-from").value, to: $("report-to").value });
  if (format) params.set("format", format);
  return params.toString();
}

function figure(label, value) {
  const stat = el("div", null, "stat");
  stat.append(el("span", label, "muted"), el("b", value));
  return stat;
}

async function showReports() {
  $("report-error").textContent = "";
  try {
    const [perf, bill] = await Promise.all([
      api(`/api/reports/performance?${reportQuery()}`),
      api(`/api/reports/billing?${reportQuery()}`)]);
    const money = (v) => `${bill.currency} ${Number(v).toFixed(2)}`;
    $("report-figures").replaceChildren(
      figure("Recipients", perf.totals.recipients), figure("Sent", perf.totals.sent),
      figure("Delivery rate", `${(perf.totals.delivery_rate * 100).toFixed(1)}%`),
      figure("Open rate", `${(perf.totals.open_rate * 100).toFixed(1)}%`),
      figure("Click rate", `${(perf.totals.click_rate * 100).toFixed(1)}%`),
      figure("Chat sessions", perf.chat.sessions),
      figure("Completion", `${(perf.chat.completion_rate * 100).toFixed(1)}%`),
      figure("Offers accepted", perf.marketing.accepted),
      figure("Conversions", bill.totals.conversions), figure("Revenue", money(bill.totals.revenue)),
      figure("Cost", money(bill.totals.cost)), figure("Net", money(bill.totals.net)));
    chart("funnel-chart", "bar", perf.chat.drop_off.map((d) => d.node),
          perf.chat.drop_off.map((d) => d.sessions), "sessions");
    chart("revenue-chart", "bar", bill.by_day.map((d) => d.day),
          bill.by_day.map((d) => d.revenue - d.cost), "net");
  } catch (err) { $("report-error").textContent = err.message; }
}
$("report-show").addEventListener("click", showReports);

for (const button of document.querySelectorAll("button.download")) {
  button.addEventListener("click", async () => {
    const { kind, format } = button.dataset;
    const response = await fetch(`/api/reports/${kind}?${reportQuery(format)}`,
      { headers: { Authorization: `Bearer ${state.token}` } });
    if (!response.ok) { $("report-error").textContent = `Download failed (${response.status})`; return; }
    const name = (response.headers.get("Content-Disposition") || "").match(/filename="([^"]+)"/);
    const link = document.createElement("a");
    link.href = URL.createObjectURL(await response.blob());
    link.download = name ? name[1] : `${kind}.${format}`;
    link.click();
    URL.revokeObjectURL(link.href);
  });
}

// System and outbox -----------------------------------------------------------------
async function refreshSystem() {
  try {
    const s = await api("/api/system");
    $("ray-link").href = `${location.protocol}//${location.hostname}:${s.ray_dashboard_port}/`;
    const health = $("system-health");
    health.replaceChildren(...["mongodb", "smtp", "ray"].map((part) => {
      const stat = el("div", null, "stat");
      const up = s.health[part].status === "up";
      stat.append(el("span", part === "mongodb" ? "MongoDB" : part.toUpperCase(), "muted"),
                  el("b", up ? "up" : "down", up ? "" : "error"));
      return stat;
    }));
    $("actors-count").textContent = s.actors ? s.actors.length : "?";
    $("tasks-count").textContent = s.running_tasks ? s.running_tasks.length : "?";
    fillTable("nodes-table", s.nodes.map((n) => row([n.id, n.ip, n.cpus, n.alive ? "yes" : "no"])));
    if (!s.local_mode) $("outbox").classList.add("hidden");
  } catch (err) { /* shown as down on the next try */ }
}
setInterval(() => state.token && refreshSystem(), 5000);

// Email signup ----------------------------------------------------------------------
function stat(label, value) {
  const node = el("div", null, "stat");
  node.append(el("span", label, "muted"), el("b", value));
  return node;
}

async function refreshSignup() {
  let s;
  try { s = await api("/api/signup?limit=10"); } catch (err) { return; }
  if (!s.configured) {
    $("signup-state").textContent = "Not configured: set COMMS_IMAP_HOST, COMMS_IMAP_USER " +
      "and COMMS_IMAP_PASSWORD to read signup replies.";
    return;
  }
  const w = s.watcher || {};
  const polled = s.state && s.state.last_poll_at ?
    `, last read ${new Date(s.state.last_poll_at).toLocaleTimeString()}` : "";
  const problem = (s.state && s.state.last_error) || w.error;
  $("signup-state").textContent = `${s.account}: watcher ${w.running ? "running" : "stopped"}` +
    `${polled}${problem ? ` (error: ${problem})` : ""}`;
  $("signup-state").className = problem || !w.running ? "error" : "muted";
  $("signup-counts").replaceChildren(stat("Signups", s.counts.signup),
    stat("Unsubscribes", s.counts.unsubscribe), stat("Bounces", s.counts.bounce),
    stat("To review", s.counts.review));
  const when = (m) => new Date(m.received_at).toLocaleString();
  const who = (m) => m.sender || m.name || "?";
  fillTable("review-table", s.review_queue.map((m) => row([when(m), who(m), m.subject, m.reason])),
    "Nothing to review.");
  const result = (m) => {
    const action = (m.outcome && m.outcome.action) || m.state || "";
    return action === "review" ? `in ${m.folder}` : action.replaceAll("_", " ");
  };
  fillTable("inbound-table", s.recent.map((m) => row([when(m), who(m), m.kind || "…", result(m)])),
    "No replies yet.");
}
setInterval(() => state.token && refreshSignup(), 5000);

async function refreshAudit() {
  let log;
  try { log = await api("/api/audit?limit=15"); } catch (err) { return; }
  fillTable("audit-table", log.entries.map((e) => row([
    new Date(e.at).toLocaleString(), `${e.who} (${e.role})`, e.action, e.target || ""])),
    "No changes yet.");
}
setInterval(() => state.token && refreshAudit(), 5000);

// Webhooks: endpoints with what waits and what died, an endpoint's recent attempts,
// the replay of its dead letters. A 403 (not an admin) hides the panel.
state.webhook = null;
async function refreshWebhooks() {
  let data;
  try { data = await api("/api/webhooks"); } catch (err) {
    if (err.status === 403) $("webhooks").classList.add("hidden");
    return;
  }
  fillTable("webhooks-table", data.webhooks.map((w) => {
    const replay = el("button", "Replay dead", "secondary");
    replay.type = "button";
    replay.disabled = !(w.waiting && w.waiting.dead);
    replay.addEventListener("click", async (event) => {
      event.stopPropagation();
      const done = await api(`/api/webhooks/${w.id}/replay`, { method: "POST" });
      $("webhook-secret").textContent = `${done.replayed} dead letters sent again.`;
      refreshWebhooks();
    });
    const tr = row([w.url, w.events.join(", "),
      w.enabled ? "enabled" : `disabled: ${w.disabled_reason || "by an operator"}`,
      w.waiting ? w.waiting.pending : "", w.waiting ? w.waiting.dead : "", replay]);
    tr.className = "selectable";
    tr.addEventListener("click", () => { state.webhook = w; refreshWebhookMessages(); });
    return tr;
  }), "No endpoints yet.");
  refreshWebhookMessages();
}

async function refreshWebhookMessages() {
  if (!state.webhook) return;
  $("webhook-messages-title").textContent = `Recent attempts: ${state.webhook.url}`;
  let data;
  try { data = await api(`/api/webhooks/${state.webhook.id}/messages?limit=15`); } catch { return; }
  fillTable("webhook-messages-table", data.messages.map((m) => row([
    new Date(m.created_at).toLocaleString(), m.type, m.status, m.attempts,
    m.last_error || (m.last_status ? `HTTP ${m.last_status}` : "")])), "Nothing sent yet.");
}

$("webhook-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const events = $("webhook-events").value.split(",").map((e) => e.trim()).filter(Boolean);
  try {
    const made = await api("/api/webhooks", { method: "POST",
      body: { url: $("webhook-url").value.trim(), events } });
    $("webhook-secret").textContent =
      `Signing secret (shown once, keep it for verifying): ${made.secret}`;
    refreshWebhooks();
  } catch (err) { $("webhook-secret").textContent = err.message; }
});
setInterval(() => state.token && refreshWebhooks(), 5000);

async function refreshOutbox() {
  const to = $("outbox-filter").value.trim();
  try {
    const data = await api(`/api/outbox?limit=15${to ? `&to=${encodeURIComponent(to)}` : ""}`);
    $("outbox-total").textContent = to ? `(${data.matched} matching, ${data.total} received)`
                                       : `(${data.total} received)`;
    fillTable("outbox-table", data.messages.map((m) => {
      const tr = row([new Date(m.received_at).toLocaleTimeString(), m.to.join(", "), m.subject]);
      tr.className = "selectable";
      tr.addEventListener("click", async () => {
        const raw = await fetch(`/api/outbox/${encodeURIComponent(m.key)}`,
          { headers: { Authorization: `Bearer ${state.token}` } });
        $("outbox-raw").textContent = await raw.text();
        $("outbox-raw").classList.remove("hidden");
      });
      return tr;
    }), "Nothing received yet.");
  } catch (err) {
    if (err.status === 404) $("outbox").classList.add("hidden");
  }
}
$("outbox-refresh").addEventListener("click", refreshOutbox);

async function refreshSms() {
  try {
    const data = await api("/api/sms/outbox?limit=15");
    $("sms-total").textContent = `(${data.total} received)`;
    fillTable("sms-table", data.messages.map((m) => row([
      new Date(m.at * 1000).toLocaleTimeString(), `+${m.number}`, m.parts, m.text])),
    "Nothing received yet.");
  } catch (err) { $("sms-error").textContent = err.status === 404 ? "" : err.message; }
}
$("sms-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("sms-error").textContent = "";
  try {
    await api("/api/sms/simulate-inbound", { method: "POST", body: {
      source: $("sms-from").value.trim(), text: $("sms-text").value } });
    $("sms-text").value = "";
    setTimeout(refreshSms, 1000);
  } catch (err) { $("sms-error").textContent = err.message; }
});
setInterval(() => state.token && refreshSms(), 3000);
setInterval(() => state.token && refreshOutbox(), 3000);

if (state.token) signIn(state.token);
