// Journeys: each with its status and who is inside; one selected shows its steps as a
// list, how many customers are at each and how many left it by each way.
import { $, api, el, every, fillTable, row, state } from "./common.js";

export async function refreshJourneys() {
  let listing;
  try { listing = await api("/api/journeys"); } catch (err) { return; }
  fillTable("journeys-table", listing.journeys.map((j) => {
    const open = el("a", j.name);
    open.href = `#/journeys/${encodeURIComponent(j.key)}`;
    const inside = j.steps.reduce((sum, s) => sum + s.at, 0);
    const entered = j.versions.reduce((sum, v) => sum + v.entered, 0);
    return row([open, j.key, j.status, `v${j.version}`, entered, inside]);
  }), "No journeys yet.");
  if (state.journey) await showJourney(state.journey);
}

export async function showJourney(key) {
  state.journey = key;
  let j;
  try { j = await api(`/api/journeys/${encodeURIComponent(key)}`); } catch (err) {
    $("journey-detail").hidden = true;
    return;
  }
  $("journey-detail").hidden = false;
  $("journey-name").textContent = `${j.name} (v${j.version}, ${j.status})`;
  fillTable("journey-steps", j.steps.map((s) => row([
    s.id, s.type, s.goes_to.join(", "), s.at,
    Object.entries(s.left_by).map(([way, n]) => `${way}: ${n}`).join(" · ")])));
  fillTable("journey-versions", j.versions.map((v) => row([
    `v${v.version}`, v.status, v.entered, Object.values(v.at).reduce((a, b) => a + b, 0),
    Object.entries(v.left).map(([why, n]) => `${why}: ${n}`).join(" · ")])));
  const current = j.versions.find((v) => v.status === "published" || v.status === "paused")
    || j.versions[0];
  fillTable("journey-arms", current.experiments.flatMap((split) => split.arms.map((a) => {
    const promote = el("button", "Promote");
    promote.type = "button";
    promote.onclick = async () => {
      try {
        await api(`/api/journeys/${encodeURIComponent(key)}/promote`,
          { method: "POST", body: { step: split.step, arm: a.arm } });
        $("journey-error").textContent = "";
      } catch (err) { $("journey-error").textContent = err.message; }
      refreshJourneys();
    };
    const rate = a.rate === null ? "–" :
      `${(a.rate * 100).toFixed(1)}% (${(a.low * 100).toFixed(1)}–${(a.high * 100).toFixed(1)}%)`;
    return row([split.step, a.arm, a.entered, a.converted, rate,
                split.arms.length > 1 ? promote : "winner"]);
  })), "No splits in this version.");
  for (const action of ["publish", "pause", "archive"]) {
    $(`journey-${action}`).onclick = async () => {
      try {
        await api(`/api/journeys/${encodeURIComponent(key)}/${action}`, { method: "POST" });
        $("journey-error").textContent = "";
      } catch (err) { $("journey-error").textContent = err.message; }
      refreshJourneys();
    };
  }
}

every(2000, "journeys", refreshJourneys);
