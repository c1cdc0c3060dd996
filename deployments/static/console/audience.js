// Audience: demo customers and CSV imports, run as jobs and followed to their end.
import { $, api, el, row } from "./common.js";
import { preview } from "./campaigns.js";

// Generating and importing are jobs: follow one to its end, showing its progress.
async function followJob(started, bar, label) {
  bar.hidden = false;
  bar.value = 0;
  try {
    for (;;) {
      const job = await api(`/api/jobs/${started.job_id}`);
      bar.value = job.progress;
      if (job.status === "done") return job.result;
      if (job.status === "failed") throw new Error(`${label} failed: ${job.error}`);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  } finally { bar.hidden = true; }
}

$("gen-button").addEventListener("click", async () => {
  $("gen-result").textContent = "Generating…";
  try {
    const started = await api("/api/customers/generate", { method: "POST",
      body: { count: Number($("gen-count").value) } });
    const result = await followJob(started, $("gen-progress"), "Generating");
    $("gen-result").textContent = `Created ${result.created} customers, tagged ${result.tag}.`;
    $("outbox-filter").value = result.tag.replace(/^demo-/, ".");
    $("audience-tag").value = result.tag;
    preview();
  } catch (err) { $("gen-result").textContent = err.message; }
});

$("csv-button").addEventListener("click", async () => {
  const file = $("csv-file").files[0];
  const report = $("csv-report");
  if (!file) { report.textContent = "Choose a CSV file first."; return; }
  const form = new FormData();
  form.append("file", file);
  const tag = `import-${Date.now().toString(36)}`;
  try {
    report.textContent = "Importing…";
    const started = await api(`/api/customers/import?tag=${tag}`, { method: "POST", body: form });
    const result = await followJob(started, $("csv-progress"), "Importing");
    report.replaceChildren(el("p", `Imported ${result.imported} customers (tag ${tag}); ` +
      `${result.invalid.length} invalid, ${result.duplicates.length} duplicates.`));
    const problems = [...result.invalid.map((i) => [i.row, i.field, i.reason]),
                      ...result.duplicates.map((d) => [d.row, "email", d.reason])];
    if (problems.length) {
      const table = el("table");
      table.appendChild(row(["Row", "Field", "Reason"]));
      problems.sort((a, b) => a[0] - b[0]).forEach((p) => table.appendChild(row(p)));
      report.appendChild(table);
    }
    $("audience-tag").value = tag;
  } catch (err) { report.textContent = err.message; }
});
