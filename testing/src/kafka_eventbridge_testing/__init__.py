"""Real peers for tests, the demo and benchmarks: brokers, EventBridge stand-ins, moto."""

from __future__ import annotations

import abc
import socket
from types import TracebackType
from typing import Self


def free_port() -> int:
    """A loopback port free right now (the OS picks it; a race with others is unlikely)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
