"""Publisher: batches to EventBridge, several requests in flight, outcomes back to the loop.

Two ways to send, by ``BRIDGE_EVENTBRIDGE_HTTP_CLIENT``:

- ``crt`` (default): :class:`kafka_eventbridge.crt.CrtTransport`. The body is built with orjson
  on the loop's thread; signing and the HTTP exchange run in awscrt's native code, over one
  keep-alive connection per request in flight; answers are read on the loop's thread when it
  collects completions. No Python thread per request (an offloaded entry's S3 upload runs on a
  small pool first, then its call is sent the same way).
- ``boto3``: the boto3 client's ``put_partner_events`` / ``put_events`` on a thread pool sized
  ``BRIDGE_MAX_IN_FLIGHT_REQUESTS``, sharing one client whose connection pool has that size.
  Nothing but boto3's public API; slower (docs/performance.md), kept as the plain reference.

Both answer the loop the same way: each finished call is a :class:`Completion` whose outcome
comes from ``classify.classify_response`` (a 2xx answer) or ``classify.classify_exception``
(botocore's exceptions, which the crt path raises too).

Who retries what: botocore makes exactly one attempt (``total_max_attempts=1``) and the crt
path one too (plus one re-signed attempt after a clock-skew refusal); the bridge retries every
retryable failure itself, call-level and per entry, with one backoff policy and one set of
metrics. Two retry layers would multiply attempts and hide throttling from the metrics.
"""

from __future__ import annotations

import os
import queue
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import boto3
import orjson
from botocore.config import Config

from kafka_eventbridge import aws
from kafka_eventbridge.batching import Batch
from kafka_eventbridge.classify import BatchOutcome, classify_exception, classify_response
from kafka_eventbridge.crt import CrtTransport
from kafka_eventbridge.errors import ConfigError
from kafka_eventbridge.mapping import Entry
from kafka_eventbridge.offload import Uploader
from kafka_eventbridge.settings import Api, EventBridgeSettings, HttpClient

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient as EventsClient
    from mypy_boto3_s3 import S3Client
else:
    EventsClient = Any

