// Reports: performance and billing for a period, with charts and downloads.
import { $, api, chart, state, stat } from "./common.js";

export function isoDay(d) { return d.toISOString().slice(0, 10); }
$("report-to").value = isoDay(new Date());
$("report-from").value = isoDay(new Date(Date.now() - 29 * 86400000));

export function reportQuery(format) {
  const params = new URLSearchParams({ from: $("report-from").value, to: $("report-to").value });
  if (format) params.set("format", format);
  return params.toString();
}

export async function showReports() {
  $("report-error").textContent = "";
  try {
    const [perf, bill] = await Promise.all([
      api(`/api/reports/performance?${reportQuery()}`),
      api(`/api/reports/billing?${reportQuery()}`)]);
    const money = (v) => `${bill.currency} ${Number(v).toFixed(2)}`;
    $("report-figures").replaceChildren(
      stat("Recipients", perf.totals.recipients), stat("Sent", perf.totals.sent),
      stat("Delivery rate", `${(perf.totals.delivery_rate * 100).toFixed(1)}%`),
      stat("Open rate", `${(perf.totals.open_rate * 100).toFixed(1)}%`),
      stat("Click rate", `${(perf.totals.click_rate * 100).toFixed(1)}%`),
      stat("Chat sessions", perf.chat.sessions),
      stat("Completion", `${(perf.chat.completion_rate * 100).toFixed(1)}%`),
      stat("Offers accepted", perf.marketing.accepted),
      stat("Conversions", bill.totals.conversions), stat("Revenue", money(bill.totals.revenue)),
      stat("Cost", money(bill.totals.cost)), stat("Net", money(bill.totals.net)));
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
