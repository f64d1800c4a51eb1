"""EventBridge calls over AWS's common runtime (``awscrt``): HTTP, TLS and SigV4 off the GIL.

botocore spends ~315 µs of Python a call on its HTTP session and signer (docs/performance.md).
Here the request body is built once with orjson by the caller, and everything after that runs in
awscrt's native code, in a small child process (:mod:`kafka_eventbridge.crt_process`): SigV4
(SigV4a for a global endpoint) with ``awscrt.auth``, and the exchange over a pool of keep-alive
``awscrt.http`` connections driven by awscrt's event-loop thread. The bridge writes each call's
body to a pipe and reads the status, headers and body of its answer back; no Python thread of
the bridge waits on a socket, and awscrt's callbacks never wait for the bridge's GIL.

What stays botocore's, through its public API, so the bridge behaves as any boto3 program:

- **the endpoint**: ``client.meta.endpoint_url`` and ``client.meta.region_name`` of the boto3
  client the bridge builds anyway, so ``AWS_ENDPOINT_URL_EVENTBRIDGE``, ``AWS_ENDPOINT_URL``,
  the region, FIPS and dual-stack settings resolve exactly as in botocore; timeouts and
  proxies come from ``client.meta.config``;
- **the credentials**: the session's credentials object (``get_frozen_credentials()`` on each
  signature), so IRSA, EKS Pod Identity, profiles, SSO, containers and instance roles refresh
  before they expire as botocore makes them; the HTTP process is sent them when they change;
- **the errors**: a non-2xx answer becomes the ``ClientError`` subclass botocore would raise
  (``client.exceptions.from_code``), with ``Code``, ``Message`` and the HTTP status; a refused
  or failed connection becomes ``EndpointConnectionError`` / ``ConnectTimeoutError``, a dropped
  one ``ConnectionClosedError``, a slow answer ``ReadTimeoutError``.

Clock skew: a call refused because its signature's time is off (``Signature expired``,
``RequestTimeTooSkewed``…) while the answer's ``Date`` is more than 5 minutes away from the
local clock is signed again with that offset and sent once more, as the AWS SDKs that correct
their clock do; the offset is kept for later calls.

Proxies: ``HTTPS_PROXY`` for an ``https://`` endpoint (a CONNECT tunnel), ``HTTP_PROXY`` for an
``http://`` one, ``NO_PROXY`` to bypass, or ``proxies`` in the client's config; ``http://``
proxy URLs only, with optional ``user:password@`` for basic authentication. ``AWS_CA_BUNDLE``
replaces the system's trust store.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import logging
import os
import struct
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, NamedTuple

import orjson
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from kafka_eventbridge import __version__
from kafka_eventbridge.crt_process import (
    ANSWER,
    CALL,
    CONNECTED,
    FAILED,
    TIMED_OUT,
    FrameReader,
    frame,
    write_all,
)
from kafka_eventbridge.errors import ConfigError

log = logging.getLogger(__name__)

_JSON_1_1 = "application/x-amz-json-1.1"
# Error codes that mean "the signature's time is off", as the AWS SDKs list them.
_SKEW_CODES = frozenset(
    {
        "RequestTimeTooSkewed",
        "RequestExpired",
        "RequestInTheFuture",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "AuthFailure",
    }
)
_SKEW_THRESHOLD = timedelta(minutes=5)
# Should the HTTP process not answer a call at all, it fails this long after its own
# timeouts (connect, then read) would have.
_LAST_RESORT_GRACE_SECONDS = 5.0
_LAST_RESORT_CHECK_SECONDS = 0.5
_STOP_SECONDS = 5.0
_RESTART_SECONDS = 1.0  # at most one new HTTP process a second
_PIPE_BYTES = 1 << 20
_PROCESS_MODULE = "kafka_eventbridge.crt_process"


@dataclass(frozen=True)
class Endpoint:
    """Where calls go and how they are signed, as botocore resolved them."""

    url: str
    region: str  # the signing region; ``*`` (any) for SigV4a
    sigv4a: bool = False

    @property
    def parts(self) -> urllib.parse.SplitResult:
        return urllib.parse.urlsplit(self.url)

    @classmethod
    def of(cls, client: Any, endpoint_id: str | None = None) -> Endpoint:
        """From a boto3 ``events`` client's public metadata.

        A PutEvents global endpoint (``EndpointId``) is signed with SigV4a for any region.
        Against AWS its host is ``<id>.endpoint.events.<dns suffix>`` (the service's endpoint
        ruleset); an overridden endpoint (``AWS_ENDPOINT_URL*``) is used as it is.
        """
        url: str = client.meta.endpoint_url
        region: str = client.meta.region_name
        if endpoint_id is None:
            return cls(url, region)
        parts = urllib.parse.urlsplit(url)
        prefix = f"events.{region}."
        host = parts.hostname or ""
        if host.startswith(prefix):
            url = f"{parts.scheme}://{endpoint_id}.endpoint.events.{host[len(prefix) :]}"
        return cls(url, "*", sigv4a=True)


class Credentials:
    """botocore's credentials: the one source is the boto3 session."""

    def __init__(self, source: Any) -> None:
        self._source = source

    def current(self) -> Any:
        """The frozen credentials in force now; botocore refreshes them ahead of expiry.
        Raises botocore's own errors (``NoCredentialsError``, a failed refresh) for the
        classifier."""
        if self._source is None:
            raise NoCredentialsError()
        return self._source.get_frozen_credentials()


