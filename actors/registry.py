"""Where the app's actors live: the Ray namespace, every actor's name, one get-or-create.

All of operator-comms' actors are detached and named in namespace `operator-comms`,
so any process of the cluster finds them, `ray list actors` and the Ray dashboard show
them by these names, and `ray.kill(ray.get_actor(name, namespace=NAMESPACE))` stops one.
"""

from __future__ import annotations

from typing import Any

import ray
from ray.actor import ActorClass, ActorHandle

NAMESPACE = "operator-comms"

ADMIN_JOBS = "admin-jobs"  # generations and imports, a few at a time
LOCAL_SERVICES = "local-services"  # the embedded database, SMTP sink, SMSC (local mode)
MARKETING = "marketing"
CHAT_HUB = "chat-hub"
RATE_LIMITER = "rate-limiter"
SEND_DISPATCHER = "send-dispatcher"
SIGNUP_WATCHER = "signup-watcher"
SMS_GATEWAY = "sms-gateway"
WEBHOOKS = "webhooks"


def runner_name(campaign_id: str) -> str:
    """A campaign's runner, one per running campaign."""
    return f"campaign-{campaign_id}"


def get_or_create(actor_class: ActorClass, name: str, *args: Any,
                  resources: dict[str, float] | None = None) -> ActorHandle:
    """The named detached actor, created with `args` if it is not running (a running
    one keeps the arguments it was created with)."""
    return actor_class.options(name=name, namespace=NAMESPACE, lifetime="detached",
                               get_if_exists=True, resources=resources or {}).remote(*args)


def find(name: str) -> ActorHandle | None:
    """The named actor if it is running, else None."""
    try:
        return ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        return None
