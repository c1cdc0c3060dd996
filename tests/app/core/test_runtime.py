"""The runtime object: frozen, picklable for Ray, secrets hidden, links it signs verify."""

from __future__ import annotations

import dataclasses
import pickle

import pytest
from pydantic import SecretStr

from app.core.config import Settings
from app.core.endpoints import Endpoints
from app.core.runtime import Runtime
from app.core.signing_keys import LINKS, KeyRing


def _runtime() -> Runtime:
    settings = Settings(public_url="https://op.example/", mongodb_db="rt")
    endpoints = Endpoints("mongodb://user:pw-in-uri@db.example/", "smtp.example", 2525)
    return Runtime.build(settings, endpoints, KeyRing.of("link-secret-0123456789"))


def test_its_repr_shows_neither_the_secret_nor_the_database_password() -> None:
    runtime = _runtime()
    shown = repr(runtime)
    assert "link-secret" not in shown and "pw-in-uri" not in shown
    assert "smtp.example" in shown


def test_its_fingerprint_follows_settings_secrets_and_keys() -> None:
    runtime = _runtime()
    assert runtime.fingerprint() == _runtime().fingerprint()
    changed_password = dataclasses.replace(runtime, settings=runtime.settings.model_copy(
        update={"smtp_password": SecretStr("a-new-relay-password")}))
    other_keys = dataclasses.replace(runtime, keys=KeyRing.of("another-secret"))
    prints = {runtime.fingerprint(), changed_password.fingerprint(), other_keys.fingerprint()}
    assert len(prints) == 3
    assert "a-new-relay-password" not in changed_password.fingerprint()
    # A new sign-in key changes nothing an actor does (actors sign links only).
    links = tuple(k for k in runtime.keys.keys if k.purpose == LINKS)
    other_sign_in = dataclasses.replace(runtime, keys=KeyRing(
        links + tuple(k for k in KeyRing.of("x").keys if k.purpose != LINKS)))
    assert other_sign_in.fingerprint() == runtime.fingerprint()


def test_the_unsubscribe_links_it_builds_verify_and_others_do_not() -> None:
    runtime = _runtime()
    url = runtime.unsubscribe_url("cust-7")
    assert url.startswith("https://op.example/unsubscribe/")
    token = url.rsplit("/", 1)[1]
    assert runtime.customer_from_token(token) == "cust-7"
    assert runtime.confirm_url("cust-7") != url
    assert runtime.customer_confirming(runtime.confirm_url("cust-7").rsplit("/", 1)[1]) == "cust-7"
    assert runtime.customer_confirming(token) is None  # an unsubscribe link confirms nothing
    assert runtime.link_key == runtime.keys.signing(LINKS)
    other = dataclasses.replace(runtime, keys=KeyRing.of("another"))
    assert other.customer_from_token(token) is None
    assert runtime.customer_from_token(token[:-1] + ("A" if token[-1] != "A" else "B")) is None


def test_it_is_frozen_and_survives_pickling_as_ray_ships_it() -> None:
    runtime = _runtime()
    with pytest.raises(dataclasses.FrozenInstanceError):
        runtime.keys = KeyRing()  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(runtime)) == runtime
