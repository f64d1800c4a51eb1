"""Publisher: batches to EventBridge, several requests in flight, outcomes back to the loop.

Calls run on a thread pool sized ``BRIDGE_MAX_IN_FLIGHT_REQUESTS``; they share one boto3
client (thread-safe) whose connection pool has the same size. Each finished call lands on
a completion queue that the main loop drains, so all bookkeeping stays on one thread.

Who retries what: botocore makes exactly one attempt (``total_max_attempts=1``); the
bridge retries every retryable failure itself, call-level and per entry, with one backoff
policy and one set of metrics. Two retry layers would multiply attempts and hide
throttling from the metrics.

The calls themselves take a short path (:class:`DirectPut`): the same endpoint, headers,
SigV4 signature and HTTP connection pool as the boto3 client's, without botocore's generic
per-call pipeline, which costs more CPU than the HTTP exchange itself (docs/performance.md).
"""

from __future__ import annotations

import os
import queue
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import boto3
import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSPreparedRequest, AWSRequest, AWSResponse
from botocore.config import Config
from botocore.endpoint import convert_to_response_dict
from botocore.parsers import create_parser

from kafka_eventbridge.batching import Batch
from kafka_eventbridge.classify import BatchOutcome, classify_exception, classify_response
from kafka_eventbridge.errors import ConfigError
from kafka_eventbridge.mapping import Entry
from kafka_eventbridge.offload import Uploader
from kafka_eventbridge.settings import Api, EventBridgeSettings

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient as EventsClient
    from mypy_boto3_s3 import S3Client
else:
    EventsClient = Any


def make_client(settings: EventBridgeSettings, pool_size: int) -> EventsClient:
    """One boto3 client for all publisher threads.

    The endpoint comes from the standard AWS variables (``AWS_ENDPOINT_URL_EVENTBRIDGE``,
    ``AWS_ENDPOINT_URL``), credentials from the default chain (IRSA, env, profile, role).
    Parameter validation is off: the mapper has already checked every entry against the
    API's rules, and botocore's second pass costs ~20% of a call's CPU.
    """
    session, region, config = _aws(
        settings, pool_size, parameter_validation=False, tcp_keepalive=True
    )
    return session.client("events", region_name=region, config=config)


def _aws(
    settings: EventBridgeSettings, pool_size: int, **options: Any
) -> tuple[boto3.session.Session, str, Config]:
    """What every AWS client of the bridge shares: one attempt per call (the bridge retries),
    a connection pool as large as the calls in flight, the timeouts, and the region."""
    config = Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        max_pool_connections=pool_size,
        connect_timeout=settings.connect_timeout_seconds,
        read_timeout=settings.read_timeout_seconds,
        **options,
    )
    session = boto3.session.Session()
    region = settings.region or os.environ.get("AWS_REGION") or session.region_name
    if not region:
        raise ConfigError(
            ["BRIDGE_EVENTBRIDGE_REGION: no AWS region; set it, AWS_REGION or AWS_DEFAULT_REGION"]
        )
    return session, region, config


OPERATIONS = {Api.PARTNER: "PutPartnerEvents", Api.EVENTS: "PutEvents"}
# Headers that belong to one request, not to the template every request is built from.
_PER_REQUEST_HEADERS = frozenset(
    {
        "authorization",
        "x-amz-date",
        "x-amz-security-token",
        "x-amz-content-sha256",
        "content-length",
        "amz-sdk-invocation-id",
        "amz-sdk-request",
    }
)
_SIGV4 = "AWS4-HMAC-SHA256 "


class _Captured(Exception):  # noqa: N818 - a signal, not an error
    """Carries the request botocore built, out of its pipeline, before anything is sent."""

    def __init__(self, request: AWSPreparedRequest) -> None:
        super().__init__("captured")
        self.request = request


@dataclass(frozen=True)
class _Template:
    """What every request shares: URL, headers and SigV4 scope, as botocore resolved them."""

    url: str
    headers: dict[str, str]
    scope: tuple[str, str] | None  # SigV4 signing name and region; None: unsigned


