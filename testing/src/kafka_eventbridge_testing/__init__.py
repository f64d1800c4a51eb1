"""Real peers for tests, the demo and benchmarks: brokers, EventBridge stand-ins, moto."""

from __future__ import annotations

import abc
import socket
import threading
from types import TracebackType
from typing import Self

_handed_out: set[int] = set()
_handed_out_lock = threading.Lock()


def free_port() -> int:
    """A loopback port free right now (the OS picks it; a race with others is unlikely), and
    never one this process was given before: the OS may pick the same port again once it is
    closed, and a broker given one port for two listeners refuses to start."""
    with _handed_out_lock:
        for _ in range(1000):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind(("127.0.0.1", 0))
                port = int(sock.getsockname()[1])
            if port not in _handed_out:
                _handed_out.add(port)
                return port
    raise RuntimeError("no loopback port left that was not handed out before")


class Peer(abc.ABC):
    """A peer a test, the demo or a benchmark starts, uses and stops: in a ``with`` block,
    or with ``start()`` and ``stop()``."""

    @abc.abstractmethod
    def start(self) -> object:
        """Start it; returns once it can be used."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop it and let go of what it holds."""

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
