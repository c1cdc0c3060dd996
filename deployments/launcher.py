"""The one way operator-comms starts: `launched(settings)` sets the environment, starts
or joins Ray, starts the local services, prepares the cluster (indexes, data
migrations, the long-lived actors), starts Serve and deploys both applications, and
tears it all down on exit.

`make run` (`deployments.cli`), the test stack, the benchmark harness and the
observability and multi-node test utilities all start through it. Its cluster part
(`deployments.cluster.prepare_cluster`) is what a `serve run serve_config.yaml` or
`serve deploy` also needs: the applications' builders call it, once per deploy.
Replicas start no actors and run no migrations.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from actors import registry
from app.campaigns.send_tasks import worker_pool_environment
from app.core.config import Settings
from app.core.runtime import Runtime
from app.core.tokens import admin_token
from app.observability.telemetry import ray_environment
from deployments.cluster import prepare_cluster
from deployments.main import AppArgs, deploy, start_serve
from deployments.options import serve_environment

RAY_DASHBOARD_PORT = Settings.model_fields["ray_dashboard_port"].default  # Ray's own
DEFAULT_NUM_CPUS = 8  # logical CPUs of a Ray the launcher starts (replicas and send
# tasks ask for fractions of one; `COMMS_RAY_NUM_CPUS` overrides)


@dataclass
class Launched:
    """What a started operator-comms is: where to reach it, and with what."""

    settings: Settings
    runtime: Runtime
    base_url: str
    token: str
    ray_dashboard_url: str | None
    services: Any | None  # the local-services actor, when any service is embedded

    def client(self, *, admin: bool = True, timeout: float = 30.0) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"} if admin else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)


@contextmanager
def launched(settings: Settings, *, num_cpus: int | None = None, dashboard_replicas: int = 1,
             chatbot_replicas: int = 1, include_dashboard: bool = True,
             quiet: bool = False, proxy_location: str | None = None,
             stay_deployed: bool = False) -> Iterator[Launched]:
    """Start operator-comms (joining `settings.ray_address` when set) and yield where it
    is; on exit shut Serve and Ray down, unless `stay_deployed` (a cluster deploy, where
    the applications and detached actors outlive this driver)."""
    import ray
    from ray import serve

    local_ray = not settings.ray_address
    environment = dict(ray_environment(settings))  # tracing, JSON logs
    init_options: dict[str, Any] = {}
    if local_ray:
        cpus = num_cpus or settings.ray_num_cpus or DEFAULT_NUM_CPUS
        environment.update(worker_pool_environment(settings, cpus))  # warm send workers
        environment.update(serve_environment())  # Serve's controller loop
        init_options = {"num_cpus": cpus, "include_dashboard": include_dashboard}
        if include_dashboard:
            # On Ray's own default port Ray moves to the next free one when it is taken
            # (another Ray on this machine); a port the operator chose is kept or fails.
            port = settings.ray_dashboard_port
            init_options.update(dashboard_host="127.0.0.1",
                                dashboard_port=None if port == RAY_DASHBOARD_PORT else port)
    saved = {name: os.environ.get(name) for name in environment}
    os.environ.update(environment)  # read by the processes of a Ray started here
    context = ray.init(address=settings.ray_address, namespace=registry.NAMESPACE,
                       logging_level="ERROR" if quiet else "WARNING",
                       log_to_driver=not quiet, **init_options)
    try:
        runtime = prepare_cluster(settings)
        serve_options = {"proxy_location": proxy_location} if proxy_location else {}
        start_serve(settings.http_host, settings.http_port, settings, **serve_options)
        deploy(AppArgs(dashboard_replicas=dashboard_replicas,
                       chatbot_replicas=chatbot_replicas), settings)
        host = "127.0.0.1" if settings.http_host in ("0.0.0.0", "::") else settings.http_host
        yield Launched(settings=settings, runtime=runtime,
                       base_url=f"http://{host}:{settings.http_port}",
                       token=admin_token(settings),
                       ray_dashboard_url=getattr(context, "dashboard_url", None) or None,
                       services=registry.find(registry.LOCAL_SERVICES))
    finally:
        if not stay_deployed:
            serve.shutdown()
        ray.shutdown()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
