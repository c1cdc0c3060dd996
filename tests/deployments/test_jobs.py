"""Admin jobs over the real API: generating and importing customers off the request
path, followed to their end, while the rest of the app keeps answering."""

from __future__ import annotations

import time

from tests.deployments.test_chat import mongo, new_session, say
from tests.deployments.test_lists import list_all
from tests.utils.stack import Stack, unique_domain
from tests.utils.waiting import wait_until

LARGE = 20_000  # about half a minute of inserts on the embedded database


def _job(api, job_id: str) -> dict:
    response = api.get(f"/api/jobs/{job_id}")
    assert response.status_code == 200, response.text
    return response.json()


def test_a_large_generation_is_a_job_and_the_app_keeps_answering(stack: Stack, api) -> None:
    domain = unique_domain("job")
    started = time.monotonic()
    response = api.post("/api/customers/generate",
                        json={"count": LARGE, "domain": domain, "tag": domain})
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    assert response.json()["status_url"] == f"/api/jobs/{job_id}"
    answered_at = time.monotonic() - started

    # While it runs: health, a new chat session and its turns all answer.
    meanwhile = []
    progress = []
    with stack.client(admin=False) as public:
        while (job := _job(api, job_id))["status"] in ("queued", "running"):
            progress.append(job["done"])
            health = public.get("/api/health")
            session = new_session(stack)
            turn = say(stack, session, "1")
            if _job(api, job_id)["status"] == "running":  # all three within the job
                meanwhile.append((health.status_code, len(turn)))
            time.sleep(0.5)
    assert job["status"] == "done", job
    assert meanwhile and all(code == 200 and n >= 2 for code, n in meanwhile), meanwhile
    # It moved, by chunks. (A poll between its last chunk's count and its status can
    # see it running with everything done.)
    assert progress == sorted(progress) and any(0 < n < LARGE for n in progress), progress
    assert job["result"] == {"created": LARGE, "tag": domain, "domain": domain}
    assert job["done"] == job["total"] == LARGE and job["progress"] == 1.0
    assert len(list_all(api, "/api/customers", "customers", tag=domain, limit=500)) == LARGE
    print(f"generate {LARGE}: 202 in {answered_at * 1000:.0f} ms; {len(meanwhile)} rounds "
          "of health + chat answered meanwhile")
    # Leave the shared database as small as other tests expect it (one audience page).
    mongo(stack).customers.delete_many({"tags": domain})


def test_an_import_job_reports_every_row(api) -> None:
    domain = unique_domain("jobimport")
    csv_text = ("email,name,plan,phone\n"
                f"a@{domain},Ana,Basic,+5511987650001\n"
                "not-an-email,Bad,Basic,+5511987650002\n"
                f"a@{domain},Again,Basic,+5511987650003\n")
    response = api.post("/api/customers/import", params={"tag": domain},
                        files={"file": ("c.csv", csv_text)})
    assert response.status_code == 202, response.text
    assert response.json()["rows"] == 3
    job = wait_until(lambda: (j := _job(api, response.json()["job_id"]))["status"]
                     not in ("queued", "running") and j, what="the import job")
    assert job["status"] == "done" and job["kind"] == "import"
    assert job["result"]["imported"] == 1
    assert [(i["row"], i["field"]) for i in job["result"]["invalid"]] == [(3, "email")]
    assert [d["row"] for d in job["result"]["duplicates"]] == [4]


def test_a_file_that_cannot_be_imported_is_refused_at_once(api) -> None:
    empty = api.post("/api/customers/import", files={"file": ("c.csv", "")})
    assert empty.status_code == 422 and empty.json()["detail"][0]["field"] == "file"
    no_email = api.post("/api/customers/import", files={"file": ("c.csv", "name\nAna\n")})
    assert no_email.status_code == 422 and no_email.json()["detail"][0]["field"] == "email"
    assert api.get("/api/jobs/no-such-job").status_code == 404


def test_jobs_beyond_the_bound_wait_queued_and_all_finish(stack: Stack, api) -> None:
    at_once = stack.settings.admin_jobs_at_once
    domain = unique_domain("jobqueue")
    ids = []
    for n in range(at_once + 1):
        response = api.post("/api/customers/generate",
                            json={"count": 6_000, "domain": f"{n}.{domain}", "tag": domain})
        assert response.status_code == 202 and response.json()["status"] == "queued"
        ids.append(response.json()["job_id"])
    seen = []
    deadline = time.monotonic() + 300
    while not seen or not all(s in ("done", "failed") for s in seen[-1]):
        assert time.monotonic() < deadline, seen[-1]
        seen.append([_job(api, job_id)["status"] for job_id in ids])
        time.sleep(0.1)
    assert all(s == "done" for s in seen[-1]), seen[-1]
    # never more at once: polls read one job at a time, so count from the stored spans
    spans = [(doc["started_at"], doc["finished_at"])
             for doc in mongo(stack).jobs.find({"_id": {"$in": ids}})]
    assert len(spans) == len(ids)
    assert max(sum(1 for begun, ended in spans if begun <= start < ended)
               for start, _ in spans) <= at_once, spans
    assert any(s.count("running") == at_once and "queued" in s for s in seen), seen
    mongo(stack).customers.delete_many({"tags": domain})
