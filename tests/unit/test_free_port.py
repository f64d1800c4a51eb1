"""The test peers' port picker."""

from __future__ import annotations

import socket

from kafka_eventbridge_testing import free_port


def test_free_port_never_hands_out_the_same_port_twice() -> None:
    # The OS may give a closed port again at once; two listeners of one broker on one port
    # made the broker refuse to start.
    ports = [free_port() for _ in range(300)]

    assert len(set(ports)) == len(ports)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", ports[-1]))  # and it is free