class DirectPut:
    """``PutPartnerEvents`` / ``PutEvents`` through the client's endpoint, signer and HTTP pool.

    botocore spends about half of a call's CPU on work that is the same for every call of
    one operation: walking the shape model to serialize, resolving the endpoint ruleset, a
    dozen event hooks, retry bookkeeping (a uuid4 per call) and the response parser. The
    first call here runs botocore's own pipeline once, up to the moment it would send, and
    keeps the URL, the headers and the SigV4 scope it resolved (so ``AWS_ENDPOINT_URL*``,
    the region, FIPS/dual-stack and the user agent stay botocore's). Every call then builds
    the JSON body with orjson, signs it with botocore's ``SigV4Auth`` and the client's
    credentials (refreshed as they expire: IRSA, profiles, roles), and sends it over the
    client's own urllib3 pool (timeouts, proxies, TLS settings, keep-alive). Errors come
    back as the exceptions botocore raises: connection errors from its HTTP session, and
    non-2xx answers parsed by its parser into the same modeled ``ClientError`` classes.

    A client whose requests are not plain SigV4 (SigV4a for global endpoints) keeps using
    the boto3 method.
    """

    def __init__(self, client: Any, operation: str) -> None:
        self._client = client
        self._operation = operation
        self._model = client.meta.service_model.operation_model(operation)
        self._method: Callable[..., Any] = getattr(client, _snake(operation))
        self._template: _Template | None = None
        self._fallback = False
        self._lock = threading.Lock()

    @staticmethod
    def supported(client: Any) -> bool:
        """A botocore client with the parts this path uses."""
        endpoint = getattr(client, "_endpoint", None)
        return hasattr(endpoint, "http_session") and hasattr(client, "_request_signer")

    def __call__(self, entries: Sequence[Entry]) -> dict[str, Any]:
        template = self._template or self._prepare(entries)
        if self._fallback:
            response: dict[str, Any] = self._method(Entries=[e.request() for e in entries])
            return response
        body = orjson.dumps({"Entries": [e.wire() for e in entries]})
        request = AWSRequest("POST", template.url, dict(template.headers), body)
        if template.scope is not None:
            credentials = self._client._request_signer._credentials.get_frozen_credentials()
            SigV4Auth(credentials, *template.scope).add_auth(request)
        http: AWSResponse = self._client._endpoint.http_session.send(request.prepare())
        if http.status_code < 300:
            try:
                parsed = orjson.loads(http.content)
            except orjson.JSONDecodeError:
                parsed = None
            if isinstance(parsed, dict):
                return parsed
        return self._parse(http)

    def _prepare(self, entries: Sequence[Entry]) -> _Template:
        """Run botocore's pipeline once, capturing the request it would send."""
        with self._lock:
            if self._template is not None:
                return self._template
            event = (
                f"before-send.{self._model.service_model.service_id.hyphenize()}.{self._operation}"
            )
            events = self._client.meta.events

            def capture(request: AWSPreparedRequest, **_: Any) -> None:
                raise _Captured(request)

            request = None
            events.register_first(event, capture, unique_id="kafka-eventbridge-capture")
            try:
                self._method(Entries=[entries[0].request()])
            except _Captured as captured:
                request = captured.request
            finally:
                events.unregister(event, unique_id="kafka-eventbridge-capture")
            # Nothing to capture when a hook answered before sending (botocore's Stubber).
            self._fallback = request is None
            self._template = (
                _Template("", {}, None) if request is None else (self._template_of(request))
            )
            return self._template

    def _template_of(self, request: AWSPreparedRequest) -> _Template:
        headers = {
            name: value.decode() if isinstance(value, bytes) else str(value)
            for name, value in request.headers.items()
            if name.lower() not in _PER_REQUEST_HEADERS
        }
        authorization = request.headers.get("Authorization")
        if isinstance(authorization, bytes):
            authorization = authorization.decode()
        if authorization is None:
            return _Template(request.url, headers, None)
        if not authorization.startswith(_SIGV4):
            self._fallback = True
            return _Template(request.url, headers, None)
        # "AWS4-HMAC-SHA256 Credential=AKID/20260101/<region>/<service>/aws4_request, ..."
        scope = authorization.split("Credential=", 1)[1].split(",", 1)[0].split("/")
        return _Template(request.url, headers, (scope[-2], scope[-3]))

    def _parse(self, http: AWSResponse) -> dict[str, Any]:
        """Anything but a plain 2xx JSON answer: botocore's parser, botocore's exception."""
        model = self._model
        protocol = getattr(model.service_model, "resolved_protocol", model.metadata["protocol"])
        parsed: dict[str, Any] = create_parser(protocol).parse(
            convert_to_response_dict(http, model), model.output_shape
        )
        if http.status_code >= 300:
            code = parsed.get("Error", {}).get("Code")
            raise self._client.exceptions.from_code(code)(parsed, self._operation)
        return parsed


