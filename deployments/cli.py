"""`operator-comms run`: start Ray, the embedded services and the Serve applications,
print where everything is, and stop it all on Ctrl-C. This is what `make run` calls.

`operator-comms reconcile --from 2026-11-01 --to 2026-11-30 [--dry-run]` asks the
running app to recount a period's report roll-ups and prints what drifted.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from app.core.config import ConfigError, Settings, load_settings
from app.core.tokens import TOKEN_FILE, admin_token
from app.observability.telemetry import ray_environment


def _start(settings: Settings, dashboard_replicas: int, chatbot_replicas: int) -> str:
    import ray

    from actors import registry
    from actors.local_services import local_services
    from app.campaigns.send_tasks import worker_pool_environment
    from deployments.main import AppArgs, deploy, start_serve
    from deployments.options import serve_environment

    # Read by the processes of a Ray started here (not by a running cluster's: there it
    # goes in the environment of `ray start`).
    os.environ.update(ray_environment(settings))
    if not settings.ray_address:
        os.environ.update(serve_environment())
    num_cpus = None if settings.ray_address else (settings.ray_num_cpus or 8)
    if num_cpus is not None:
        os.environ.update(worker_pool_environment(settings, num_cpus))
    context = ray.init(
        address=settings.ray_address,
        num_cpus=num_cpus,
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        dashboard_port=settings.ray_dashboard_port,
        namespace=registry.NAMESPACE,
        logging_level="WARNING",
    )
    if settings.embedded_mongodb or settings.embedded_smtp or settings.embedded_smsc:
        ray.get(local_services(settings).endpoints.remote())  # start them before the app
    start_serve(settings.http_host, settings.http_port, settings)
    args = AppArgs(dashboard_replicas=dashboard_replicas, chatbot_replicas=chatbot_replicas)
    deploy(args, settings)
    return context.dashboard_url or "127.0.0.1:8265"


def shown_token(settings: Settings, token: str) -> str:
    """The admin token as `make run` prints it: whole when it generated it (where else
    would the operator find it), masked when it came from the environment (logs of the
    terminal, CI, a process supervisor keep what is printed)."""
    if settings.admin_token is None:
        return f"{token}  (also in {settings.data_dir / TOKEN_FILE})"
    return "(from COMMS_ADMIN_TOKEN: not shown)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="operator-comms")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start everything on this machine (Ctrl-C stops it)")
    run.add_argument("--dashboard-replicas", type=int, default=1)
    run.add_argument("--chatbot-replicas", type=int, default=1)
    reconcile = sub.add_parser("reconcile", help="recount a period's report roll-ups "
                               "from the deliveries (the app must be running)")
    reconcile.add_argument("--from", dest="start", help="first day, YYYY-MM-DD")
    reconcile.add_argument("--to", dest="end", help="last day, YYYY-MM-DD (included)")
    reconcile.add_argument("--dry-run", action="store_true", help="report, do not repair")
    reconcile.add_argument("--url", help="the app's base URL (default: from COMMS_* settings)")
    args = parser.parse_args(argv)
    if args.command == "reconcile":
        return _reconcile(args)

    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"operator-comms: {exc}", file=sys.stderr)
        return 2
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    token = admin_token(settings)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print("operator-comms: starting Ray, the embedded services and the Serve app...",
          flush=True)
    try:
        ray_dashboard = _start(settings, args.dashboard_replicas, args.chatbot_replicas)
        base = f"http://{'localhost' if settings.http_host in ('127.0.0.1', '0.0.0.0') else settings.http_host}:{settings.http_port}"  # noqa: E501
        print(
            "\n"
            f"  Operator dashboard  {base}/\n"
            f"  Customer chat       {base}/chat\n"
            f"  API docs            {base}/api/docs\n"
            f"  Ray dashboard       http://{ray_dashboard}\n"
            f"  Admin token         {shown_token(settings, token)}\n"
            f"  Data directory      {settings.data_dir}\n"
            "\n  Ctrl-C stops everything.\n",
            flush=True,
        )
        stop.wait()
    finally:
        print("operator-comms: stopping...", flush=True)
        _shutdown()
    return 0


def _reconcile(args: argparse.Namespace) -> int:
    import json

    import httpx

    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"operator-comms: {exc}", file=sys.stderr)
        return 2
    base = args.url or f"http://127.0.0.1:{settings.http_port}"
    params = {k: v for k, v in (("from", args.start), ("to", args.end),
                                ("dry_run", str(args.dry_run).lower())) if v}
    try:
        response = httpx.post(f"{base}/api/reports/reconcile", params=params, timeout=3600,
                              headers={"Authorization": f"Bearer {admin_token(settings)}"})
    except httpx.HTTPError as exc:
        print(f"operator-comms: the app at {base} did not answer: {exc}", file=sys.stderr)
        return 1
    if response.status_code != 200:
        print(f"operator-comms: {response.status_code} {response.text}", file=sys.stderr)
        return 1
    print(json.dumps(response.json(), indent=2))
    return 0


def _shutdown() -> None:
    import ray
    from ray import serve

    if ray.is_initialized():
        try:
            serve.shutdown()
        finally:
            ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
