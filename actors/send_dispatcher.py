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
    def submit(self, job: BatchJob, num_cpus: float) -> list[ray.ObjectRef]:
        # Wrapped in a list so the caller receives the reference, not the result.
        return [send_batch.options(num_cpus=num_cpus).remote(job)]


def send_dispatcher():
    return SendDispatcher.options(name=DISPATCHER, namespace=NAMESPACE, lifetime="detached",
                                  get_if_exists=True).remote()
