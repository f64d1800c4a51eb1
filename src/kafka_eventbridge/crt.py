"""EventBridge calls over AWS's common runtime (``awscrt``): HTTP, TLS and SigV4 off the GIL.

botocore spends ~315 µs of Python a call on its HTTP session and signer (docs/performance.md).
Here the request body is built once with orjson by the caller, and everything after that runs in
awscrt's native code: SigV4 (SigV4a for a global endpoint) with ``awscrt.auth``, and the exchange
over a small pool of keep-alive ``awscrt.http`` connections driven by awscrt's own event loop
thread. Python runs only to start a call and, on the caller's thread, to read its answer; no
Python thread waits on a socket.

What stays botocore's, through its public API, so the bridge behaves as any boto3 program:

- **the endpoint**: ``client.meta.endpoint_url`` and ``client.meta.region_name`` of the boto3
  client the bridge builds anyway, so ``AWS_ENDPOINT_URL_EVENTBRIDGE``, ``AWS_ENDPOINT_URL``,
  the region, FIPS and dual-stack settings resolve exactly as in botocore; timeouts and
  proxies come from ``client.meta.config``;
- **the credentials**: the session's credentials object (``get_frozen_credentials()`` on each
  signature), so IRSA, EKS Pod Identity, profiles, SSO, containers and instance roles refresh
  before they expire as botocore makes them; awscrt sees them through a delegate provider;
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

import io
import os
import queue
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import orjson
from awscrt import auth, http
from awscrt import io as crt_io
from awscrt.exceptions import AwsCrtError
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from kafka_eventbridge import __version__
from kafka_eventbridge.errors import ConfigError

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
_TIMEOUT_CHECK_SECONDS = 0.05


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
    """botocore's credentials, as awscrt wants them: the one source is the boto3 session."""

    def __init__(self, source: Any) -> None:
        self._source = source
        self._frozen: Any = None
        self._crt: auth.AwsCredentials | None = None
        self.provider = auth.AwsCredentialsProvider.new_delegate(self._delegate)

    def current(self) -> auth.AwsCredentials:
        """The credentials in force now; botocore refreshes them ahead of expiry. Raises
        botocore's own errors (``NoCredentialsError``, a failed refresh) for the classifier."""
        if self._source is None:
            raise NoCredentialsError()
        frozen = self._source.get_frozen_credentials()
        if frozen != self._frozen or self._crt is None:
            self._crt = auth.AwsCredentials(frozen.access_key, frozen.secret_key, frozen.token)
            self._frozen = frozen
        return self._crt

    def _delegate(self) -> auth.AwsCredentials:
        # awscrt asks during aws_sign_request, which runs right after current() on the same
        # thread: the credentials just fetched are the ones in force.
        return self._crt or self.current()


@dataclass(eq=False)
class _Call:
    key: Any
    body: bytes
    deadline: float = 0.0
    connection: http.HttpClientConnection | None = None
    status: int = 0
    headers: list[tuple[str, str]] = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)
    error: BaseException | None = None
    timed_out: bool = False
    skew_retried: bool = False
    finished: float = 0.0


