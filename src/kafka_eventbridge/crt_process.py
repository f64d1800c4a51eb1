"""The crt path's HTTP process: awscrt connections, SigV4 signing and timeouts.

:class:`kafka_eventbridge.crt.CrtTransport` starts this module as a child process
(``python -m kafka_eventbridge.crt_process <requests fd> <answers fd>``) and talks to it over
two pipes. Why a process: awscrt runs Python callbacks on its event-loop thread for every call
(reading the body, the headers, the body of the answer, completion), and in the bridge's own
process each of them waited for the GIL while the main loop mapped records. With 256 calls in
flight against a 50 ms endpoint, a call took ~100 ms from send to answer (make bench,
docs/performance.md). Here the only other Python thread is the one reading requests, which
waits on its pipe; the callbacks run at once.

The protocol: each message is one frame, its length (``<I``) then its bytes.

- first, the settings: a JSON object (see :class:`Wire`);
- ``C`` + JSON ``[access key, secret key, token]``: the credentials for the calls that follow
  (the bridge's botocore chain refreshes them and sends them again when they change);
- ``S`` + ``<Id`` (call id, clock offset in seconds) + the body: sign and send one call.

Answers, one frame per call, written from awscrt's callbacks: ``<IHBdI`` (call id, HTTP
status, flags, ``perf_counter()`` when it finished, length of the JSON part), then JSON
``[headers, error name, error text, connections open]``, then the answer's body. Flags:
``TIMED_OUT``, ``CONNECTED`` (a connection was assigned), ``FAILED`` (``error name`` says how:
an awscrt error name, or a Python exception's class).

The process ignores SIGINT and SIGTERM: the bridge decides when it stops (after draining). It
exits when the requests pipe closes, which also happens when the bridge is killed.

Imports awscrt, orjson and the standard library only.
"""

from __future__ import annotations

import ctypes
import io
import os
import select
import signal
import socket
import struct
import sys
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from awscrt import auth, http
from awscrt import io as crt_io
from awscrt.exceptions import AwsCrtError

FRAME = struct.Struct("<I")
CALL = struct.Struct("<Id")
ANSWER = struct.Struct("<IHBdI")
TIMED_OUT, CONNECTED, FAILED = 1, 2, 4
TIMEOUT_CHECK_SECONDS = 0.05
# A request whose body is over this may leave in more than one write (awscrt writes 16 KB at a
# time, the head and SigV4 headers among them), the case where Nagle's algorithm holds the
# second write for the server's delayed ACK. Smaller ones leave in one write and never wait.
NAGLE_BODY_BYTES = 8 * 1024
_FD_DIR = "/proc/self/fd"
_READ_BYTES = 1 << 20


