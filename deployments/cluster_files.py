"""cluster.yaml (AWS) and cluster-local.yaml (hosts of this machine), rendered from one
template (`deploy/cluster.yaml.j2`): the start commands, the node resources, the env
file and the file mounts are written once, so the file tried on one machine is the file
deployed to the cloud but for its provider. `operator-comms cluster-files --write`
renders them; a test checks the committed ones agree."""

from __future__ import annotations

import json
from pathlib import Path

import jinja2
import ray
import yaml

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "deploy" / "cluster.yaml.j2"
FILES = {"cluster.yaml": False, "cluster-local.yaml": True}  # name -> local provider
HEAD_RESOURCES = {"comms_head": 100}  # what the long-lived actors and replicas ask for
SENDER_SLOTS = 32  # send tasks a worker node runs at once (one `comms_sender` each)
LOCAL_HOSTS = "10.231.0"  # deploy/local-hosts.sh's range: host I is .(10 + I)
LOCAL_WORKERS = 2  # hosts 2 and 3
IMAGE = "/tmp/occ-image"  # the local hosts' Python environment (local-hosts.sh links it)


def render(local: bool) -> str:
    http_port = yaml.safe_load((ROOT / "serve_config.yaml").read_text())[
        "http_options"]["port"]
    variables = {
        "local": local, "http_port": http_port, "ray_version": ray.__version__,
        "head_resources": json.dumps(HEAD_RESOURCES), "sender_slots": SENDER_SLOTS,
        "sender_resources": json.dumps({"comms_sender": SENDER_SLOTS}),
    }
    if local:
        variables |= {
            "head_ip": f"{LOCAL_HOSTS}.11",
            "worker_ips": [f"{LOCAL_HOSTS}.{11 + i}" for i in range(1, LOCAL_WORKERS + 1)],
            "home": "/tmp", "env_file": "deploy/.local-hosts/operator-comms.env",
            "image": IMAGE,
            # (Ray's autoscaler v2, which `ray up` turns on, counts the local provider's
            # head as one of its single node type's workers and starts one worker fewer
            # than the hosts listed; v1 starts them all.)
            "prefix": "export PYTHONPATH=/tmp/operator-comms RAY_enable_autoscaler_v2=0 && ",
            # (the hosts share one machine's memory: a small object store each)
            "local_flags": "--object-store-memory=500000000",
        }
    else:
        variables |= {"home": "/home/ubuntu", "env_file": "~/.operator-comms.env",
                      "prefix": "", "local_flags": ""}
    environment = jinja2.Environment(undefined=jinja2.StrictUndefined,
                                     keep_trailing_newline=True, autoescape=False)
    return environment.from_string(TEMPLATE.read_text()).render(variables)


def stale() -> list[str]:
    """The committed cluster files that differ from what the template renders."""
    return [name for name, local in FILES.items()
            if not (ROOT / name).exists() or (ROOT / name).read_text() != render(local)]


def write() -> None:
    for name, local in FILES.items():
        (ROOT / name).write_text(render(local))