class CrtTransport:
    """Sends signed JSON 1.1 calls of one operation; results come back from ``results()``.

    ``send`` and ``results`` are called from one thread (the bridge's main loop). awscrt's
    callbacks only record what arrived and put the call on a queue; the answer is parsed on
    the calling thread. At most ``pool_size`` calls are in flight, one per connection.
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
        self._target = f"AWSEvents.{operation}"
        config = client.meta.config
        self._read_timeout = float(config.read_timeout)
        self._connect_timeout = float(config.connect_timeout)
        self._pool_size = pool_size
        self._credentials = Credentials(credentials)
        parts = self.endpoint.parts
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        default_port = parts.port is None or parts.port == (443 if parts.scheme == "https" else 80)
        self._host_header = self._host if default_port else f"{self._host}:{self._port}"
        self._path = parts.path or "/"
        self._url = self.endpoint.url
        self._loop = crt_io.EventLoopGroup(1)
        self._bootstrap = crt_io.ClientBootstrap(self._loop, crt_io.DefaultHostResolver(self._loop))
        self._socket = crt_io.SocketOptions()
        self._socket.connect_timeout_ms = int(self._connect_timeout * 1000)
        self._socket.keep_alive = True
        self._tls = _tls(parts.scheme, self._host)
        self._proxy = _proxy(parts.scheme, self._host, getattr(config, "proxies", None))
        self._signing = self._signing_config(None)
        self._offset = timedelta(0)
        self._lock = threading.Lock()
        self._idle: list[http.HttpClientConnection] = []
        self._open = 0  # connections open or opening
        self._active: set[_Call] = set()
        self._done: queue.SimpleQueue[_Call] = queue.SimpleQueue()
        self._next_check = 0.0
        self._headers = [
            ("Host", self._host_header),
            ("Content-Type", _JSON_1_1),
            ("X-Amz-Target", self._target),
            ("User-Agent", f"kafka-eventbridge/{__version__} awscrt"),
        ]

    def _signing_config(self, date: datetime | None) -> auth.AwsSigningConfig:
        return auth.AwsSigningConfig(
            algorithm=(
                auth.AwsSigningAlgorithm.V4_ASYMMETRIC
                if self.endpoint.sigv4a
                else auth.AwsSigningAlgorithm.V4
            ),
            credentials_provider=self._credentials.provider,
            region=self.endpoint.region,
            service="events",
            date=date,
        )

    @property
    def in_flight(self) -> int:
        return len(self._active)

    @property
    def connections(self) -> int:
        """Connections open or opening: at most one per call in flight, and ``pool_size``
        kept idle for the next calls."""
        with self._lock:
            return self._open

    def send(self, key: Any, body: bytes) -> None:
        """Start a call; its result comes out of ``results()`` with this key."""
        call = _Call(key, body)
        self._active.add(call)
        try:
            self._start(call)
        except BaseException:
            self._active.discard(call)
            raise

    def _start(self, call: _Call) -> None:
        # Until connected (TCP and TLS), the connect timeout applies; then the read timeout.
        call.deadline = time.monotonic() + self._connect_timeout
        with self._lock:
            connection = None
            while self._idle and connection is None:
                candidate = self._idle.pop()
                if candidate.is_open():
                    connection = candidate
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
        except BaseException:
            with self._lock:
                self._open -= 1
            raise
        future.add_done_callback(lambda done: self._connected(call, done))

    def _connected(self, call: _Call, future: Future[http.HttpClientConnection]) -> None:
        error = future.exception()
        with self._lock:
            expired = call.timed_out  # already reported as a connect timeout
            if error is not None or expired:
                self._open -= 1
        if expired:
            if error is None:
                future.result().close()
            return
        if error is not None:
            call.error = error
            call.finished = time.perf_counter()
            self._done.put(call)
            return
        self._request(call, future.result())

    def _request(self, call: _Call, connection: http.HttpClientConnection) -> None:
        call.deadline = time.monotonic() + self._read_timeout
        with self._lock:  # _expire reads it under the lock
            call.connection = connection
        try:
            self._credentials.current()  # raises NoCredentialsError et al. as botocore would
            headers = http.HttpHeaders(self._headers)
            headers.add("Content-Length", str(len(call.body)))
            request = http.HttpRequest("POST", self._path, headers, io.BytesIO(call.body))
            auth.aws_sign_request(request, self._signing_now()).result()
            stream = connection.request(
                request,
                lambda **kw: self._on_response(call, **kw),
                lambda chunk, **_: call.chunks.append(chunk),
            )
        except Exception as error:
            call.error = error
            call.finished = time.perf_counter()
            self._release(connection)
            self._done.put(call)
            return
        stream.completion_future.add_done_callback(lambda done: self._finished(call, done))
        stream.activate()

    def _on_response(self, call: _Call, status_code: int, headers: Any, **_: Any) -> None:
        call.status = status_code
        call.headers = list(headers)

    def _signing_now(self) -> auth.AwsSigningConfig:
        if not self._offset:
            return self._signing
        return self._signing_config(datetime.now(UTC) + self._offset)

    def _finished(self, call: _Call, future: Future[int]) -> None:
        call.error = future.exception()
        call.finished = time.perf_counter()
        connection = call.connection
        if connection is not None:
            if call.error is None and not call.timed_out and not _closing(call.headers):
                self._release(connection)
            else:
                connection.close()
                with self._lock:
                    self._open -= 1
        self._done.put(call)

    def _release(self, connection: http.HttpClientConnection) -> None:
        with self._lock:
            keep = connection.is_open() and len(self._idle) < self._pool_size
            if keep:
                self._idle.append(connection)
            else:
                self._open -= 1
        if not keep:
            connection.close()

    def results(self, timeout: float = 0.0) -> list[tuple[Any, dict[str, Any] | Exception, float]]:
        """Finished calls as (key, parsed 2xx answer or the exception botocore would raise,
        ``perf_counter()`` when the answer arrived); waits up to ``timeout`` for the first one
        when none is ready."""
        finished: list[tuple[Any, dict[str, Any] | Exception, float]] = []
        deadline = time.monotonic() + timeout
        while True:
            self._expire()
            call = self._next(finished, deadline)
            if call is None:
                return finished
            if call not in self._active:
                continue  # a late report of a call already answered (timed out meanwhile)
            result = self._outcome(call)
            if result is not None:
                self._active.discard(call)
                finished.append((call.key, result, call.finished))

    def _next(self, finished: list[Any], deadline: float) -> _Call | None:
        try:
            return self._done.get_nowait()
        except queue.Empty:
            pass
        while not finished and self._active:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                return self._done.get(timeout=min(remaining, _TIMEOUT_CHECK_SECONDS))
            except queue.Empty:
                self._expire()
        return None

    def _expire(self) -> None:
        """Fail calls that waited past their timeout. Connected: close the connection, and
        awscrt finishes the call with an error, reported as botocore's ``ReadTimeoutError``.
        Still connecting (a TLS handshake that never ends): reported at once as
        ``ConnectTimeoutError``; the connection, should it still come, is closed unused."""
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + _TIMEOUT_CHECK_SECONDS
        for call in self._active:
            if call.deadline >= now or call.timed_out:
                continue
            with self._lock:
                call.timed_out = True
                connection = call.connection
            if connection is not None:
                connection.close()
            else:
                call.finished = time.perf_counter()
                self._done.put(call)

    def _outcome(self, call: _Call) -> dict[str, Any] | Exception | None:
        """The call's result; None when it was sent again (clock skew)."""
        if call.timed_out:
            if call.connection is None:
                return ConnectTimeoutError(endpoint_url=self._url, error="TLS or TCP connect")
            return ReadTimeoutError(endpoint_url=self._url)
        if call.error is not None:
            return self._connection_error(call)
        body = b"".join(call.chunks)
        if call.status < 300:
            try:
                parsed = orjson.loads(body)
            except orjson.JSONDecodeError:
                parsed = None
            return parsed if isinstance(parsed, dict) else {}
        error = self._client_error(call, body)
        if self._skewed(call, error):
            self._retry(call)
            return None
        return error

    def _connection_error(self, call: _Call) -> Exception:
        error = call.error
        if not isinstance(error, AwsCrtError):
            return error if isinstance(error, Exception) else RuntimeError(repr(error))
        if call.connection is not None:  # connected, then lost before a whole answer
            return ConnectionClosedError(endpoint_url=self._url, error=error)
        if "TIMEOUT" in error.name:
            return ConnectTimeoutError(endpoint_url=self._url, error=error)
        return EndpointConnectionError(endpoint_url=self._url, error=error)

    def _client_error(self, call: _Call, body: bytes) -> ClientError:
        """The error botocore's JSON parser and client would make of this answer."""
        headers = {name.lower(): value for name, value in call.headers}
        code, message = _error_fields(body, headers, call.status)
        response: dict[str, Any] = {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {
                "HTTPStatusCode": call.status,
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

    def _retry(self, call: _Call) -> None:
        call.skew_retried = True
        call.status, call.headers, call.chunks, call.error = 0, [], [], None
        call.connection = None
        self._start(call)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()
        for call in list(self._active):
            if call.connection is not None:
                call.connection.close()


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


def _closing(headers: list[tuple[str, str]] | None) -> bool:
    """Did the server say it closes the connection after this answer? (Reusing it would fail
    the next call with ConnectionClosedError.)"""
    return any(
        name.lower() == "connection" and value.strip().lower() == "close"
        for name, value in headers or ()
    )


def _tls(scheme: str, host: str) -> crt_io.TlsConnectionOptions | None:
    """TLS for an ``https://`` endpoint: the system's trust store, or ``AWS_CA_BUNDLE``."""
    if scheme != "https":
        return None
    options = crt_io.TlsContextOptions()
    bundle = os.environ.get("AWS_CA_BUNDLE")
    if bundle:
        options.override_default_trust_store_from_path(None, bundle)
    connection = crt_io.ClientTlsContext(options).new_connection_options()
    connection.set_server_name(host)
    return connection


def _proxy(
    scheme: str, host: str, configured: dict[str, str] | None
) -> http.HttpProxyOptions | None:
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
    basic = parts.username is not None
    return http.HttpProxyOptions(
        parts.hostname or "",
        parts.port or 80,
        auth_type=(
            http.HttpProxyAuthenticationType.Basic
            if basic
            else http.HttpProxyAuthenticationType.Nothing
        ),
        auth_username=urllib.parse.unquote(parts.username) if parts.username else None,
        auth_password=urllib.parse.unquote(parts.password) if parts.password else None,
        connection_type=(
            http.HttpProxyConnectionType.Tunneling
            if scheme == "https"
            else http.HttpProxyConnectionType.Forwarding
        ),
    )
