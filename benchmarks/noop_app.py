"""A no-op Serve ingress: the floor a chat turn is measured against, in the same run.

Same proxy, same machine, same replica options as the ChatBot; it answers a POST with
a small JSON body shaped like a turn and touches nothing else.
"""

from __future__ import annotations

from fastapi import FastAPI
from ray import serve

from deployments import options

noop_api = FastAPI()


@noop_api.post("/turn")
async def turn(body: dict) -> dict:
    return {"messages": [{"seq": 1, "role": "customer", "text": str(body.get("text", ""))},
                         {"seq": 2, "role": "bot", "text": "ok", "options": []}]}


@serve.deployment(name="NoOp", max_ongoing_requests=options.CHATBOT["max_ongoing_requests"],
                  ray_actor_options=options.CHATBOT["ray_actor_options"],
                  logging_config=options.LOGGING)
@serve.ingress(noop_api)
class NoOp:
    pass


noop_app = NoOp.bind()
