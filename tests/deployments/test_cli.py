"""The launcher behind `make run`, as a user runs it: a real process, real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from pymongo import MongoClient

from embedded.mongo import EmbeddedMongo
from embedded.processes import free_port

LAUNCHER = [sys.executable, "-m", "deployments.cli", "run"]

pytestmark = [pytest.mark.ray, pytest.mark.slow]  # a Ray of its own, minutes


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMMS_", "RAY_"))}
    env.update(extra)
    return env


def test_invalid_setting_fails_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(LAUNCHER, env=_env(COMMS_SMTP_PORT="notaport",
                                               COMMS_DATA_DIR=str(tmp_path)),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "COMMS_SMTP_PORT" in lines[0]
    assert "Traceback" not in result.stderr and result.stdout == ""


def _pids_mentioning(text: str) -> list[int]:
    found = subprocess.run(["pgrep", "-f", text], capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split() if int(pid) != os.getpid()]


def _environment(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:  # gone, or not ours to read
        return {}
    return dict(item.decode(errors="replace").partition("=")[::2]
                for item in raw.split(b"\0") if b"=" in item)


def test_run_uses_external_mongodb_prints_urls_and_stops_cleanly(tmp_path: Path) -> None:
    external = EmbeddedMongo(tmp_path / "external")
    external.start()
    data_dir = tmp_path / "app-data"
    port = free_port()
    env = _env(COMMS_MONGODB_URI=external.uri, COMMS_MONGODB_DB="cli_test",
               COMMS_DATA_DIR=str(data_dir), COMMS_HTTP_PORT=str(port),
               COMMS_RAY_DASHBOARD_PORT=str(free_port()), COMMS_RAY_NUM_CPUS="2")
    process = subprocess.Popen(LAUNCHER, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output = []
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line and process.poll() is not None:
                break
            output.append(line)
            if "Ctrl-C stops everything" in line:
                break
        printed = "".join(output)
        token = (data_dir / "admin_token").read_text().strip()
        assert f"http://localhost:{port}/chat" in printed and token in printed
        assert "Ray dashboard" in printed

        health = httpx.get(f"http://127.0.0.1:{port}/api/health/details",
                           headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert health.status_code == 200
        assert health.json()["mode"] == {"mongodb": "external", "smtp": "embedded",
                                         "smpp": "embedded"}
        # The app created its indexes in the external server, and no embedded database.
        indexes = MongoClient(external.uri)["cli_test"]["customers"].index_information()
        assert "email_1" in indexes
        assert not (data_dir / "mongodb").exists()
        # Ray's processes started with the launcher's environment: Serve's controller with
        # the app's control loop (`deployments.options.SERVE_ENVIRONMENT`).
        controllers = [_environment(pid) for pid in _pids_mentioning("ServeController")]
        ours = [env for env in controllers if env.get("COMMS_DATA_DIR") == str(data_dir)]
        assert len(ours) == 1 and ours[0]["RAY_SERVE_CONTROL_LOOP_INTERVAL_S"] == "0.5"

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=120) == 0
        time.sleep(2)
        assert _pids_mentioning(str(data_dir)) == []
        assert _pids_mentioning(f"--port={port}") == []
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        external.stop()


def test_make_run_masks_a_token_it_did_not_generate(tmp_path: Path) -> None:
    from app.core.config import load_settings
    from app.core.tokens import admin_token
    from deployments.cli import shown_token

    given = "token-from-the-operators-vault-0123456789"
    from_env = load_settings(admin_token=given, data_dir=tmp_path)
    assert given not in shown_token(from_env, given) and "COMMS_ADMIN_TOKEN" in \
        shown_token(from_env, given)
    generated = load_settings(data_dir=tmp_path)
    token = admin_token(generated)  # made now, in the data directory
    assert token in shown_token(generated, token)
