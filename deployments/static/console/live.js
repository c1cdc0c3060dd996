// The live stream: server-sent events read with fetch (the token stays in a header),
// one snapshot a second for the campaigns, the selected campaign, marketing and chat;
// each section renders its part, and a section opened later renders the last one.
import { $, state } from "./common.js";
import { renderCampaigns, renderDetail } from "./campaigns.js";
import { renderChat } from "./chat.js";
import { renderMarketing } from "./marketing.js";

export async function startLive() {
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

export function render(snapshot) {
  state.lastSnapshot = snapshot;
  renderCampaigns(snapshot.campaigns);
  renderDetail(snapshot.campaign);
  renderMarketing(snapshot.marketing);
  renderChat(snapshot.chat);
}
