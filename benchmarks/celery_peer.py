"""The peer in the scaling benchmark: the Celery + RabbitMQ design operator-comms
replaces, one task per email, measured against the same sink in the same run.

- RabbitMQ is Debian's `rabbitmq-server`, started by `RabbitMQ` on a free loopback
  port with a throw-away node, data and cookie, and stopped afterwards.
- `celery -A benchmarks.celery_peer worker` runs the pool: prefork with
  `--concurrency W` (one send at a time per child), or gevent with many greenlets
  (its best configuration for a slow relay). Each child (or greenlet) keeps one
  persistent SMTP connection; tasks ack late; the prefetch multiplier is set high, as
  Celery's optimizing guide advises for many short tasks.
- Each task renders the same Jinja2 templates and builds the same message as the app
  (`app.channels.templates`, `app.channels.email.mailer`), then sends it with smtplib.
  It keeps no record of the delivery: that is the design being replaced.

Environment of the worker: PEER_BROKER (AMQP URL), PEER_SMTP_PORT, PEER_POOL.
"""

from __future__ import annotations

import os
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from celery import Celery

from embedded.processes import free_port

app = Celery("peer", broker=os.environ.get("PEER_BROKER", "amqp://guest:guest@127.0.0.1:5672//"))
app.conf.update(
    task_acks_late=True,
    task_ignore_result=True,
    task_serializer="json",
    worker_prefetch_multiplier=int(os.environ.get("PEER_PREFETCH", "16")),
    worker_disable_rate_limits=True,
    broker_connection_retry_on_startup=True,
    task_default_queue="peer-email",
)

_local = threading.local()  # one connection per prefork child, or per gevent greenlet
MAIL_FROM = "Operator <no-reply@operator.example>"


def _connection() -> smtplib.SMTP:
    client = getattr(_local, "smtp", None)
    if client is None:
        client = smtplib.SMTP("127.0.0.1", int(os.environ["PEER_SMTP_PORT"]))
        _local.smtp = client
    return client


@app.task(name="peer.send_email")
def send_email(n: int, email: str, name: str, plan: str) -> None:
    from app.channels.email.mailer import Mail, build_message
    from app.channels.templates import compile_templates

    templates = getattr(_local, "templates", None)
    if templates is None:
        templates = _local.templates = compile_templates(
            "Hello {{ first_name }}", "Dear {{ name }}, your plan is {{ plan }}.\n"
            "{{ unsubscribe_url }}")
    subject, text, _ = templates.render({"first_name": name.split()[0], "name": name,
                                         "plan": plan, "unsubscribe_url": f"x/{n}"})
    message = build_message(Mail(to_email=email, to_name=name, subject=subject, text=text,
                                 message_id=f"<peer{n}@bench.example>"), MAIL_FROM)
    try:
        _connection().sendmail(message.sender, [message.recipient], message.data)
    except smtplib.SMTPServerDisconnected:
        _local.smtp = None
        _connection().sendmail(message.sender, [message.recipient], message.data)


def producer(broker: str) -> Celery:
    """A client of the peer's queue on this broker (what the old system's API did)."""
    client = Celery("peer-producer", broker=broker)
    client.conf.update(task_default_queue="peer-email", task_serializer="json",
                       task_ignore_result=True)
    return client


def enqueue(client: Celery, n: int, email: str, name: str, plan: str) -> None:
    client.send_task("peer.send_email", args=(n, email, name, plan))


class RabbitMQ:
    """Debian's rabbitmq-server on a free loopback port, with its own node and data."""

    SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"

    def __init__(self) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="bench-rabbitmq-"))
        self.process: subprocess.Popen | None = None
        self.epmd_was_running = self._epmd_running()

    @staticmethod
    def _epmd_running() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", 4369), timeout=0.5):
                return True
        except OSError:
            return False

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def start(self, timeout_s: float = 90) -> RabbitMQ:
        if not Path(self.SERVER).exists():
            raise RuntimeError("rabbitmq-server is not installed: `make bench` installs it")
        (self.root / "home").mkdir()
        (self.root / "enabled_plugins").write_text("[].\n")
        env = {**os.environ, "HOME": str(self.root / "home"),
               "RABBITMQ_NODENAME": f"bench{self.port}@localhost",
               "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1", "RABBITMQ_NODE_PORT": str(self.port),
               "RABBITMQ_DIST_PORT": str(free_port()),
               "RABBITMQ_MNESIA_BASE": str(self.root / "mnesia"),
               "RABBITMQ_LOG_BASE": str(self.root / "log"), "RABBITMQ_LOGS": "-",
               "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.root / "enabled_plugins"),
               "RABBITMQ_CONFIG_FILE": str(self.root / "rabbitmq"),
               "RABBITMQ_PID_FILE": str(self.root / "pid")}
        log = open(self.root / "server.log", "wb")  # noqa: SIM115 - owned by the child
        self.process = subprocess.Popen([self.SERVER], env=env, stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited; see {self.root / 'server.log'}")
            if b"Server startup complete" in (self.root / "server.log").read_bytes():
                return self
            time.sleep(0.3)
        self.stop()
        raise RuntimeError("rabbitmq-server did not start in time")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if not self.epmd_was_running and shutil.which("epmd"):
            subprocess.run(["epmd", "-kill"], capture_output=True, check=False)
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def celery_worker(broker: str, smtp_port: int, pool: str, concurrency: int,
                  prefetch: int = 16):
    """A Celery worker (its own processes) consuming the peer queue; purged first."""
    env = {**os.environ, "PEER_BROKER": broker, "PEER_SMTP_PORT": str(smtp_port),
           "PEER_PREFETCH": str(prefetch)}
    command = [sys.executable, "-m", "celery", "-A", "benchmarks.celery_peer", "worker",
               "--pool", pool, "--concurrency", str(concurrency), "--loglevel", "WARNING",
               "--without-gossip", "--without-mingle", "--without-heartbeat",
               "-n", f"peer-{os.getpid()}@%h"]
    process = subprocess.Popen(command, env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield process
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
