"""A deterministic world for the bridge loop: in-memory Kafka, EventBridge and dead-letter
topic on a virtual clock, all driven by one seed.

The loop under test is the product's own :class:`~kafka_eventbridge.app.Bridge`, with its
real mapper, batcher, offset tracker, classifier, backoff and rate limiter; only its peers
(:mod:`kafka_eventbridge.ports`) are replaced:

* :class:`SimConsumer`: a group member over in-memory partition logs. Assignments, revokes,
  lost partitions, re-assignment to the same member, rewinds (a seek or a reset inside an
  assignment), commits that succeed or fail and are confirmed later, redelivery from the
  committed offset after a crash.
* :class:`SimPublisher`: EventBridge as it answers: accepted, partial failure by code,
  throttled, 5xx, timeouts (also after the service accepted), connection errors, ``200 {}``.
  Answers go through the product's classifier, exactly as the real publisher's do.
* :class:`SimDeadLetters`: the dead-letter producer: acknowledged after a delay, or failing.

:class:`Simulation` runs one schedule: a random configuration, random records, and random
events (faults, rebalances, rewinds, crashes, restarts) until a horizon, then quiescence.
After every loop turn it checks the invariants (:class:`Violation` names the broken one):

* *committed ⇒ resolved*: no offset the broker confirmed as committed passes a record
  that EventBridge never accepted, the dead-letter topic never stored, and the mapping
  does not filter;
* *bounds*: buffered records and bytes within the backpressure bound (the limit plus one
  consume batch), in-flight calls within ``BRIDGE_MAX_IN_FLIGHT_REQUESTS``;
* *polling*: the consumer is polled at least every ``BACKPRESSURE_HOLD`` plus one turn's
  wait, so rebalance and commit callbacks are served and the member stays in the group;
* *leaving*: a graceful shutdown serves the rebalances that started before it (the close
  is left none: librdkafka's close hung or aborted on an assignment that came in there);
* *fencing*: nothing of a revoked or rewound assignment is sent or dead-lettered again;
* *ordering* (``BRIDGE_ORDERING=partition``): one call in flight per partition, and within
  an assignment the entries, each counted at its last acceptance, are in offset order;
* *time*: the loop never hands its parts (the batcher, the limiter, the commit timer) a time
  before one it handed them already, also when mapping records costs time within a turn;
* *quiescence*: once the faults stop, every record is accepted, dead-lettered or filtered,
  and the committed offset of every partition reaches its end.
"""

from __future__ import annotations

import logging
import random
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from kafka_eventbridge import classify
from kafka_eventbridge.app import BACKPRESSURE_HOLD, IDLE_WAIT, Bridge
from kafka_eventbridge.batching import Batch, Pending
from kafka_eventbridge.consumer import CommitListener, RebalanceListener
from kafka_eventbridge.errors import FatalError, RecordError
from kafka_eventbridge.offsets import PartitionId
from kafka_eventbridge.ports import Connections, DeadLetterDelivered, Message
from kafka_eventbridge.publisher import Completion
from kafka_eventbridge.records import SourceRecord
from kafka_eventbridge.settings import Settings, load_settings

REPLAY = ".venv/bin/python -m tests.simulation --seed {seed}"
GROUP = "sim"
TURN = 0.0002  # virtual seconds a loop turn costs, so that time always moves on
# Virtual seconds that mapping one record costs, one value a schedule: with a cost, calls end
# and limits open while a turn's records are being mapped.
RECORD_COSTS = (0.0, 0.0, 0.00001, 0.0001, 0.001)
HEAVY = 0.2  # share of schedules with ten times the records, taken 500 a turn


class Violation(AssertionError):  # noqa: N818 - reads as "a violation of an invariant"
    """An invariant broke; the message names it and the seed that replays it."""


class VirtualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)


# -- the records ------------------------------------------------------------------------

NORMAL, FILTERED, UNDECODABLE, POISON = "normal", "filtered", "undecodable", "poison"
FORBIDDEN = "forbidden"  # names a source the account may not write to
SOURCE = "aws.partner/acme.com/sim"


def record_value(kind: str, offset: int) -> bytes:
    if kind == UNDECODABLE:
        return b"{not json"
    body: dict[str, Any] = {"n": offset, "source": f"{SOURCE}-{kind}"}
    if kind == FILTERED:
        body["skip"] = True
    if kind == POISON:
        body["poison"] = True
    return orjson.dumps(body)


