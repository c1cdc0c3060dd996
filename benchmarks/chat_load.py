"""Chat under load: Locust headless at 50, 100 and 200 users against the real app.

Starts the app (ChatBot at 2 replicas, embedded database and SMTP sink), runs
benchmarks/locustfile.py for a fixed time per user count, and writes users,
requests/s, p50/p95/p99 ms and failures to chat.json.

    python -m benchmarks.chat_load                       # 50, 100, 200 users, 60 s each
    python -m benchmarks.chat_load --users 2 --seconds 5 --out /tmp/x
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

from app.tokens import admin_token
from benchmarks.harness import machine, running_app

RESULTS = Path(__file__).parent / "results"
LOCUSTFILE = Path(__file__).parent / "locustfile.py"


def run_locust(base: str, token: str, users: int, seconds: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        prefix = Path(tmp) / "run"
        env = {**os.environ, "COMMS_ADMIN_TOKEN": token}
        subprocess.run([sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
                        "--host", base, "-u", str(users), "-r", str(max(1, users // 2)),
                        "-t", f"{seconds}s", "--csv", str(prefix), "--only-summary",
                        "--loglevel", "WARNING"], env=env, check=False, timeout=seconds + 120,
                       capture_output=True)
        with open(f"{prefix}_stats.csv") as handle:
            rows = list(csv.DictReader(handle))
    total = next(r for r in rows if r["Name"] == "Aggregated")
    return {"users": users, "seconds": seconds,
            "requests": int(total["Request Count"]),
            "requests_per_s": round(float(total["Requests/s"]), 2),
            "p50_ms": float(total["50%"]), "p95_ms": float(total["95%"]),
            "p99_ms": float(total["99%"]), "failures": int(total["Failure Count"]),
            "by_endpoint": {r["Name"]: {"requests": int(r["Request Count"]),
                                        "p99_ms": float(r["99%"]),
                                        "failures": int(r["Failure Count"])}
                            for r in rows if r["Name"] != "Aggregated"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="+", default=[50, 100, 200])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    results = []
    with running_app(chatbot_replicas=2) as (settings, _api, base):
        for users in args.users:
            row = run_locust(base, admin_token(settings), users, args.seconds)
            print(json.dumps({k: v for k, v in row.items() if k != "by_endpoint"}), flush=True)
            results.append(row)
    target = next((r for r in results if r["users"] == 100), None)
    summary = {"machine": machine(), "started_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
               "command": f"python -m benchmarks.chat_load --users {' '.join(map(str, args.users))}"
                          f" --seconds {args.seconds}",
               "target": {"p99_ms_at_100_users": target["p99_ms"] if target else None,
                          "met": bool(target and target["p99_ms"] <= 100
                                      and target["failures"] == 0)},
               "results": results}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "chat.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary["target"]), flush=True)


if __name__ == "__main__":
    main()
