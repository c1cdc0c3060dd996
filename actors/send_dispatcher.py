"""The send dispatcher: a tiny detached actor that owns the campaign send tasks.

Ray kills a task when its owner dies. If runners submitted send tasks themselves, a
runner that crashed would take its tasks down mid-message, between the relay's 250
and the outcome's write, and those messages would go out again. So the runner asks
this actor to submit each task and only borrows the returned reference: a runner
crash leaves its in-flight batches running to completion, and the restarted runner
asks here which of its batches are still in flight. As the owner, it is also the one
that cancels them (pause, cancel). It does no other work, so it has nothing to crash on.

Ray runs a task in a worker process of its submitter's job, so the dispatcher is also
the one that starts send workers ahead of need (`warm`, when the app starts): the
processes it warms are the ones its send tasks then run in.
"""

from __future__ import annotations

import threading
import time

import ray

from actors import registry
from app.campaigns.batch import BatchJob
from app.campaigns.send_tasks import send_batch, warm_send_worker
from app.core.config import Settings, Telemetry
from app.observability import telemetry


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1, max_concurrency=64)
class SendDispatcher:
    def __init__(self) -> None:
        telemetry.setup(Telemetry(), "send_dispatcher")  # from the environment
        self.tasks: dict[str, dict[str, ray.ObjectRef]] = {}  # campaign -> batch -> ref
        self.warming: list[ray.ObjectRef] | None = None
        self.lock = threading.Lock()

    def submit(self, job: BatchJob) -> list[ray.ObjectRef]:
        task = send_batch.options(**_placement(job.settings))
        ref = task.remote(job)
        tasks = self.tasks.setdefault(job.campaign_id, {})
        tasks[job.batch_id] = ref
        if len(tasks) > 256:  # forget finished ones (their results would stay alive here)
            self.in_flight(job.campaign_id)
        # Wrapped in a list so the caller receives the reference, not the result.
        return [ref]

    def warm(self, settings: Settings) -> list[int]:
        """Start `send_warm_workers` send worker processes now, placed as send tasks are,
        and wait for them; a call while a warm-up runs waits for that one. The pids of
        the processes that ran the last round. A round holds its tasks together until
        about when Ray can have started them all (two per CPU-second is typical); if a
        slow start let some share a process, one more round with twice the time."""
        n = settings.send_warm_workers
        pids: set[int] = set()
        for hold_s in (WARM_START_S + WARM_PER_WORKER_S * n,
                       2 * (WARM_START_S + WARM_PER_WORKER_S * n)):
            if n <= 0 or len(pids) >= n:
                break
            with self.lock:
                if self.warming is None:
                    task = warm_send_worker.options(**_placement(settings))
                    until = time.time() + min(hold_s, WARM_HOLD_MAX_S)
                    self.warming = [task.remote(settings, until) for _ in range(n)]
                refs = self.warming
            try:
                pids = set(ray.get(refs))
            finally:
                with self.lock:
                    if self.warming is refs:
                        self.warming = None
        return sorted(pids)

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


WARM_START_S, WARM_PER_WORKER_S, WARM_HOLD_MAX_S = 2.0, 0.8, 60.0


def _placement(settings: Settings) -> dict:
    """Where send tasks (and the warm-up's) run. SPREAD: batches fan out over nodes
    (network paths, blast radius) instead of Ray's default of packing one node first."""
    return {"num_cpus": settings.send_task_cpus, "resources": settings.send_task_resources,
            "scheduling_strategy": "SPREAD"}


def send_dispatcher(resources: dict[str, float] | None = None):
    return registry.get_or_create(SendDispatcher, registry.SEND_DISPATCHER,
                                  resources=resources)
