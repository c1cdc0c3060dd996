// Chat: sessions, who is online, open handoffs, fed by the live stream.
import { $, el, fillTable, row } from "./common.js";

export function renderChat(c) {
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
