"""Every benchmark script runs in a tiny configuration, so none of them can rot.

Each runs in its own process (each starts its own Ray); the assertions check the
shape of what they write, never timings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]  # a Ray of its own, minutes


def run(module: str, *args: str, timeout: int = 600) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMMS_", "RAY_"))}
    result = subprocess.run([sys.executable, "-m", module, *args], env=env,
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]


def test_scaling_writes_json_csv_markdown_and_chart(tmp_path: Path) -> None:
    run("benchmarks.scaling", "--workers", "1", "2", "--default-workers", "2", "--delays",
        "5", "0", "--batch-size", "10", "--min-seconds", "0.5", "--smallest", "30",
        "--largest", "60", "--gevent-greenlets", "4", "--sms-workers", "2",
        "--wide-workers", "1", "--wide-connections", "3", "--wide-batch-size", "20",
        "--min-batches", "4", "--messaging-workers", "2", "--out", str(tmp_path),
        "--cluster-workers",  # (none: the cluster rows' machinery is tests/test_cluster_local)
        timeout=900)
    data = json.loads((tmp_path / "scaling.json").read_text())
    rows = data["results"]
    systems = {"operator-comms", "operator-comms (default connections)", "celery prefork",
               "celery gevent", "raw aiosmtplib", "operator-comms SMS (embedded SMSC)",
               "operator-comms (many connections)",
               "operator-comms (many connections, own app start)",
               "operator-comms Telegram (local Bot API)",
               "operator-comms WhatsApp (local Cloud API)"}
    for delay in (5.0, 0.0):
        assert {(r["system"], r["workers"]) for r in rows if r["sink_delay_ms"] == delay} == {
            ("celery prefork", 1), ("celery prefork", 2), ("celery gevent", 4),
            ("raw aiosmtplib", "raw"), ("operator-comms", 1), ("operator-comms", 2),
            ("operator-comms (default connections)", 2),
            ("operator-comms (many connections)", 1),
            ("operator-comms (many connections, own app start)", 1),
            ("operator-comms SMS (embedded SMSC)", 2),
            ("operator-comms Telegram (local Bot API)", 2),
            ("operator-comms WhatsApp (local Cloud API)", 2)}
        raws = [r for r in rows if r["sink_delay_ms"] == delay and r["workers"] == "raw"]
        assert [r["measured"] for r in raws] == ["before the app", "after the app"]
        # Four batches of 10 a worker at least, for both systems at the same W.
        for system in ("celery prefork", "operator-comms"):
            sizes = {r["workers"]: r["messages"] for r in rows
                     if r["sink_delay_ms"] == delay and r["system"] == system}
            assert sizes[1] >= 40 and sizes[2] >= 80, (system, sizes)
        # The shared app start's warm workers are sized for its largest W (2: 2 + 2), the
        # wide row's own start for its W (1: 1 + 2).
        warm = {r["system"]: r["warm_workers"] for r in rows if r["sink_delay_ms"] == delay
                and r["system"].startswith("operator-comms")}
        assert warm["operator-comms (many connections)"] == warm["operator-comms"] == 4
        assert warm["operator-comms (many connections, own app start)"] == 3
    for row in rows:
        assert row["system"] in systems
        assert row["messages"] == row["expected"] >= 30 and row["messages_per_s"] > 0
        assert {"p50_ms", "p99_ms", "cpu_percent", "top_processes"} <= set(row)
        if row["system"].startswith("operator-comms"):
            assert row["status"] == "completed" and row["sent_recorded"] == row["messages"]
            assert row["db_commands"] > 0 and "db_commands_per_message" in row
            assert "db_commands_per_message_steady" in row
            wide = row["system"].startswith("operator-comms (many connections")
            assert row["batch_size"] == (20 if wide else 10)
    assert data["machine"]["cpu_count"] >= 1
    assert {"zero_best_vs_raw", "zero_best_vs_best_celery"} <= set(data["targets"])
    assert len(data["targets"]["zero_best_vs_each_raw"]) == 2
    assert data["targets_from_launch"]["rate"] == "messages_per_s"
    assert (tmp_path / "scaling.csv").read_text().startswith("sink_delay_ms,system,workers")
    assert "| batch | warm workers | messages |" in (tmp_path / "scaling.md").read_text()
    assert (tmp_path / "scaling.png").read_bytes()[:4] == b"\x89PNG"


def test_chat_load_runs_locust_and_writes_percentiles(tmp_path: Path) -> None:
    run("benchmarks.chat_load", "--users", "3", "--seconds", "6", "--closed-users", "2",
        "--closed-seconds", "4", "--closed-rounds", "1", "--idle-seconds", "1",
        "--paced-users", "2", "--flood-seconds", "4", "--sessions-per-ip", "20",
        "--out", str(tmp_path))  # (a flood of 4 s meets 20 a minute on any machine)
    data = json.loads((tmp_path / "chat.json").read_text())
    [row] = data["results"]
    assert row["users"] == 3 and row["requests"] > 0
    assert {"requests_per_s", "p50_ms", "p95_ms", "p99_ms", "failures"} <= set(row)
    assert "POST /chat/api/sessions" in row["by_endpoint"]
    assert row["db_commands_by_kind_per_turn"]["insert"] > 0
    closed = data["closed_loop"]
    assert closed["noop_requests_per_s"] > 0 and closed["chat_turns_per_s"] > 0
    assert data["targets"]["turn_rate_at_least_60pct_of_noop"]["value"] > 0
    assert data["open_loop"]["requests"] > 0 and data["open_loop"]["failures"] == 0
    flood = data["flood_from_one_address"]  # one address over its limit: 429s, apart
    assert flood["refused_429"] > 0 and flood["failures"] == 0
    assert row["failures"] == 0  # customers at addresses of their own meet no limit


def test_admin_jobs_times_the_api_while_jobs_queue(tmp_path: Path) -> None:
    run("benchmarks.admin_jobs", "--jobs", "3", "--customers", "500", "--out", str(tmp_path))
    data = json.loads((tmp_path / "admin_jobs.json").read_text())
    assert data["statuses"] == ["done"] * 3
    assert 1 <= data["most_running_seen"] <= data["jobs_at_once"]
    assert set(data["requests"]) == {"health", "new_session", "turn", "campaigns"}
    assert all(r["n"] > 0 for r in data["requests"].values())


def test_marketing_timers_hold_offers_and_fire_a_sample(tmp_path: Path) -> None:
    run("benchmarks.marketing_timers", "--offers", "300", "--firing", "10", "--spread", "2",
        "--burst", "40", "--out", str(tmp_path))
    data = json.loads((tmp_path / "marketing.json").read_text())
    assert data["pending_offers"] == 310 and data["fired"] == 10
    assert data["actor_rss_mb_loaded"] > 0 and data["lateness_p99_ms"] is not None
    burst = data["burst"]
    assert burst["fired"] == 40 and 1 <= burst["batches"] < 40
    assert burst["db_commands_per_offer"] < 1


def test_journeys_fire_a_due_sample_answer_events_and_restart_shards(tmp_path: Path) -> None:
    run("benchmarks.journeys", "--customers", "400", "--shards", "2", "--rate", "20",
        "--window", "2", "--events", "20", "--events-rate", "20", "--out", str(tmp_path))
    data = json.loads((tmp_path / "journeys.json").read_text())
    assert data["customers_in_journeys"] == 460 and len(data["shards"]) == 2
    assert data["timers"]["fired"] == 40 and data["timers"]["lateness_p99_ms"] is not None
    assert data["reaction"]["answered"] == 20 and data["reaction"]["p99_ms"] > 0
    assert all(shard["rss_mb"] > 0 and shard["load_s"] is not None
               for shard in data["shards"])
    assert data["timers"]["db_commands_per_step"] > 0  # (at this size, mostly the sweeps)
    assert (tmp_path / "journeys.png").stat().st_size > 0


def test_smtp_sink_counts_and_refuses_at_the_configured_rates() -> None:
    import asyncio

    import aiosmtplib

    from benchmarks.smtp_sink import BenchSink

    async def send(port: int, n: int) -> int:
        refused = 0
        for i in range(n):
            try:
                await aiosmtplib.send(f"Message-ID: <m{i}@x>\r\n\r\nhi", sender="a@x.example",
                                      recipients=[f"r{i}@x.example"], hostname="127.0.0.1",
                                      port=port)
            except aiosmtplib.SMTPRecipientsRefused:
                refused += 1
        return refused

    with BenchSink(delay_ms=0, reject_rate=0.5, processes=2) as sink:
        refused = asyncio.run(send(sink.port, 40))
        stats = sink.stats()
        sink.reset()
        assert sink.accepted() == 0
    assert stats["accepted"] + refused == 40 and 0 < refused < 40
    assert stats["refused"] == refused
    assert len(stats["arrivals"]) == stats["accepted"]


def test_reports_benchmark_times_every_format(tmp_path: Path) -> None:
    run("benchmarks.reports", "--sizes", "500", "1000", "--repeats", "2",
        "--out", str(tmp_path))
    data = json.loads((tmp_path / "reports.json").read_text())
    assert [r["deliveries"] for r in data["results"]] == [500, 1000]
    for row in data["results"]:
        for kind in ("performance", "billing"):
            for fmt in ("json", "csv", "xlsx"):
                assert 0 < row[f"{kind}_{fmt}_p50_ms"] <= row[f"{kind}_{fmt}_p95_ms"]
    assert data["results"][-1]["seed_per_million_s"] > 0


def test_audience_launch_reports_first_message_and_runner_memory(tmp_path: Path) -> None:
    run("benchmarks.audience", "--sizes", "300", "1500", "--watch-s", "6", "--workers", "2",
        "--out", str(tmp_path))
    data = json.loads((tmp_path / "audience.json").read_text())
    assert [r["recipients"] for r in data["results"]] == [300, 1500]
    for row in data["results"]:
        assert row["first_message_s"] is not None and row["sent_while_watched"] > 0
        assert row["runner_rss_mb_peak"] > 0 and row["customers_in_database"] >= 300
    assert {"rss_large_vs_small", "first_message_within_10_s"} <= set(data["targets"])


def test_send_path_cpu_compares_the_send_path_with_raw(tmp_path: Path) -> None:
    run("benchmarks.send_path_cpu", "--messages", "300", "--out", str(tmp_path))
    data = json.loads((tmp_path / "send_path_cpu.json").read_text())
    assert data["messages"] == 300 and data["connections"] == 4
    for part in ("send_path", "raw"):
        assert data[part]["messages_per_s"] > 0 and data[part]["sender_cpu_ms"] > 0
    assert data["send_path"]["database_cpu_ms"] > 0  # it recorded outcomes; raw did not


def test_throttle_compares_the_adaptive_rate_with_fixed_limits(tmp_path: Path) -> None:
    run("benchmarks.throttle", "--limits", "40", "--seconds", "3", "--out", str(tmp_path))
    data = json.loads((tmp_path / "throttle.json").read_text())
    assert [r["mode"] for r in data["runs"]] == ["adaptive", "fixed_above", "fixed_below"]
    for row in data["runs"]:  # every recipient sent once, whatever the relay said
        assert row["outcomes"] == {"sent": 120} and row["accepted"] == 120
        assert row["accepted_per_s"] and row["ideal_s"] == 3.0
    assert data["runs"][1]["deferrals"] > 0  # the fixed rate above the limit was told off
    assert set(data["targets"][0]) == {"relay_limit_per_s", "adaptive_within_15pct_of_ideal",
                                       "adaptive_5x_fewer_deferrals_than_fixed_above",
                                       "nothing_failed"}
    assert (tmp_path / "throttle.png").stat().st_size > 0


def _row_at(rate: float, tries: list[int]):
    """A row that sends at `rate` messages/s, from launch, recording each try's size."""
    def run(messages: int) -> dict:
        tries.append(messages)
        return {"elapsed_s": messages / rate, "messages_per_s": rate}
    return run