class FrameReader:
    """Reads frames from a pipe: as many as one read brings, waiting up to a timeout."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buffer = bytearray()
        self._chunk = bytearray(_READ_BYTES)  # read into, not allocated per read (mmap churn)
        self._poll = select.poll()
        self._poll.register(fd, select.POLLIN)

    def read(self, timeout: float) -> list[bytes]:
        """The complete frames that arrived; waits up to ``timeout`` seconds for data when
        none is buffered. Raises EOFError once the other end has closed."""
        frames = self._frames()
        if frames or not self._poll.poll(max(timeout, 0.0) * 1000):
            return frames
        size = os.readv(self.fd, [self._chunk])
        if not size:
            raise EOFError
        self._buffer += memoryview(self._chunk)[:size]
        return self._frames()

    def _frames(self) -> list[bytes]:
        frames = []
        buffer, start = self._buffer, 0
        with memoryview(buffer) as view:  # a frame is copied once, not sliced and copied
            while len(buffer) - start >= FRAME.size:
                (size,) = FRAME.unpack_from(buffer, start)
                end = start + FRAME.size + size
                if len(buffer) < end:
                    break
                frames.append(bytes(view[start + FRAME.size : end]))
                start = end
        if start:
            del buffer[:start]
        return frames

    def close(self) -> None:
        os.close(self.fd)


def frame(*parts: bytes) -> bytes:
    """One frame of ``parts``, ready to write."""
    return b"".join((FRAME.pack(sum(len(p) for p in parts)), *parts))


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` (a blocking pipe: waits while it is full)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


@dataclass(eq=False)
class _Call:
    id: int
    body: bytes
    offset: float
    deadline: float = 0.0
    connection: http.HttpClientConnection | None = None
    opened: int = 0  # which connection this process opened it is, in order (see Wire._tune)
    status: int = 0
    headers: list[tuple[str, str]] = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)
    error: BaseException | None = None
    timed_out: bool = False
    answered: bool = False


class Wire:
    """Signs and sends calls over a pool of keep-alive connections, one call per connection,
    at most ``pool_size`` kept idle; writes each answer to ``answers`` once.

    ``settings``: ``host``, ``port``, ``tls``, ``path``, ``headers`` (name, value pairs sent
    on every call, ``Host`` among them), ``region``, ``sigv4a``, ``connect_timeout``,
    ``read_timeout``, ``pool_size``, ``proxy`` (None or ``host``, ``port``, ``username``,
    ``password``, ``tunnel``), ``ca_bundle``.
    """

    def __init__(self, settings: dict[str, Any], answers: int) -> None:
        self._answers = answers
        self._write_lock = threading.Lock()
        self._host: str = settings["host"]
        self._port: int = settings["port"]
        self._path: str = settings["path"]
        self._headers = [(str(k), str(v)) for k, v in settings["headers"]]
        self._connect_timeout = float(settings["connect_timeout"])
        self._read_timeout = float(settings["read_timeout"])
        self._pool_size = int(settings["pool_size"])
        self._loop = crt_io.EventLoopGroup(1)
        self._bootstrap = crt_io.ClientBootstrap(self._loop, crt_io.DefaultHostResolver(self._loop))
        self._socket = crt_io.SocketOptions()
        self._socket.connect_timeout_ms = int(self._connect_timeout * 1000)
        self._socket.keep_alive = True
        self._tls = _tls(self._host, settings.get("ca_bundle")) if settings["tls"] else None
        self._proxy = _proxy(settings.get("proxy"))
        self._provider: auth.AwsCredentialsProvider | None = None  # from the first C frame
        self._algorithm = (
            auth.AwsSigningAlgorithm.V4_ASYMMETRIC
            if settings["sigv4a"]
            else auth.AwsSigningAlgorithm.V4
        )
        self._region: str = settings["region"]
        self._signing: auth.AwsSigningConfig | None = None
        self._lock = threading.Lock()
        self._idle: list[tuple[http.HttpClientConnection, int]] = []  # and when each opened
        self._open = 0  # connections open or opening
        self._opened = 0  # connections opened so far
        self._active: set[_Call] = set()
        self._tune_lock = threading.Lock()
        self._tuned: set[str] = set()  # sockets given TCP_NODELAY, by /proc link
        self._tuned_through = 0  # every connection opened up to this one has it
        self._next_check = 0.0

    # -- requests, on the reading thread ---------------------------------------------------

    def handle(self, request: bytes) -> None:
        kind, payload = request[:1], memoryview(request)[1:]
        if kind == b"C":
            access, secret, token = orjson.loads(payload)
            self._provider = auth.AwsCredentialsProvider.new_static(access, secret, token or None)
            self._signing = self._signing_config(0.0)
        elif kind == b"S":
            call_id, offset = CALL.unpack_from(payload)
            call = _Call(call_id, bytes(payload[CALL.size :]), offset)
            with self._lock:
                self._active.add(call)
            self._start(call)
        else:
            raise ValueError(f"unknown request frame {kind!r}")

    def _signing_config(self, offset: float) -> auth.AwsSigningConfig | None:
        if self._provider is None:
            return None
        return auth.AwsSigningConfig(
            algorithm=self._algorithm,
            credentials_provider=self._provider,
            region=self._region,
            service="events",
            date=datetime.now(UTC) + timedelta(seconds=offset) if offset else None,
        )

    def _start(self, call: _Call) -> None:
        # Until connected (TCP and TLS), the connect timeout applies; then the read timeout.
        call.deadline = time.monotonic() + self._connect_timeout
        with self._lock:
            connection = None
            while self._idle and connection is None:
                candidate, opened = self._idle.pop()
                if candidate.is_open():
                    connection, call.opened = candidate, opened
                else:
                    self._open -= 1
            if connection is None:
                self._open += 1
        if connection is not None:
            self._request(call, connection)
            return
        try:
            future = http.HttpClientConnection.new(
                self._host, self._port, self._bootstrap, self._socket, self._tls, self._proxy
            )
        except Exception as error:
            with self._lock:
                self._open -= 1
            call.error = error
            self._answer(call)
            return
        future.add_done_callback(lambda done: self._connected(call, done))

    # -- awscrt's callbacks, on its event-loop thread ---------------------------------------

    def _connected(self, call: _Call, future: Future[http.HttpClientConnection]) -> None:
        keep_thread_state()
        error = future.exception()
        with self._lock:
            expired = call.timed_out  # already answered as a connect timeout
            if error is not None or expired:
                self._open -= 1
        if expired:
            if error is None:
                future.result().close()
            return
        if error is not None:
            call.error = error
            self._answer(call)
            return
        with self._lock:
            self._opened += 1
            call.opened = self._opened
        self._request(call, future.result())

    def _request(self, call: _Call, connection: http.HttpClientConnection) -> None:
        call.deadline = time.monotonic() + self._read_timeout
        with self._lock:  # expire() reads it under the lock
            call.connection = connection
        try:
            headers = http.HttpHeaders(self._headers)
            headers.add("Content-Length", str(len(call.body)))
            request = http.HttpRequest("POST", self._path, headers, io.BytesIO(call.body))
            signing = self._signing_config(call.offset) if call.offset else self._signing
            if signing is None:
                raise RuntimeError("no credentials came before the first call")
            if len(call.body) > NAGLE_BODY_BYTES:
                self._tune(call.opened)
            auth.aws_sign_request(request, signing).result()
            stream = connection.request(
                request,
                lambda **kw: self._on_response(call, **kw),
                lambda chunk, **_: call.chunks.append(chunk),
            )
        except Exception as error:
            call.error = error
            self._release(connection, call.opened)
            self._answer(call)
            return
        stream.completion_future.add_done_callback(lambda done: self._finished(call, done))
        stream.activate()

    def _on_response(self, call: _Call, status_code: int, headers: Any, **_: Any) -> None:
        call.status = status_code
        call.headers = list(headers)

    def _finished(self, call: _Call, future: Future[int]) -> None:
        keep_thread_state()
        call.error = future.exception()
        connection = call.connection
        if connection is not None:
            if call.error is None and not call.timed_out and not _closing(call.headers):
                self._release(connection, call.opened)
            else:
                connection.close()
                with self._lock:
                    self._open -= 1
        self._answer(call)

    def _tune(self, opened: int) -> None:
        """Nagle's algorithm off on the socket of the ``opened``-th connection, and on every
        other socket not yet tuned, in one pass over this process's descriptors (a pass costs
        ~1.5 us a descriptor: made for each new connection, 256 of them cost ~55 ms of the
        event-loop thread as they opened). Only calls whose request may leave in more than
        one write ask for it: a pool of connections carrying small calls never needs one."""
        with self._tune_lock:
            if opened <= self._tuned_through:
                return
            with self._lock:
                through = self._opened  # these are open now, so the pass below finds them
            self._tuned = no_delay(self._tuned)
            self._tuned_through = through

    def _release(self, connection: http.HttpClientConnection, opened: int) -> None:
        with self._lock:
            keep = connection.is_open() and len(self._idle) < self._pool_size
            if keep:
                self._idle.append((connection, opened))
            else:
                self._open -= 1
        if not keep:
            connection.close()

    def _answer(self, call: _Call) -> None:
        """Write the call's answer, once (a late report after a timeout is dropped)."""
        with self._lock:
            if call.answered:
                return
            call.answered = True
            self._active.discard(call)
            connections = self._open
        flags = (TIMED_OUT if call.timed_out else 0) | (CONNECTED if call.connection else 0)
        name = text = ""
        if call.error is not None and not call.timed_out:
            flags |= FAILED
            error = call.error
            name = error.name if isinstance(error, AwsCrtError) else type(error).__name__
            text = str(error)
        meta = orjson.dumps([call.headers, name, text, connections])
        head = ANSWER.pack(call.id, call.status, flags, time.perf_counter(), len(meta))
        try:
            with self._write_lock:
                write_all(self._answers, frame(head, meta, *call.chunks))
        except OSError:
            pass  # the bridge is gone; the reading thread sees its pipe close and exits

    # -- timeouts and the end, on the reading thread ---------------------------------------

    def expire(self) -> None:
        """Fail calls that waited past their timeout. Connected: close the connection, and
        awscrt finishes the call with an error, answered as a timeout. Still connecting (a TLS
        handshake that never ends): answered at once; the connection, should it still come,
        is closed unused."""
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + TIMEOUT_CHECK_SECONDS
        with self._lock:
            late = [c for c in self._active if c.deadline < now and not c.timed_out]
            for call in late:
                call.timed_out = True
        for call in late:
            if call.connection is not None:
                call.connection.close()
            else:
                self._answer(call)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
            active = list(self._active)
        for connection, _ in idle:
            connection.close()
        for call in active:
            if call.connection is not None:
                call.connection.close()


