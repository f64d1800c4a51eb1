"""Real peers for tests, the demo and benchmarks: brokers, EventBridge stand-ins, moto."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A loopback port free right now (the OS picks it; a race with others is unlikely)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
