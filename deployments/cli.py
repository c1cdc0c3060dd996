"""`operator-comms run`: start everything through the launcher, print where it is, and
stop it all on Ctrl-C. This is what `make run` calls.

`operator-comms deploy` does the same onto a running cluster and leaves it running.
`operator-comms settings-doc --write` regenerates docs/configuration.md.

`operator-comms reconcile --from 2026-11-01 --to 2026-11-30 [--dry-run]` asks the
running app to recount a period's report roll-ups and prints what drifted.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from app.core.config import ConfigError, Settings, load_settings
from app.core.tokens import TOKEN_FILE, admin_token


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
    deploy = sub.add_parser("deploy", help="deploy onto a running Ray cluster and leave it "
                            "running (COMMS_RAY_ADDRESS, default auto)")
    for command in (run, deploy):
        command.add_argument("--dashboard-replicas", type=int, default=1)
        command.add_argument("--chatbot-replicas", type=int, default=1)
    settings_doc = sub.add_parser("settings-doc", help="print the configuration reference "
                                  "generated from Settings (--write: to docs/configuration.md)")
    settings_doc.add_argument("--write", action="store_true")
    cluster_files = sub.add_parser("cluster-files", help="render cluster.yaml and "
                                   "cluster-local.yaml from deploy/cluster.yaml.j2 (--write)")
    cluster_files.add_argument("--write", action="store_true")
    reconcile = sub.add_parser("reconcile", help="recount a period's report roll-ups "
                               "from the deliveries (the app must be running)")
    reconcile.add_argument("--from", dest="start", help="first day, YYYY-MM-DD")
    reconcile.add_argument("--to", dest="end", help="last day, YYYY-MM-DD (included)")
    reconcile.add_argument("--dry-run", action="store_true", help="report, do not repair")
    reconcile.add_argument("--url", help="the app's base URL (default: from COMMS_* settings)")
    args = parser.parse_args(argv)
    if args.command == "reconcile":
        return _reconcile(args)
    if args.command == "cluster-files":
        from deployments import cluster_files

        if args.write:
            cluster_files.write()
        stale = cluster_files.stale()
        print("stale: " + ", ".join(stale) if stale else "cluster files agree")
        return 1 if stale else 0
    if args.command == "settings-doc":
        from app.core import settings_doc

        if args.write:
            settings_doc.write()
        else:
            print(settings_doc.render(), end="")
        return 0

    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"operator-comms: {exc}", file=sys.stderr)
        return 2
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    token = admin_token(settings)

    if args.command == "deploy":
        return _deploy(settings, args)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print("operator-comms: starting Ray, the embedded services and the Serve app...",
          flush=True)
    from deployments.launcher import launched

    with launched(settings, dashboard_replicas=args.dashboard_replicas,
                  chatbot_replicas=args.chatbot_replicas) as app:
        shown = "localhost" if settings.http_host in ("127.0.0.1", "0.0.0.0") else None
        base = app.base_url.replace("127.0.0.1", shown) if shown else app.base_url
        ray_dashboard = app.ray_dashboard_url or f"127.0.0.1:{settings.ray_dashboard_port}"
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
        print("operator-comms: stopping...", flush=True)
    return 0


def _deploy(settings: Settings, args: argparse.Namespace) -> int:
    """Deploy onto a running cluster (`COMMS_RAY_ADDRESS`, default `auto`) and leave the
    applications and the long-lived actors running after this process ends."""
    from deployments.launcher import launched

    if not settings.ray_address:
        settings = settings.model_copy(update={"ray_address": "auto"})
    with launched(settings, dashboard_replicas=args.dashboard_replicas,
                  chatbot_replicas=args.chatbot_replicas, stay_deployed=True) as app:
        print(f"operator-comms: deployed; the API answers at {app.base_url}", flush=True)
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


if __name__ == "__main__":
    sys.exit(main())
