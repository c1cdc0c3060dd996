"""Journeys (`app.journeys`): operators create, check, edit, publish, pause and
archive them (audited); viewers read them with who is at each step. Events that move
customers through them (`POST /api/journeys/events`, from a CRM, say) are stored
before they are acknowledged, then handed to the shards."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, HTTPException

from actors.journeys import shard_name, take_events
from actors.registry import find
from app.access import audit
from app.channels.templates import TemplateProblem, compile_templates
from app.journeys import enrollments, store, views
from app.journeys.definition import Journey, Send
from app.journeys.experiments import promoted
from app.journeys.models import (
    Archived,
    Checked,
    EventsTaken,
    JourneyCheck,
    JourneyEdit,
    JourneyEvents,
    JourneyList,
    JourneyView,
    NewJourney,
    Promotion,
)
from deployments.context import AppContext
from deployments.deps import Context, Signed, Who, found

router = APIRouter(prefix="/journeys", tags=["journeys"], dependencies=[Signed])


def _templates_compile(journey: Journey) -> None:
    """Every send step's templates compile; else a 422 naming the step's field."""
    for n, step in enumerate(journey.steps):
        if isinstance(step, Send):
            try:
                compile_templates(step.subject, step.text, step.html)
            except TemplateProblem as exc:
                field = {"subject": "subject", "body_text": "text",
                         "body_html": "html"}.get(exc.field, exc.field)
                raise HTTPException(422, [{
                    "field": f"body.definition.steps.{n}.{field}", "line": exc.line,
                    "message": exc.message}]) from None


async def _view(context: AppContext, key: str) -> dict:
    return await found(views.journey_view(context.db, key), f"journey {key!r}")


def _tell_shards(context: AppContext, recount: bool = False) -> None:
    """Published, paused or archived: each shard reads the published journeys now
    (and, after an archive, counts who is where again)."""
    for shard in range(context.settings.journey_shards):
        handle = find(shard_name(shard))
        if handle is not None:
            handle.refresh.remote(recount)


@router.get("", response_model=JourneyList)
async def list_journeys(context: Context) -> dict:
    """Every journey (its latest version) with who is at each step."""
    return {"journeys": await views.journey_list(context.db)}


@router.post("/validate", response_model=Checked)
async def validate(body: JourneyCheck) -> dict:
    """Check a definition without storing it (a 422 names what is wrong)."""
    _templates_compile(body.definition)
    return {"valid": True, "listens_for": sorted(body.definition.events())}


@router.post("", response_model=JourneyView, status_code=201)
async def create(context: Context, who: Who, body: NewJourney) -> dict:
    """A new journey, as a draft (version 1); 409 when the key is taken."""
    _templates_compile(body.definition)
    try:
        await store.create(context.db, body.key, body.definition, who.name)
    except store.JourneyConflict as exc:
        raise HTTPException(409, str(exc)) from None
    await audit.record(context.db, who, "journey.create", body.key)
    return await _view(context, body.key)


@router.get("/{key}", response_model=JourneyView)
async def get(context: Context, key: str) -> dict:
    """A journey: its latest version, its steps with who is at each, every version."""
    return await _view(context, key)


@router.put("/{key}", response_model=JourneyView)
async def edit(context: Context, who: Who, key: str, body: JourneyEdit) -> dict:
    """Edit the draft (a new version once one is published: customers inside finish
    on theirs)."""
    _templates_compile(body.definition)
    try:
        await store.edit(context.db, key, body.definition, who.name)
    except KeyError:
        raise HTTPException(404, f"no journey {key!r}") from None
    except store.JourneyConflict as exc:
        raise HTTPException(409, str(exc)) from None
    await audit.record(context.db, who, "journey.edit", key)
    return await _view(context, key)


async def _change(context: AppContext, who, key: str, action: str, change) -> dict:
    try:
        await change(context.db, key)
    except KeyError:
        raise HTTPException(404, f"no journey {key!r}") from None
    except store.JourneyConflict as exc:
        raise HTTPException(409, str(exc)) from None
    await audit.record(context.db, who, f"journey.{action}", key)
    _tell_shards(context)
    return await _view(context, key)


@router.post("/{key}/publish", response_model=JourneyView)
async def publish(context: Context, who: Who, key: str) -> dict:
    """The draft becomes the version customers enter (or a paused journey resumes)."""
    return await _change(context, who, key, "publish", store.publish)


@router.post("/{key}/pause", response_model=JourneyView)
async def pause(context: Context, who: Who, key: str) -> dict:
    """No one enters until it is published again; customers inside go on."""
    return await _change(context, who, key, "pause", store.pause)


@router.post("/{key}/archive", response_model=Archived)
async def archive(context: Context, who: Who, key: str) -> dict:
    """No one enters again, and everyone inside leaves now."""
    try:
        left = await store.archive(context.db, key)
    except KeyError:
        raise HTTPException(404, f"no journey {key!r}") from None
    await audit.record(context.db, who, "journey.archive", key, {"left": left})
    _tell_shards(context, recount=True)
    return {"key": key, "left": left}


@router.post("/{key}/promote", response_model=JourneyView)
async def promote(context: Context, who: Who, key: str, body: Promotion) -> dict:
    """An experiment's winner: a new version, published, whose split sends everyone
    by `arm` (customers inside finish on theirs)."""
    versions = await store.versions(context.db, key)
    live = next((d for d in versions if d["status"] in (store.PUBLISHED, store.PAUSED)), None)
    if live is None:
        raise HTTPException(404, f"journey {key!r} has no published version")
    if versions[0]["status"] == store.DRAFT:
        raise HTTPException(409, f"journey {key!r} has a draft (version "
                                 f"{versions[0]['version']}): publish or edit it first")
    try:
        winner = promoted(Journey.model_validate(live["definition"]), body.step, body.arm)
    except ValueError as exc:
        field = "body.arm" if "no arm" in str(exc) else "body.step"
        raise HTTPException(422, [{"field": field, "message": str(exc)}]) from None
    try:
        await store.edit(context.db, key, winner, who.name)
    except store.JourneyConflict as exc:
        raise HTTPException(409, str(exc)) from None
    await audit.record(context.db, who, "journey.promote", key,
                       {"step": body.step, "arm": body.arm})
    return await _change(context, who, key, "publish", store.publish)


@router.post("/events", response_model=EventsTaken, status_code=202)
async def events(context: Context, body: JourneyEvents) -> dict:
    """Events that customers enter, move through or leave journeys by (an id each:
    the same id again is ignored). Kept before this answers; walked within moments."""
    at = datetime.now(UTC)
    await _sessions_theirs(context, body)
    stored = await take_events(context.db, [
        {"_id": e.id, "type": e.type, "at": e.at or at,
         "customer_id": enrollments.member_of(e.customer_id, e.session_id),
         **({"session_id": e.session_id} if e.session_id else {})}
        for e in body.events], context.settings.journey_shards)
    return {"stored": len(stored), "repeated": len(body.events) - len(stored)}


async def _sessions_theirs(context: AppContext, body: JourneyEvents) -> None:
    """Each session an event names exists, and is the customer's it names (or no
    one's proven, for an event about the session): 422 naming the event otherwise."""
    named = [e.session_id for e in body.events if e.session_id]
    if not named:
        return
    owners = {doc["_id"]: doc.get("customer_id") for doc in await enrollments.by_ids(
        context.db.chat_sessions, "_id", named, {"customer_id": 1})}
    for n, e in enumerate(body.events):
        if e.session_id is None:
            continue
        if e.session_id not in owners:
            raise HTTPException(422, [{"field": f"body.events.{n}.session_id",
                                       "message": "no such chat session"}])
        if e.customer_id is not None and owners[e.session_id] != e.customer_id:
            raise HTTPException(422, [{"field": f"body.events.{n}.session_id",
                                       "message": "not a session of this customer"}])
