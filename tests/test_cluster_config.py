"""cluster.yaml against Ray's autoscaler schema, serve_config.yaml against Serve's."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
import ray
import yaml
from ray.autoscaler._private.util import validate_config
from ray.serve._private.api import call_user_app_builder_with_args_if_necessary
from ray.serve._private.utils import import_attr
from ray.serve.deployment import Application
from ray.serve.schema import ServeDeploySchema

ROOT = Path(__file__).resolve().parent.parent


def _yaml(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


@pytest.fixture
def prepared(monkeypatch: pytest.MonkeyPatch) -> list:
    """The settings each build prepared the cluster with. Preparing needs a running Ray
    and is exercised for real by the launcher's tests; here only that a build asks for
    it, once, with the settings it parsed."""
    calls: list = []
    monkeypatch.setattr("deployments.main.prepare_cluster", calls.append)
    return calls


def test_cluster_yaml_passes_rays_autoscaler_schema() -> None:
    config = _yaml("cluster.yaml")
    validate_config(config)  # raises jsonschema.ValidationError on any mistake
    assert config["provider"]["type"] == "aws"


def test_cluster_yaml_places_work_and_pins_versions() -> None:
    config = _yaml("cluster.yaml")
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    workers = [t for name, t in types.items() if name != config["head_node_type"]]
    assert "comms_head" in head["resources"]
    assert workers and all("comms_sender" in w["resources"] for w in workers)
    assert all(w["min_workers"] <= w["max_workers"] for w in workers)
    start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in start and "0.0.0.0" not in start
    setup = " ".join(config["setup_commands"])
    assert f'ray[serve,default]=={ray.__version__}' in setup
    assert "/home/ubuntu/operator-comms" in config["file_mounts"]


def test_cluster_yaml_opens_only_ssh_and_the_http_port() -> None:
    """Ray's provider adds SSH and the cluster's own traffic; ours adds only Serve's port,
    which is the port serve_config.yaml serves on."""
    rules = _yaml("cluster.yaml")["provider"]["security_group"]["IpPermissions"]
    port = _yaml("serve_config.yaml")["http_options"]["port"]
    assert [(r["IpProtocol"], r["FromPort"], r["ToPort"]) for r in rules] == [
        ("tcp", port, port)]


def test_cluster_yaml_commits_no_secret() -> None:
    text = (ROOT / "cluster.yaml").read_text()
    for secret in ("COMMS_SMTP_PASSWORD", "COMMS_ADMIN_TOKEN", "COMMS_MONGODB_URI",
                   "mongodb://", "mongodb+srv://"):
        assert secret not in text
    assert "~/.operator-comms.env" in _yaml("cluster.yaml")["file_mounts"].values()


def test_env_example_names_only_real_settings() -> None:
    from app.core.config import Settings

    text = (ROOT / "deploy/operator-comms.env.example").read_text()
    names = set(re.findall(r"^#?\s*(COMMS_\w+)=", text, re.MULTILINE))  # optional ones too
    assert "COMMS_IMAP_HOST" in names
    known = {f"COMMS_{field.upper()}" for field in Settings.model_fields}
    assert names <= known, names - known


def test_env_example_gives_a_cluster_the_serve_settings_a_local_run_sets() -> None:
    from deployments.options import SERVE_ENVIRONMENT

    text = (ROOT / "deploy/operator-comms.env.example").read_text()
    set_there = dict(re.findall(r"^(RAY_SERVE_\w+)='([^']*)'$", text, re.MULTILINE))
    assert SERVE_ENVIRONMENT and set_there == SERVE_ENVIRONMENT


def test_an_operators_serve_setting_wins_over_the_apps(monkeypatch) -> None:
    from deployments.options import serve_environment

    monkeypatch.delenv("RAY_SERVE_CONTROL_LOOP_INTERVAL_S", raising=False)
    assert serve_environment() == {"RAY_SERVE_CONTROL_LOOP_INTERVAL_S": "0.5"}
    monkeypatch.setenv("RAY_SERVE_CONTROL_LOOP_INTERVAL_S", "0.2")
    assert serve_environment() == {}


def test_serve_config_passes_serves_schema_with_real_import_paths(prepared: list) -> None:
    config = ServeDeploySchema.model_validate(_yaml("serve_config.yaml"))
    assert [app.route_prefix for app in config.applications] == ["/", "/chat"]
    for app in config.applications:
        built = call_user_app_builder_with_args_if_necessary(import_attr(app.import_path),
                                                            app.args)
        assert isinstance(built, Application)
    assert len(prepared) == 2 and all(s.mongodb_db == "operator_comms" for s in prepared)


def test_project_version_matches_what_the_cluster_installs() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == "operator-comms" and project["version"]


def test_serve_run_import_path_builds_with_cli_arguments(prepared: list) -> None:
    # What `serve run deployments.main:app chatbot_replicas=2` does: CLI args are strings.
    for path in ("deployments.main:app", "deployments.main:chat_app"):
        builder = import_attr(path)
        for args in ({}, {"chatbot_replicas": "2", "dashboard_replicas": "1"}):
            assert isinstance(call_user_app_builder_with_args_if_necessary(builder, args),
                              Application)


def test_serve_run_refuses_unknown_arguments(prepared: list) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="colour"):
        call_user_app_builder_with_args_if_necessary(import_attr("deployments.main:app"),
                                                     {"colour": "red"})
    assert prepared == []  # refused before anything is prepared


def test_both_cluster_files_are_rendered_from_one_template() -> None:
    """cluster.yaml and cluster-local.yaml are written by `operator-comms cluster-files
    --write` from deploy/cluster.yaml.j2; an edit of one alone fails here."""
    from deployments import cluster_files

    assert cluster_files.stale() == []


def _resources(command: str) -> dict:
    found = re.search(r"--resources='([^']+)'", command)
    assert found, command
    return json.loads(found.group(1))


def test_the_local_cluster_starts_the_nodes_the_cloud_one_does() -> None:
    """Everything but the provider agrees: each node's resources, the env file sourced
    before `ray start`, the dashboard on 127.0.0.1, the code mounted, the same Ray."""
    cloud, local = _yaml("cluster.yaml"), _yaml("cluster-local.yaml")
    validate_config(local)
    assert local["provider"]["type"] == "local" and len(local["provider"]["worker_ips"]) == 2
    types = cloud["available_node_types"]
    head_start = local["head_start_ray_commands"][-1]
    worker_start = local["worker_start_ray_commands"][-1]
    assert _resources(head_start) == types[cloud["head_node_type"]]["resources"]
    assert _resources(worker_start) == types["ray.worker.sender"]["resources"]
    for config in (cloud, local):
        [env_file] = [dest for dest in config["file_mounts"] if dest.endswith(".env")]
        for start in (config["head_start_ray_commands"][-1],
                      config["worker_start_ray_commands"][-1]):
            assert f"set -a && . {env_file} && set +a" in start
            assert "ray start" in start and "0.0.0.0" not in start
        assert "--dashboard-host=127.0.0.1" in config["head_start_ray_commands"][-1]
        assert "." in config["file_mounts"].values()

    def stripped(command: str) -> str:  # the local additions and paths taken out
        command = command.replace(
            "export PYTHONPATH=/tmp/operator-comms RAY_enable_autoscaler_v2=0 && ", "")
        command = re.sub(r" --resources='[^']+' --object-store-memory=\d+", "", command)
        return command.replace("/tmp/", "/home/ubuntu/")

    for commands in ("head_start_ray_commands", "worker_start_ray_commands"):
        assert [stripped(c) for c in local[commands]] == cloud[commands]
    assert f"'{ray.__version__}'" in local["setup_commands"][0]