_KEPT: set[int] = set()  # threads whose Python thread state stays


def keep_thread_state() -> None:
    """Keep this (awscrt's) thread's Python thread state from one callback to the next.

    A thread Python did not start gets a thread state from ``PyGILState_Ensure`` for each
    callback and loses it at the matching release: a new state, and a new frame stack
    (mmap, page faults, munmap), several times a call; 18% of this process's CPU in a
    profile. One more ``PyGILState_Ensure``, never released, keeps the count above zero, so the
    state lives on; each release still hands the GIL back."""
    thread = threading.get_ident()
    if thread not in _KEPT:
        ctypes.pythonapi.PyGILState_Ensure()
        _KEPT.add(thread)


def no_delay(tuned: set[str]) -> set[str]:
    """Turn Nagle's algorithm off on this process's TCP sockets not in ``tuned`` (their
    ``/proc`` links), as curl, urllib3 and the JVM's HTTP clients do; returns the sockets now
    tuned. A body the encoder writes in two parts (over ~16 KB) otherwise waits for the
    server's delayed ACK: 44 ms a call on Linux. aws-c-io has the option, the Python binding
    does not pass it yet, so the sockets are found among the descriptors (this process's only
    TCP sockets are its connections)."""
    try:
        names = os.listdir(_FD_DIR)
    except OSError:
        return tuned  # not Linux: nothing to find the sockets by
    seen: set[str] = set()
    for name in names:
        try:
            link = os.readlink(f"{_FD_DIR}/{name}")
        except OSError:
            continue
        if not link.startswith("socket:"):
            continue
        seen.add(link)
        if link in tuned:
            continue
        try:
            sock = socket.socket(fileno=os.dup(int(name)))
        except OSError:
            continue
        try:
            if sock.type == socket.SOCK_STREAM and sock.family in (
                socket.AF_INET,
                socket.AF_INET6,
            ):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                tuned.add(link)
        except OSError:
            pass
        finally:
            sock.close()
    return tuned & seen


