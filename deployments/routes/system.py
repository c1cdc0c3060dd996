"""System routes: liveness (open), detailed health and the outbox of the embedded SMTP
sink (signed in)."""

from __future__ import annotations

import asyncio
import time

import ray
from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import JSONResponse, PlainTextResponse

from actors import registry
from app.channels.email.mailer import smtp_ping
from app.channels.registry import routes_view
from app.core.models import Health, Liveness, Routes
from app.integrations.models import Outbox
from deployments.deps import Context, Signed

router = APIRouter(tags=["system"])


async def _check(coro, timeout_s: float = 5.0) -> dict:
    try:
        detail = await asyncio.wait_for(coro, timeout_s)
        return {"status": "up", **(detail or {})}
    except Exception as exc:
        return {"status": "down", "error": f"{type(exc).__name__}: {exc}"[:200]}


async def _mongodb_status(context) -> dict:
    await context.db.command("ping")
    return {"database": context.settings.mongodb_db}


async def _ray_status() -> dict:
    nodes = await asyncio.to_thread(ray.nodes)
    return {"nodes": sum(1 for node in nodes if node.get("Alive"))}


async def checks(context) -> tuple[dict, int]:
    """The detailed checks (an SMTP login when a password is set): (body, status)."""
    mongodb, smtp, ray_state, heard = await asyncio.gather(
        _check(_mongodb_status(context)),
        _check(smtp_ping(context.settings, context.endpoints)),
        _check(_ray_status()),
        _heard_of_routes(),
    )
    parts = {"mongodb": mongodb, "smtp": smtp, "ray": ray_state}
    down = [name for name, check in parts.items() if check["status"] != "up"]
    route_checks = {key: {"status": "up"} if route["state"] == "in service" else
                    {"status": "down", "error": route.get("last_error")}
                    for key, route in routes_view(context.settings, context.endpoints,
                                                  heard).items()}
    down += [f"route {key}" for key, check in route_checks.items()
             if check["status"] != "up"]
    body = {"status": "ok" if not down else "degraded", "down": down, **parts,
            "routes": route_checks,
            "mode": {"mongodb": "embedded" if context.settings.embedded_mongodb else "external",
                     "smtp": "embedded" if context.settings.embedded_smtp else "external",
                     "smpp": "embedded" if context.settings.embedded_smsc else "external"}}
    return body, 503 if down else 200


LIVENESS_S = 5.0


class LivenessCache:
    """The public answer: this replica serves and its database answers, checked at most
    once every LIVENESS_S however often it is asked (one ping, shared by the callers
    of that moment). Nothing in it names a host or an error."""

    def __init__(self) -> None:
        self.checked_at = -LIVENESS_S
        self.up = False
        self.lock = asyncio.Lock()

    async def __call__(self, context) -> bool:
        async with self.lock:
            if time.monotonic() - self.checked_at >= LIVENESS_S:
                self.up = (await _check(_mongodb_status(context), 2.0))["status"] == "up"
                self.checked_at = time.monotonic()
            return self.up


_liveness = LivenessCache()


@router.get("/health", response_model=Liveness, responses={503: {"model": Liveness}})
async def health(context: Context) -> JSONResponse:
    """Liveness for load balancers and anyone: ok, or 503 degraded (cached a few
    seconds). The parts and their errors: `/api/health/details`, signed in."""
    up = await _liveness(context)
    return JSONResponse({"status": "ok" if up else "degraded"}, status_code=200 if up else 503)


@router.get("/health/details", dependencies=[Signed], response_model=Health,
            responses={503: {"model": Health}})
async def health_details(context: Context) -> JSONResponse:
    """State of MongoDB, SMTP and Ray; 503 naming what is down."""
    body, status = await checks(context)
    return JSONResponse(body, status_code=status)


def _sink(context: Context):
    if context.local_services is None or not context.endpoints.local_sink:
        raise HTTPException(404, "no outbox: SMTP goes to an external relay (COMMS_SMTP_HOST)")
    return context.local_services


async def _heard_of_routes() -> dict:
    """What the rate limiter heard of each route ({} when it cannot say: the routes are
    then shown as configured, in service)."""
    limiter = registry.find(registry.RATE_LIMITER)
    if limiter is None:
        return {}
    try:
        return await asyncio.wait_for(limiter.routes.remote(), 5.0)
    except Exception:
        return {}


@router.get("/routes", dependencies=[Signed], response_model=Routes,
            response_model_exclude_none=True)
async def routes(context: Context) -> dict:
    """Every relay and SMSC: weight, ceiling, in service or out (and why), the rate it
    adapted to and the "slow down" answers it heard."""
    return {"routes": routes_view(context.settings, context.endpoints,
                                  await _heard_of_routes())}


@router.get("/outbox", dependencies=[Signed], response_model=Outbox,
            response_model_exclude_unset=True)
async def outbox(
    context: Context,
    to: str | None = Query(default=None, max_length=320),
    limit: int = Query(default=100, ge=1, le=1000),
) -> dict:
    """What the embedded SMTP sink received, newest first; `to` matches part of an address."""
    return await _sink(context).outbox.remote(to, limit)


@router.get("/outbox/{key}", dependencies=[Signed], response_class=PlainTextResponse)
async def outbox_message(context: Context, key: str) -> PlainTextResponse:
    """One received message, as its raw RFC 5322 text."""
    raw = await _sink(context).outbox_message.remote(key)
    if raw is None:
        raise HTTPException(404, f"no message {key!r} in the outbox")
    return PlainTextResponse(raw.decode("utf-8", "replace"))