def _snake(operation: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in operation).lstrip("_")


def make_s3_client(settings: EventBridgeSettings, pool_size: int) -> S3Client:
    """The S3 client of the claim check: one attempt per call, like the EventBridge client
    (the bridge's own retries apply), from the same credentials and region. The endpoint can
    be overridden with ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``."""
    session, region, config = _aws(settings, pool_size)
    return session.client("s3", region_name=region, config=config)


@dataclass
class Completion:
    batch: Batch
    outcome: BatchOutcome
    duration: float


class Publisher:
    """Sends batches on worker threads; the caller collects completions."""

    def __init__(
        self,
        client: EventsClient,
        api: Api,
        max_in_flight: int,
        uploader: Uploader | None = None,
        endpoint_id: str | None = None,
    ) -> None:
        self.client = client
        self.endpoint = str(getattr(getattr(client, "meta", None), "endpoint_url", "") or "")
        self.uploader = uploader
        self.api = api
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self._done: queue.SimpleQueue[Completion] = queue.SimpleQueue()
        self._pool = ThreadPoolExecutor(max_in_flight, thread_name_prefix="publish")
        self._call: Callable[[Sequence[Entry]], dict[str, Any]]
        method: Callable[..., Any] = getattr(client, _snake(OPERATIONS[api]))
        extra = {} if endpoint_id is None else {"EndpointId": endpoint_id}
        if not extra and DirectPut.supported(client):
            self._call = DirectPut(client, OPERATIONS[api])
        else:
            # A global endpoint is resolved per call and signed with SigV4a: botocore's path.
            self._call = lambda entries: dict(
                method(Entries=[e.request() for e in entries], **extra)
            )

    @property
    def capacity(self) -> int:
        return self.max_in_flight - self.in_flight

    def submit(self, batch: Batch) -> None:
        self.in_flight += 1
        self._pool.submit(self._publish, batch)

    def _publish(self, batch: Batch) -> None:
        started = time.perf_counter()
        outcome: BatchOutcome | None = None
        try:
            self._store_offloaded(batch)
            response = self._call([p.entry for p in batch.items])
            outcome = classify_response(batch.items, response)
        except Exception as exc:
            outcome = classify_exception(batch.items, exc)
        finally:
            # Always hand the batch back, whatever went wrong above: a completion that never
            # comes would hold an in-flight slot (and its records) for good.
            if outcome is None:
                outcome = BatchOutcome(call_error="InternalError")
                outcome.retry.extend((item, "InternalError") for item in batch.items)
            self._done.put(Completion(batch, outcome, time.perf_counter() - started))

    def _store_offloaded(self, batch: Batch) -> None:
        """Claim check: an offloaded Detail's object must be in S3 before its entry is sent.
        A failed upload fails the call, and the usual retry rules apply (the key is the same
        every time, so a repeated upload overwrites rather than duplicates)."""
        for item in batch.items:
            upload = item.entry.upload
            if upload is not None:
                if self.uploader is None:
                    raise RuntimeError("an offloaded entry but no uploader")
                self.uploader.put(upload)
                item.entry.upload = None

    def completions(self, timeout: float = 0.0) -> list[Completion]:
        """Finished calls; waits up to ``timeout`` for the first one if none is ready."""
        done: list[Completion] = []
        try:
            if timeout > 0 and self.in_flight:
                done.append(self._done.get(timeout=timeout))
            while True:
                done.append(self._done.get_nowait())
        except queue.Empty:
            pass
        self.in_flight -= len(done)
        return done

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff, capped, with jitter: a delay between half and all of the step."""

    initial: float
    maximum: float
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempts: int) -> float:
        ceiling = min(self.maximum, self.initial * (2 ** max(attempts - 1, 0)))
        return self.rng.uniform(ceiling / 2, ceiling)