@dataclass(frozen=True, slots=True)
class SimMessage:
    _topic: str
    _partition: int
    _offset: int
    _value: bytes

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_767_225_600_000 + self._offset)

    def key(self) -> bytes | None:
        return None

    def value(self) -> bytes:
        return self._value

    def headers(self) -> None:
        return None


@dataclass
class Truth:
    """What really happened, whatever the bridge believes."""

    kinds: dict[PartitionId, list[str]] = field(default_factory=dict)
    accepted: dict[PartitionId, set[int]] = field(default_factory=dict)
    dead: dict[PartitionId, set[int]] = field(default_factory=dict)
    committed: dict[PartitionId, int] = field(default_factory=dict)
    dead_decided: dict[PartitionId, set[int]] = field(default_factory=dict)
    # (incarnation, partition, epoch) -> the last offset accepted for good (ordering check)
    last_accepted: dict[tuple[int, PartitionId, int], int] = field(default_factory=dict)

    def resolved(self, tp: PartitionId, offset: int) -> bool:
        return (
            self.kinds[tp][offset] == FILTERED
            or offset in self.accepted[tp]
            or offset in self.dead[tp]
        )

    def end(self, tp: PartitionId) -> int:
        return len(self.kinds[tp])

    def skippable(self, tp: PartitionId, offset: int) -> bool:
        """May an ordered partition's acceptances pass over this record?"""
        return self.kinds[tp][offset] != NORMAL or offset in self.dead_decided[tp]


# -- faults -----------------------------------------------------------------------------


@dataclass
class Faults:
    """What the peers do at the moment; the schedule changes it over time."""

    call_failure: float = 0.0  # probability that a call fails as a whole
    call_modes: tuple[str, ...] = ("throttle",)
    entry_failure: float = 0.0  # probability that an entry of an answered call fails
    commit_failure: float = 0.0
    dead_letter_failure: float = 0.0
    latency: tuple[float, float] = (0.001, 0.03)

    @classmethod
    def calm(cls) -> Faults:
        return cls()


CALL_MODES = ("throttle", "5xx", "timeout", "accepted-timeout", "connection", "empty-200")


def call_error(mode: str, operation: str = "PutPartnerEvents") -> Exception:
    if mode in {"timeout", "accepted-timeout"}:
        return ReadTimeoutError(endpoint_url="https://events.sim")
    if mode == "connection":
        return EndpointConnectionError(endpoint_url="https://events.sim")
    code, status = {
        "throttle": ("ThrottlingException", 400),
        "5xx": ("InternalException", 500),
    }[mode]
    return ClientError(
        {
            "Error": {"Code": code, "Message": mode},
            "ResponseMetadata": {
                "RequestId": "sim",
                "HostId": "",
                "HTTPStatusCode": status,
                "HTTPHeaders": {},
                "RetryAttempts": 0,
            },
        },
        operation,
    )


# -- the peers --------------------------------------------------------------------------


@dataclass
class _Call:
    due: float
    batch: Batch
    accept: list[int]  # positions in the batch that the service stores
    answer: dict[str, Any] | None  # the 2xx body, or None with ``error``
    error: Exception | None
    started: float


class SimPublisher:
    """EventBridge as the loop sees it through the publisher port."""

    endpoint = "https://events.sim"

    def __init__(self, world: Simulation, incarnation: int, max_in_flight: int) -> None:
        self.world = world
        self.incarnation = incarnation
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self._queued: list[Batch] = []  # submitted, not yet written (as the crt transport)
        self._calls: list[_Call] = []

    @property
    def capacity(self) -> int:
        return self.max_in_flight - self.in_flight

    def submit(self, batch: Batch) -> None:
        world = self.world
        self.in_flight += 1
        if self.in_flight > self.max_in_flight:
            world.violation(f"{self.in_flight} calls in flight, limit {self.max_in_flight}")
        world.check_sendable(batch)
        if world.ordered:
            tp = batch.items[0].tp
            sent = [call.batch for call in self._calls] + self._queued
            if any(other.items[0].tp == tp for other in sent):
                world.violation(f"two calls in flight for {tp} with ordering on")
        self._queued.append(batch)

    def flush(self) -> None:
        """The calls reach the service only now: one the loop never flushes never ends."""
        queued, self._queued = self._queued, []
        self._calls.extend(self.world.answer(batch) for batch in queued)

    def completions(self, timeout: float = 0.0) -> list[Completion]:
        self.flush()
        clock = self.world.clock
        if timeout > 0 and self._calls and not self._due():
            clock.now = min(clock.now + timeout, *(call.due for call in self._calls))
        done = self._due()
        self._calls = [call for call in self._calls if call not in done]
        self.in_flight -= len(done)
        return [self._complete(call) for call in sorted(done, key=lambda c: c.due)]

    def _due(self) -> list[_Call]:
        return [call for call in self._calls if call.due <= self.world.clock.now]

    def _complete(self, call: _Call) -> Completion:
        self.world.store(call, self.incarnation)
        items = call.batch.items
        if call.error is not None:
            outcome = classify.classify_exception(items, call.error)
        else:
            assert call.answer is not None
            outcome = classify.classify_response(items, call.answer)
        return Completion(call.batch, outcome, call.due - call.started)

    def crash(self) -> None:
        """The process died: what the service was already processing still happens."""
        for call in self._calls:
            self.world.store(call, self.incarnation)
        self._calls.clear()
        self._queued.clear()  # never written: the service never saw them

    def close(self) -> None:
        self.crash()


