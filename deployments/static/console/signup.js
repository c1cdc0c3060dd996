// Signup: the watcher of the signup mailbox, its counts, the review queue and replies.
import { $, api, every, fillTable, row, stat } from "./common.js";

export async function refreshSignup() {
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
every(5000, "signup", refreshSignup);
