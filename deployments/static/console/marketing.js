// Marketing: counter-offers scheduled, sent, accepted, fed by the live stream.
import { $, el, fillTable, row, state } from "./common.js";

export function renderMarketing(m) {
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

export function renderOffers() {
  fillTable("offers-table", (state.offers || []).map((o) => row([
    o.id.slice(0, 14), o.customer_id ? o.customer_id.slice(0, 10) : "anonymous",
    `${Math.max(0, Math.round((o.due - Date.now()) / 1000))} s`])), "Nothing scheduled.");
}
setInterval(renderOffers, 1000);