@dataclass
class _Letter:
    due: float
    record: SourceRecord
    token: Any
    ok: bool


class SimDeadLetters:
    def __init__(self, world: Simulation, on_delivered: DeadLetterDelivered) -> None:
        self.world = world
        self.on_delivered = on_delivered
        self.pending = 0
        self.fatal: FatalError | None = None
        self._letters: list[_Letter] = []

    def check_topic(self) -> None:
        pass

    def send(self, record: SourceRecord, error: RecordError, attempts: int, token: Any) -> None:
        world = self.world
        world.check_dead_letter(record, token.epoch)
        world.truth.dead_decided[(record.topic, record.partition)].add(record.offset)
        ok = world.rng.random() >= world.faults.dead_letter_failure
        due = world.clock.now + world.rng.uniform(0.001, 0.02)
        self._letters.append(_Letter(due, record, token, ok))
        self.pending += 1

    def poll(self) -> None:
        now = self.world.clock.now
        due = [letter for letter in self._letters if letter.due <= now]
        self._letters = [letter for letter in self._letters if letter.due > now]
        for letter in due:
            self.pending -= 1
            if not letter.ok:
                self.fatal = self.fatal or FatalError("DeadLetterWriteFailed", "simulated")
                continue
            self.world.truth.dead[(letter.record.topic, letter.record.partition)].add(
                letter.record.offset
            )
            self.on_delivered(letter.record, letter.token)

    def close(self, timeout: float) -> int:
        clock = self.world.clock
        if self._letters:
            last = max(letter.due for letter in self._letters)
            clock.now = max(clock.now, min(last, clock.now + timeout))
        self.poll()
        return self.pending

    def crash(self) -> None:
        for letter in self._letters:
            if letter.ok:  # the broker had it; only the acknowledgement is lost
                tp = (letter.record.topic, letter.record.partition)
                self.world.truth.dead[tp].add(letter.record.offset)
        self._letters.clear()


@dataclass
class _Report:
    due: float
    done: dict[PartitionId, int]
    failed: list[PartitionId]


