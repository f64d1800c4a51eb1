"""A fault-injecting Amazon EventBridge stand-in that boto3 talks to over real HTTP.

moto answers like the service when all goes well; the bridge's hard parts are what happens when
it does not: partial batch failures, throttling, 5xx, dropped connections, outages, an IAM policy
that denies everything. This module fails on purpose, reproducibly (a seeded RNG, or a
``"__fail"`` marker in an entry's Detail for a chosen record), and fast enough to benchmark
against (HTTP/1.1 keep-alive, one asyncio loop, orjson, no thread per request).

It speaks the AWS JSON 1.1 protocol of the ``events`` client: ``POST /`` with
``X-Amz-Target: AWSEvents.<Operation>``. It applies the service's limits (entries per call, entry
and request size, DetailType length, partner Source pattern, Detail must be a JSON object) and
answers errors as ``{"__type": code, "message": ...}``, which botocore turns into
``ClientError.response["Error"]["Code"]``.

Every call must be signed: the stand-in verifies SigV4 (and SigV4a) itself, from the canonical
request up (:mod:`kafka_eventbridge_testing.sigv4`), with the secrets it was given
(``credentials``, default ``DEFAULT_CREDENTIALS``), and answers ``403 InvalidSignatureException``
to a wrong signature, ``UnrecognizedClientException`` to an unknown access key and
``400 InvalidSignatureException`` ("Signature expired") to a request signed more than 15 minutes
away from its own clock (``Faults.clock_skew_seconds`` moves that clock; every answer carries
it in ``Date``). It also keeps the few S3 calls of the claim check (path-style ``PUT``/``GET``/
``HEAD`` of buckets and objects, on the same port), signed and checked the same way.

In process (a background thread)::

    with FakeEventBridge(Faults(entry_failure_rates={"ThrottlingException": 0.3})) as fake:
        client = boto3.client("events", endpoint_url=fake.url, ...)
        fake.set_faults(Faults(deny=True))
        fake.outage()   # connections are refused ...
        fake.recover()  # ... until it listens again on the same port

In its own process (so a benchmark can give it its own core), driven over HTTP::

    python -m kafka_eventbridge_testing.fake_eventbridge --port 0 --latency-ms 50

prints the URL as its first stdout line; ``FakeEventBridgeProcess`` and ``FakeEventBridgeClient``
wrap that. The control endpoints share the service port and are never subject to faults:

    GET  /_control/stats                  counters (``Stats``)
    GET  /_control/entries?since=N&limit=M accepted entries from sequence N, and ``next``
    GET  /_control/faults                 current ``Faults``
    POST /_control/faults                 replace the faults (missing fields take defaults)
    PATCH /_control/faults                change only the given fields
    POST /_control/clear                  forget entries and counters
    POST /_control/outage                 ``{"seconds": S}``: refuse connections for S seconds
"""

from __future__ import annotations

import argparse
import array
import asyncio
import concurrent.futures
import dataclasses
import enum
import hashlib
import http
import itertools
import math
import random
import re
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from functools import lru_cache
from types import FrameType
from typing import TYPE_CHECKING, Any, Final, NamedTuple, Self, cast

import orjson
import uvloop

from kafka_eventbridge_testing import Peer, sigv4

if TYPE_CHECKING:
    import boto3

__all__ = [
    "DEFAULT_CREDENTIALS",
    "DEFAULT_MAX_ENTRY_BYTES",
    "FAIL_MARKER",
    "EventLoop",
    "FakeEventBridge",
    "FakeEventBridgeClient",
    "FakeEventBridgeProcess",
    "Faults",
    "ReceivedEntry",
    "Stats",
    "StoreMode",
    "main",
    "signed_session",
]

PUT_EVENTS: Final = "PutEvents"
PUT_PARTNER_EVENTS: Final = "PutPartnerEvents"
MAX_ENTRIES_PER_CALL: Final[Mapping[str, int]] = {PUT_EVENTS: 10, PUT_PARTNER_EVENTS: 20}
DEFAULT_MAX_ENTRY_BYTES: Final = 262_144
MAX_DETAIL_TYPE_CHARS: Final = 128
MAX_RESOURCE_CHARS: Final = 2048
MAX_PARTNER_SOURCE_CHARS: Final = 256
TIME_BYTES: Final = 14
FAIL_MARKER: Final = "__fail"
"""Detail key whose string value is the ErrorCode that entry always fails with."""

ACCOUNT_ID: Final = "123456789012"
DEFAULT_CREDENTIALS: Final[Mapping[str, str]] = {"testing": "testing"}
"""Access key id → secret the stand-in accepts unless told otherwise."""
_PARTNER_SOURCE = re.compile(r"aws\.partner(/[.\-_A-Za-z0-9]+){2,}")
_TARGET_PREFIX: Final = "AWSEvents."
_AWS_CONTENT_TYPE: Final = b"application/x-amz-json-1.1"
_JSON_CONTENT_TYPE: Final = b"application/json"
_CONTROL_PREFIX: Final = "/_control/"
_MAX_HEAD_BYTES: Final = 64 * 1024
_MAX_BODY_BYTES: Final = 16 * 1024 * 1024
_START_TIMEOUT_S: Final = 10.0


# --------------------------------------------------------------------------- credentials


def signed_session(key: str | None = None, secret: str | None = None) -> boto3.session.Session:
    """A boto3 session in us-east-1 signing as ``key`` with ``secret``: by default the key the
    stand-in accepts unless told otherwise (:data:`DEFAULT_CREDENTIALS`). One session serves
    many clients: its loader caches the service model, so each client costs milliseconds."""
    import boto3  # the stand-in itself never needs it

    ((default_key, default_secret),) = DEFAULT_CREDENTIALS.items()
    return boto3.session.Session(
        aws_access_key_id=default_key if key is None else key,
        aws_secret_access_key=default_secret if secret is None else secret,
        region_name="us-east-1",
    )


# --------------------------------------------------------------------------- faults


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _require_probability(name: str, value: object) -> None:
    _require(_is_number(value) and 0.0 <= cast(float, value) <= 1.0, f"{name} must be in [0, 1]")


