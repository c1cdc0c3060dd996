"""The chat hub's presence, on a hub of the test's own (a real Ray actor): sockets of a
replica that stops saying it is up are forgotten; a restarted hub learns the sockets
back from the replicas' next word."""

from __future__ import annotations

import time

import ray

from actors.chat_hub import PRESENCE_TTL_S, ChatHub
from tests.utils.stack import Stack
from tests.utils.waiting import wait_until


def test_a_silent_replicas_sockets_go_offline(stack: Stack) -> None:
    hub = ChatHub.remote()
    ray.get(hub.listen.remote("s-alive", "replica-a/1"))
    ray.get(hub.listen.remote("s-dead", "replica-b/1"))
    ray.get(hub.listen.remote("s-dead", "replica-b/2"))
    assert sorted(ray.get(hub.online.remote(["s-alive", "s-dead", "s-none"]))) == [
        "s-alive", "s-dead"]

    def replica_a_beats_until(check):
        deadline = time.monotonic() + 4 * PRESENCE_TTL_S
        while time.monotonic() < deadline:
            ray.get(hub.alive.remote("replica-a"))
            if check():
                return True
            time.sleep(1.0)
        return False

    assert replica_a_beats_until(
        lambda: ray.get(hub.online.remote(["s-alive", "s-dead"])) == ["s-alive"])
    _, _, everything, _ = ray.get(hub.changes.remote(None, 0))
    assert everything == {"s-alive": 1}  # the replicas following the set hear it too
    ray.kill(hub)


def test_a_new_hub_learns_open_sockets_from_the_next_beat(stack: Stack) -> None:
    hub = ChatHub.remote()
    epoch = ray.get(hub.alive.remote("replica-c", {"replica-c/9": "s-back"}))
    assert isinstance(epoch, str)
    wait_until(lambda: ray.get(hub.online.remote(["s-back"])) == ["s-back"], 10,
               "the socket known again")
    ray.kill(hub)
