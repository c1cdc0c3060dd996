// System: MongoDB, SMTP and Ray health, nodes, actors and tasks; in local mode the
// embedded SMTP sink's outbox and the SMSC's messages.
import { $, api, el, every, fillTable, row, state } from "./common.js";

export async function refreshSystem() {
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
    const routes = (await api("/api/routes")).routes;
    fillTable("routes-table", Object.entries(routes).map(([name, r]) => row([
      name, r.weight,
      r.state === "out" ? `out ${r.out_for_s} s: ${r.last_error ?? ""}` : r.state,
      r.rate_per_s ?? "–", r.ceiling_per_s ?? "none", r.throttled ?? 0,
      r.last_throttled_s_ago == null ? "–" : `${r.last_throttled_s_ago} s ago`])));
  } catch (err) { /* shown as down on the next try */ }
}
every(5000, "system", refreshSystem);

export async function refreshOutbox() {
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

export async function refreshSms() {
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
export async function refreshMessaging() {
  const app = $("im-app").value;
  try {
    const data = await api(`/api/messaging/${app}/outbox?limit=15`);
    fillTable("im-table", data.messages.map((m) => row([
      m.at ? new Date(m.at * 1000).toLocaleTimeString() : "", m.to,
      m.template ? `[${m.template}] ${m.text}` : m.text, (m.options || []).join(" · ")])),
    "Nothing sent yet.");
  } catch (err) { $("im-error").textContent = err.status === 404 ? "" : err.message; }
}
$("im-app").addEventListener("change", refreshMessaging);
$("im-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("im-error").textContent = "";
  try {
    await api(`/api/messaging/${$("im-app").value}/simulate-inbound`, { method: "POST",
      body: { sender: $("im-from").value.trim(), text: $("im-text").value } });
    $("im-text").value = "";
    refreshMessaging();
  } catch (err) { $("im-error").textContent = err.message; }
});
every(3000, "system", refreshSms);
every(3000, "system", refreshMessaging);
every(3000, "system", refreshOutbox);