@dataclass(frozen=True)
class Faults:
    """What the stand-in does wrong, and how often.

    Immutable so that swapping one in is atomic: a call sees either the old or the new faults,
    never half of each. Call-level faults are drawn in this order: reset, deny, call error; then
    each valid entry draws its own failure. ``seed`` restarts the random sequence every time
    these faults are set, so a single-client test sees the same failures on every run.

    - ``latency_ms`` (+ uniform ``latency_jitter_ms``): delay before each answer; other
      connections are served meanwhile, as a slow service would.
    - ``entry_failure_rates``: ``{ErrorCode: probability}`` per valid entry, inside a 200;
      disjoint slices of one draw, so they must sum to at most 1.
    - ``call_error_rate``: the whole call answers ``call_error_status`` / ``call_error_code``.
    - ``reset_rate``: the connection is dropped with a TCP RST and no answer (the entries of
      that call are not stored).
    - ``deny``: every call answers 400 ``deny_code``: the systemic failure the bridge must treat
      as fatal, never as dead letters.
    - ``clock_skew_seconds``: the stand-in's clock runs this far ahead of the host's (negative:
      behind); its ``Date`` header and the signature's 15-minute window follow it.
    """

    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    entry_failure_rates: Mapping[str, float] = field(default_factory=dict)
    call_error_rate: float = 0.0
    call_error_status: int = 500
    call_error_code: str = "InternalFailure"
    reset_rate: float = 0.0
    deny: bool = False
    deny_code: str = "AccessDeniedException"
    clock_skew_seconds: float = 0.0
    seed: int | None = 0

    def __post_init__(self) -> None:
        _require(_is_number(self.latency_ms) and self.latency_ms >= 0, "latency_ms must be >= 0")
        _require(
            _is_number(self.latency_jitter_ms) and self.latency_jitter_ms >= 0,
            "latency_jitter_ms must be >= 0",
        )
        _require_probability("call_error_rate", self.call_error_rate)
        _require_probability("reset_rate", self.reset_rate)
        _require(
            isinstance(self.call_error_status, int) and 400 <= self.call_error_status <= 599,
            "call_error_status must be an HTTP error status (400-599)",
        )
        _require(isinstance(self.deny, bool), "deny must be a boolean")
        _require(_is_number(self.clock_skew_seconds), "clock_skew_seconds must be a number")
        _require(self.seed is None or isinstance(self.seed, int), "seed must be an integer")
        self._check_entry_failure_rates()

    def _check_entry_failure_rates(self) -> None:
        _require(isinstance(self.entry_failure_rates, Mapping), "entry_failure_rates: not a map")
        for code, rate in self.entry_failure_rates.items():
            _require_probability(f"entry_failure_rates[{code!r}]", rate)
        _require(sum(self.entry_failure_rates.values()) <= 1.0, "entry failure rates sum over 1")
        # A private copy: mutating the caller's dict later must not change faults in force.
        object.__setattr__(self, "entry_failure_rates", dict(self.entry_failure_rates))

    @classmethod
    def from_json(cls, data: object, base: Faults | None = None) -> Faults:
        """Faults from a JSON object; fields not given keep ``base``'s (or the defaults)."""
        if not isinstance(data, dict):
            raise ValueError("faults must be a JSON object")
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        _require(not unknown, f"unknown fault fields: {', '.join(unknown)}")
        try:
            return dataclasses.replace(base or cls(), **data)
        except TypeError as error:
            raise ValueError(str(error)) from error

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class _FaultState(NamedTuple):
    """Faults and the RNG that draws them, swapped together as one reference."""

    faults: Faults
    rng: random.Random

    @classmethod
    def of(cls, faults: Faults) -> _FaultState:
        return cls(faults, random.Random(faults.seed))


# --------------------------------------------------------------------------- records


class StoreMode(enum.StrEnum):
    """How much of each accepted entry to keep: everything, its EventId, its Time and when it
    was accepted (for latency, without the garbage collector walking a dict per entry), or
    only counters."""

    FULL = "full"
    IDS = "ids"
    TIMES = "times"
    COUNTS = "counts"


@dataclass(frozen=True, slots=True)
class ReceivedEntry:
    """One accepted entry, as the service would have put it on the bus.

    ``seq`` numbers accepted entries from 0 for the server's lifetime (``clear`` does not reset
    it), so a poller can ask for ``entries(since=last.seq + 1)``.
    """

    seq: int
    event_id: str
    api: str
    event_bus: str
    received_at: float
    entry: dict[str, Any]
    detail: dict[str, Any]


@dataclass(frozen=True)
class Stats:
    """Counters since start or the last ``clear``.

    ``calls_by_outcome`` keys: ``ok`` (every entry accepted), ``partial`` (200 with failed
    entries), ``reset`` (connection dropped), or the error code of a call that failed whole.
    """

    calls_total: int
    calls_by_operation: dict[str, int]
    calls_by_outcome: dict[str, int]
    entries_accepted: int
    entries_failed: dict[str, int]
    connections_opened: int
    #: Calls by signature scheme (``AWS4-HMAC-SHA256``, ``AWS4-ECDSA-P256-SHA256`` for SigV4a).
    auth_schemes: dict[str, int] = dataclasses.field(default_factory=dict)
    #: PutEvents calls by the global endpoint id they named.
    endpoint_ids: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def entries_failed_total(self) -> int:
        return sum(self.entries_failed.values())


def _wire_time(entry: Mapping[str, Any]) -> float:
    time = entry.get("Time")
    return float(time) if isinstance(time, int | float) else float("nan")


class _Accepted(NamedTuple):
    event_id: str
    event_bus: str
    entry: dict[str, Any]
    detail: dict[str, Any]


