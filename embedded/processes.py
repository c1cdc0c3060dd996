"""Child processes and ports of the embedded services: a free loopback port, and a
child that dies with the process that started it."""

from __future__ import annotations

import ctypes
import signal
import socket
from collections.abc import Collection


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def free_ports(n: int, avoid: Collection[int] = (), host: str = "127.0.0.1"
               ) -> list[int]:
    """n distinct free ports, none of `avoid` (a port chosen for another server that
    has not bound it yet): each closed socket's port may be handed out again."""
    ports: list[int] = []
    while len(ports) < n:
        port = free_port(host)
        if port not in avoid and port not in ports:
            ports.append(port)
    return ports


def die_with_parent() -> None:
    # Linux: the child gets SIGTERM when the process that started it dies, so a
    # killed Ray worker or a Ctrl-C never leaves an orphaned database behind.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