OPERATIONS = {Api.PARTNER: "PutPartnerEvents", Api.EVENTS: "PutEvents"}


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
    session = aws.session()
    region = settings.region or os.environ.get("AWS_REGION") or session.region_name
    if not region:
        raise ConfigError(
            ["BRIDGE_EVENTBRIDGE_REGION: no AWS region; set it, AWS_REGION or AWS_DEFAULT_REGION"]
        )
    return session, region, config


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
    """Sends batches, several in flight; the caller collects completions.

    ``transport`` None: the boto3 client's method on worker threads. A :class:`CrtTransport`:
    calls go through awscrt, and everything but the uploads of offloaded payloads happens
    on the caller's thread.
    """

    def __init__(
        self,
        client: EventsClient,
        api: Api,
        max_in_flight: int,
        uploader: Uploader | None = None,
        endpoint_id: str | None = None,
        *,
        transport: CrtTransport | None = None,
    ) -> None:
        self.client = client
        self.endpoint = str(getattr(getattr(client, "meta", None), "endpoint_url", "") or "")
        self.uploader = uploader
        self.api = api
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self._done: queue.SimpleQueue[Completion] = queue.SimpleQueue()
        self._transport = transport
        self._extra: dict[str, str] = {} if endpoint_id is None else {"EndpointId": endpoint_id}
        # crt: offloaded payloads go to S3 on these threads, then their call is sent.
        self._uploaded: queue.SimpleQueue[tuple[Batch, float, Exception | None]]
        self._uploaded = queue.SimpleQueue()
        self._pool: ThreadPoolExecutor | None = None
        if transport is None:
            self._pool = ThreadPoolExecutor(max_in_flight, thread_name_prefix="publish")
        method: Callable[..., Any] = getattr(client, _snake(OPERATIONS[api]))
        self._call: Callable[[Sequence[Entry]], dict[str, Any]] = lambda entries: dict(
            method(Entries=[e.request() for e in entries], **self._extra)
        )

    @property
    def capacity(self) -> int:
        return self.max_in_flight - self.in_flight

    def submit(self, batch: Batch) -> None:
        self.in_flight += 1
        if self._transport is None:
            assert self._pool is not None
            self._pool.submit(self._publish, batch)
        elif any(item.entry.upload is not None for item in batch.items):
            if self._pool is None:
                self._pool = ThreadPoolExecutor(4, thread_name_prefix="offload")
            self._pool.submit(self._upload, batch, time.perf_counter())
        else:
            self._send(batch, time.perf_counter())

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

    def _send(self, batch: Batch, started: float) -> None:
        assert self._transport is not None
        try:
            body = orjson.dumps({"Entries": [p.entry.wire() for p in batch.items], **self._extra})
            self._transport.send((batch, started), body)
        except Exception as exc:
            # Never lose a batch: a call that could not even start completes as failed.
            outcome = classify_exception(batch.items, exc)
            self._done.put(Completion(batch, outcome, time.perf_counter() - started))

    def _upload(self, batch: Batch, started: float) -> None:
        try:
            self._store_offloaded(batch)
        except Exception as exc:
            self._uploaded.put((batch, started, exc))
        else:
            self._uploaded.put((batch, started, None))

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

    def flush(self) -> None:
        """crt: write the calls queued since the last write, in one write; the threads of
        the boto3 path start theirs at once."""
        if self._transport is not None:
            self._transport.flush()

    def completions(self, timeout: float = 0.0) -> list[Completion]:
        """Finished calls; waits up to ``timeout`` for the first one if none is ready."""
        done = (
            self._crt_completions(timeout) if self._transport else self._thread_completions(timeout)
        )
        self.in_flight -= len(done)
        return done

    def _thread_completions(self, timeout: float) -> list[Completion]:
        done: list[Completion] = []
        try:
            if timeout > 0 and self.in_flight:
                done.append(self._done.get(timeout=timeout))
            while True:
                done.append(self._done.get_nowait())
        except queue.Empty:
            pass
        return done

    def _crt_completions(self, timeout: float) -> list[Completion]:
        assert self._transport is not None
        done: list[Completion] = []
        while True:
            try:
                done.append(self._done.get_nowait())
            except queue.Empty:
                break
        while True:
            try:
                batch, started, error = self._uploaded.get_nowait()
            except queue.Empty:
                break
            if error is None:
                self._send(batch, started)
            else:
                outcome = classify_exception(batch.items, error)
                done.append(Completion(batch, outcome, time.perf_counter() - started))
        for (batch, started), result, finished in self._transport.results(0 if done else timeout):
            if isinstance(result, dict):
                outcome = classify_response(batch.items, result)
            else:
                outcome = classify_exception(batch.items, result)
            done.append(Completion(batch, outcome, finished - started))
        return done

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        if self._transport is not None:
            self._transport.close()


def make_publisher(
    settings: EventBridgeSettings,
    max_in_flight: int,
    uploader: Uploader | None = None,
    client: EventsClient | None = None,
) -> Publisher:
    """The publisher ``BRIDGE_EVENTBRIDGE_HTTP_CLIENT`` asks for. Both paths take the
    endpoint, region and timeouts from one boto3 client and the credentials from the boto3
    session that built it (the single source: env, profile, SSO, IRSA, Pod Identity, roles)."""
    session, region, config = _aws(
        settings, max_in_flight, parameter_validation=False, tcp_keepalive=True
    )
    events = client or session.client("events", region_name=region, config=config)
    transport = None
    if settings.http_client is HttpClient.CRT:
        transport = CrtTransport(
            events,
            session.get_credentials(),
            OPERATIONS[settings.api],
            max_in_flight,
            settings.endpoint_id,
        )
    return Publisher(
        events, settings.api, max_in_flight, uploader, settings.endpoint_id, transport=transport
    )


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff, capped, with jitter: a delay between half and all of the step."""

    initial: float
    maximum: float
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempts: int) -> float:
        ceiling = min(self.maximum, self.initial * (2 ** max(attempts - 1, 0)))
        return self.rng.uniform(ceiling / 2, ceiling)