class SimConsumer:
    """One member of the group over the in-memory logs."""

    def __init__(
        self, world: Simulation, listener: RebalanceListener, on_commit: CommitListener
    ) -> None:
        self.world = world
        self.listener = listener
        self.on_commit = on_commit
        self.fatal: FatalError | None = None
        self.assignment: set[PartitionId] = set()
        self.paused: set[PartitionId] = set()
        self.positions: dict[PartitionId, int] = {}
        self.events: deque[tuple[str, list[PartitionId]]] = deque()
        self.polled_at = world.clock.now  # when consume last returned
        self.reports: list[_Report] = []
        self.closed = False
        self.abandoned = False

    def subscribe(self) -> None:
        self.events.append(("assign", self.world.held_by_member()))

    def consume(self, count: int, timeout: float) -> list[SimMessage]:
        world = self.world
        world.clock.now += TURN
        self._rebalance()
        self._report_commits()
        messages = self._fetch(count)
        if not messages and timeout > 0:
            world.clock.sleep(timeout)
        self.polled_at = world.clock.now
        return messages

    def _rebalance(self) -> None:
        while self.events:
            event, tps = self.events.popleft()
            self._settle_commits(event, tps)
            if event == "assign":
                fresh = sorted(set(tps) - self.assignment)
                for tp in fresh:
                    self.positions[tp] = self.world.truth.committed.get(tp, 0)
                self.assignment.update(fresh)
                self.listener.partitions_assigned(fresh)
            else:
                gone = sorted(set(tps) & self.assignment)
                if event == "revoke":
                    self.listener.partitions_revoked(gone)
                else:
                    self.listener.partitions_lost(gone)
                self.assignment.difference_update(gone)
                self.paused.difference_update(gone)

    def _settle_commits(self, event: str, tps: list[PartitionId]) -> None:
        """Commits sent before a rebalance reach the coordinator before it: they count, or,
        for partitions the member lost (it was already fenced), they fail."""
        reports, self.reports = self.reports, []
        for report in reports:
            if event == "lost":
                report.failed += [tp for tp in report.done if tp in tps]
                report.done = {tp: o for tp, o in report.done.items() if tp not in tps}
            self._confirm(report)

    def _report_commits(self) -> None:
        now = self.world.clock.now
        due = [r for r in self.reports if r.due <= now]
        self.reports = [r for r in self.reports if r.due > now]
        for report in due:
            self._confirm(report)

    def _confirm(self, report: _Report) -> None:
        done = {tp: o for tp, o in report.done.items() if tp in self.assignment}
        failed = report.failed + [tp for tp in report.done if tp not in done]
        self.world.truth.committed.update(done)
        self.world.check_commits()
        self.on_commit(done, failed)

    def _fetch(self, count: int) -> list[SimMessage]:
        truth = self.world.truth
        ready = [tp for tp in sorted(self.assignment - self.paused) if self._behind(tp)]
        messages: list[SimMessage] = []
        while ready and len(messages) < count:
            for tp in list(ready):
                offset = self.positions[tp]
                kind = truth.kinds[tp][offset]
                messages.append(SimMessage(tp[0], tp[1], offset, record_value(kind, offset)))
                self.positions[tp] = offset + 1
                if not self._behind(tp):
                    ready.remove(tp)
                if len(messages) == count:
                    break
        return messages

    def _behind(self, tp: PartitionId) -> bool:
        return self.positions[tp] < self.world.available(tp)

    def message_error(self, err: Any) -> None:
        raise AssertionError(f"no errors are delivered in place of records: {err}")

    def pause(self, partitions: Iterable[PartitionId]) -> None:
        self.paused.update(partitions)

    def resume(self, partitions: Iterable[PartitionId]) -> None:
        self.paused.difference_update(partitions)

    def commit(self, offsets: Mapping[PartitionId, int], *, wait: bool) -> None:
        world = self.world
        done: dict[PartitionId, int] = {}
        failed: list[PartitionId] = []
        for tp, offset in offsets.items():
            if tp in self.assignment and world.rng.random() >= world.faults.commit_failure:
                done[tp] = offset
            else:
                failed.append(tp)
        # Commits reach the coordinator in the order they were sent, as librdkafka's do.
        due = world.clock.now + world.rng.uniform(0.001, 0.01)
        report = _Report(max([due, *(r.due for r in self.reports)]), done, failed)
        if wait:
            for earlier in self.reports:
                self._confirm(earlier)
            self.reports.clear()
            self._confirm(report)
        else:
            self.reports.append(report)

    def seek(self, tp: PartitionId, offset: int) -> None:
        self.positions[tp] = offset

    def rewind(self, rng: random.Random) -> None:
        """librdkafka reset the position backwards (log truncation) or the app seeked."""
        candidates = [tp for tp in sorted(self.assignment) if self.positions[tp] > 0]
        if candidates:
            tp = rng.choice(candidates)
            self.positions[tp] = rng.randrange(0, self.positions[tp])

    def high_watermark(self, tp: PartitionId) -> int | None:
        return None

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._report_commits()
        if self.assignment:
            gone = sorted(self.assignment)
            self.listener.partitions_revoked(gone)
            self.assignment.clear()

    def crash(self) -> None:
        """The process died: commits already sent reach the broker, nothing else happens."""
        for report in self.reports:
            done = {tp: o for tp, o in report.done.items() if tp in self.assignment}
            self.world.truth.committed.update(done)
        self.reports.clear()
        self.closed = True


# -- the schedule -----------------------------------------------------------------------