class _Recorder:
    """Thread-safe store of accepted entries and counters.

    Written only from the server's loop thread, read from test threads; one lock acquisition
    per call keeps the hot path cheap.
    """

    def __init__(self, store: StoreMode) -> None:
        self._store = store
        self._changed = threading.Condition(threading.Lock())
        self._next_seq = 0
        self._first_kept_seq = 0
        self._entries: list[ReceivedEntry] = []
        self._event_ids: list[str] = []
        # TIMES: each entry's Time (epoch seconds, NaN without one) and its acceptance time.
        self._times = array.array("d")
        self._received = array.array("d")
        self._reset_counters()

    def _reset_counters(self) -> None:
        self._calls_total = 0
        self._calls_by_operation: Counter[str] = Counter()
        self._calls_by_outcome: Counter[str] = Counter()
        self._entries_accepted = 0
        self._entries_failed: Counter[str] = Counter()
        self._connections_opened = 0
        self._auth_schemes: Counter[str] = Counter()
        self._endpoint_ids: Counter[str] = Counter()

    def note_request(self, auth_scheme: str, endpoint_id: str | None) -> None:
        with self._changed:
            self._auth_schemes[auth_scheme or "none"] += 1
            if endpoint_id:
                self._endpoint_ids[endpoint_id] += 1

    def connection_opened(self) -> None:
        with self._changed:
            self._connections_opened += 1

    def record_call(self, operation: str, outcome: str) -> None:
        with self._changed:
            self._count_call(operation, outcome)

    def record_put(
        self,
        operation: str,
        received_at: float,
        accepted: Sequence[_Accepted],
        failed: Mapping[str, int],
    ) -> None:
        with self._changed:
            self._count_call(operation, "partial" if failed else "ok")
            self._entries_failed.update(failed)
            self._keep(operation, received_at, accepted)
            self._entries_accepted += len(accepted)
            self._changed.notify_all()

    def _count_call(self, operation: str, outcome: str) -> None:
        self._calls_total += 1
        self._calls_by_operation[operation] += 1
        self._calls_by_outcome[outcome] += 1

    def _keep(self, operation: str, received_at: float, accepted: Sequence[_Accepted]) -> None:
        if self._store is StoreMode.FULL:
            seqs = range(self._next_seq, self._next_seq + len(accepted))
            self._entries.extend(
                ReceivedEntry(
                    seq, a.event_id, operation, a.event_bus, received_at, a.entry, a.detail
                )
                for seq, a in zip(seqs, accepted, strict=True)
            )
        elif self._store is StoreMode.IDS:
            self._event_ids.extend(a.event_id for a in accepted)
        elif self._store is StoreMode.TIMES:
            self._times.extend(_wire_time(a.entry) for a in accepted)
            self._received.extend(received_at for _ in accepted)
        self._next_seq += len(accepted)

    def entries(self, since: int, limit: int | None) -> tuple[list[ReceivedEntry], int]:
        with self._changed:
            start = max(since - self._first_kept_seq, 0)
            stop = None if limit is None else start + limit
            if self._store is StoreMode.TIMES:
                return self._timed(start, stop), self._next_seq
            return self._entries[start:stop], self._next_seq

    def _timed(self, start: int, stop: int | None) -> list[ReceivedEntry]:
        """TIMES: entries with only ``received_at`` and the entry's ``Time`` (if it had one)."""
        first = self._first_kept_seq + start
        pairs = zip(self._times[start:stop], self._received[start:stop], strict=True)
        return [
            ReceivedEntry(first + i, "", "", "", received, {} if math.isnan(t) else {"Time": t}, {})
            for i, (t, received) in enumerate(pairs)
        ]

    def event_ids(self) -> list[str]:
        with self._changed:
            if self._store is StoreMode.FULL:
                return [e.event_id for e in self._entries]
            return list(self._event_ids)

    def stats(self) -> Stats:
        with self._changed:
            return Stats(
                calls_total=self._calls_total,
                calls_by_operation=dict(self._calls_by_operation),
                calls_by_outcome=dict(self._calls_by_outcome),
                auth_schemes=dict(self._auth_schemes),
                endpoint_ids=dict(self._endpoint_ids),
                entries_accepted=self._entries_accepted,
                entries_failed=dict(self._entries_failed),
                connections_opened=self._connections_opened,
            )

    def clear(self) -> None:
        with self._changed:
            self._entries.clear()
            self._event_ids.clear()
            self._times = array.array("d")
            self._received = array.array("d")
            self._first_kept_seq = self._next_seq
            self._reset_counters()

    def wait_for_accepted(self, count: int, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._entries_accepted >= count, timeout)


# --------------------------------------------------------------------------- the service


class _Reply(NamedTuple):
    status: int
    body: bytes
    content_type: bytes = _AWS_CONTENT_TYPE
    headers: bytes = b""  # more header lines, each ending in CRLF


class _ApiError(Exception):
    """A whole call fails: answered as an AWS JSON error body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def reply(self) -> _Reply:
        return _Reply(self.status, orjson.dumps({"__type": self.code, "message": self.message}))


class _Failure(NamedTuple):
    """One entry fails inside a 200 response."""

    code: str
    message: str


def _utf8_len(value: object) -> int:
    if not isinstance(value, str):
        return 0
    return len(value) if value.isascii() else len(value.encode())


def _entry_size(entry: Mapping[str, Any]) -> int:
    """The service's entry size: only Time (14), Source, DetailType, Detail, Resources count."""
    size = TIME_BYTES if entry.get("Time") is not None else 0
    size += _utf8_len(entry.get("Source"))
    size += _utf8_len(entry.get("DetailType"))
    size += _utf8_len(entry.get("Detail"))
    resources = entry.get("Resources")
    if isinstance(resources, list):
        size += sum(_utf8_len(r) for r in resources)
    return size


@lru_cache(maxsize=4096)
def _partner_source_ok(source: str) -> bool:
    # Cached: a bridge sends the same few sources millions of times.
    return len(source) <= MAX_PARTNER_SOURCE_CHARS and bool(_PARTNER_SOURCE.fullmatch(source))


def _check_source(operation: str, source: object) -> _Failure | None:
    if not isinstance(source, str) or not source:
        return _Failure("InvalidArgument", "Parameter Source is not valid. Reason: required.")
    if operation == PUT_PARTNER_EVENTS and not _partner_source_ok(source):
        return _Failure("InvalidArgument", f"Parameter Source is not a partner source: {source}")
    return None


def _check_detail_type(detail_type: object) -> _Failure | None:
    if not isinstance(detail_type, str) or not detail_type:
        return _Failure("InvalidArgument", "Parameter DetailType is not valid. Reason: required.")
    if len(detail_type) > MAX_DETAIL_TYPE_CHARS:
        return _Failure("InvalidArgument", "Parameter DetailType is longer than 128 characters.")
    return None


def _check_resources(resources: object) -> _Failure | None:
    if resources is None:
        return None
    if not isinstance(resources, list) or not all(isinstance(r, str) for r in resources):
        return _Failure("InvalidArgument", "Parameter Resources must be a list of strings.")
    if any(len(r) > MAX_RESOURCE_CHARS for r in resources):
        return _Failure("InvalidArgument", "A resource is longer than 2048 characters.")
    return None


def _check_time(value: object) -> _Failure | None:
    if value is None or _is_number(value):
        return None
    return _Failure("InvalidArgument", "Parameter Time must be epoch seconds.")


def _parse_detail(detail: object) -> dict[str, Any] | _Failure:
    if not isinstance(detail, str) or not detail:
        return _Failure("InvalidArgument", "Parameter Detail is not valid. Reason: required.")
    try:
        parsed = orjson.loads(detail)
    except orjson.JSONDecodeError:
        return _Failure("MalformedDetail", "Detail is malformed.")
    if not isinstance(parsed, dict):
        return _Failure("MalformedDetail", "Detail is malformed: not a JSON object.")
    return parsed


def _validate_entry(operation: str, entry: object, max_bytes: int) -> dict[str, Any] | _Failure:
    """The parsed Detail of a valid entry, or why the service would refuse it."""
    if not isinstance(entry, dict):
        return _Failure("InvalidArgument", "Entry must be a JSON object.")
    failure = (
        _check_source(operation, entry.get("Source"))
        or _check_detail_type(entry.get("DetailType"))
        or _check_resources(entry.get("Resources"))
        or _check_time(entry.get("Time"))
    )
    if failure:
        return failure
    if _entry_size(entry) > max_bytes:
        return _Failure("InvalidArgument", f"Entry size exceeds the limit of {max_bytes} bytes.")
    return _parse_detail(entry.get("Detail"))


