"""Where the app's actors live: the Ray namespace, every actor's name, one get-or-create.

All of operator-comms' actors are detached and named in namespace `operator-comms`,
so any process of the cluster finds them, `ray list actors` and the Ray dashboard show
them by these names, and `ray.kill(ray.get_actor(name, namespace=NAMESPACE))` stops one.
The launcher replaces those made with a runtime other than its own (`get_or_create`).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import ray
from ray.actor import ActorClass, ActorHandle

from app.core.runtime import Runtime

NAMESPACE = "operator-comms"
REPLACE_WAIT_S = 30.0
log = logging.getLogger("operator_comms.actors")

ADMIN_JOBS = "admin-jobs"  # generations and imports, a few at a time
LOCAL_SERVICES = "local-services"  # the embedded database, SMTP sink, SMSC (local mode)
MARKETING = "marketing"
CHAT_HUB = "chat-hub"
RATE_LIMITER = "rate-limiter"
SEND_DISPATCHER = "send-dispatcher"
SIGNUP_WATCHER = "signup-watcher"
JOURNEY_SHARD = "journey-shard-{}"  # journey-shard-0 .. N-1
SMS_GATEWAY = "sms-gateway"
WEBHOOKS = "webhooks"


class MadeWithRuntime:
    """Base of an actor made with a runtime: it tells which (`get_or_create`)."""

    runtime: Runtime

    async def fingerprint(self) -> str:
        return self.runtime.fingerprint()


def runner_name(campaign_id: str) -> str:
    """A campaign's runner, one per running campaign."""
    return f"campaign-{campaign_id}"


def get_or_create(actor_class: ActorClass, name: str, *args: Any,
                  resources: dict[str, float] | None = None,
                  fingerprint: str | None = None, spread: bool = False) -> ActorHandle:
    """The named detached actor, created with `args` if it is not running (a running
    one keeps the arguments it was created with).

    With `fingerprint` (the launcher's, `Runtime.fingerprint`), a running actor whose
    own `fingerprint()` differs (settings, endpoints or keys changed since it was made)
    is killed and made again with `args`; its work is durable, as every actor's is
    across a kill. With `spread`, Ray places it on the node with the fewest actors
    (shards of one kind, each on its own node while there are nodes)."""
    handle = _named(actor_class, name, args, resources, spread)
    if fingerprint is None or ray.get(handle.fingerprint.remote()) == fingerprint:
        return handle
    log.info("actor %s runs with older settings or keys: replacing it", name)
    ray.kill(handle, no_restart=True)
    deadline = time.monotonic() + REPLACE_WAIT_S
    while find(name) is not None:  # the name is free once the kill is done
        if time.monotonic() > deadline:
            raise TimeoutError(f"actor {name} did not stop within {REPLACE_WAIT_S} s")
        time.sleep(0.1)
    return _named(actor_class, name, args, resources, spread)


def _named(actor_class: ActorClass, name: str, args: tuple[Any, ...],
           resources: dict[str, float] | None, spread: bool = False) -> ActorHandle:
    return actor_class.options(name=name, namespace=NAMESPACE, lifetime="detached",
                               get_if_exists=True, resources=resources or {},
                               scheduling_strategy="SPREAD" if spread else "DEFAULT"
                               ).remote(*args)


class Named:
    """A named actor's handle for a process that lives long (a replica, an actor),
    looked up again every REFRESH_S: a handle follows the actor it was made for, and
    the launcher may have replaced that actor under the same name (`get_or_create`).
    A call in the moment between fails; the caller's durable record (an outbox, a due
    message) carries it to the next try."""

    REFRESH_S = 10.0

    def __init__(self, name: str):
        self.name = name
        self.handle: ActorHandle | None = None
        self.found_at = float("-inf")

    def __call__(self) -> ActorHandle | None:
        if self.handle is None or time.monotonic() - self.found_at > self.REFRESH_S:
            self.handle, self.found_at = find(self.name), time.monotonic()
        return self.handle


def find(name: str) -> ActorHandle | None:
    """The named actor if it is running, else None."""
    try:
        return ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        return None
