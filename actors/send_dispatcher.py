"""The send dispatcher: a tiny detached actor that owns the campaign send tasks.

Ray kills a task when its owner dies. If runners submitted send tasks themselves, a
runner that crashed would take its tasks down mid-message, between the relay's 250
and the outcome's write, and those messages would go out again. So the runner asks
this actor to submit each task and only borrows the returned reference: a runner
crash leaves its in-flight batches running to completion, and the restarted runner
asks here which of its batches are still in flight. As the owner, it is also the one
that cancels them (pause, cancel). It does no other work, so it has nothing to crash on.
"""

from __future__ import annotations

import ray

from actors import registry
from app import telemetry
from app.config import Telemetry
from app.send_tasks import RETRIES, send_batch
from app.sending import BatchJob


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1, max_concurrency=64)
class SendDispatcher:
    def __init__(self) -> None:
        telemetry.setup(Telemetry(), "send_dispatcher")  # from the environment
        self.tasks: dict[str, dict[str, ray.ObjectRef]] = {}  # campaign -> batch -> ref

    def submit(self, job: BatchJob) -> list[ray.ObjectRef]:
        settings = job.settings
        # SPREAD: batches fan out over nodes (network paths, blast radius) instead of
        # Ray's default of packing one node before using the next.
        task = send_batch.options(num_cpus=settings.send_task_cpus,
                                  resources=settings.send_task_resources,
                                  max_retries=0 if job.fresh else RETRIES,
                                  scheduling_strategy="SPREAD")
        ref = task.remote(job)
        tasks = self.tasks.setdefault(job.campaign_id, {})
        tasks[job.batch_id] = ref
        if len(tasks) > 256:  # forget finished ones (their results would stay alive here)
            self.in_flight(job.campaign_id)
        # Wrapped in a list so the caller receives the reference, not the result.
        return [ref]

    def in_flight(self, campaign_id: str) -> dict[str, list[ray.ObjectRef]]:
        """The campaign's batches whose task has not finished (for a restarted runner)."""
        tasks = self.tasks.get(campaign_id, {})
        if tasks:
            _, running = ray.wait(list(tasks.values()), num_returns=len(tasks), timeout=0)
            alive = set(running)
            for batch in [b for b, ref in tasks.items() if ref not in alive]:
                del tasks[batch]
        return {batch: [ref] for batch, ref in tasks.items()}

    def cancel(self, campaign_id: str) -> int:
        """Ask every running batch of the campaign to stop (KeyboardInterrupt in the task,
        which stops cleanly); those not started yet never start."""
        refs = list(self.tasks.get(campaign_id, {}).values())
        for ref in refs:
            ray.cancel(ref, force=False)
        return len(refs)


def send_dispatcher(resources: dict[str, float] | None = None):
    return registry.get_or_create(SendDispatcher, registry.SEND_DISPATCHER,
                                  resources=resources)
