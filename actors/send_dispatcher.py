"""The send dispatcher: a tiny detached actor that owns the campaign send tasks.

Ray kills a task when its owner dies. If runners submitted send tasks themselves, a
runner that crashed would take its tasks down mid-message, between the relay's 250
and the outcome's write, and those messages would go out again. So the runner asks
this actor to submit each task and only borrows the returned reference: a runner
crash leaves its in-flight batches running to completion. The dispatcher does no
other work, so it has nothing to crash on.
"""

from __future__ import annotations

import ray

from app.send_tasks import NAMESPACE, send_batch
from app.sending import BatchJob

DISPATCHER = "send-dispatcher"


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1, max_concurrency=64)
class SendDispatcher:
    def submit(self, job: BatchJob) -> list[ray.ObjectRef]:
        settings = job.settings
        # SPREAD: batches fan out over nodes (network paths, blast radius) instead of
        # Ray's default of packing one node before using the next.
        task = send_batch.options(num_cpus=settings.send_task_cpus,
                                  resources=settings.send_task_resources,
                                  scheduling_strategy="SPREAD")
        # Wrapped in a list so the caller receives the reference, not the result.
        return [task.remote(job)]


def send_dispatcher(resources: dict[str, float] | None = None):
    return SendDispatcher.options(name=DISPATCHER, namespace=NAMESPACE, lifetime="detached",
                                  get_if_exists=True, resources=resources or {}).remote()