def _request_entries(operation: str, payload: Mapping[str, Any]) -> list[Any]:
    entries = payload.get("Entries")
    if not isinstance(entries, list):
        raise _ApiError(400, "ValidationException", "Value null at 'entries' must not be null")
    limit = MAX_ENTRIES_PER_CALL[operation]
    if not 1 <= len(entries) <= limit:
        raise _ApiError(
            400,
            "ValidationException",
            "1 validation error detected: Value at 'entries' failed to satisfy constraint: "
            f"Member must have length between 1 and {limit} (got {len(entries)})",
        )
    return entries


def _load_payload(body: bytes) -> dict[str, Any]:
    try:
        payload = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        raise _ApiError(400, "SerializationException", "Request body is not JSON") from None
    if not isinstance(payload, dict):
        raise _ApiError(400, "SerializationException", "Request body is not a JSON object")
    return payload


def _draw_entry_failure(rng: random.Random, rates: Mapping[str, float]) -> str | None:
    """One draw for all codes: the rates are disjoint slices of [0, 1)."""
    point = rng.random()
    for code, rate in rates.items():
        if point < rate:
            return code
        point -= rate
    return None


def _bus_name(name_or_arn: str) -> str:
    _, sep, name = name_or_arn.partition(":event-bus/")
    return name if sep else name_or_arn


def _operation_of(target: str | None) -> str:
    """The operation of an ``AWSEvents.<Operation>`` target; "" for anything else."""
    if target is None or not target.startswith(_TARGET_PREFIX):
        return ""
    return target[len(_TARGET_PREFIX) :]


_Handler = Callable[[str, dict[str, Any], _FaultState], _Reply]


class _Service:
    """The EventBridge operations and the faults; no sockets, runs on the loop thread only."""

    def __init__(
        self,
        recorder: _Recorder,
        faults: Faults,
        max_entry_bytes: int,
        max_request_bytes: int,
        region: str,
    ) -> None:
        self.recorder = recorder
        self.state = _FaultState.of(faults)
        self._max_entry_bytes = max_entry_bytes
        self._max_request_bytes = max_request_bytes
        self.region = region
        # EventIds look like UUIDs, are unique per server, and cost a counter increment.
        self._id_prefix = str(uuid.uuid4())[:24]
        self._authorization = ""  # scheme of the call being answered (the loop is one thread)
        self._ids = itertools.count()
        self._operations: dict[str, _Handler] = {
            PUT_EVENTS: self._put,
            PUT_PARTNER_EVENTS: self._put,
            "DescribeEventBus": self._describe_event_bus,
            "ListEventBuses": self._list_event_buses,
        }

    def handle(
        self, target: str | None, body: bytes, authorization: str = ""
    ) -> tuple[float, _Reply | None]:
        """Answer one call: (delay in seconds, reply); a None reply means drop the connection."""
        state = self.state
        operation = _operation_of(target)
        self._authorization = authorization.split(" ", 1)[0]
        try:
            reply = self._answer(operation, body, state)
        except _ApiError as error:
            self.recorder.record_call(operation or "-", error.code)
            reply = error.reply()
        return self._delay(state), reply

    @staticmethod
    def _delay(state: _FaultState) -> float:
        faults = state.faults
        if not faults.latency_jitter_ms:
            return faults.latency_ms / 1000.0
        return (faults.latency_ms + state.rng.random() * faults.latency_jitter_ms) / 1000.0

    def _answer(self, operation: str, body: bytes, state: _FaultState) -> _Reply | None:
        handler = self._operations.get(operation)
        if handler is None:
            raise _ApiError(400, "UnknownOperationException", "Unknown X-Amz-Target operation")
        faults, rng = state
        if faults.reset_rate and rng.random() < faults.reset_rate:
            self.recorder.record_call(operation, "reset")
            return None
        if faults.deny:
            raise _ApiError(400, faults.deny_code, f"Not authorized to perform {operation}")
        if faults.call_error_rate and rng.random() < faults.call_error_rate:
            raise _ApiError(faults.call_error_status, faults.call_error_code, "Injected failure")
        return handler(operation, _load_payload(body), state)

    def _put(self, operation: str, payload: dict[str, Any], state: _FaultState) -> _Reply:
        self.recorder.note_request(self._authorization, payload.get("EndpointId"))
        entries = _request_entries(operation, payload)
        if sum(_entry_size(e) for e in entries if isinstance(e, dict)) > self._max_request_bytes:
            raise _ApiError(
                400,
                "ValidationException",
                "Total size of the entries in the request is over the limit.",
            )
        results: list[dict[str, str]] = []
        accepted: list[_Accepted] = []
        failed: Counter[str] = Counter()
        for entry in entries:
            verdict = self._judge(operation, entry, state)
            if isinstance(verdict, _Failure):
                results.append({"ErrorCode": verdict.code, "ErrorMessage": verdict.message})
                failed[verdict.code] += 1
                continue
            event_id = f"{self._id_prefix}{next(self._ids):012x}"
            results.append({"EventId": event_id})
            accepted.append(_Accepted(event_id, self._event_bus(operation, entry), entry, verdict))
        self.recorder.record_put(operation, time.time(), accepted, failed)
        body = {"FailedEntryCount": len(entries) - len(accepted), "Entries": results}
        return _Reply(200, orjson.dumps(body))

    def _judge(
        self, operation: str, entry: object, state: _FaultState
    ) -> dict[str, Any] | _Failure:
        verdict = _validate_entry(operation, entry, self._max_entry_bytes)
        if isinstance(verdict, _Failure):
            return verdict
        marker = verdict.get(FAIL_MARKER)
        if isinstance(marker, str):
            return _Failure(marker, f"Injected permanent failure ({FAIL_MARKER} marker)")
        rates = state.faults.entry_failure_rates
        code = _draw_entry_failure(state.rng, rates) if rates else None
        if code is not None:
            return _Failure(code, "Injected failure")
        return verdict

    @staticmethod
    def _event_bus(operation: str, entry: dict[str, Any]) -> str:
        # A partner event bus is named after its event source.
        if operation == PUT_PARTNER_EVENTS:
            return cast(str, entry["Source"])
        bus = entry.get("EventBusName")
        return bus if isinstance(bus, str) and bus else "default"

    def _bus_arn(self, name: str) -> str:
        return f"arn:aws:events:{self.region}:{ACCOUNT_ID}:event-bus/{name}"

    def _describe_event_bus(
        self, operation: str, payload: dict[str, Any], state: _FaultState
    ) -> _Reply:
        name = payload.get("Name") or "default"
        if not isinstance(name, str):
            raise _ApiError(400, "ValidationException", "Name must be a string")
        name = _bus_name(name)
        self.recorder.record_call(operation, "ok")
        return _Reply(200, orjson.dumps({"Name": name, "Arn": self._bus_arn(name)}))

    def _list_event_buses(
        self, operation: str, payload: dict[str, Any], state: _FaultState
    ) -> _Reply:
        prefix = payload.get("NamePrefix") or ""
        buses = [{"Name": "default", "Arn": self._bus_arn("default")}]
        self.recorder.record_call(operation, "ok")
        body = {"EventBuses": [b for b in buses if b["Name"].startswith(str(prefix))]}
        return _Reply(200, orjson.dumps(body))


