"""Child processes and ports of the embedded services: a free loopback port, and a
child that dies with the process that started it."""

from __future__ import annotations

import ctypes
import random
import signal
import socket
from collections.abc import Collection
from pathlib import Path


def _ephemeral_low() -> int:
    """The lowest port the kernel hands to outgoing connections (Linux: 32768)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host: str = "127.0.0.1") -> int:
    """A port free now, below the ephemeral range: a server binds it a moment later, and a
    port of that range may meanwhile be taken by an outgoing connection (a client's
    socket), which made a server's bind fail now and then."""
    top = _ephemeral_low() - 1
    for _ in range(50):
        port = random.randint(max(1025, top - 12_000), top)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
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
