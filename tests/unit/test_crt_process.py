"""The crt path's HTTP process: what happens when it dies, when the bridge dies, the socket
option it sets on its connections, and the frames of its pipes."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import orjson
import pytest
from botocore.config import Config
from botocore.exceptions import ConnectionClosedError

from kafka_eventbridge.crt import CrtTransport
from kafka_eventbridge.crt_process import (
    ANSWER,
    CALL,
    NAGLE_BODY_BYTES,
    FrameReader,
    Wire,
    frame,
    no_delay,
)
from kafka_eventbridge_testing.fake_eventbridge import (
    DEFAULT_CREDENTIALS,
    FakeEventBridge,
    FakeEventBridgeProcess,
    Faults,
)

BODY = b'{"Entries":[{"Source":"aws.partner/example.com/orders","DetailType":"t","Detail":"{}"}]}'


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeEventBridge]:
    with FakeEventBridge() as server:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        yield server


def transport(url: str) -> CrtTransport:
    session = boto3.session.Session(region_name="us-east-1")
    client = session.client("events", endpoint_url=url, config=Config(read_timeout=10))
    return CrtTransport(client, session.get_credentials(), "PutPartnerEvents", 4)


def wait_results(crt: CrtTransport, count: int, seconds: float = 15) -> list[object]:
    results: list[object] = []
    deadline = time.monotonic() + seconds
    while len(results) < count and time.monotonic() < deadline:
        results += [result for _, result, _ in crt.results(timeout=0.2)]
    return results


def gone(pid: int) -> bool:
    """Exited (reaped, or a zombie its new parent has not reaped yet)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in {"Z", "X"}


def test_calls_in_flight_fail_as_dropped_connections_when_the_process_dies(
    fake: FakeEventBridge,
) -> None:
    fake.set_faults(Faults(latency_ms=5000))
    crt = transport(fake.url)
    first = crt.process_id
    assert first is not None
    crt.send("a", BODY)
    crt.send("b", BODY)
    assert crt.results(timeout=0.3) == []  # written to the process, answers pending
    os.kill(first, signal.SIGKILL)
    results = wait_results(crt, 2)
    assert len(results) == 2
    assert all(isinstance(r, ConnectionClosedError) for r in results)  # retried by the bridge
    assert crt.in_flight == 0
    fake.set_faults(Faults())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # a new process, at most one a second
        crt.send("c", BODY)
        (answer,) = wait_results(crt, 1)
        if isinstance(answer, dict):
            break
        assert isinstance(answer, ConnectionClosedError)
        time.sleep(0.2)
    assert isinstance(answer, dict) and answer.get("FailedEntryCount") == 0
    assert crt.process_id not in {None, first}
    crt.close()


def test_results_waits_out_its_timeout_for_the_first_answer(fake: FakeEventBridge) -> None:
    """Longer than the transport's own last-resort check (0.5 s), and not ended early by a
    read that brings nothing whole."""
    fake.set_faults(Faults(latency_ms=1500))
    crt = transport(fake.url)
    try:
        crt.send("a", BODY)
        started = time.monotonic()
        (result,) = crt.results(timeout=30)
        assert time.monotonic() - started < 30
        _, answer, _ = result
        assert isinstance(answer, dict) and answer.get("FailedEntryCount") == 0
        crt.send("b", BODY)
        assert crt.results(timeout=0.3) == []  # and no longer than it
    finally:
        crt.close()


def test_the_process_exits_when_the_bridge_is_killed(fake: FakeEventBridge) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path[:0] = {sys.path!r}
        from tests.unit.test_crt_process import transport
        crt = transport({fake.url!r})
        print(crt.process_id, flush=True)
        time.sleep(60)
        """
    )
    bridge = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert bridge.stdout is not None
    child = int(bridge.stdout.readline())
    assert not gone(child)
    bridge.kill()
    bridge.wait()
    deadline = time.monotonic() + 10
    while not gone(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gone(child), "the HTTP process outlived the bridge"


def test_close_stops_the_process(fake: FakeEventBridge) -> None:
    crt = transport(fake.url)
    crt.send("a", BODY)
    assert isinstance(wait_results(crt, 1)[0], dict)
    child = crt.process_id
    assert child is not None
    crt.close()
    assert gone(child)


def test_frames_are_read_whole_however_the_pipe_splits_them() -> None:
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)  # a write takes what the pipe has room for
    reader = FrameReader(read_end)
    try:
        first, empty, large = frame(b"S", b"one"), frame(), frame(b"x" * 300_000)
        os.write(write_end, first + empty + large[:5])  # two whole frames, a third begun
        assert reader.read(5) == [b"Sone", b""]
        assert reader.read(0) == []  # nothing complete buffered, nothing arrived
        rest = memoryview(large)[5:]
        while rest:  # a pipe takes 64 KB at a time: the reader gathers the pieces
            rest = rest[os.write(write_end, rest) :]
            got = reader.read(5)
            assert got == ([b"x" * 300_000] if not rest else [])
        os.write(write_end, frame(b"last")[:3])
        os.close(write_end)
        assert reader.read(5) == []  # a frame cut short by the close is never handed out
        with pytest.raises(EOFError):
            reader.read(5)
    finally:
        reader.close()


def test_no_delay_turns_nagle_off_on_tcp_sockets_once() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
        with client, accepted:
            assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
            tuned = no_delay(set())
            assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
            link = os.readlink(f"/proc/self/fd/{client.fileno()}")
            assert link in tuned
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
            assert no_delay(tuned) == tuned  # tuned once: not looked at again
            assert client.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
        assert link not in no_delay(tuned)  # closed sockets are forgotten


def _nagle_off(port: int) -> list[bool]:
    """For each of this process's TCP sockets connected to ``port``: is TCP_NODELAY set?"""
    states = []
    for name in os.listdir("/proc/self/fd"):
        try:
            sock = socket.socket(fileno=os.dup(int(name)))
        except OSError:
            continue
        with sock:
            try:
                if sock.type != socket.SOCK_STREAM or sock.getpeername()[1] != port:
                    continue
            except OSError:
                continue
            states.append(bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)))
    return states


