"""Helpers for campaign tests: audiences, launching, waiting on the record."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx


def import_audience(api: httpx.Client, emails: list[str], tag: str) -> dict:
    rows = "\n".join(f"{email},Customer {n},Basic,+55119{n:08d}" for n, email in enumerate(emails))
    response = api.post("/api/customers/import", params={"tag": tag, "wait": "true"},
                        files={"file": ("audience.csv", f"email,name,plan,phone\n{rows}\n")})
    assert response.status_code == 200, response.text
    return response.json()


def generate_audience(api: httpx.Client, count: int, domain: str) -> str:
    response = api.post("/api/customers/generate?wait=true",
                        json={"count": count, "domain": domain, "tag": domain})
    assert response.status_code == 201, response.text
    return response.json()["tag"]


def create_campaign(api: httpx.Client, tag: str, **templates: str) -> str:
    body = {"name": f"test {tag}", "subject": "Hello {{ first_name }}",
            "body_text": "Dear {{ name }}, your plan is {{ plan }}.\n{{ unsubscribe_url }}",
            "audience": {"tag": tag}, **templates}
    response = api.post("/api/campaigns", json=body)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def launch(api: httpx.Client, campaign_id: str, **options: Any) -> dict:
    response = api.post(f"/api/campaigns/{campaign_id}/launch", json=options)
    assert response.status_code == 202, response.text
    return response.json()


def wait_for(api: httpx.Client, campaign_id: str, done: Callable[[dict], bool],
             timeout_s: float = 180) -> dict:
    deadline = time.monotonic() + timeout_s
    view: dict = {}
    while time.monotonic() < deadline:
        view = api.get(f"/api/campaigns/{campaign_id}").json()
        if done(view):
            return view
        time.sleep(0.3)
    raise AssertionError(f"campaign {campaign_id} never got there: {view}")


def finished(view: dict) -> bool:
    return view["status"] in ("completed", "cancelled", "failed")
