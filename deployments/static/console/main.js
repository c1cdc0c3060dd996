// The operator console: sign in, then a section per part of the work, each its own
// view and module, deep-linkable (#/campaigns, #/campaigns/<id>, #/reports, ...).
import { $, api, state } from "./common.js";
import "./audience.js";
import { preview, select } from "./campaigns.js";
import { refreshAudit } from "./audit.js";
import { refreshWebhooks } from "./integrations.js";
import { refreshJourneys, showJourney } from "./journeys.js";
import { startLive } from "./live.js";
import { showReports } from "./reports.js";
import { refreshSignup } from "./signup.js";
import { refreshMessaging, refreshOutbox, refreshSms, refreshSystem } from "./system.js";

export const SECTIONS = ["campaigns", "audience", "chat", "marketing", "journeys", "reports",
                         "signup", "integrations", "system", "audit"];
// What a section loads when it opens (the live stream feeds the others as it comes).
const ON_OPEN = {
  reports: showReports, journeys: refreshJourneys, signup: refreshSignup, integrations: refreshWebhooks,
  system: () => { refreshSystem(); refreshOutbox(); refreshSms(); refreshMessaging(); },
  audit: refreshAudit,
};

function route() {
  const [, name, id] = location.hash.split("/");
  const section = SECTIONS.includes(name) ? name : "campaigns";
  state.section = section;
  for (const view of document.querySelectorAll(".view")) {
    view.hidden = view.dataset.section !== section;
  }
  for (const link of document.querySelectorAll("#sections a")) {
    link.classList.toggle("current", link.dataset.section === section);
    if (link.dataset.section === section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (section === "campaigns" && id && state.token) select(decodeURIComponent(id));
  if (section === "journeys" && id && state.token) showJourney(decodeURIComponent(id));
  if (state.token && ON_OPEN[section]) ON_OPEN[section]();
  window.scrollTo(0, 0);
}
window.addEventListener("hashchange", route);

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
  refreshSystem();  // the Ray dashboard's link, and whether this is local mode
  preview();
  route();
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

if (state.token) signIn(state.token); else route();