def test_rows_are_sized_to_last_and_resized_from_the_rate_they_measured() -> None:
    from benchmarks.scaling import sized_runs

    # Guessed at 800/s, sent at 1,000/s: 9,600 messages last 9.6 s; the next try is
    # sized from the 1,000/s measured (12,000), not doubled (19,200).
    tries: list[int] = []
    assert sized_runs(_row_at(1000, tries), 800, 10, 200, 30_000,
                      resize_from_rate=True)["elapsed_s"] >= 10
    assert tries == [9_600, 12_000]
    # The app's rows double, so that their audiences come in few sizes.
    tries = []
    sized_runs(_row_at(1000, tries), 800, 10, 200, 30_000)
    assert tries == [9_600, 19_200]
    # A small shortfall still grows the next try by a quarter; never past the largest.
    tries = []
    sized_runs(_row_at(1220, tries), 1000, 10, 200, 30_000, resize_from_rate=True)
    assert tries == [12_000, 15_000]
    tries = []
    sized_runs(_row_at(6000, tries), 4_900, 10, 200, 70_000, resize_from_rate=True)
    assert tries == [58_800, 70_000]
    # The floor (whole batches a worker) holds whatever the estimate.
    tries = []
    sized_runs(_row_at(10, tries), 1, 10, 400, 30_000, resize_from_rate=True)
    assert tries == [400]
