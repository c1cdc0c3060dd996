// Audit: every change, who made it and when.
import { api, every, fillTable, row } from "./common.js";

export async function refreshAudit() {
  let log;
  try { log = await api("/api/audit?limit=15"); } catch (err) { return; }
  fillTable("audit-table", log.entries.map((e) => row([
    new Date(e.at).toLocaleString(), `${e.who} (${e.role})`, e.action, e.target || ""])),
    "No changes yet.");
}
every(5000, "audit", refreshAudit);