def _closing(headers: list[tuple[str, str]]) -> bool:
    """Did the server say it closes the connection after this answer? (Reusing it would fail
    the next call with ConnectionClosedError.)"""
    return any(
        name.lower() == "connection" and value.strip().lower() == "close" for name, value in headers
    )


def _tls(host: str, ca_bundle: str | None) -> crt_io.TlsConnectionOptions:
    """TLS with the system's trust store, or the CA bundle (``AWS_CA_BUNDLE``)."""
    options = crt_io.TlsContextOptions()
    if ca_bundle:
        options.override_default_trust_store_from_path(None, ca_bundle)
    connection = crt_io.ClientTlsContext(options).new_connection_options()
    connection.set_server_name(host)
    return connection


def _proxy(proxy: dict[str, Any] | None) -> http.HttpProxyOptions | None:
    if not proxy:
        return None
    basic = proxy.get("username") is not None
    return http.HttpProxyOptions(
        proxy["host"],
        int(proxy["port"]),
        auth_type=(
            http.HttpProxyAuthenticationType.Basic
            if basic
            else http.HttpProxyAuthenticationType.Nothing
        ),
        auth_username=proxy.get("username"),
        auth_password=proxy.get("password"),
        connection_type=(
            http.HttpProxyConnectionType.Tunneling
            if proxy["tunnel"]
            else http.HttpProxyConnectionType.Forwarding
        ),
    )


def serve(requests: FrameReader, answers: int) -> None:
    """Read the settings, then calls, until the requests pipe closes."""
    wire: Wire | None = None
    try:
        while True:
            frames = requests.read(TIMEOUT_CHECK_SECONDS)
            if wire is None and frames:
                wire = Wire(orjson.loads(frames.pop(0)), answers)
            for request in frames:
                assert wire is not None
                wire.handle(request)
            if wire is not None:
                wire.expire()
    except EOFError:
        pass
    finally:
        if wire is not None:
            wire.close()


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    requests = FrameReader(int(argv[0]))
    answers = int(argv[1])
    try:
        serve(requests, answers)
    finally:
        os.close(answers)
        requests.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