def random_settings(rng: random.Random, topics: Sequence[str]) -> dict[str, str]:
    env = {
        "BRIDGE_KAFKA_BOOTSTRAP_SERVERS": "sim:9092",
        "BRIDGE_KAFKA_TOPICS": ",".join(topics),
        "BRIDGE_KAFKA_GROUP_ID": GROUP,
        "BRIDGE_MAP_SOURCE": f"'{SOURCE}'",
        "BRIDGE_MAP_FILTER": "!(value.skip)",
        "BRIDGE_MAX_IN_FLIGHT_REQUESTS": str(rng.choice([1, 2, 4, 16])),
        "BRIDGE_BATCH_MAX_ENTRIES": str(rng.choice([1, 3, 10, 20])),
        "BRIDGE_BATCH_LINGER_MS": str(rng.choice([0, 5, 50])),
        "BRIDGE_CONSUME_BATCH_SIZE": str(rng.choice([1, 7, 50])),
        "BRIDGE_MAX_BUFFERED_RECORDS": str(rng.choice([1, 5, 40, 1000])),
        "BRIDGE_ORDERING": rng.choice(["none", "partition"]),
        "BRIDGE_COMMIT_INTERVAL_MS": str(rng.choice([0, 50, 500])),
        "BRIDGE_RETRY_BACKOFF_INITIAL_MS": str(rng.choice([5, 50])),
        "BRIDGE_RETRY_BACKOFF_MAX_MS": str(rng.choice([200, 2000])),
        "BRIDGE_RETRY_DEADLINE_SECONDS": str(rng.choice([0, 0, 3])),
        "BRIDGE_REVOKE_TIMEOUT_SECONDS": str(rng.choice([0, 0.2, 5])),
        "BRIDGE_SHUTDOWN_TIMEOUT_SECONDS": str(rng.choice([0.5, 5])),
        "BRIDGE_INVALID_RESPONSE_TIMEOUT_SECONDS": str(rng.choice([1, 60])),
        "BRIDGE_DLQ_MAX_RATIO": "0",
    }
    if rng.random() < 0.2:
        env["BRIDGE_MAX_ENTRIES_PER_SECOND"] = str(rng.choice([50, 400]))
    return env


def random_faults(rng: random.Random) -> Faults:
    if rng.random() < 0.3:
        return Faults.calm()
    modes = tuple(rng.sample(CALL_MODES, rng.randint(1, 3)))
    return Faults(
        call_failure=rng.choice([0.0, 0.1, 0.5, 1.0]),
        call_modes=modes,
        entry_failure=rng.choice([0.0, 0.1, 0.4]),
        commit_failure=rng.choice([0.0, 0.0, 0.3, 1.0]),
        dead_letter_failure=rng.choice([0.0, 0.0, 0.0, 0.05]),
        latency=rng.choice([(0.001, 0.03), (0.01, 0.3), (0.5, 3.0)]),
    )


EVENTS = ("faults", "revoke", "lost", "rewind", "crash", "restart", "produce")


