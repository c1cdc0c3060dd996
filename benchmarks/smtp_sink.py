"""A benchmark SMTP sink in processes of its own: aiosmtpd with a per-message delay and
failure rates, several processes behind one port (SO_REUSEPORT) when one is the limit.

It stands in for a real relay (default 50 ms per message), answers 451 or 550 at the
configured rates, and stamps each accepted Message-ID with the time it arrived, so a
benchmark can measure launch-to-delivery latency. It never shares a process (or a
GIL) with what it measures: the benchmark talks to it over a pipe.

Run on its own:
    python -m benchmarks.smtp_sink --port 2525 --delay-ms 50 --processes 2
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import socket
import threading
import time
from email.parser import BytesHeaderParser

from aiosmtpd.smtp import SMTP

from app.core.ratelimit import TokenBucket
from embedded.processes import free_port


class BenchHandler:
    def __init__(self, delay_s: float = 0.05, tempfail_rate: float = 0.0,
                 reject_rate: float = 0.0, seed: int = 7,
                 throttle_per_s: float | None = None):
        self.delay_s = delay_s
        # Above this rate of recipients: "421 ... slow down", as a throttling relay.
        self.throttle = TokenBucket(throttle_per_s) if throttle_per_s else None
        self.throttled = 0
        self.tempfail_rate = tempfail_rate
        self.reject_rate = reject_rate
        self.random = random.Random(seed)
        self.accepted = 0
        self.refused = 0
        self.arrivals: dict[str, float] = {}  # Message-ID -> time.time() of acceptance
        self.lock = threading.Lock()
        self.parser = BytesHeaderParser()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if self.throttle is not None and self.throttle.take() > 0:
            self.throttled += 1
            return "421 4.7.0 Too many messages, slow down"
        roll = self.random.random()
        if roll < self.reject_rate:
            self.refused += 1
            return "550 5.1.1 Benchmark rejection"
        if roll < self.reject_rate + self.tempfail_rate:
            self.refused += 1
            return "451 4.3.0 Benchmark temporary failure"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        headers = self.parser.parsebytes(envelope.original_content or envelope.content)
        with self.lock:
            self.accepted += 1
            self.arrivals[str(headers.get("Message-ID", "")).strip()] = time.time()
        return "250 2.0.0 Accepted"

    def snapshot(self) -> dict:
        with self.lock:
            return {"accepted": self.accepted, "refused": self.refused,
                    "throttled": self.throttled, "arrivals": dict(self.arrivals)}

    def count(self) -> int:
        with self.lock:
            return self.accepted

    def reset(self) -> None:
        with self.lock:
            self.accepted = self.refused = self.throttled = 0
            self.arrivals = {}


def listening_socket(port: int, host: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def serve(conn, port: int, delay_s: float, tempfail_rate: float, reject_rate: float,
          seed: int, throttle_per_s: float | None = None, host: str = "127.0.0.1") -> None:
    """One sink process: the SMTP server on a loop thread, commands over the pipe."""
    handler = BenchHandler(delay_s, tempfail_rate, reject_rate, seed, throttle_per_s)
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(loop.create_server(
        lambda: SMTP(handler, hostname="bench-sink", loop=loop),
        sock=listening_socket(port, host)))
    threading.Thread(target=loop.run_forever, daemon=True).start()
    conn.send("ready")
    while True:
        command = conn.recv()
        if command == "stats":
            conn.send(handler.snapshot())
        elif command == "count":
            conn.send(handler.count())
        elif command == "reset":
            handler.reset()
            conn.send("ok")
        else:
            break
    loop.call_soon_threadsafe(server.close)
    conn.send("stopped")


class BenchSink:
    """`processes` sink processes sharing one port (on loopback, or `host`)."""

    def __init__(self, delay_ms: float = 50.0, tempfail_rate: float = 0.0,
                 reject_rate: float = 0.0, port: int | None = None, processes: int = 1,
                 throttle_per_s: float | None = None, host: str = "127.0.0.1"):
        self.delay_s = delay_ms / 1000
        # (each process throttles at its share: one process for an exact limit)
        self.throttle_per_s = throttle_per_s / processes if throttle_per_s else None
        self.rates = (tempfail_rate, reject_rate)
        self.host = host
        self.port = port or free_port(host)
        self.processes = processes
        self.workers: list[tuple[multiprocessing.Process, object]] = []

    def __enter__(self) -> BenchSink:
        context = multiprocessing.get_context("spawn")
        for n in range(self.processes):
            parent, child = context.Pipe()
            process = context.Process(target=serve, daemon=True, args=(
                child, self.port, self.delay_s, *self.rates, 7 + n, self.throttle_per_s,
                self.host))
            process.start()
            self.workers.append((process, parent))
        for process, parent in self.workers:
            if not parent.poll(60) or parent.recv() != "ready":
                raise RuntimeError(f"benchmark sink process {process.pid} did not start")
        return self

    def _ask(self, command: str) -> list:
        for _, parent in self.workers:
            parent.send(command)
        return [parent.recv() for _, parent in self.workers]

    def stats(self) -> dict:
        """accepted, refused and the arrival time of each Message-ID, over all processes."""
        merged = {"accepted": 0, "refused": 0, "throttled": 0, "arrivals": {}}
        for part in self._ask("stats"):
            merged["accepted"] += part["accepted"]
            merged["refused"] += part["refused"]
            merged["throttled"] += part["throttled"]
            merged["arrivals"].update(part["arrivals"])
        return merged

    def accepted(self) -> int:
        return sum(self._ask("count"))

    def reset(self) -> None:
        self._ask("reset")

    def pids(self) -> list[int]:
        return [process.pid for process, _ in self.workers]

    def __exit__(self, *exc) -> None:
        for process, parent in self.workers:
            try:
                parent.send("stop")
                parent.poll(5)
            except (BrokenPipeError, OSError):
                pass
            process.join(5)
            if process.is_alive():
                process.kill()
        self.workers = []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=2525)
    parser.add_argument("--delay-ms", type=float, default=50.0)
    parser.add_argument("--tempfail-rate", type=float, default=0.0)
    parser.add_argument("--reject-rate", type=float, default=0.0)
    parser.add_argument("--processes", type=int, default=1)
    args = parser.parse_args()
    with BenchSink(args.delay_ms, args.tempfail_rate, args.reject_rate, args.port,
                   args.processes) as sink:
        print(f"benchmark sink on 127.0.0.1:{sink.port}, {args.delay_ms} ms per message, "
              f"{args.processes} process(es); Ctrl-C stops", flush=True)
        try:
            while True:
                time.sleep(5)
                stats = sink.stats()
                print(f"accepted {stats['accepted']}, refused {stats['refused']}", flush=True)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