# --------------------------------------------------------------------------- HTTP/1.1


class _HttpError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


@dataclass(frozen=True, slots=True)
class _Head:
    method: str
    path: str
    headers: dict[str, str]
    content_length: int
    keep_alive: bool


@dataclass(frozen=True, slots=True)
class _Request:
    head: _Head
    body: bytes


def _parse_head(raw: bytes) -> _Head:
    """Just enough HTTP/1.1: botocore sends a Content-Length body, never chunked."""
    request_line, *lines = raw.decode("latin-1").split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _HttpError(400)
    method, path, version = parts
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep:
            raise _HttpError(400)
        headers[name.strip().lower()] = value.strip()
    if "transfer-encoding" in headers:
        raise _HttpError(501)
    return _Head(method, path, headers, _content_length(headers), _keep_alive(version, headers))


def _content_length(headers: Mapping[str, str]) -> int:
    raw = headers.get("content-length", "0")
    if not raw.isdigit():
        raise _HttpError(400)
    length = int(raw)
    if length > _MAX_BODY_BYTES:
        raise _HttpError(413)
    return length


def _keep_alive(version: str, headers: Mapping[str, str]) -> bool:
    connection = headers.get("connection", "").lower()
    if version == "HTTP/1.0":
        return connection == "keep-alive"
    return connection != "close"


@lru_cache(maxsize=64)
def _status_line(status: int) -> bytes:
    return f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n".encode()


@lru_cache(maxsize=4)
def _http_date(epoch_second: int) -> bytes:
    """An HTTP ``Date`` value; the same for every answer of a second (cached)."""
    return format_datetime(datetime.fromtimestamp(epoch_second, UTC), usegmt=True).encode()


def _encode_response(reply: _Reply, keep_alive: bool, request_id: int, date: bytes) -> bytes:
    head = b"%sContent-Type: %s\r\nContent-Length: %d\r\nx-amzn-RequestId: %x\r\nDate: %s\r\n%s" % (
        _status_line(reply.status),
        reply.content_type,
        len(reply.body),
        request_id,
        date,
        reply.headers,
    )
    if not keep_alive:
        head += b"Connection: close\r\n"
    return head + b"\r\n" + reply.body


