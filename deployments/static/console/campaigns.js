// Campaigns: the editor with its live preview and launch, the list, and a campaign's
// detail (deep-linked as #/campaigns/<id>), fed by the live stream.
import { $, api, chart, el, fillTable, row, state } from "./common.js";
import { startLive } from "./live.js";

let previewTimer = null;
export function schedulePreview() { clearTimeout(previewTimer); previewTimer = setTimeout(preview, 300); }
export async function preview() {
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

export function templates() {
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

export function progressBar(fraction) {
  const bar = el("div", null, "progress");
  const fill = el("span");
  fill.style.width = `${Math.round(fraction * 100)}%`;
  bar.appendChild(fill);
  bar.title = `${Math.round(fraction * 100)}%`;
  return bar;
}

export function eta(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  if (seconds < 60) return `${Math.round(seconds)} s`;
  return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
}

export function renderCampaigns(campaigns) {
  fillTable("campaigns-table", campaigns.map((c) => {
    const tr = row([c.name, el("span", c.status, `badge ${c.status}`), progressBar(c.progress),
                    c.counts.sent, c.counts.failed, c.counts.dead, eta(c.eta_s)]);
    tr.className = `selectable${c.id === state.selected ? " selected" : ""}`;
    tr.dataset.id = c.id;
    tr.addEventListener("click", () => select(c.id));
    return tr;
  }), "No campaigns yet: launch one from the dispatcher.");
}

export function select(id) {
  if (location.hash !== `#/campaigns/${id}`) location.hash = `#/campaigns/${id}`;
  if (state.selected === id) return;
  state.selected = id;
  $("campaign-detail").classList.remove("hidden");
  startLive();
}

export function renderDetail(c) {
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
  // The funnel per channel that carried its messages (where the channel reports it).
  fillTable("funnel-table", Object.entries(c.funnel || {}).map(([channel, f]) => row([
    channel, f.sent ?? 0, f.delivered ?? "–", f.read ?? "–", f.clicked ?? "–",
    f.undeliverable ?? "–"])), "Nothing sent yet.");
  $("detail-rate").textContent = (c.recent_throughput_per_s ?? c.throughput_per_s).toFixed(1);
  $("detail-eta").textContent = eta(c.eta_s);
  $("detail-inflight").textContent = c.tasks_in_flight ?? "–";
  $("detail-error").textContent = c.failure_reason || "";
  $("pause").disabled = c.status !== "running";
  $("resume").disabled = c.status !== "paused";
  $("cancel").disabled = !["running", "paused"].includes(c.status);
  $("retry-failed").disabled = c.status !== "completed" || !(c.counts.failed + c.counts.dead);
  chart("throughput-chart", "line", ...throughput(c), "msg/s");
  const workers = Object.entries(c.by_worker || {}).sort((a, b) => b[1] - a[1]);
  $("worker-count").textContent = workers.length;
  chart("workers-chart", "bar", workers.map((w) => w[0]), workers.map((w) => w[1]), "sent");
  const nodes = Object.entries(c.by_node || {});
  chart("nodes-chart", "bar", nodes.map((n) => n[0]), nodes.map((n) => n[1]), "sent");
}

for (const action of ["pause", "resume", "cancel", "retry-failed"]) {
  $(action).addEventListener("click", async () => {
    if (!state.selected) return;
    try {
      await api(`/api/campaigns/${state.selected}/${action}`, { method: "POST" });
    } catch (err) { $("detail-error").textContent = err.message; }
  });
}

// The throughput series from the launch on: each interval's rate, drawn across the
// interval (a campaign that ended within one sample still shows its rate).
export function throughput(c) {
  const samples = [...(c.timeline || [])];
  if (c.launched_at && (!samples.length || new Date(samples[0].t) > new Date(c.launched_at))) {
    samples.unshift({ t: c.launched_at, sent: 0 });
  }
  if (samples.length < 2) return [[], []];
  const start = new Date(samples[0].t);
  const rates = samples.slice(1).map((s, i) => {
    const dt = (new Date(s.t) - new Date(samples[i].t)) / 1000;
    return dt > 0 ? Math.max(0, s.sent - samples[i].sent) / dt : 0;
  });
  const labels = samples.map((s) => `${Math.round((new Date(s.t) - start) / 1000)}s`);
  return [labels, [rates[0], ...rates]];
}
