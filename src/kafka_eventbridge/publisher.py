"""Publisher: batches to EventBridge, several requests in flight, outcomes back to the loop.

Calls run on a thread pool sized ``BRIDGE_MAX_IN_FLIGHT_REQUESTS``; they share one boto3
client (thread-safe) whose connection pool has the same size. Each finished call lands on
a completion queue that the main loop drains, so all bookkeeping stays on one thread.

Who retries what: botocore makes exactly one attempt (``total_max_attempts=1``); the
bridge retries every retryable failure itself, call-level and per entry, with one backoff
policy and one set of metrics. Two retry layers would multiply attempts and hide
throttling from the metrics.
"""

from __future__ import annotations

import os
import queue
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from kafka_eventbridge.batching import Batch
from kafka_eventbridge.classify import BatchOutcome, classify_exception, classify_response
from kafka_eventbridge.errors import ConfigError
from kafka_eventbridge.settings import Api, EventBridgeSettings

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient as EventsClient
else:
    EventsClient = Any


def make_client(settings: EventBridgeSettings, pool_size: int) -> EventsClient:
    """One boto3 client for all publisher threads.

    The endpoint comes from the standard AWS variables (``AWS_ENDPOINT_URL_EVENTBRIDGE``,
    ``AWS_ENDPOINT_URL``), credentials from the default chain (IRSA, env, profile, role).
    Parameter validation is off: the mapper has already checked every entry against the
    API's rules, and botocore's second pass costs ~20% of a call's CPU.
    """
    config = Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        max_pool_connections=pool_size,
        connect_timeout=settings.connect_timeout_seconds,
        read_timeout=settings.read_timeout_seconds,
        parameter_validation=False,
        tcp_keepalive=True,
    )
    session = boto3.session.Session()
    region = settings.region or os.environ.get("AWS_REGION") or session.region_name
    if not region:
        raise ConfigError(
            ["BRIDGE_EVENTBRIDGE_REGION: no AWS region; set it, AWS_REGION or AWS_DEFAULT_REGION"]
        )
    return session.client("events", region_name=region, config=config)


@dataclass
class Completion:
    batch: Batch
    outcome: BatchOutcome
    duration: float


class Publisher:
    """Sends batches on worker threads; the caller collects completions."""

    def __init__(self, client: EventsClient, api: Api, max_in_flight: int) -> None:
        self.client = client
        self.api = api
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self._done: queue.SimpleQueue[Completion] = queue.SimpleQueue()
        self._pool = ThreadPoolExecutor(max_in_flight, thread_name_prefix="publish")
        self._call: Callable[..., Any] = (
            client.put_partner_events if api is Api.PARTNER else client.put_events
        )

    @property
    def capacity(self) -> int:
        return self.max_in_flight - self.in_flight

    def submit(self, batch: Batch) -> None:
        self.in_flight += 1
        self._pool.submit(self._publish, batch)

    def _publish(self, batch: Batch) -> None:
        started = time.perf_counter()
        try:
            response = self._call(Entries=[p.entry.request() for p in batch.items])
            outcome = classify_response(batch.items, response)
        except Exception as exc:
            outcome = classify_exception(batch.items, exc)
        self._done.put(Completion(batch, outcome, time.perf_counter() - started))

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

    def delay(self, attempts: int) -> float:
        ceiling = min(self.maximum, self.initial * (2 ** max(attempts - 1, 0)))
        return random.uniform(ceiling / 2, ceiling)