def _reset(transport: asyncio.Transport) -> None:
    """Drop the connection with a TCP RST, as a crashed load balancer would."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class _Connection(asyncio.Protocol):
    """One keep-alive connection; requests are answered strictly one after another."""

    def __init__(self, server: _Server) -> None:
        self._server = server
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._head: _Head | None = None
        self._busy = False
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._server.opened(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._timer is not None:
            self._timer.cancel()
        self._server.closed(self)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._advance()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _advance(self) -> None:
        while not self._busy and self._transport is not None:
            try:
                request = self._take_request()
            except _HttpError as error:
                self.send(_Reply(error.status, b"", _JSON_CONTENT_TYPE), keep_alive=False)
                return
            if request is None:
                return
            self._busy = True
            self._server.dispatch(self, request)

    def _take_request(self) -> _Request | None:
        if self._head is None:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > _MAX_HEAD_BYTES:
                    raise _HttpError(431)
                return None
            self._head = _parse_head(bytes(self._buffer[:end]))
            del self._buffer[: end + 4]
            self._continue_if_expected(self._head)
        length = self._head.content_length
        if len(self._buffer) < length:
            return None
        body = bytes(self._buffer[:length])
        del self._buffer[:length]
        head, self._head = self._head, None
        return _Request(head, body)

    def _continue_if_expected(self, head: _Head) -> None:
        if head.headers.get("expect", "").lower() == "100-continue" and self._transport:
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def send_later(self, delay: float, reply: _Reply | None, keep_alive: bool) -> None:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(delay, self.send, reply, keep_alive)

    def send(self, reply: _Reply | None, keep_alive: bool) -> None:
        """Write the reply (None: reset the connection) and go on with buffered requests."""
        self._timer = None
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if reply is None:
            _reset(transport)
            return
        server = self._server
        transport.write(
            _encode_response(reply, keep_alive, server.next_request_id(), server.http_date())
        )
        if not keep_alive:
            transport.close()
            return
        self._busy = False
        if self._buffer:
            self._advance()


class _Server:
    """The listening socket and the open connections; every method runs on the loop thread."""

    def __init__(
        self, service: _Service, host: str, port: int, credentials: Mapping[str, str]
    ) -> None:
        self.service = service
        self.s3 = _S3()
        self.credentials = dict(credentials)
        self.tls: ssl.SSLContext | None = None
        self.control: Callable[[_Request], _Reply] = lambda _request: _json_reply({}, 404)
        self.host = host
        self.port = port
        self._listener: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._request_ids = itertools.count(1)
        self._recover_timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def listening(self) -> bool:
        return self._listener is not None

    def next_request_id(self) -> int:
        return next(self._request_ids)

    def now(self) -> datetime:
        """The stand-in's clock: the host's, moved by ``Faults.clock_skew_seconds``."""
        skew = self.service.state.faults.clock_skew_seconds
        return datetime.now(UTC) + timedelta(seconds=skew)

    def http_date(self) -> bytes:
        return _http_date(int(self.now().timestamp()))

    def _refusal(self, request: _Request, operation: str) -> _Reply | None:
        """The answer to a request whose signature does not verify; None when it does."""
        head = request.head
        refusal = sigv4.verify(
            head.method,
            head.path,
            head.headers,
            request.body,
            credentials=self.credentials,
            now=self.now(),
            region=self.service.region,
        )
        if refusal is None:
            return None
        self.service.recorder.record_call(operation, refusal.code)
        if operation.startswith("s3:"):
            return _s3_error(refusal.status, refusal.code, refusal.message)
        return _ApiError(refusal.status, refusal.code, refusal.message).reply()

    def opened(self, connection: _Connection) -> None:
        if not self.listening:
            # Accepted just before an outage closed the listener, but made after it dropped
            # the open connections: dropped too, or it would serve through the outage.
            connection.close()
            return
        self._connections.add(connection)
        self.service.recorder.connection_opened()

    def closed(self, connection: _Connection) -> None:
        self._connections.discard(connection)

    def dispatch(self, connection: _Connection, request: _Request) -> None:
        head = request.head
        if head.path.startswith(_CONTROL_PREFIX):
            connection.send(self.control(request), head.keep_alive)
            return
        if not self.listening:  # down: no call is served, on whatever connection it came
            connection.close()
            return
        if head.method != "POST" or head.path != "/":
            operation = _S3.operation(head.method, head.path)
            reply = self._refusal(request, operation)
            if reply is None:
                reply = self.s3.handle(head, request.body)
                self.service.recorder.record_call(operation, str(reply.status))
            connection.send(reply, head.keep_alive)
            return
        operation = _operation_of(head.headers.get("x-amz-target")) or "-"
        refused = self._refusal(request, operation)
        if refused is not None:
            connection.send(refused, head.keep_alive)
            return
        delay, reply = self.service.handle(
            head.headers.get("x-amz-target"), request.body, head.headers.get("authorization", "")
        )
        if delay > 0:
            connection.send_later(delay, reply, head.keep_alive)
        else:
            connection.send(reply, head.keep_alive)

    async def listen(self) -> None:
        """Listen on ``port``; after the first bind that is the port an outage gives back."""
        if self._listener is not None:
            return
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(
            lambda: _Connection(self),
            self.host,
            self.port,
            reuse_address=True,
            backlog=1024,
            ssl=self.tls,
        )
        self.port = self._listener.sockets[0].getsockname()[1]

    async def go_down(self, seconds: float | None = None) -> None:
        """Close the listener (new connections are refused) and drop every open connection."""
        self._cancel_recovery()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        await self._drop_connections()
        if seconds is not None:
            loop = asyncio.get_running_loop()
            self._recover_timer = loop.call_later(seconds, self._spawn, self.come_up)

    async def come_up(self) -> None:
        self._cancel_recovery()
        await self.listen()

    def schedule_outage(self, seconds: float) -> None:
        # Soon, not now: the control request asking for it still gets its answer.
        asyncio.get_running_loop().call_soon(self._spawn, lambda: self.go_down(seconds))

    async def shutdown(self) -> None:
        await self.go_down()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _drop_connections(self) -> None:
        for connection in list(self._connections):
            connection.close()
        # Transports close on a later loop iteration; wait so a refused/closed state is observable
        # the moment go_down returns.
        for _ in range(1000):
            if not self._connections:
                return
            await asyncio.sleep(0)

    def _cancel_recovery(self) -> None:
        if self._recover_timer is not None:
            self._recover_timer.cancel()
            self._recover_timer = None

    def _spawn(self, make: Callable[[], Any]) -> None:
        task = asyncio.get_running_loop().create_task(make())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


# --------------------------------------------------------------------------- S3


def _s3_error(status: int, code: str, message: str) -> _Reply:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    ).encode()
    return _Reply(status, body, b"application/xml")


class _S3:
    """The S3 calls of the claim check, path-style: buckets and objects kept in memory.

    ``PUT /bucket`` creates a bucket; ``PUT /bucket/key`` stores an object (404 ``NoSuchBucket``
    without its bucket); ``GET`` and ``HEAD`` read them back. Runs on the loop thread only.
    """

    def __init__(self) -> None:
        self.buckets: dict[str, dict[str, bytes]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _split(path: str) -> tuple[str, str]:
        bucket, _, key = urllib.parse.unquote(path.split("?", 1)[0]).lstrip("/").partition("/")
        return bucket, key

    @staticmethod
    def operation(method: str, path: str) -> str:
        _, key = _S3._split(path)
        names = {"PUT": "Put", "GET": "Get", "HEAD": "Head"}
        return f"s3:{names.get(method, method)}{'Object' if key else 'Bucket'}"

    def handle(self, head: _Head, body: bytes) -> _Reply:
        bucket, key = self._split(head.path)
        with self._lock:
            objects = self.buckets.get(bucket)
            if head.method == "PUT" and not key:
                self.buckets.setdefault(bucket, {})
                return _Reply(200, b"", b"application/xml")
            if objects is None:
                return _s3_error(404, "NoSuchBucket", "The specified bucket does not exist")
            return self._object(head, key, body, objects)

    @staticmethod
    def _object(head: _Head, key: str, body: bytes, objects: dict[str, bytes]) -> _Reply:
        if head.method == "PUT":
            objects[key] = body
            etag = hashlib.md5(body, usedforsecurity=False).hexdigest().encode()
            return _Reply(200, b"", b"application/xml", b'ETag: "%s"\r\n' % etag)
        if head.method not in ("GET", "HEAD"):
            return _s3_error(405, "MethodNotAllowed", "The method is not allowed")
        if not key:
            return _Reply(200, b"", b"application/xml")
        stored = objects.get(key)
        if stored is None:
            return _s3_error(404, "NoSuchKey", "The specified key does not exist.")
        return _Reply(200, stored if head.method == "GET" else b"", b"application/octet-stream")

    def get(self, bucket: str, key: str) -> bytes | None:
        with self._lock:
            return self.buckets.get(bucket, {}).get(key)


# --------------------------------------------------------------------------- control


def _json_reply(value: object, status: int = 200) -> _Reply:
    return _Reply(status, orjson.dumps(value), _JSON_CONTENT_TYPE)


def _query_int(query: Mapping[str, list[str]], name: str) -> int | None:
    values = query.get(name)
    if not values:
        return None
    if not values[0].isdigit():
        raise ValueError(f"{name} must be a non-negative integer")
    return int(values[0])


class _Control:
    """The HTTP control endpoints, for tests and benchmarks in another process."""

    def __init__(self, bridge: FakeEventBridge, server: _Server) -> None:
        self._bridge = bridge
        self._server = server
        self._routes: dict[tuple[str, str], Callable[[dict[str, list[str]], bytes], object]] = {
            ("GET", "stats"): lambda _q, _b: dataclasses.asdict(self._bridge.stats()),
            ("GET", "entries"): self._entries,
            ("GET", "faults"): lambda _q, _b: self._bridge.faults.to_json(),
            ("POST", "faults"): lambda _q, b: self._set_faults(b, base=None),
            ("PATCH", "faults"): lambda _q, b: self._set_faults(b, base=self._bridge.faults),
            ("POST", "clear"): self._clear,
            ("POST", "outage"): self._outage,
        }

    def __call__(self, request: _Request) -> _Reply:
        url = urllib.parse.urlsplit(request.head.path)
        route = self._routes.get((request.head.method, url.path.removeprefix(_CONTROL_PREFIX)))
        if route is None:
            return _json_reply({"error": f"no route {request.head.method} {url.path}"}, 404)
        try:
            return _json_reply(route(urllib.parse.parse_qs(url.query), request.body))
        except ValueError as error:  # orjson.JSONDecodeError is a ValueError
            return _json_reply({"error": str(error)}, 400)

    def _entries(self, query: dict[str, list[str]], _body: bytes) -> object:
        since = _query_int(query, "since") or 0
        entries, next_seq = self._bridge.entries_page(since, _query_int(query, "limit"))
        return {"entries": entries, "next": next_seq}

    def _set_faults(self, body: bytes, base: Faults | None) -> object:
        faults = Faults.from_json(orjson.loads(body or b"{}"), base=base)
        self._bridge.set_faults(faults)
        return faults.to_json()

    def _clear(self, _query: dict[str, list[str]], _body: bytes) -> object:
        self._bridge.clear()
        return {}

    def _outage(self, _query: dict[str, list[str]], body: bytes) -> object:
        request = orjson.loads(body or b"{}")
        seconds = request.get("seconds") if isinstance(request, dict) else None
        if not _is_number(seconds) or cast(float, seconds) <= 0:
            raise ValueError("outage needs {'seconds': > 0}")
        self._server.schedule_outage(float(cast(float, seconds)))
        return {"seconds": seconds}


# --------------------------------------------------------------------------- public API


class EventLoop(enum.StrEnum):
    """What serves the stand-in's connections: uvloop (libuv's loop, transports in C) by
    default, or the standard library's asyncio loop, to compare the two."""

    UVLOOP = "uvloop"
    ASYNCIO = "asyncio"

    def new(self) -> asyncio.AbstractEventLoop:
        return uvloop.new_event_loop() if self is EventLoop.UVLOOP else asyncio.new_event_loop()


