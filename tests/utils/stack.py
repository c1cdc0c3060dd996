"""The running system under test: Ray, the embedded services and the Serve app."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from app.core.config import Settings


@dataclass
class Stack:
    settings: Settings
    base_url: str
    token: str
    services: Any  # ActorHandle of LocalServices
    imap: Any = None  # tests.utils.dovecot.Dovecot serving the signup mailbox

    def client(self, *, admin: bool = True, timeout: float = 30.0) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"} if admin else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)


def unique_domain(label: str) -> str:
    """A mail domain no other test uses, so tests sharing the app stay independent."""
    return f"{label}-{uuid.uuid4().hex[:8]}.example"
