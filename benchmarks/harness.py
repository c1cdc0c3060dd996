"""Start Ray, the embedded database and the Serve app in this process, for benchmarks.

Like `make run`, but with settings chosen by the benchmark (an external SMTP sink, a
fresh data directory) and a machine description for the results.
"""

from __future__ import annotations

import os
import platform
import tempfile
from contextlib import contextmanager
from pathlib import Path

import psutil
import ray
from pymongo import MongoClient

from actors.local_services import local_services
from actors.send_dispatcher import send_dispatcher
from app.core.config import Settings, load_settings
from deployments.launcher import launched
from embedded.processes import free_port


def machine() -> dict:
    return {"cpu_count": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
            "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "ray": ray.__version__,
            "os": platform.platform(terse=True)}


@contextmanager
def running_app(num_cpus: int = 8, chatbot_replicas: int = 1, http_timeout_s: float = 120,
                **overrides):
    """Yield (settings, admin HTTP client, base URL) for a fresh app; stop it after."""
    port = free_port()
    values = {"data_dir": Path(tempfile.mkdtemp(prefix="bench-")), "http_port": port,
              "mongodb_db": "bench", "public_url": f"http://127.0.0.1:{port}", **overrides}
    settings: Settings = load_settings(**values)
    with launched(settings, num_cpus=num_cpus, chatbot_replicas=chatbot_replicas,
                  include_dashboard=False, quiet=True) as app:
        # The warm-up the app began: wait for it, so it is not measured as the app's idle.
        ray.get(send_dispatcher(settings.actor_resources).warm.remote(settings))
        with app.client(timeout=http_timeout_s) as api:
            yield settings, api, app.base_url


def mongodb_uri(settings: Settings) -> str:
    """The app's MongoDB (the embedded one unless configured), for opcounters."""
    return ray.get(local_services(settings).endpoints.remote()).mongodb_uri


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


OPS = ("insert", "query", "update", "delete", "getmore", "command")


class CpuWatch:
    """CPU seconds of every process over an interval, and the busiest ones."""

    def __init__(self) -> None:
        psutil.cpu_percent(interval=None)
        self.before = self._times()

    @staticmethod
    def _times() -> dict[int, tuple[str, float]]:
        found = {}
        for proc in psutil.process_iter(["pid", "name", "cmdline", "cpu_times"]):
            try:
                times = proc.info["cpu_times"]
                label = " ".join(proc.info["cmdline"] or [proc.info["name"] or "?"])[:70]
                found[proc.info["pid"]] = (label, times.user + times.system)
            except (psutil.Error, TypeError):
                continue
        return found

    def done(self, elapsed: float, top: int = 6) -> dict:
        after = self._times()
        used = []
        parts: dict[str, float] = {}
        for pid, (label, seconds) in after.items():
            spent = seconds - self.before.get(pid, (label, 0.0))[1]
            if spent > 0:
                used.append((spent, pid, label))
                parts[part_of(label)] = parts.get(part_of(label), 0.0) + spent
        used.sort(reverse=True)
        return {"cpu_percent": psutil.cpu_percent(interval=None),
                "cpu_seconds_by_part": {k: round(v, 2) for k, v in sorted(
                    parts.items(), key=lambda item: -item[1])},
                "top_processes": [{"pid": pid, "process": label,
                                   "cpu_percent_of_one_core": round(100 * s / elapsed, 1)}
                                  for s, pid, label in used[:top]]}


PARTS = (("secantus", "database"), ("multiprocessing.spawn", "smtp sink"),
         ("ray::ServeReplica", "serve replicas"), ("ray::ProxyActor", "serve proxy"),
         ("ray::ServeController", "serve controller"), ("ray::CampaignRunner", "runner"),
         ("ray::", "ray workers (send tasks, actors)"), ("raylet", "ray system"),
         ("gcs_server", "ray system"), ("dashboard", "ray system"),
         ("log_monitor", "ray system"), ("celery", "celery workers"),
         ("rabbit", "rabbitmq"), ("beam.smp", "rabbitmq"), ("benchmarks", "benchmark driver"))


def part_of(label: str) -> str:
    """Which part of the system a process is, from its command line."""
    return next((part for marker, part in PARTS if marker in label), "other")


def opcounters(mongo: MongoClient) -> dict[str, int]:
    counters = mongo.admin.command("serverStatus")["opcounters"]
    return {name: counters.get(name, 0) for name in OPS}


def opcount(mongo: MongoClient) -> int:
    return sum(opcounters(mongo).values())
