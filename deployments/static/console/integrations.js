// Integrations: webhook endpoints, what waits and what died, an endpoint's recent
// attempts, the replay of its dead letters. A 403 (not an admin) says so.
import { $, api, el, every, fillTable, row, state } from "./common.js";

state.webhook = null;
export async function refreshWebhooks() {
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

export async function refreshWebhookMessages() {
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
every(5000, "integrations", refreshWebhooks);