class FakeEventBridge(Peer):
    """The stand-in, served by an event loop (see :class:`EventLoop`) on a background thread.

    Every public method is thread-safe. ``store`` bounds memory for long benchmark runs:
    ``ids`` keeps only EventIds, ``times`` only each entry's ``Time`` and ``received_at``
    (``entries`` gives those), ``counts`` only the counters.

    ``max_entry_bytes`` fails one entry (``InvalidArgument``); ``max_request_bytes`` (default: the
    same) fails the whole call with a 400 ``ValidationException``. With the default, an
    oversized single entry fails the call, as the real service does; raise
    ``max_request_bytes`` to see the per-entry failure.
    """

    def __init__(
        self,
        faults: Faults | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        store: StoreMode | str = StoreMode.FULL,
        max_entry_bytes: int = DEFAULT_MAX_ENTRY_BYTES,
        max_request_bytes: int | None = None,
        region: str = "us-east-1",
        credentials: Mapping[str, str] = DEFAULT_CREDENTIALS,
        tls: ssl.SSLContext | None = None,
        event_loop: EventLoop | str = EventLoop.UVLOOP,
    ) -> None:
        self._event_loop = EventLoop(event_loop)
        self._recorder = _Recorder(StoreMode(store))
        self._service = _Service(
            self._recorder,
            faults or Faults(),
            max_entry_bytes,
            max_entry_bytes if max_request_bytes is None else max_request_bytes,
            region,
        )
        self._server = _Server(self._service, host, port, credentials)
        self._server.tls = tls  # serve HTTPS with this server context (url is then https://)
        self._server.control = _Control(self, self._server)
        self._faults_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # ----- lifecycle

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError("FakeEventBridge already started")
        loop = self._event_loop.new()
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._run, args=(loop, ready), name="fake-eventbridge", daemon=True
        )
        self._loop = loop
        self._thread.start()
        try:
            ready.result(timeout=_START_TIMEOUT_S)
        except BaseException:
            self.stop()
            raise
        return self

    def _run(self, loop: asyncio.AbstractEventLoop, ready: concurrent.futures.Future[None]) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._server.listen())
        except BaseException as error:  # the starting thread re-raises it
            ready.set_exception(error)
            loop.close()
            return
        ready.set_result(None)
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._server.shutdown())
            loop.close()

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=_START_TIMEOUT_S)
        self._loop = self._thread = None

    @property
    def url(self) -> str:
        scheme = "https" if self._server.tls is not None else "http"
        return f"{scheme}://{self._server.host}:{self._server.port}"

    @property
    def port(self) -> int:
        return self._server.port

    # ----- faults

    @property
    def faults(self) -> Faults:
        return self._service.state.faults

    def set_faults(self, faults: Faults) -> None:
        """Replace the faults for calls from now on (and restart the RNG from ``faults.seed``)."""
        with self._faults_lock:
            self._service.state = _FaultState.of(faults)

    def update_faults(self, **changes: Any) -> Faults:
        """Change some fault fields, keep the others; returns the new faults."""
        with self._faults_lock:
            faults = dataclasses.replace(self._service.state.faults, **changes)
            self._service.state = _FaultState.of(faults)
            return faults

    def outage(self, seconds: float | None = None) -> None:
        """Refuse connections and drop open ones until ``recover()`` (or for ``seconds``).

        Calls still waiting out their latency lose their answer, but their entries were stored
        on receipt: the client cannot tell, retries, and duplicates them, as with the service.
        """
        self._call_on_loop(self._server.go_down(seconds))

    def recover(self) -> None:
        """Listen again, on the same port."""
        self._call_on_loop(self._server.come_up())

    @property
    def is_down(self) -> bool:
        return not self._server.listening

    def _call_on_loop(self, coroutine: Any) -> None:
        loop = self._loop
        if loop is None or threading.current_thread() is self._thread:
            coroutine.close()
            raise RuntimeError("call from another thread, on a started FakeEventBridge")
        asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout=_START_TIMEOUT_S)

    # ----- credentials and S3

    def add_credentials(self, access_key_id: str, secret_access_key: str) -> None:
        """Accept signatures made with this key pair too (from any thread)."""
        self._server.credentials = {**self._server.credentials, access_key_id: secret_access_key}

    def set_credentials(self, credentials: Mapping[str, str]) -> None:
        """Accept only these key pairs from now on (a rotated or revoked key is refused)."""
        self._server.credentials = dict(credentials)

    def create_bucket(self, name: str) -> None:
        with self._server.s3._lock:
            self._server.s3.buckets.setdefault(name, {})

    def s3_object(self, bucket: str, key: str) -> bytes | None:
        """An object the claim check stored, or None."""
        return self._server.s3.get(bucket, key)

    # ----- what it received

    def stats(self) -> Stats:
        return self._recorder.stats()

    def entries(self, since: int = 0, limit: int | None = None) -> list[ReceivedEntry]:
        """Accepted entries with ``seq >= since`` (``store="full"`` only)."""
        return self._recorder.entries(since, limit)[0]

    def entries_page(self, since: int, limit: int | None) -> tuple[list[ReceivedEntry], int]:
        """Like ``entries``, plus the ``seq`` the next entry will get."""
        return self._recorder.entries(since, limit)

    def event_ids(self) -> list[str]:
        """EventIds of accepted entries (``store`` ``full`` or ``ids``)."""
        return self._recorder.event_ids()

    def wait_for_accepted(self, count: int, timeout: float = 5.0) -> bool:
        """Block until ``count`` entries were accepted since the last clear, or time out."""
        return self._recorder.wait_for_accepted(count, timeout)

    def clear(self) -> None:
        """Forget stored entries and counters (``seq`` numbering continues)."""
        self._recorder.clear()


