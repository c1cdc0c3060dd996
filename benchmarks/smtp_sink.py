"""A benchmark SMTP sink: aiosmtpd with a per-message delay and failure rates.

It stands in for a real relay (default 50 ms per message), answers 451 or 550 at the
configured rates, and counts what it accepts, stamping each Message-ID with the time
it arrived so a benchmark can measure launch-to-delivery latency.

Run on its own:
    python -m benchmarks.smtp_sink --port 2525 --delay-ms 50 --tempfail-rate 0.01
"""

from __future__ import annotations

import argparse
import asyncio
import random
import threading
import time
from email.parser import BytesHeaderParser

from aiosmtpd.controller import Controller

from app.local_services import free_port


class BenchHandler:
    def __init__(self, delay_s: float = 0.05, tempfail_rate: float = 0.0,
                 reject_rate: float = 0.0, seed: int = 7):
        self.delay_s = delay_s
        self.tempfail_rate = tempfail_rate
        self.reject_rate = reject_rate
        self.random = random.Random(seed)
        self.accepted = 0
        self.refused = 0
        self.arrivals: dict[str, float] = {}  # Message-ID -> time.time() of acceptance
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
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
        headers = BytesHeaderParser().parsebytes(envelope.original_content or envelope.content)
        with self.lock:
            self.accepted += 1
            self.arrivals[str(headers.get("Message-ID", "")).strip()] = time.time()
        return "250 2.0.0 Accepted"

    def reset(self) -> None:
        with self.lock:
            self.accepted = self.refused = 0
            self.arrivals = {}


class BenchSink:
    def __init__(self, delay_ms: float = 50.0, tempfail_rate: float = 0.0,
                 reject_rate: float = 0.0, port: int | None = None):
        self.handler = BenchHandler(delay_ms / 1000, tempfail_rate, reject_rate)
        self.port = port or free_port()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> BenchSink:
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=2525)
    parser.add_argument("--delay-ms", type=float, default=50.0)
    parser.add_argument("--tempfail-rate", type=float, default=0.0)
    parser.add_argument("--reject-rate", type=float, default=0.0)
    args = parser.parse_args()
    with BenchSink(args.delay_ms, args.tempfail_rate, args.reject_rate, args.port) as sink:
        print(f"benchmark sink on 127.0.0.1:{sink.port}, {args.delay_ms} ms per message; "
              "Ctrl-C stops", flush=True)
        try:
            while True:
                time.sleep(5)
                print(f"accepted {sink.handler.accepted}, refused {sink.handler.refused}",
                      flush=True)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
