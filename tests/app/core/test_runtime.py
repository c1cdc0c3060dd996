"""The runtime object: frozen, picklable for Ray, secrets hidden, links it signs verify."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from app.core.config import Settings
from app.core.endpoints import Endpoints
from app.core.runtime import Runtime
from app.core.tokens import unsubscribe_secret


def _runtime() -> Runtime:
    settings = Settings(public_url="https://op.example/", mongodb_db="rt")
    endpoints = Endpoints("mongodb://user:pw-in-uri@db.example/", "smtp.example", 2525)
    return Runtime.build(settings, endpoints, "admin-token-0123456789")


def test_its_repr_shows_neither_the_secret_nor_the_database_password() -> None:
    runtime = _runtime()
    shown = repr(runtime)
    assert runtime.signing_secret not in shown and "pw-in-uri" not in shown
    assert "admin-token" not in shown and "smtp.example" in shown


def test_the_signing_secret_is_derived_from_the_admin_token_not_the_token() -> None:
    runtime = _runtime()
    assert runtime.signing_secret == unsubscribe_secret("admin-token-0123456789")
    assert runtime.signing_secret != "admin-token-0123456789"


def test_the_unsubscribe_links_it_builds_verify_and_others_do_not() -> None:
    runtime = _runtime()
    url = runtime.unsubscribe_url("cust-7")
    assert url.startswith("https://op.example/unsubscribe/")
    token = url.rsplit("/", 1)[1]
    assert runtime.customer_from_token(token) == "cust-7"
    other = dataclasses.replace(runtime, signing_secret="another")
    assert other.customer_from_token(token) is None
    assert runtime.customer_from_token(token[:-1] + ("A" if token[-1] != "A" else "B")) is None


def test_it_is_frozen_and_survives_pickling_as_ray_ships_it() -> None:
    runtime = _runtime()
    with pytest.raises(dataclasses.FrozenInstanceError):
        runtime.signing_secret = "x"  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(runtime)) == runtime
