"""The shipped Prometheus scrape config and Grafana dashboard: they parse, and every
panel asks for a metric the app exports (and every exported metric has a panel)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from actors.metrics import EXPORTED

MONITORING = Path(__file__).resolve().parents[1] / "monitoring"
SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "counter": ("",), "gauge": ("",)}


def exported_series() -> dict[str, str]:
    """Every series name Prometheus sees from the app (Ray prefixes `ray_`)."""
    return {f"ray_{name}{suffix}": name for name, kind in EXPORTED.items()
            for suffix in SUFFIXES[kind]}


def panel_metrics() -> dict[str, set[str]]:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    assert dashboard["panels"], "no panels"
    found = {}
    for panel in dashboard["panels"]:
        exprs = [target["expr"] for target in panel["targets"]]
        assert exprs, panel["title"]
        found[panel["title"]] = {m for e in exprs for m in re.findall(r"\bray_[a-z_]+", e)}
    return found


def test_every_panel_asks_for_metrics_the_app_exports() -> None:
    series = exported_series()
    for title, metrics in panel_metrics().items():
        assert metrics, f"{title}: no metric"
        assert metrics <= set(series), f"{title}: {metrics - set(series)} not exported"


def test_every_exported_metric_has_a_panel() -> None:
    shown = {exported_series()[m] for ms in panel_metrics().values() for m in ms}
    assert shown == set(EXPORTED)


def test_the_scrape_config_follows_rays_service_discovery_file() -> None:
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    files = [f for sd in jobs["ray"]["file_sd_configs"] for f in sd["files"]]
    assert files == ["/tmp/ray/prom_metrics_service_discovery.json"]