class Simulation:
    """One seeded schedule of the bridge loop in its in-memory world."""

    def __init__(
        self,
        seed: int,
        *,
        settings: Mapping[str, str] | None = None,
        records: Mapping[PartitionId, list[str]] | None = None,
    ) -> None:
        """A random schedule of ``seed``; a directed test fixes some ``settings`` and the
        ``records`` (kinds per partition), and drives the turns and events itself."""
        self.seed = seed
        self.rng = random.Random(seed)
        rng = self.rng
        self.clock = VirtualClock()
        # Drawn apart from ``rng``, so that the directed tests' worlds stay as they were.
        load = random.Random(f"load-{seed}")
        heavy = records is None and load.random() < HEAVY
        self.record_cost = load.choice(RECORD_COSTS) if records is None else 0.0
        self.handed = float("-inf")  # the latest time the loop handed its parts
        topics = ["orders", "payments"][: rng.randint(1, 2)]
        self.partitions: list[PartitionId] = (
            list(records)
            if records is not None
            else [(topic, p) for topic in topics for p in range(rng.randint(1, 2))]
        )
        topics = sorted({topic for topic, _ in self.partitions})
        self.env = random_settings(rng, topics)
        if heavy:
            # Turns of more than REFILL_EVERY records, so a slot is refilled between them.
            self.env["BRIDGE_CONSUME_BATCH_SIZE"] = "500"
            self.env["BRIDGE_MAX_BUFFERED_RECORDS"] = load.choice(["1000", "5000"])
        self.env.update(settings or {})
        self.settings: Settings = load_settings(self.env)
        self.ordered = self.env["BRIDGE_ORDERING"] == "partition"
        self.truth = Truth()
        self.refused: set[tuple[PartitionId, int]] = set()  # throttled until taken out
        weights = [0.8, 0.1, rng.choice([0.0, 0.05]), rng.choice([0.0, 0.05])]
        self._arrivals: dict[PartitionId, list[float]] = {}
        for tp in self.partitions:
            count = rng.randint(0, 40) * (10 if heavy else 1)
            self.truth.kinds[tp] = (
                list(records[tp])
                if records is not None
                else rng.choices([NORMAL, FILTERED, UNDECODABLE, POISON], weights, k=count)
            )
            self._arrivals[tp] = [0.0] * len(self.truth.kinds[tp])
            self.truth.accepted[tp] = set()
            self.truth.dead[tp] = set()
            self.truth.dead_decided[tp] = set()
        self.faults = Faults.calm()
        self.horizon = rng.uniform(1.0, 20.0)
        self.elsewhere: dict[PartitionId, float] = {}  # revoked: back to this member at…
        self.incarnation = 0
        self.steps = 0
        self._safe: dict[PartitionId, int] = dict.fromkeys(self.partitions, 0)
        self._next_event = rng.uniform(0.0, 1.0)
        self.bridge = self._start()

    # -- the world's truth, used by the peers --------------------------------------------

    def available(self, tp: PartitionId) -> int:
        """Records of the partition produced by now."""
        arrivals = self._arrivals[tp]
        count = len(arrivals)
        while count and arrivals[count - 1] > self.clock.now:
            count -= 1
        return count

    def held_by_member(self) -> list[PartitionId]:
        return [tp for tp in self.partitions if tp not in self.elsewhere]

    def answer(self, batch: Batch) -> _Call:
        rng, faults, now = self.rng, self.faults, self.clock.now
        due = now + rng.uniform(*faults.latency)
        items = batch.items
        if rng.random() < faults.call_failure:
            mode = rng.choice(faults.call_modes)
            if mode == "empty-200":
                return _Call(due, batch, [], rng.choice([{}, {"Entries": []}]), None, now)
            accept = list(range(len(items))) if mode == "accepted-timeout" else []
            accept = [i for i in accept if self._kind(items[i]) != POISON]
            return _Call(due, batch, accept, None, call_error(mode), now)
        results: list[dict[str, Any]] = []
        accept = []
        for index, item in enumerate(items):
            if self._kind(item) == POISON:
                results.append({"ErrorCode": "MalformedDetail", "ErrorMessage": "poison"})
            elif self._kind(item) == FORBIDDEN:
                results.append({"ErrorCode": "NotAuthorizedForSourceException"})
            elif (item.tp, item.record.offset) in self.refused:
                results.append({"ErrorCode": "ThrottlingException"})
            elif rng.random() < faults.entry_failure:
                code = rng.choice(["ThrottlingException", "InternalFailure"])
                results.append({"ErrorCode": code, "ErrorMessage": "simulated"})
            else:
                results.append({"EventId": f"{self.seed}-{now}-{index}"})
                accept.append(index)
        failed = sum("ErrorCode" in r for r in results)
        answer = {"FailedEntryCount": failed, "Entries": results}
        return _Call(due, batch, accept, answer, None, now)

    def _kind(self, item: Pending) -> str:
        return self.truth.kinds[item.tp][item.record.offset]

    def store(self, call: _Call, incarnation: int) -> None:
        """EventBridge stores what it accepted. Entries behind a retryable failure of the same
        call, or of a call that failed as a whole, are accepted only provisionally: the
        bridge must send them again (ordering) or may (at-least-once)."""
        provisional = len(call.batch.items)
        if call.error is not None:
            provisional = 0
        elif call.answer is not None:
            for index, result in enumerate(call.answer.get("Entries", [])):
                if result.get("ErrorCode") in ("ThrottlingException", "InternalFailure"):
                    provisional = index
                    break
        for index in call.accept:
            item = call.batch.items[index]
            self.truth.accepted[item.tp].add(item.record.offset)
            if self.ordered and index < provisional:
                self.check_order(incarnation, item.tp, item.epoch, item.record.offset)

    # -- invariants ----------------------------------------------------------------------

    def violation(self, what: str) -> None:
        raise Violation(
            f"seed {self.seed}: {what} (at t={self.clock.now:.3f}s, step {self.steps}, "
            f"incarnation {self.incarnation})\n  replay: {REPLAY.format(seed=self.seed)}"
        )

    def check_commits(self) -> None:
        truth = self.truth
        for tp, committed in truth.committed.items():
            safe = self._safe[tp]
            while safe < truth.end(tp) and truth.resolved(tp, safe):
                safe += 1
            self._safe[tp] = safe
            if committed > safe:
                self.violation(
                    f"{tp} committed at {committed} while offset {safe} "
                    f"({truth.kinds[tp][safe]}) was neither accepted nor dead-lettered"
                )

    def check_sendable(self, batch: Batch) -> None:
        tracker = self.bridge.tracker
        for item in batch.items:
            if tracker.epoch(item.tp) != item.epoch:
                self.violation(f"{item.tp}@{item.record.offset} of a revoked assignment sent")

    def check_dead_letter(self, record: SourceRecord, epoch: int) -> None:
        tp = (record.topic, record.partition)
        if self.bridge.tracker.epoch(tp) != epoch:
            self.violation(f"{tp}@{record.offset} of a revoked assignment dead-lettered")

    def check_bounds(self) -> None:
        pipeline = self.settings.pipeline
        tracker = self.bridge.tracker
        limit = pipeline.max_buffered_records - 1 + pipeline.consume_batch_size
        if tracker.buffered_records > limit:
            self.violation(f"{tracker.buffered_records} records buffered, bound {limit}")
        consumer = self.consumer
        # A turn waits at most IDLE_WAIT; a sim turn's own step and a publish result's
        # latency are not waited on longer than that either.
        gap = BACKPRESSURE_HOLD + IDLE_WAIT + 2 * TURN
        if consumer is not None and self.clock.now - consumer.polled_at > gap:
            self.violation(
                f"the consumer was not polled for {self.clock.now - consumer.polled_at:.2f}s"
            )

    def check_order(self, incarnation: int, tp: PartitionId, epoch: int, offset: int) -> None:
        """Within an assignment, an entry is accepted for good only after every earlier one
        (but those filtered, undecodable or dead-lettered)."""
        key = (incarnation, tp, epoch)
        last = self.truth.last_accepted.get(key)
        self.truth.last_accepted[key] = offset
        if last is None:
            return
        skipped = [o for o in range(last + 1, offset) if not self.truth.skippable(tp, o)]
        if offset <= last or skipped:
            self.violation(
                f"{tp} accepted {offset} after {last} with ordering on "
                f"(epoch {epoch}; passed over {skipped[:5]})"
            )

    def check_quiescent(self) -> None:
        truth = self.truth
        for tp in self.partitions:
            unresolved = [o for o in range(truth.end(tp)) if not truth.resolved(tp, o)]
            if unresolved:
                self.violation(f"{tp}: offsets {unresolved[:10]} never delivered")
            if truth.committed.get(tp, 0) != truth.end(tp):
                self.violation(f"{tp}: committed {truth.committed.get(tp, 0)}, end {truth.end(tp)}")

    # -- incarnations ---------------------------------------------------------------------

    def _start(self) -> Bridge:
        self.incarnation += 1
        incarnation = self.incarnation
        self.consumer: SimConsumer | None = None
        self.dead_letters: SimDeadLetters | None = None
        self.publisher: SimPublisher | None = None

        def consumer(listener: RebalanceListener, on_commit: CommitListener) -> SimConsumer:
            self.consumer = SimConsumer(self, listener, on_commit)
            return self.consumer

        def dead_letters(on_delivered: DeadLetterDelivered, _wait: Any) -> SimDeadLetters:
            self.dead_letters = SimDeadLetters(self, on_delivered)
            return self.dead_letters

        def publisher() -> SimPublisher:
            max_in_flight = self.settings.pipeline.max_in_flight_requests
            self.publisher = SimPublisher(self, incarnation, max_in_flight)
            return self.publisher

        connections = Connections(consumer, dead_letters, publisher, self.clock)
        bridge = Bridge(
            self.settings, connections=connections, rng=random.Random(self.rng.random())
        )
        self._watch_time(bridge)
        self.bridge = bridge
        bridge.start()
        return bridge

    def _watch_time(self, bridge: Bridge) -> None:
        """Check the times the loop hands its parts, and charge the mapping of each record."""
        submit, pump = bridge.submit, bridge.pump

        def handed(now: float) -> None:
            if now < self.handed:
                self.violation(f"the loop handed its parts t={now:.6f} after t={self.handed:.6f}")
            self.handed = now

        def timed_submit(message: Message, now: float) -> None:
            handed(now)
            submit(message, now)
            self.clock.now += self.record_cost

        def timed_pump(completions: list[Completion], now: float, *, force: bool = False) -> None:
            handed(now)
            pump(completions, now, force=force)

        bridge.submit = timed_submit  # type: ignore[method-assign]
        bridge.pump = timed_pump  # type: ignore[method-assign]

    def _crash(self) -> None:
        assert self.consumer and self.publisher and self.dead_letters
        self.publisher.crash()
        self.dead_letters.crash()
        self.consumer.crash()
        self.check_commits()
        self.bridge = self._start()

    def _restart(self, fatal: FatalError | None) -> None:
        """A graceful exit (SIGTERM, or a fatal error) and a new process."""
        bridge = self.bridge
        if fatal is None:
            bridge.stop()
            try:
                bridge.shutdown()
            except FatalError as exc:
                fatal = exc
            if fatal is None and self.consumer is not None and self.consumer.events:
                event, tps = self.consumer.events[0]
                self.violation(f"the shutdown left a rebalance to the close: {event} {tps}")
        if fatal is not None:
            bridge.fail(fatal)
        bridge.close()
        assert self.publisher and self.dead_letters
        self.publisher.crash()
        self.dead_letters.crash()
        self.check_commits()
        self.bridge = self._start()

    # -- the schedule ----------------------------------------------------------------------

    def _event(self) -> None:
        rng = self.rng
        event = rng.choices(EVENTS, [6, 2, 1, 2, 1, 1, 2])[0]
        consumer = self.consumer
        assert consumer is not None
        if event == "faults":
            self.faults = random_faults(rng)
        elif event in ("revoke", "lost"):
            self._take_away(rng, consumer, event)
        elif event == "rewind":
            consumer.rewind(rng)
        elif event == "crash":
            self._crash()
        elif event == "restart":
            if rng.random() < 0.5:
                # A rolling restart: another replica has just left, and this one's share
                # of the group changes as its own signal comes.
                self._rebalance_now(rng, consumer)
            self._restart(None)
        else:
            self._produce()

    def _rebalance_now(self, rng: random.Random, consumer: SimConsumer) -> None:
        if self.elsewhere:
            for tp in self.elsewhere:
                self.elsewhere[tp] = self.clock.now
            self._come_back()
        else:
            self._take_away(rng, consumer, "revoke")

    def _take_away(self, rng: random.Random, consumer: SimConsumer, event: str) -> None:
        """Revoke (or lose) some of the held partitions; they come back within 2 s."""
        held = sorted(consumer.assignment)
        if held:
            tps = rng.sample(held, rng.randint(1, len(held)))
            consumer.events.append((event, tps))
            for tp in tps:
                self.elsewhere[tp] = self.clock.now + rng.uniform(0.0, 2.0)

    def _produce(self) -> None:
        rng = self.rng
        tp = rng.choice(self.partitions)
        for _ in range(rng.randint(1, 20)):
            self.truth.kinds[tp].append(rng.choice([NORMAL, NORMAL, NORMAL, FILTERED]))
            self._arrivals[tp].append(self.clock.now + rng.uniform(0.0, 1.0))

    def _come_back(self) -> None:
        back = sorted(tp for tp, at in self.elsewhere.items() if at <= self.clock.now)
        if back and self.consumer is not None:
            for tp in back:
                del self.elsewhere[tp]
            self.consumer.events.append(("assign", back))

    def turn(self) -> None:
        self.steps += 1
        try:
            self.bridge.step()
        except FatalError as fatal:
            self._restart(fatal)
        self.check_commits()
        self.check_bounds()

    def run(self, max_steps: int = 20_000) -> Simulation:
        logging.getLogger("kafka_eventbridge").setLevel(logging.CRITICAL)
        while self.clock.now < self.horizon and self.steps < max_steps:
            if self.clock.now >= self._next_event:
                self._event()
                self._next_event = self.clock.now + self.rng.expovariate(2.0)
            self._come_back()
            self.turn()
        self.quiesce(max_steps)
        return self

    def quiesce(self, max_steps: int) -> None:
        """Faults stop and every partition comes home: the bridge must finish the job."""
        self.faults = Faults.calm()
        for tp in self.elsewhere:
            self.elsewhere[tp] = self.clock.now
        deadline = self.clock.now + 600.0
        budget = self.steps + max_steps
        while not self._caught_up():
            if self.clock.now > deadline or self.steps > budget:
                self.check_quiescent()
                self.violation("the bridge did not catch up once the faults stopped")
            self._come_back()
            self.turn()
        self._restart(None)  # SIGTERM: drain, commit, leave
        self.check_commits()
        self.check_quiescent()

    def _caught_up(self) -> bool:
        truth, consumer = self.truth, self.consumer
        assert consumer is not None
        return (
            not self.elsewhere
            and not consumer.events
            and not consumer.reports
            and self.bridge.tracker.unresolved() == 0
            and all(
                truth.committed.get(tp, 0) == truth.end(tp)
                and self.available(tp) == truth.end(tp)
                and consumer.positions.get(tp) == truth.end(tp)
                for tp in self.partitions
            )
        )


def run_schedule(seed: int) -> Simulation:
    return Simulation(seed).run()
