"""Chat under load, beside a no-op Serve ingress measured in the same run.

Starts the app (ChatBot at 1 replica, embedded database and SMTP sink) plus a no-op
Serve application (`benchmarks/noop_app.py`) behind the same proxy, then runs Locust
in its own process:

1. Closed loop (no wait between requests) with `--closed-users` users: the no-op
   ingress and chat conversations (a session each), alternated `--closed-rounds`
   times. Their maximum rates (mean of the rounds) and the ratio.
2. Open loop: the same conversations paced at half the no-op's rate, its p99.
3. `benchmarks/locustfile.py` (whole conversations, 0.5-1.5 s between answers, and
   a few operators) at each of `--users`.
4. A flood: one address opening sessions as fast as it can, for `--flood-seconds`:
   what the per-address limit refuses (429) is shown apart from failures.

Simulated customers each come from an address of their own (X-Forwarded-For, which
the app is told to trust as behind a load balancer), so the abuse limits meet only
the flood.

Each run records requests/s, p50/p95/p99 ms, failures, database commands per chat
turn (`serverStatus` opcounters over the run, net of the idle background, divided
by the turns) and the CPU of the busiest processes. Results: chat.json.

    python -m benchmarks.chat_load                      # 50 100 200 400 users, 60 s each
    python -m benchmarks.chat_load --users 2 --seconds 5 --closed-seconds 3 --out /tmp/x
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pymongo import MongoClient
from ray import serve

from app.core.tokens import admin_token
from benchmarks.harness import CpuWatch, machine, mongodb_uri, opcount, opcounters, running_app
from benchmarks.noop_app import noop_app

RESULTS = Path(__file__).parent / "results"
LOCUSTFILE = Path(__file__).parent / "locustfile.py"
CLOSED_LOOP = Path(__file__).parent / "locust_closed_loop.py"
TURN = "POST /chat/api/sessions/[id]/messages"


def run_locust(locustfile: Path, base: str, users: int, seconds: int,
               env: dict[str, str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        prefix = Path(tmp) / "run"
        subprocess.run([sys.executable, "-m", "locust", "-f", str(locustfile), "--headless",
                        "--host", base, "-u", str(users), "-r", str(max(1, users // 2)),
                        "-t", f"{seconds}s", "--csv", str(prefix), "--only-summary",
                        "--loglevel", "WARNING"], env={**os.environ, **env}, check=False,
                       timeout=seconds + 120, capture_output=True)
        with open(f"{prefix}_stats.csv") as handle:
            rows = list(csv.DictReader(handle))
    total = next(r for r in rows if r["Name"] == "Aggregated")
    return {"users": users, "seconds": seconds,
            "requests": int(total["Request Count"]),
            "requests_per_s": round(float(total["Requests/s"]), 2),
            "p50_ms": float(total["50%"]), "p95_ms": float(total["95%"]),
            "p99_ms": float(total["99%"]), "failures": int(total["Failure Count"]),
            "by_endpoint": {r["Name"]: {"requests": int(r["Request Count"]),
                                        "requests_per_s": round(float(r["Requests/s"]), 2),
                                        "p50_ms": float(r["50%"]), "p99_ms": float(r["99%"]),
                                        "failures": int(r["Failure Count"])}
                            for r in rows if r["Name"] != "Aggregated"}}


class Measured:
    """Database commands and CPU over one Locust run."""

    def __init__(self, mongo: MongoClient, idle_ops_per_s: float) -> None:
        self.mongo, self.idle = mongo, idle_ops_per_s
        self.by_kind, self.started, self.cpu = opcounters(mongo), time.time(), CpuWatch()
        self.ops = sum(self.by_kind.values())

    def done(self, row: dict) -> dict:
        elapsed = time.time() - self.started
        after = opcounters(self.mongo)
        ops = sum(after.values()) - self.ops - 1 - self.idle * elapsed
        by_kind = {k: after[k] - self.by_kind[k] for k in after}
        by_kind["command"] -= 1  # the serverStatus that read these
        turns = row["by_endpoint"].get(TURN, {}).get("requests", 0)
        chat_calls = sum(v["requests"] for k, v in row["by_endpoint"].items() if "/chat/" in k)
        return {**row, "db_commands": round(ops),
                "db_commands_per_turn": round(ops / turns, 2) if turns else None,
                "db_commands_per_chat_call": round(ops / chat_calls, 2) if chat_calls else None,
                "db_commands_by_kind_per_turn": {k: round(v / turns, 3) for k, v in
                                                 by_kind.items()} if turns else None,
                **self.cpu.done(elapsed, top=8)}


def idle_rate(mongo: MongoClient, seconds: float = 10) -> float:
    before, started = opcount(mongo), time.time()
    time.sleep(seconds)
    return max(0.0, (opcount(mongo) - before - 1) / (time.time() - started))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="+", default=[50, 100, 200, 400])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--closed-users", type=int, default=20)
    parser.add_argument("--closed-seconds", type=int, default=20)
    parser.add_argument("--closed-rounds", type=int, default=2)
    parser.add_argument("--replicas", type=int, default=1,
                        help="ChatBot replicas (one on 2 cores: a second competes with the "
                             "proxy and the database)")
    parser.add_argument("--idle-seconds", type=float, default=10,
                        help="how long to count the idle app's database commands first")
    parser.add_argument("--paced-users", type=int, default=50)
    parser.add_argument("--flood-seconds", type=int, default=15)
    parser.add_argument("--sessions-per-ip", type=int, default=None,
                        help="the app's per-address session limit a minute (default: the "
                             "app's); a short flood on a slow machine meets a low one")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    results, closed = [], {}
    limit = ({"limit_chat_sessions_per_ip": args.sessions_per_ip}
             if args.sessions_per_ip is not None else {})
    with running_app(chatbot_replicas=args.replicas, trust_forwarded_for=True, **limit) as (
            settings, _api, base):
        serve.run(noop_app, name="noop", route_prefix="/noop")
        mongo = MongoClient(mongodb_uri(settings))
        idle = idle_rate(mongo, args.idle_seconds)
        # Alternated, twice each, so a drift of the machine falls on both alike.
        for round_ in range(args.closed_rounds):
            for target in ("noop", "chat"):
                measured = Measured(mongo, idle)
                row = measured.done(run_locust(CLOSED_LOOP, base, args.closed_users,
                                               args.closed_seconds, {"BENCH_TARGET": target}))
                closed.setdefault(target, []).append(row)
                print(json.dumps({"closed_loop": target, "round": round_, **{k: row[k] for k in (
                    "requests_per_s", "p50_ms", "p99_ms", "failures")}}), flush=True)
        noop_rate = sum(r["requests_per_s"] for r in closed["noop"]) / len(closed["noop"])
        measured = Measured(mongo, idle)
        paced = measured.done(run_locust(
            CLOSED_LOOP, base, args.paced_users, args.closed_seconds,
            {"BENCH_TARGET": "paced",
             "BENCH_RATE_PER_USER": str(noop_rate / 2 / args.paced_users)}))
        paced["offered_per_s"] = round(noop_rate / 2, 2)
        print(json.dumps({"paced": {k: paced[k] for k in (
            "requests_per_s", "p50_ms", "p99_ms", "failures")}}), flush=True)
        flood = run_locust(CLOSED_LOOP, base, 4, args.flood_seconds, {"BENCH_TARGET": "flood"})
        flood["refused_429"] = flood["by_endpoint"].get("429 refused", {}).get("requests", 0)
        print(json.dumps({"flood": {k: flood[k] for k in (
            "requests", "refused_429", "failures")}}), flush=True)
        env = {"COMMS_ADMIN_TOKEN": admin_token(settings)}
        for users in args.users:
            measured = Measured(mongo, idle)
            row = measured.done(run_locust(LOCUSTFILE, base, users, args.seconds, env))
            print(json.dumps({k: v for k, v in row.items()
                              if k not in ("by_endpoint", "top_processes")}), flush=True)
            results.append(row)

    def turn_rate(row: dict) -> float:
        return row["by_endpoint"].get(TURN, {}).get("requests_per_s", 0.0)

    noop_rate = round(noop_rate, 2)
    chat_rate = round(sum(turn_rate(r) for r in closed["chat"]) / len(closed["chat"]), 2)
    ratio = round(chat_rate / noop_rate, 3) if noop_rate else None
    at = {r["users"]: r for r in results}
    per_turn = [r["db_commands_per_turn"] for r in results if r["db_commands_per_turn"]]
    summary = {
        "machine": machine(), "started_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": (f"python -m benchmarks.chat_load --users {' '.join(map(str, args.users))}"
                    f" --seconds {args.seconds} --closed-users {args.closed_users}"
                    f" --closed-seconds {args.closed_seconds} --closed-rounds {args.closed_rounds}"
                    f" --replicas {args.replicas} --paced-users {args.paced_users}"
                    f" --flood-seconds {args.flood_seconds}"),
        "chatbot_replicas": args.replicas, "idle_db_commands_per_s": round(idle, 2),
        "closed_loop": {"users": args.closed_users, "rounds": args.closed_rounds,
                        "noop": closed["noop"], "chat": closed["chat"],
                        "noop_requests_per_s": noop_rate, "chat_turns_per_s": chat_rate,
                        "turn_rate_over_noop": ratio},
        "open_loop": paced,
        "flood_from_one_address": flood,
        "targets": {
            "no_failures_at_50_100_200_users": {
                "value": {n: at[n]["failures"] for n in (50, 100, 200) if n in at},
                "met": all(at[n]["failures"] == 0 for n in (50, 100, 200) if n in at)},
            "open_loop_p99_ms_at_half_noop_capacity": {"value": paced["p99_ms"],
                                                       "met": paced["failures"] == 0},
            "turn_rate_at_least_60pct_of_noop": {"value": ratio,
                                                 "met": bool(ratio and ratio >= 0.6)},
            **{f"p99_at_most_100ms_at_{n}_users": {
                "value": at[n]["p99_ms"], "met": at[n]["p99_ms"] <= 100
                and at[n]["failures"] == 0} for n in (100, 200) if n in at},
            "db_commands_per_turn_at_most_2": {"value": max(per_turn) if per_turn else None,
                                               "met": bool(per_turn) and max(per_turn) <= 2},
        },
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "chat.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary["targets"]), flush=True)


if __name__ == "__main__":
    main()
