"""What a test asks a running cluster, run on its head with `ray exec` (as an operator
would): `python -m tests.utils.cluster_probe nodes` prints the alive nodes (id, address,
resources); `... sink DOMAIN` the embedded SMTP sink's messages per recipient, all and
distinct by Message-ID; `... endpoints` the embedded database's URI. One JSON line on
stdout."""

from __future__ import annotations

import json
import sys

import ray

from actors import registry


def main(command: str, *args: str) -> None:
    ray.init(address="auto", namespace=registry.NAMESPACE, logging_level="ERROR",
             log_to_driver=False)
    if command == "nodes":
        result: object = [{"id": node["NodeID"], "ip": node["NodeManagerAddress"],
                           "resources": node["Resources"]}
                          for node in ray.nodes() if node["Alive"]]
    elif command == "endpoints":  # (where the embedded database listens)
        services = registry.find(registry.LOCAL_SERVICES)
        result = {"mongodb_uri": ray.get(services.endpoints.remote()).mongodb_uri}
    elif command == "sink":
        services = registry.find(registry.LOCAL_SERVICES)
        result = {"all": ray.get(services.outbox_counts.remote(args[0])),
                  "distinct": ray.get(services.outbox_distinct_counts.remote(args[0]))}
    else:
        raise SystemExit(f"unknown command {command}")
    print("PROBE " + json.dumps(result))


if __name__ == "__main__":
    main(*sys.argv[1:])