@dataclass(eq=False)
class _Call:
    id: int
    key: Any
    body: bytes
    deadline: float  # a last resort, should the HTTP process not answer at all
    skew_retried: bool = False


class _Answer(NamedTuple):
    status: int
    flags: int
    headers: list[tuple[str, str]]
    error_name: str
    error_text: str
    body: bytes


@dataclass
class _Worker:
    process: subprocess.Popen[bytes]
    requests: int  # the pipe's end we write calls to
    answers: FrameReader
    credentials: Any = None  # the frozen credentials last sent


class CrtTransport:
    """Sends signed JSON 1.1 calls of one operation; results come back from ``results()``.

    The HTTP work happens in a child process (:mod:`kafka_eventbridge.crt_process`): the
    bridge sends it each call's body and reads back each call's status, headers and body;
    the answer is parsed here, on the calling thread. ``send`` and ``results`` are called from
    one thread (the bridge's main loop). At most ``pool_size`` calls are in flight, one per
    connection. Should the process die, the calls in flight fail as ``ConnectionClosedError``
    (retried as any dropped connection) and the next call starts a new one.
    """

    def __init__(
        self,
        client: Any,
        credentials: Any,
        operation: str,
        pool_size: int,
        endpoint_id: str | None = None,
    ) -> None:
        self.endpoint = Endpoint.of(client, endpoint_id)
        self._exceptions = client.exceptions
        self._operation = operation
        config = client.meta.config
        read_timeout = float(config.read_timeout)
        connect_timeout = float(config.connect_timeout)
        self._last_resort = connect_timeout + read_timeout + _LAST_RESORT_GRACE_SECONDS
        self._credentials = Credentials(credentials)
        parts = self.endpoint.parts
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        default_port = parts.port is None or parts.port == (443 if parts.scheme == "https" else 80)
        self._url = self.endpoint.url
        self._settings = orjson.dumps(
            {
                "host": host,
                "port": port,
                "tls": parts.scheme == "https",
                "ca_bundle": os.environ.get("AWS_CA_BUNDLE") or None,
                "path": parts.path or "/",
                "headers": [
                    ("Host", host if default_port else f"{host}:{port}"),
                    ("Content-Type", _JSON_1_1),
                    ("X-Amz-Target", f"AWSEvents.{operation}"),
                    ("User-Agent", f"kafka-eventbridge/{__version__} awscrt"),
                ],
                "region": self.endpoint.region,
                "sigv4a": self.endpoint.sigv4a,
                "connect_timeout": connect_timeout,
                "read_timeout": read_timeout,
                "pool_size": pool_size,
                "proxy": _proxy(parts.scheme, host, getattr(config, "proxies", None)),
            }
        )
        self._offset = timedelta(0)
        self._ids = itertools.count(1)
        self._active: dict[int, _Call] = {}
        self._failed: list[tuple[_Call, Exception]] = []  # answered here, not by the process
        self._connections = 0
        self._next_check = 0.0
        self._queued: list[bytes] = []  # frames for the HTTP process, written by flush()
        self._queued_bytes = 0
        self._restart_at = 0.0
        self._worker: _Worker | None = self._start_worker()

    @property
    def in_flight(self) -> int:
        return len(self._active)

    @property
    def connections(self) -> int:
        """Connections open or opening, as of the last answer: at most one per call in
        flight, and ``pool_size`` kept idle for the next calls."""
        return self._connections

    @property
    def process_id(self) -> int | None:
        """The HTTP process's id (None until the next call starts one)."""
        return self._worker.process.pid if self._worker is not None else None

    def _start_worker(self) -> _Worker:
        self._restart_at = time.monotonic() + _RESTART_SECONDS
        to_child, from_parent = os.pipe()
        to_parent, from_child = os.pipe()
        for fd in (to_child, to_parent):
            _grow_pipe(fd)
        try:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "kafka_eventbridge.crt_process",
                    str(to_child),
                    str(from_child),
                ],
                pass_fds=(to_child, from_child),
                stdin=subprocess.DEVNULL,
            )
        except BaseException:
            for fd in (to_child, from_parent, to_parent, from_child):
                os.close(fd)
            raise
        os.close(to_child)
        os.close(from_child)
        self._queued, self._queued_bytes = [frame(self._settings)], 0  # written by flush()
        return _Worker(process, from_parent, FrameReader(to_parent))

    def send(self, key: Any, body: bytes) -> None:
        """Start a call; its result comes out of ``results()`` with this key."""
        frozen = self._credentials.current()  # raises NoCredentialsError et al. as botocore
        call = _Call(next(self._ids), key, body, time.monotonic() + self._last_resort)
        self._active[call.id] = call
        self._send(call, frozen)

    def _send(self, call: _Call, frozen: Any) -> None:
        """Queue the call for the HTTP process; the queue is written by ``flush()`` (the
        loop's, once its turn has sent what it could) or the next ``results()``, so the
        calls of one turn take one write."""
        worker = self._worker
        if worker is None:
            if time.monotonic() < self._restart_at:  # not a new process a call while it crashes
                error = ConnectionClosedError(endpoint_url=self._url, error="no HTTP process")
                self._failed.append((call, error))
                return
            try:
                worker = self._worker = self._start_worker()
            except Exception as exc:  # no fork, no memory: fails as an unreachable service
                log.warning("could not start the HTTP process", extra={"error": repr(exc)})
                error = ConnectionClosedError(endpoint_url=self._url, error="no HTTP process")
                self._failed.append((call, error))
                return
        if frozen != worker.credentials:
            keys = orjson.dumps([frozen.access_key, frozen.secret_key, frozen.token or ""])
            self._queued.append(frame(b"C", keys))
            worker.credentials = frozen
        offset = self._offset.total_seconds()
        self._queued.append(frame(b"S", CALL.pack(call.id, offset), call.body))
        self._queued_bytes += len(call.body)
        if self._queued_bytes >= _PIPE_BYTES // 4:
            self.flush()

    def flush(self) -> None:
        """Write the queued calls to the HTTP process."""
        worker = self._worker
        queued, self._queued, self._queued_bytes = self._queued, [], 0
        if worker is None or not queued:
            return
        try:
            write_all(worker.requests, b"".join(queued))
        except OSError:
            self._died(worker)  # these calls too: they fail from results() with the others

    def _died(self, worker: _Worker) -> None:
        """The HTTP process is gone: every call in flight fails as a dropped connection."""
        if self._worker is not worker:
            return
        self._worker = None
        self._queued, self._queued_bytes = [], 0
        _stop(worker, timeout=0)
        log.warning(
            "the HTTP process exited; the calls in flight are retried",
            extra={"exit_code": worker.process.returncode, "in_flight": len(self._active)},
        )
        error = ConnectionClosedError(endpoint_url=self._url, error="the HTTP process exited")
        self._failed.extend((call, error) for call in self._active.values())

    def results(self, timeout: float = 0.0) -> list[tuple[Any, dict[str, Any] | Exception, float]]:
        """Finished calls as (key, parsed 2xx answer or the exception botocore would raise,
        ``perf_counter()`` when the answer arrived); waits up to ``timeout`` for the first one
        when none is ready."""
        finished: list[tuple[Any, dict[str, Any] | Exception, float]] = []
        deadline = time.monotonic() + timeout
        while True:
            self.flush()  # this turn's calls, then those sent again (clock skew)
            self._expire()
            while self._failed:
                call, error = self._failed.pop()
                if self._active.pop(call.id, None) is not None:
                    finished.append((call.key, error, time.perf_counter()))
            frames = self._read(0.0 if finished else deadline - time.monotonic())
            finished += self._answers(frames)
            if self._failed or frames:
                continue  # more may be ready at once
            if finished or self._worker is None or not self._active:
                return finished
            if time.monotonic() >= deadline:
                return finished
            # None yet, and time left: the read brought part of an answer, or nothing
            # within one last-resort check; wait on.

    def _answers(self, frames: list[bytes]) -> list[tuple[Any, dict[str, Any] | Exception, float]]:
        answers = []
        for raw in frames:
            try:
                answer = self._answer(raw)
            except (struct.error, ValueError):  # not what it should send: start afresh
                log.exception("a malformed answer from the HTTP process")
                if self._worker is not None:
                    self._died(self._worker)
                break
            if answer is not None:
                answers.append(answer)
        return answers

    def _read(self, wait: float) -> list[bytes]:
        worker = self._worker
        if worker is None or not self._active:
            return []
        try:
            return worker.answers.read(min(wait, _LAST_RESORT_CHECK_SECONDS))
        except (EOFError, OSError):
            self._died(worker)
        return []

    def _expire(self) -> None:
        """The last resort: a call the HTTP process has not answered long after its own
        timeouts (connect, then read) should have fails here as a read timeout."""
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + _LAST_RESORT_CHECK_SECONDS
        for call in self._active.values():
            if call.deadline < now:
                self._failed.append((call, ReadTimeoutError(endpoint_url=self._url)))

    def _answer(self, frame: bytes) -> tuple[Any, dict[str, Any] | Exception, float] | None:
        """A call's result from its answer frame; None when it was sent again (clock skew) or
        was already answered."""
        call_id, status, flags, finished, size = ANSWER.unpack_from(frame)
        start = ANSWER.size
        headers, name, text, self._connections = orjson.loads(frame[start : start + size])
        call = self._active.get(call_id)
        if call is None:
            return None  # answered already (the last resort)
        answer = _Answer(status, flags, headers, name, text, frame[start + size :])
        result = self._outcome(call, answer)
        if result is None:
            return None
        del self._active[call_id]
        return call.key, result, finished

    def _outcome(self, call: _Call, answer: _Answer) -> dict[str, Any] | Exception | None:
        """The call's result; None when it was sent again (clock skew)."""
        if answer.flags & TIMED_OUT:
            if not answer.flags & CONNECTED:
                return ConnectTimeoutError(endpoint_url=self._url, error="TLS or TCP connect")
            return ReadTimeoutError(endpoint_url=self._url)
        if answer.flags & FAILED:
            return self._connection_error(answer)
        if answer.status < 300:
            try:
                parsed = orjson.loads(answer.body)
            except orjson.JSONDecodeError:
                parsed = None
            return parsed if isinstance(parsed, dict) else {}
        error = self._client_error(answer)
        return self._resend(call) if self._skewed(call, error) else error

    def _resend(self, call: _Call) -> Exception | None:
        """Sign the call again with the learned clock offset: None, or the error a failed
        credentials refresh raised (the call fails with it, as in ``send``)."""
        try:
            frozen = self._credentials.current()
        except Exception as exc:
            return exc
        call.skew_retried = True
        call.deadline = time.monotonic() + self._last_resort
        self._send(call, frozen)
        return None

    def _connection_error(self, answer: _Answer) -> Exception:
        name = answer.error_name
        if not name.startswith("AWS_"):
            return RuntimeError(f"{name}: {answer.error_text}")  # not awscrt's: a Python error
        error = f"{name}: {answer.error_text}"
        if answer.flags & CONNECTED:  # connected, then lost before a whole answer
            return ConnectionClosedError(endpoint_url=self._url, error=error)
        if "TIMEOUT" in name:
            return ConnectTimeoutError(endpoint_url=self._url, error=error)
        return EndpointConnectionError(endpoint_url=self._url, error=error)

    def _client_error(self, answer: _Answer) -> ClientError:
        """The error botocore's JSON parser and client would make of this answer."""
        headers = {name.lower(): value for name, value in answer.headers}
        status = answer.status
        code, message = _error_fields(answer.body, headers, status)
        response: dict[str, Any] = {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {
                "HTTPStatusCode": status,
                "HTTPHeaders": headers,
                "RequestId": headers.get("x-amzn-requestid", ""),
            },
        }
        error_class: Callable[..., ClientError] = self._exceptions.from_code(code)
        return error_class(response, self._operation)

    def _skewed(self, call: _Call, error: ClientError) -> bool:
        """Learn the clock offset from ``Date`` when the signature's time was refused."""
        if call.skew_retried or error.response["Error"]["Code"] not in _SKEW_CODES:
            return False
        date = error.response["ResponseMetadata"]["HTTPHeaders"].get("date")
        try:
            server = parsedate_to_datetime(date) if date else None
        except (TypeError, ValueError):
            server = None
        if server is None:
            return False
        offset = server - datetime.now(UTC)
        if abs(offset - self._offset) < _SKEW_THRESHOLD:
            return False
        self._offset = offset
        return True

    def close(self) -> None:
        """Stop the HTTP process: it closes its connections and exits."""
        worker, self._worker = self._worker, None
        if worker is not None:
            _stop(worker, timeout=_STOP_SECONDS)


