"""Error answers shared by both ingresses: bad input names its fields, a database that
is down is a 503, never a 500 with a trace."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pymongo.errors import PyMongoError

from app.core.models import InvalidInput

# Replaces FastAPI's own 422 schema (loc/msg/type) in the OpenAPI document with the one
# these handlers really answer with; passed to every `include_router`.
DOCUMENTED_ERRORS = {422: {"model": InvalidInput,
                           "description": "Bad input: each problem names its field"}}


async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    # Name each bad field; never echo the submitted values back (they may be secrets).
    errors = [{"field": ".".join(str(p) for p in err["loc"]), "message": err["msg"]}
              for err in exc.errors()]
    return JSONResponse({"detail": errors}, status_code=422)


async def _database_down(request: Request, exc: PyMongoError) -> JSONResponse:
    return JSONResponse({"detail": f"database unavailable: {type(exc).__name__}"},
                        status_code=503)


def install_error_handlers(api: FastAPI) -> FastAPI:
    api.add_exception_handler(RequestValidationError, _invalid_request)
    api.add_exception_handler(PyMongoError, _database_down)
    return api
