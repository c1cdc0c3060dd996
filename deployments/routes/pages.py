"""Pages and static assets, all served by the application (no CDN, works offline), and
the small notice pages of the customer links (unsubscribe, signup confirmation).

The assets live beside the deployments that serve them (`deployments/static`) and are
served by Starlette's `StaticFiles` under `/static` (ETag and Last-Modified, so a
browser revalidates instead of fetching again)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

from app.core.runtime import Runtime
from app.core.signing_keys import LINKS
from app.core.tokens import kid_of
from deployments.context import AppContext
from deployments.limits import retry_after

router = APIRouter(tags=["pages"])
STATIC = Path(__file__).resolve().parent.parent / "static"


def mount_static(api: FastAPI) -> None:
    api.mount("/static", StaticFiles(directory=STATIC), name="static")


@router.get("/", include_in_schema=False)
async def dashboard_page() -> FileResponse:
    return FileResponse(STATIC / "dashboard.html")


@router.get("/favicon.ico", include_in_schema=False)
async def favicon() -> FileResponse:
    return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")


NOTICE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1"><title>{title}</title>
<link rel="stylesheet" href="/static/app.css"></head>
<body class="notice"><main><h1>{title}</h1><p>{text}</p>{form}</main></body></html>"""


def notice(title: str, text: str, status: int = 200, button: str | None = None,
           headers: dict[str, str] | None = None) -> HTMLResponse:
    """A customer link's page; with `button`, a form that POSTs to the same URL (a GET
    only asks: mail scanners fetch every link of a message)."""
    form = (f'<form method="post"><button type="submit">{button}</button></form>'
            if button else "")
    return HTMLResponse(NOTICE.format(title=title, text=text, form=form), status,
                        headers=headers)


async def link_customer(context: AppContext, request: Request, token: str,
                        verify: Callable[[Runtime, str], str | None], what: str
                        ) -> tuple[str | None, HTMLResponse | None]:
    """(the customer a link's token names, None) or (None, the page to answer instead:
    429 over the per-address limit of customer links, 404 for a token that `verify`
    does not accept, alike for every forged one)."""
    limits = context.limits
    wait = limits.unsubscribe.check(limits.client_address(request))
    if wait > 0:
        return None, notice("Too many requests", "Please try again in a minute.", 429,
                            headers={"Retry-After": str(retry_after(wait))})
    customer_id = verify(await context.runtime_for(LINKS, kid_of(token)), token)
    if customer_id is None:
        return None, notice("Link not valid", f"This {what} link is not valid.", 404)
    return customer_id, None


async def link_question(context: AppContext, request: Request, token: str,
                        verify: Callable[[Runtime, str], str | None], what: str, *,
                        title: str, text: str, button: str) -> HTMLResponse:
    """A customer link's GET: the question and its button, changing nothing (mail
    scanners fetch every link); the POST to the same URL acts."""
    _, refused = await link_customer(context, request, token, verify, what)
    return refused or notice(title, text, button=button)