def _stop(worker: _Worker, timeout: float) -> None:
    os.close(worker.requests)  # the process exits when its requests pipe closes
    try:
        worker.process.wait(timeout)
    except subprocess.TimeoutExpired:
        worker.process.kill()
        worker.process.wait()
    worker.answers.close()


def _grow_pipe(fd: int) -> None:
    """Room for a burst of calls (256 in flight, each with its body) without the loop waiting on
    the pipe; Linux only, and within the system's limit for unprivileged processes."""
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), _PIPE_BYTES)


def _error_fields(body: bytes, headers: dict[str, str], status: int) -> tuple[str, str]:
    """``Code`` and ``Message`` as botocore's JSON 1.1 parser reads them."""
    try:
        parsed = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        parsed = {}
    if not isinstance(parsed, dict):
        parsed = {}
    code = str(parsed.get("__type") or parsed.get("code") or headers.get("x-amzn-errortype") or "")
    code = code.rsplit("#", 1)[-1].split(":", 1)[0] or str(status)
    message = str(parsed.get("message") or parsed.get("Message") or "")
    return code, message


def _proxy(scheme: str, host: str, configured: dict[str, str] | None) -> dict[str, Any] | None:
    """The proxy botocore would use for this endpoint: the client config's ``proxies``, else
    ``HTTPS_PROXY`` / ``HTTP_PROXY`` by the endpoint's scheme, unless ``NO_PROXY`` covers it."""
    proxies = configured or urllib.request.getproxies()
    url = proxies.get(scheme)
    if not url or (not configured and urllib.request.proxy_bypass(host)):
        return None
    parts = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme != "http":
        raise ConfigError(
            [f"{scheme.upper()}_PROXY: {parts.scheme}:// proxies are not supported; use http://"]
        )
    return {
        "host": parts.hostname or "",
        "port": parts.port or 80,
        "username": urllib.parse.unquote(parts.username) if parts.username else None,
        "password": urllib.parse.unquote(parts.password) if parts.password else None,
        "tunnel": scheme == "https",
    }