Call = Callable[[bytes], tuple[int, float]]


@pytest.fixture
def wire() -> Iterator[tuple[Call, int]]:
    """The HTTP process's Wire, here in the test's process, and a way to make one call with it
    (its HTTP status and seconds). The stand-in runs in a process of its own, so the only
    sockets to its port here are the Wire's."""
    with FakeEventBridgeProcess() as stand_in:
        port = int(stand_in.url.rsplit(":", 1)[1])
        settings = {
            "host": "127.0.0.1",
            "port": port,
            "tls": False,
            "path": "/",
            "headers": [
                ("Host", f"127.0.0.1:{port}"),
                ("Content-Type", "application/x-amz-json-1.1"),
                ("X-Amz-Target", "AWSEvents.PutPartnerEvents"),
            ],
            "region": "us-east-1",
            "sigv4a": False,
            "connect_timeout": 5,
            "read_timeout": 10,
            "pool_size": 4,
            "proxy": None,
        }
        read_end, write_end = os.pipe()
        answers = FrameReader(read_end)
        wire = Wire(settings, write_end)
        ((key, secret),) = DEFAULT_CREDENTIALS.items()
        wire.handle(b"C" + orjson.dumps([key, secret, ""]))
        ids = itertools.count(1)

        def call(body: bytes) -> tuple[int, float]:
            call_id, started = next(ids), time.perf_counter()
            wire.handle(b"S" + CALL.pack(call_id, 0.0) + body)
            got: list[bytes] = []
            deadline = time.monotonic() + 15
            while not got and time.monotonic() < deadline:
                got = answers.read(0.2)
            took = time.perf_counter() - started
            (answer,) = got
            answered, status = ANSWER.unpack_from(answer)[:2]
            assert answered == call_id
            return int(status), took

        try:
            yield call, port
        finally:
            wire.close()
            answers.close()
            os.close(write_end)


def _padded(size: int) -> bytes:
    """A valid call body of ``size`` bytes (JSON whitespace)."""
    return BODY[:-2] + b"]" + b" " * (size - len(BODY)) + b"}"


def test_only_a_call_that_may_leave_in_two_writes_has_nagle_turned_off(
    wire: tuple[Call, int],
) -> None:
    """Finding a connection's socket takes a pass over every descriptor, and each new
    connection made one: 256 connections cost ~55 ms of awscrt's event-loop thread. A pool of
    small calls (one write each, never held by Nagle) now makes none; the first large call on
    a connection opened since the last pass makes one."""
    call, port = wire
    assert call(BODY)[0] == 200
    assert _nagle_off(port) == [False]
    assert call(BODY)[0] == 200  # the same idle connection, still left alone
    assert _nagle_off(port) == [False]
    assert call(_padded(NAGLE_BODY_BYTES + 1))[0] == 200
    assert _nagle_off(port) == [True]


def test_a_call_at_the_threshold_is_not_held_by_nagle(wire: tuple[Call, int]) -> None:
    """The threshold's premise: a body of NAGLE_BODY_BYTES leaves in one write, so with Nagle
    on it does not wait for the server's delayed ACK (at least 40 ms on Linux,
    TCP_DELACK_MIN). With a body over ~16 KB, as in the test below, each call took 44 ms."""
    call, port = wire
    assert call(BODY)[0] == 200  # the connection opened, left alone
    took = []
    for _ in range(5):
        status, seconds = call(_padded(NAGLE_BODY_BYTES))
        assert status == 200
        took.append(seconds)
    assert _nagle_off(port) == [False]
    assert sorted(took)[2] < 0.040, took  # the median call: no delayed-ACK stall


def test_a_large_call_does_not_wait_for_the_delayed_ack(fake: FakeEventBridge) -> None:
    """A body over ~16 KB leaves in two writes; with Nagle's algorithm on, the second waits for
    the server's ACK, which Linux delays by at least 40 ms (TCP_DELACK_MIN). Each call here
    took 44 ms before the HTTP process set TCP_NODELAY, ~1 ms after."""
    body = _padded(len(BODY) + 40_000)
    crt = transport(fake.url)
    took = []
    for _ in range(5):
        started = time.perf_counter()
        crt.send("a", body)
        (answer,) = wait_results(crt, 1)
        took.append(time.perf_counter() - started)
        assert isinstance(answer, dict) and answer.get("FailedEntryCount") == 0
    crt.close()
    assert sorted(took)[2] < 0.040, took  # the median call: no delayed-ACK stall