class FakeEventBridgeClient:
    """Drives a stand-in in another process through its control endpoints."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self._timeout = timeout

    def _call(self, method: str, path: str, body: object = None) -> Any:
        data = None if body is None else orjson.dumps(body)
        request = urllib.request.Request(  # noqa: S310 - the URL is ours, http only
            f"{self.url}{_CONTROL_PREFIX}{path}", data=data, method=method
        )
        with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310
            return orjson.loads(response.read())

    @property
    def faults(self) -> Faults:
        return Faults.from_json(self._call("GET", "faults"))

    def set_faults(self, faults: Faults) -> None:
        self._call("POST", "faults", faults.to_json())

    def update_faults(self, **changes: Any) -> Faults:
        return Faults.from_json(self._call("PATCH", "faults", changes))

    def stats(self) -> Stats:
        return Stats(**self._call("GET", "stats"))

    def entries(self, since: int = 0, limit: int | None = None) -> list[ReceivedEntry]:
        return self.entries_page(since, limit)[0]

    def entries_page(self, since: int, limit: int | None = None) -> tuple[list[ReceivedEntry], int]:
        query = urllib.parse.urlencode(
            {"since": since} | ({} if limit is None else {"limit": limit})
        )
        page = self._call("GET", f"entries?{query}")
        return [ReceivedEntry(**e) for e in page["entries"]], page["next"]

    def clear(self) -> None:
        self._call("POST", "clear", {})

    def outage(self, seconds: float) -> None:
        """Refuse connections for ``seconds``; it must come back by itself, nobody can call it."""
        self._call("POST", "outage", {"seconds": seconds})


class FakeEventBridgeProcess(Peer):
    """Runs the stand-in as ``python -m`` in its own process, so it gets its own core."""

    def __init__(
        self,
        faults: Faults | None = None,
        *,
        store: StoreMode | str = StoreMode.FULL,
        event_loop: EventLoop | str = EventLoop.UVLOOP,
        extra_args: Sequence[str] = (),
    ) -> None:
        self._args = [
            sys.executable,
            "-m",
            "kafka_eventbridge_testing.fake_eventbridge",
            "--port",
            "0",
            "--store",
            str(StoreMode(store)),
            "--event-loop",
            str(EventLoop(event_loop)),
            "--faults-json",
            orjson.dumps((faults or Faults()).to_json()).decode(),
            *extra_args,
        ]
        self._process: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self) -> Self:
        self._process = subprocess.Popen(self._args, stdout=subprocess.PIPE, text=True)
        assert self._process.stdout is not None
        self.url = self._process.stdout.readline().strip()
        if not self.url.startswith("http://"):
            self.stop()
            raise RuntimeError("fake EventBridge process did not start")
        return self

    @property
    def control(self) -> FakeEventBridgeClient:
        return FakeEventBridgeClient(self.url)

    @property
    def pid(self) -> int | None:
        """The stand-in process's id while it runs."""
        return self._process.pid if self._process is not None else None

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=_START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


# --------------------------------------------------------------------------- CLI


def _rate_pair(text: str) -> tuple[str, float]:
    code, sep, rate = text.partition("=")
    if not sep or not code:
        raise argparse.ArgumentTypeError(f"expected CODE=PROBABILITY, got {text!r}")
    return code, float(rate)


def _credential_pair(text: str) -> tuple[str, str]:
    key, sep, secret = text.partition("=")
    if not sep or not key or not secret:
        raise argparse.ArgumentTypeError("expected ACCESS_KEY_ID=SECRET")
    return key, secret


def _argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kafka_eventbridge_testing.fake_eventbridge",
        description="Fault-injecting EventBridge stand-in; prints its URL as the first line.",
    )
    add = parser.add_argument
    add("--host", default="127.0.0.1")
    add("--port", type=int, default=0, help="0 picks a free port")
    add("--store", choices=[m.value for m in StoreMode], default=StoreMode.FULL.value)
    add("--event-loop", choices=[m.value for m in EventLoop], default=EventLoop.UVLOOP.value)
    add("--max-entry-bytes", type=int, default=DEFAULT_MAX_ENTRY_BYTES)
    add("--max-request-bytes", type=int, default=None, help="default: --max-entry-bytes")
    add("--faults-json", type=orjson.loads, default=None, help="a Faults object as JSON")
    add("--latency-ms", type=float)
    add("--latency-jitter-ms", type=float)
    add("--entry-failure-rate", type=_rate_pair, action="append", metavar="CODE=P")
    add("--call-error-rate", type=float)
    add("--call-error-status", type=int)
    add("--call-error-code")
    add("--reset-rate", type=float)
    add("--deny", action="store_const", const=True)
    add("--deny-code")
    add("--clock-skew-seconds", type=float)
    add("--seed", type=int)
    add(
        "--credentials",
        type=_credential_pair,
        action="append",
        metavar="ACCESS_KEY_ID=SECRET",
        help="a key pair whose signatures are accepted (repeatable; default testing=testing)",
    )
    return parser


_FAULT_FLAGS: Final = (
    "latency_ms",
    "latency_jitter_ms",
    "call_error_rate",
    "call_error_status",
    "call_error_code",
    "reset_rate",
    "deny",
    "deny_code",
    "clock_skew_seconds",
    "seed",
)


def _faults_from_args(args: argparse.Namespace) -> Faults:
    """--faults-json first, then any explicit flag on top of it."""
    changes = {
        name: getattr(args, name) for name in _FAULT_FLAGS if getattr(args, name) is not None
    }
    if args.entry_failure_rate:
        changes["entry_failure_rates"] = dict(args.entry_failure_rate)
    base = Faults.from_json(args.faults_json) if args.faults_json is not None else Faults()
    return dataclasses.replace(base, **changes)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT; stdout carries only the URL, so a parent can read it."""
    args = _argument_parser().parse_args(argv)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    fake = FakeEventBridge(
        _faults_from_args(args),
        host=args.host,
        port=args.port,
        store=args.store,
        max_entry_bytes=args.max_entry_bytes,
        max_request_bytes=args.max_request_bytes,
        credentials=dict(args.credentials) if args.credentials else DEFAULT_CREDENTIALS,
        event_loop=args.event_loop,
    )
    with fake:
        sys.stdout.write(f"{fake.url}\n")
        sys.stdout.flush()
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
