"""The embedded MongoDB: a SecantusDB server in a child process on 127.0.0.1.

The default when `COMMS_MONGODB_URI` is unset: `secantusd-py` runs with its data under
`<data_dir>/mongodb`, speaks the MongoDB wire protocol on a free loopback port, and
dies with its parent (PR_SET_PDEATHSIG), so a killed Ray worker never leaves it behind.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from embedded.processes import die_with_parent, free_port


class EmbeddedMongo:
    """A SecantusDB server in a child process, on a free loopback port."""

    def __init__(self, data_dir: Path, host: str = "127.0.0.1", port: int | None = None):
        self.storage = data_dir / "mongodb"
        self.host = host
        self.port = port or free_port(host)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        # Retryable writes off for this one server: SecantusDB records every retryable
        # write and walks all it holds (up to 10,000, for 30 minutes) on each new one,
        # so under load each write grew slower until that walk took 41% of the server's
        # time. A loopback server has no failover for a retry to survive; every write
        # of the app is idempotent or a compare-and-swap anyway. MongoDB keeps them.
        return f"mongodb://{self.host}:{self.port}/?directConnection=true&retryWrites=false"

    def start(self, timeout_s: float = 60.0) -> str:
        self.storage.mkdir(parents=True, exist_ok=True)
        log = open(self.storage.parent / "mongodb.log", "ab")  # noqa: SIM115 - owned by the child
        command = [
            sys.executable, "-c", "from secantus.cli import main; main()",
            "--host", self.host, "--port", str(self.port),
            "--storage-path", str(self.storage), "--log-level", "WARNING",
            # Standalone, as the URI's directConnection says: no replica-set oplog, which
            # the app never reads (no change streams, no transactions) and which cost
            # every write an extra encode and table insert (9% of the server's time on
            # the send path, by py-spy).
            "--standalone",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"SecantusDB exited with {self.process.returncode}; see {log.name}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return self.uri
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"SecantusDB did not listen on {self.host}:{self.port}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
