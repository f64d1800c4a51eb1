"""The composition root: the one path a record takes, readable top to bottom.

    consume → map (or dead-letter / skip) → batcher → publisher (N in flight)
        accepted → resolved · retryable → backoff → batcher · permanent → dead letter
    resolved records move each partition's watermark; the watermark is committed once the
    broker confirms it.

Everything runs on the main thread except the publish calls themselves, whose results
come back through the publisher's completion queue. Rebalance and commit callbacks run
inside ``consume`` on this same thread; they never raise (a fatal error found in one is
kept and raised by the loop once ``consume`` has returned).

The loop knows its peers (consumer, publisher, dead-letter producer, clock) only by the
protocols of :mod:`kafka_eventbridge.ports`: :func:`connect` builds the real ones, and the
simulator in ``tests/simulation`` drives this same class with in-memory ones.
"""

from __future__ import annotations

import contextlib
import enum
import gc
import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient

from kafka_eventbridge.batching import Batch, Batcher, Pending, RetryQueue
from kafka_eventbridge.consumer import KafkaConsumer, consumer_config
from kafka_eventbridge.deadletter import DeadLetterProducer, producer_config
from kafka_eventbridge.errors import FatalError, RecordError, Stage
from kafka_eventbridge.guard import DeadLetterGuard
from kafka_eventbridge.lag import LagMonitor, WatermarkAge
from kafka_eventbridge.mapping import Mapper, load_routes
from kafka_eventbridge.offload import OffloadPolicy, Uploader
from kafka_eventbridge.offsets import OffsetTracker, PartitionId, RewindError
from kafka_eventbridge.ports import Connections, Message, SystemClock
from kafka_eventbridge.publisher import (
    Backoff,
    Completion,
    Publisher,
    make_publisher,
    make_s3_client,
)
from kafka_eventbridge.ratelimit import RateLimiter, group_share
from kafka_eventbridge.records import SourceRecord
from kafka_eventbridge.schemas import build_decoders
from kafka_eventbridge.settings import Ordering, Settings
from kafka_eventbridge.telemetry import Health, Metrics
from kafka_eventbridge.tracing import Tracing, build_tracing

log = logging.getLogger("kafka_eventbridge")

IDLE_WAIT = 0.1  # longest a loop turn waits for records or results
BUSY_WAIT = 0.05  # longest it waits on completions while records may be arriving
REFILL_EVERY = 100  # records mapped between looks for ended calls, every slot taken
DRAIN_POLL = 0.05  # how often a drain serves dead-letter delivery reports
SYNC_COMMIT_ATTEMPTS = 3
# At the buffer bound the loop first stops taking records (librdkafka's own prefetch queue,
# bounded by queued.max.messages.kbytes, then stops fetching) and pauses the partitions only
# when the bound still holds after this long. A short burst over the bound is the common case
# at full speed, and each pause costs a resume: librdkafka drops what it prefetched for a
# paused partition and delivered nothing for ~0.5 s after each resume in `make bench`,
# which held the bridge to 24k entries/s (37k without pauses). Rebalance and commit callbacks
# run inside consume, so they wait at most this long.
BACKPRESSURE_HOLD = 1.0
# The cyclic garbage collector's first generation threshold. Each record makes a few objects
# that reference counting frees; at the default (700 allocations) the collector still ran
# thousands of times a second, walking the young buffered records each time: ~11% of the
# loop's work per record (benchmarks.micro loop, 9.9 -> 8.8 us with this, 8.5 with no
# collector at all).
GC_THRESHOLD = 20_000


def tune_garbage_collector() -> None:
    """For the process that runs the loop, once set up: what was made at start-up (botocore's
    service models, settings, the mapping) leaves the collector's reach for good, and the
    young generation is collected less often."""
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 20, 10)


ORDER_KEPT = "OrderKept"  # retry reason: accepted, sent again behind an earlier failed entry


class Phase(enum.Enum):
    RUNNING = "running"
    STOPPING = "stopping"  # a signal asked for a drain and an exit
    CLOSING = "closing"  # leaving the group: callbacks commit, nothing drains


@dataclass(frozen=True)
class _Token:
    """What a dead letter carries back to its delivery report."""

    epoch: int
    stage: Stage


def build_mapper(settings: Settings, on_registry_error: Callable[[], None] | None = None) -> Mapper:
    routes = load_routes(settings.mapping, settings.eventbridge.api, settings.kafka.topics)
    return Mapper(
        routes,
        api=settings.eventbridge.api,
        max_bytes=settings.eventbridge.max_bytes,
        value_format=settings.mapping.value_format,
        tombstones=settings.mapping.tombstones,
        event_bus=settings.eventbridge.event_bus or "default",
        **build_decoders(settings.mapping, on_registry_error),
        offload=offload_policy(settings),
    )


def offload_policy(settings: Settings) -> OffloadPolicy | None:
    offload = settings.offload
    if offload.bucket is None:
        return None
    return OffloadPolicy(offload.bucket, offload.prefix, offload.field)


def connect(
    settings: Settings, client: EventBridgeClient | None = None, metrics: Metrics | None = None
) -> Connections:
    """The real peers: confluent-kafka's consumer and producer, the HTTP publisher, and the
    brokers' view of the group's lag."""
    pipeline = settings.pipeline
    kafka = consumer_config(settings.kafka, settings.kafka_properties.values)
    metrics = metrics or Metrics()

    def publisher() -> Publisher:
        uploader = (
            Uploader(
                make_s3_client(settings.eventbridge, pipeline.max_in_flight_requests),
                lambda: metrics.dependency_error("s3_offload"),
            )
            if settings.offload.bucket
            else None
        )
        # BRIDGE_EVENTBRIDGE_HTTP_CLIENT: awscrt (default) or the boto3 client's method.
        return make_publisher(
            settings.eventbridge, pipeline.max_in_flight_requests, uploader, client
        )

    return Connections(
        consumer=lambda listener, on_commit: KafkaConsumer(
            kafka, settings.kafka.topics, listener, on_commit
        ),
        dead_letters=lambda on_delivered, on_wait: DeadLetterProducer(
            producer_config(kafka),
            settings.dlq_topic,
            on_delivered,
            on_wait,
            lambda: metrics.dependency_error("dead_letter_producer"),
        ),
        publisher=publisher,
        clock=SystemClock(),
        lag=lambda consumer: LagMonitor(
            kafka,
            group=settings.kafka.group_id,
            topics=settings.kafka.topics,
            metrics=metrics,
            interval=settings.telemetry.lag_interval_seconds,
            assignment=lambda: tuple(consumer.assignment),
            high_watermark=consumer.high_watermark,
        ),
    )


class Bridge:
    """Kafka in, EventBridge out, offsets committed behind what is resolved."""

    def __init__(
        self,
        settings: Settings,
        *,
        metrics: Metrics | None = None,
        health: Health | None = None,
        client: EventBridgeClient | None = None,
        connections: Connections | None = None,
        rng: random.Random | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.settings = settings
        self.tracing = tracing or build_tracing(settings)
        self._traced = self.tracing.enabled  # read once: the calls are per record
        pipeline = settings.pipeline
        self.metrics = metrics or Metrics()
        self.health = health or Health(settings.telemetry.health_stall_seconds)
        self.metrics.bind(self.health)
        self.mapper = build_mapper(settings, self._registry_error)
        self.tracker = OffsetTracker()
        self.batcher = Batcher(
            max_entries=settings.batch_max_entries,
            max_bytes=settings.eventbridge.max_bytes,
            linger=pipeline.batch_linger_ms / 1000,
            ordered=pipeline.ordering is Ordering.PARTITION,
        )
        self.retries = RetryQueue()
        self.backoff = Backoff(
            pipeline.retry_backoff_initial_ms / 1000,
            pipeline.retry_backoff_max_ms / 1000,
            rng or random.Random(),
        )
        self.guard = DeadLetterGuard(pipeline.dlq_max_ratio, pipeline.dlq_ratio_window)
        budget, cap = pipeline.group_max_entries_per_second, pipeline.max_entries_per_second
        self.limiter = RateLimiter(group_share(budget, 0, None, cap))
        peers = connections or connect(settings, client, self.metrics)
        self.clock = peers.clock
        self.consumer = peers.consumer(self, self._commit_result)
        self.dead_letters = peers.dead_letters(self._dead_letter_delivered, self.health.beat)
        self.publisher = peers.publisher()
        self.lag = peers.lag(self.consumer) if peers.lag is not None else None
        self.ages = WatermarkAge()
        self.phase = Phase.RUNNING
        self.fatal: FatalError | None = None
        self.backpressure = False  # at the buffer bound, until a batch fits (half, once paused)
        self._hold_until: float | None = None  # at the bound: not consuming before this
        self._polled_at = self.clock.monotonic()  # when consume last returned
        self.paused: set[PartitionId] = set()  # the partitions it paused
        self._seeking: set[PartitionId] = set()  # rewound in this turn: drop what was fetched
        self._invalid_since: float | None = None
        self._last_commit = float("-inf")
        self._counters: dict[tuple[int, str], Any] = {}
        self._tallies: dict[tuple[int, str], int] = {}
        self._children: dict[tuple[int, str], Any] = {}

    # -- the loop -----------------------------------------------------------------------

    def run(self) -> int:
        """Run until stopped (exit code 0) or a fatal error (exit code 1)."""
        try:
            self.start()
            while self.phase is Phase.RUNNING:
                self.step()
            self.shutdown()
            return 0
        except FatalError as exc:
            self.fail(exc)
            return 1
        finally:
            self.close()

    def start(self) -> None:
        self.dead_letters.check_topic()
        self.consumer.subscribe()
        if self.lag is not None:
            self.lag.start()
        self.health.start_done()

    def stop(self) -> None:
        """Ask the loop to drain and exit (from a signal handler)."""
        if self.phase is Phase.RUNNING:
            self.phase = Phase.STOPPING
        self.health.shutting_down()

    def step(self) -> None:
        """One turn: take records, publish what is due, settle results, commit, observe."""
        now = self.clock.monotonic()
        wait = self._idle_wait(now)
        batch = self.settings.pipeline.consume_batch_size
        messages: Sequence[Message] = ()
        if self._hold_until is not None:
            # At the bound, taking no records: only results can bring the buffer down.
            wait = max(min(wait, self._hold_until - now), 0.0)
            if self.publisher.in_flight:
                completions = self.publisher.completions(wait)
            else:
                self.clock.sleep(wait)
                completions = self.publisher.completions()
        elif self.publisher.in_flight and not self.publisher.capacity:
            # Every request slot taken: records taken now could not go out before a call
            # ends, so wait for one first (spinning on the consumer instead cost CPU that the
            # peers needed, 37k records/s on 2 cores). Its slot is filled from the buffer at
            # once, before the records taken meanwhile are mapped: otherwise every call
            # waited out one batch's mapping before the next started.
            self.pump(self.publisher.completions(wait), self.clock.monotonic())
            completions = []
            messages = self._consume(batch, 0)
        elif self.publisher.in_flight:
            messages = self._consume(batch, 0)
            completions = self.publisher.completions(0 if messages else wait)
        else:
            messages = self._consume(batch, wait)
            completions = self.publisher.completions()
        self._raise_fatal()  # found by a rebalance or commit callback inside consume
        now = self.clock.monotonic()
        self._seeking.clear()
        submit, dead_letters, consumer = self.submit, self.dead_letters, self.consumer
        for start in range(0, len(messages), REFILL_EVERY):
            if start and not self.publisher.capacity:
                now = self._refill()
            for message in messages[start : start + REFILL_EVERY]:
                submit(message, now)
                # After each record (the guard stops a bad deploy within its window), so
                # the three sources of _raise_fatal are tested inline: its call showed at
                # one per record.
                if self.fatal or dead_letters.fatal or consumer.fatal:
                    self._raise_fatal()
        self.pump(completions, now)
        self.apply_backpressure(now)
        if now - self._last_commit >= self.settings.pipeline.commit_interval_ms / 1000:
            self.commit(wait=False)
        self.observe(now)

    def _consume(self, count: int, timeout: float) -> Sequence[Message]:
        """Poll the consumer (records, and the callbacks), noting when it returned."""
        messages = self.consumer.consume(count, timeout)
        self._polled_at = self.clock.monotonic()
        return messages

    def _refill(self) -> float:
        """Between a turn's records: a call that ended while they were being mapped gets its
        slot refilled now rather than after the last of them (500 records: ~5 ms).

        Returns the time the rest of the turn goes on at: the limiter, the batcher and the
        commit timer must never be handed a time before one they were given.
        """
        now = self.clock.monotonic()
        self.pump(self.publisher.completions(0), now)
        return now

    def shutdown(self) -> None:
        """Drain what is buffered, within the shutdown timeout, and commit.

        The partitions are paused and the consumer is polled while the drain runs (at least
        once), so a rebalance that started meanwhile, another replica leaving in a rolling
        restart, is served here: its revoked partitions drained and committed, its new ones
        joining paused. Left to the close, an assignment that came in while leaving made
        librdkafka's close hang, holding the interpreter, or abort on an assertion.
        """
        timeout = self.settings.pipeline.shutdown_timeout_seconds
        self._pause_all()
        self._poll_paused()
        self.drain(self.tracker.partitions, timeout, reason="shutdown", poll=True)
        self.commit(wait=True)
        log.info("stopped", extra={"unresolved": self.tracker.unresolved()})

    def _idle_wait(self, now: float) -> float:
        # A due batch is no reason to wake up while every request slot is taken (only a
        # completion can free one, and waiting for it rather than spinning leaves the GIL
        # to the publisher threads that produce it), nor before the rate limit lets it go.
        send_at = self.batcher.next_due() if self.publisher.capacity else None
        if send_at is not None:
            ready = self.limiter.next_ready(now)
            send_at = send_at if ready is None else max(send_at, ready)
        due = [t for t in (send_at, self.retries.next_due()) if t is not None]
        wait = max(min([IDLE_WAIT, *(t - now for t in due)]), 0.0)
        return min(wait, BUSY_WAIT) if self.publisher.in_flight else wait

    def _raise_fatal(self) -> None:
        for fatal in (self.fatal, self.dead_letters.fatal, self.consumer.fatal):
            if fatal is not None:
                raise fatal

    @contextlib.contextmanager
    def _callback(self) -> Iterator[None]:
        """Callbacks run inside confluent-kafka: keep a fatal error for the loop to raise."""
        try:
            yield
        except FatalError as exc:
            self.fatal = self.fatal or exc

    # -- records in ---------------------------------------------------------------------

    def submit(self, message: Message, now: float) -> None:
        err = message.error()
        if err is not None:
            self.consumer.message_error(err)
            return
        record = SourceRecord.from_message(message)
        tp = (record.topic, record.partition)
        if tp in self._seeking:
            return  # fetched before the seek: it comes again after it
        try:
            epoch = self.tracker.add(tp, record.offset, record.size)
        except RewindError:
            if not self.rewind(tp, record.offset):
                return
            epoch = self.tracker.add(tp, record.offset, record.size)
        if epoch is None:
            return  # its partition was revoked while the record sat in the local queue
        self._count(self.metrics.records_consumed, record.topic)
        if self._traced:
            self.tracing.consumed(record)
        try:
            entry = self.mapper.map(record)
        except RecordError as error:
            self.dead_letter(record, error, 0, epoch)
            return
        if entry is None:
            self._count(self.metrics.records_filtered, record.topic)
            self.resolve(record, epoch)
            return
        if self._traced:
            self.tracing.mapped(record, entry)
        self.batcher.add(Pending(entry, record, epoch), now)

    def rewind(self, tp: PartitionId, offset: int) -> bool:
        """Offsets went backwards inside an assignment (a reset after log truncation, a seek):
        handled as a revoke plus an assign of the partition. Its batched and retrying work is
        dropped, late results of the old epoch are ignored, and fetching restarts from the
        oldest unresolved record when that is further back. True: keep this record."""
        watermark = self.tracker.watermark(tp)
        restart = offset if watermark is None else min(offset, watermark)
        log.warning(
            "offsets went backwards; partition restarted",
            extra={"partition": _names([tp]), "offset": offset, "restart": restart},
        )
        self.metrics.rebalances.labels(event="rewound").inc()
        self.forget([tp], keep_metrics=True)
        self.tracker.assign([tp])
        if restart < offset:
            self.consumer.seek(tp, restart)
            self._seeking.add(tp)
            return False
        return True

    def _registry_error(self) -> None:
        self.metrics.dependency_error("schema_registry")

    def _count(self, counter: Any, topic: str, count: int = 1) -> None:
        """Tally per record; :meth:`_flush_counts` adds the tallies once per loop turn (a
        labelled counter's ``inc`` takes a lock, which showed in profiles at two per record)."""
        key = (id(counter), topic)
        tally = self._tallies.get(key)
        if tally is None:
            if key not in self._counters:
                self._counters[key] = counter.labels(topic=topic)
            tally = 0
        self._tallies[key] = tally + count

    def _child(self, metric: Any, label: str) -> Any:
        """A labelled child of a per-call metric, looked up once (``labels`` takes a lock)."""
        key = (id(metric), label)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(label)
        return child

    def _flush_counts(self) -> None:
        for key, tally in self._tallies.items():
            self._counters[key].inc(tally)
        self._tallies.clear()

    # -- publishing ---------------------------------------------------------------------

    def pump(self, completions: list[Completion], now: float, *, force: bool = False) -> None:
        """Settle finished calls, bring back due retries, send due batches."""
        for completion in completions:
            self.settle(completion, now)
        due = [p for p in self.retries.pop_due(now) if self._current(p)]
        self.batcher.requeue(due)
        self.send_due(now, force=force)
        self.publisher.flush()  # now, not after the next turn's records are mapped
        self._flush_counts()
        self.dead_letters.poll()
        self._raise_fatal()

    def send_due(self, now: float, *, force: bool = False) -> None:
        """Send the batches that are due, within the in-flight limit and the rate limit."""
        if self.limiter.unlimited:
            for batch in self.batcher.take(now, self.publisher.capacity, force=force):
                self.send(batch, now)
            return
        while self.publisher.capacity and self.limiter.ready(now):
            batches = self.batcher.take(now, 1, force=force)
            if not batches:
                return
            self.limiter.spend(len(batches[0].items), now)
            self.send(batches[0], now)

    def send(self, batch: Batch, now: float) -> None:
        for item in batch.items:
            item.attempts += 1
            if item.first_attempt_at is None:
                item.first_attempt_at = now
        self.metrics.batch_entries.observe(len(batch.items))
        self.metrics.batch_bytes.observe(batch.size)
        if self._traced:
            self.tracing.publish_started(batch)
        self.publisher.submit(batch)

    def settle(self, completion: Completion, now: float) -> None:
        outcome = completion.outcome
        self.batcher.release(completion.batch)
        label = outcome.label
        self._child(self.metrics.publish_requests, label).inc()
        self._child(self.metrics.publish_duration, label).observe(completion.duration)
        if self._traced:
            self.tracing.publish_finished(completion.batch, outcome)
        self._judge_response(outcome.invalid_response, now)
        accepted, retry = outcome.accepted, outcome.retry
        if self.batcher.ordered and retry:
            accepted, retry = _keep_order(completion.batch, accepted, retry)
        if accepted:
            self._accepted(accepted)
        if outcome.fatal is not None:
            raise outcome.fatal
        if outcome.call_error is None:
            for _, code in retry:
                if code != ORDER_KEPT:
                    self.metrics.entry_failures.labels(code=code).inc()
        self._dead_on_publish(outcome.dead)
        self.retry(retry, now)
        if outcome.split:
            # The request was refused as a whole: send each entry alone to find the bad one.
            for item in outcome.split:
                item.solo = True
            code = outcome.call_error or "ValidationException"
            self.retry([(item, code) for item in outcome.split], now, delay=0.0)

    def _accepted(self, accepted: list[Pending]) -> None:
        """Resolve accepted entries: the hot path of every call, so the per-entry work is
        only the offset and the latency; the histogram, the counts and the guard are fed
        once per call."""
        wall_s = time.time()
        latencies: list[float] = []
        latency = latencies.append
        resolve = self.tracker.resolve
        resolved = 0
        topic = accepted[0].record.topic
        same_topic = True
        for item in accepted:
            record = item.record
            if record.timestamp is not None:
                waited = wall_s - record.timestamp / 1000
                latency(waited if waited > 0.0 else 0.0)  # a producer's clock ahead of ours
            if resolve((record.topic, record.partition), record.offset, item.epoch):
                resolved += 1
            same_topic = same_topic and record.topic == topic
        self.metrics.end_to_end_latency.observe_all(latencies)
        if same_topic:
            self._count(self.metrics.entries_published, topic, len(accepted))
        else:
            for item in accepted:
                self._count(self.metrics.entries_published, item.record.topic)
        self.guard.delivered(resolved)
        if self._traced:
            for item in accepted:
                self.tracing.resolved(item.record)

    def _dead_on_publish(self, dead: list[tuple[Pending, str, str]]) -> None:
        for item, code, message in dead:
            self.metrics.entry_failures.labels(code=code).inc()
            if self._current(item):  # else revoked meanwhile: the new owner decides
                error = RecordError(Stage.PUBLISH, code, message or code)
                self.dead_letter(item.record, error, item.attempts, item.epoch)

    def _judge_response(self, invalid: bool, now: float) -> None:
        """An endpoint that keeps answering 2xx without per-entry results is not EventBridge
        (a proxy, a misrouted AWS_ENDPOINT_URL_EVENTBRIDGE): retried, then fatal."""
        if not invalid:
            self._invalid_since = None
            return
        self.metrics.invalid_responses.inc()
        if self._invalid_since is None:
            self._invalid_since = now
        limit = self.settings.pipeline.invalid_response_timeout_seconds
        if now - self._invalid_since >= limit and self.fatal is None:
            self.fatal = FatalError(
                "InvalidResponse",
                f"the endpoint {self.publisher.endpoint or '(default)'} has answered without "
                f"one result per entry for {limit:.0f}s (BRIDGE_INVALID_RESPONSE_TIMEOUT_SECONDS):"
                " check AWS_ENDPOINT_URL_EVENTBRIDGE / AWS_ENDPOINT_URL and any proxy",
            )

    def retry(
        self, items: list[tuple[Pending, str]], now: float, delay: float | None = None
    ) -> None:
        """Send these entries again after a backoff, or dead-letter them past the deadline."""
        again: list[Pending] = []
        deadline = self.settings.pipeline.retry_deadline_seconds
        for item, code in items:
            if not self._current(item):
                continue  # revoked meanwhile: the new owner will deliver it
            started = item.first_attempt_at if item.first_attempt_at is not None else now
            if deadline and now - started >= deadline:
                error = RecordError(
                    Stage.RETRIES_EXHAUSTED,
                    code,
                    f"still failing with {code} after {item.attempts} attempts "
                    f"in {now - started:.0f}s",
                )
                self.dead_letter(item.record, error, item.attempts, item.epoch)
                continue
            self.metrics.retries.labels(reason=code).inc()
            self.tracing.retrying(item.record, code)
            again.append(item)
        if not again:
            return
        if self.batcher.ordered:
            # Back to the front of the lane, which holds until the backoff is over: the
            # partition's newer entries wait behind them.
            wait = delay if delay is not None else self.backoff.delay(again[0].attempts)
            again.sort(key=lambda p: p.record.offset)
            self.batcher.requeue(again, hold_until=now + wait)
            return
        for item in again:
            wait = self.backoff.delay(item.attempts) if delay is None else delay
            self.retries.schedule(item, now + wait)

    def _current(self, item: Pending) -> bool:
        return self.tracker.epoch(item.tp) == item.epoch

    # -- resolution ---------------------------------------------------------------------

    def resolve(self, record: SourceRecord, epoch: int) -> None:
        if self.tracker.resolve((record.topic, record.partition), record.offset, epoch):
            self.guard.delivered(1)
        if self._traced:
            self.tracing.resolved(record)

    def dead_letter(
        self, record: SourceRecord, error: RecordError, attempts: int, epoch: int
    ) -> None:
        log.warning(
            "dead-lettering record",
            extra={
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "stage": str(error.stage),
                "code": error.code,
                "reason": error.message,
            },
        )
        self.tracing.dead_lettered(record, error)
        self.dead_letters.send(record, error, attempts, _Token(epoch, error.stage))
        # Judged when the decision is made, not when the topic confirms it, so that a bad
        # deploy stops within one window instead of after a whole consumed batch.
        self.guard.dead_lettered()
        if self.guard.tripped and self.fatal is None:
            self.fatal = FatalError(
                "DeadLetterRatioExceeded",
                f"{self.guard.ratio:.0%} of the last {self.guard.window} records were "
                f"dead-lettered (limit {self.guard.max_ratio:.0%}, BRIDGE_DLQ_MAX_RATIO): "
                "a mapping or setting is most likely wrong",
            )

    def _dead_letter_delivered(self, record: SourceRecord, token: _Token) -> None:
        self.metrics.dead_letters.labels(stage=str(token.stage)).inc()
        self.tracing.resolved(record)
        self.tracker.resolve((record.topic, record.partition), record.offset, token.epoch)

    # -- offsets ------------------------------------------------------------------------

    def commit(self, partitions: list[PartitionId] | None = None, *, wait: bool) -> None:
        """Commit the watermarks: asynchronously in steady state (only those that moved or
        whose last commit failed), synchronously, and retried, on revoke and shutdown."""
        self._last_commit = self.clock.monotonic()
        offsets = self.tracker.to_commit(partitions, changed_only=not wait)
        for attempt in range(SYNC_COMMIT_ATTEMPTS if wait else 1):
            if not offsets:
                return
            if attempt:
                self.clock.sleep(0.1 * attempt)
            self.consumer.commit(offsets, wait=wait)
            offsets = self.tracker.uncommitted(offsets) if wait else {}
        if offsets:
            log.warning(
                "synchronous commit failed; these records will be redelivered",
                extra={"partitions": _names(list(offsets))},
            )

    def _commit_result(self, done: dict[PartitionId, int], failed: list[PartitionId]) -> None:
        self.tracker.committed(done)
        self.metrics.commits.labels(result="failure" if failed else "success").inc()

    # -- backpressure and rebalances ----------------------------------------------------

    def apply_backpressure(self, now: float) -> None:
        """At the bound stop taking records, and take them again once a consume batch fits;
        when the bound still holds after BACKPRESSURE_HOLD, pause every assigned partition
        (and keep polling, to stay in the group) and resume them below half of it. A
        partition assigned while paused is paused too (once the assignment is in effect)."""
        pipeline = self.settings.pipeline
        records, size = self.tracker.buffered_records, self.tracker.buffered_bytes
        # Paused, librdkafka has dropped its prefetch and is slow to deliver again: resume
        # with half a buffer of work left. Holding, its queue is full: go on as soon as a
        # batch fits, in short steady turns rather than a long burst at half the bound (a
        # long stretch of mapping holds the GIL from the thread that reads the answers:
        # 50 ms endpoint, 64 in flight, 21.1k -> 22.7k entries/s in make bench).
        batch = pipeline.consume_batch_size
        share = 0.5 if self.paused else max(0.5, 1 - batch / pipeline.max_buffered_records)
        if self.backpressure and (
            records <= pipeline.max_buffered_records * share
            and size <= pipeline.max_buffered_bytes * share
        ):
            self.consumer.resume(self.paused & self.consumer.assignment)
            self.paused.clear()
            self.backpressure = False
            self._hold_until = None
        elif not self.backpressure and (
            records >= pipeline.max_buffered_records or size >= pipeline.max_buffered_bytes
        ):
            self.backpressure = True
            # From the poll, not from now: mapping the turn's records took time, and the
            # callbacks that wait for the next poll have waited since then.
            self._hold_until = self._polled_at + BACKPRESSURE_HOLD
        if self._hold_until is not None and now >= self._hold_until:
            self._hold_until = None
        if self.backpressure and self._hold_until is None:
            self._pause_all()

    def _pause_all(self) -> None:
        """Pause every assigned partition that is not paused yet."""
        new = self.consumer.assignment - self.paused
        if new:
            self.consumer.pause(new)
            self.paused |= new

    def partitions_assigned(self, partitions: list[PartitionId]) -> None:
        self.tracker.assign(partitions)
        self.health.joined()
        self.metrics.topics_assigned({topic for topic, _ in partitions})
        self.metrics.rebalances.labels(event="assigned").inc()
        log.info("partitions assigned", extra={"partitions": _names(partitions)})
        if partitions and (self.backpressure or self.phase is not Phase.RUNNING):
            # Join paused: fetching them now would take the buffer past its bound, or give
            # a stopping bridge records it has no time for.
            self.consumer.pause(partitions)
            self.paused.update(partitions)

    def partitions_revoked(self, partitions: list[PartitionId]) -> None:
        self.metrics.rebalances.labels(event="revoked").inc()
        log.info("partitions revoked", extra={"partitions": _names(partitions)})
        with self._callback():
            if self.phase is not Phase.CLOSING and self.fatal is None:
                self.drain(partitions, self.settings.pipeline.revoke_timeout_seconds)
            if self.fatal is None or self.phase is Phase.CLOSING:
                self.commit(partitions, wait=True)
        self.forget(partitions)

    def partitions_lost(self, partitions: list[PartitionId]) -> None:
        self.metrics.rebalances.labels(event="lost").inc()
        log.warning("partitions lost", extra={"partitions": _names(partitions)})
        self.health.left_group()
        self.forget(partitions)

    def forget(self, partitions: list[PartitionId], *, keep_metrics: bool = False) -> None:
        """Drop what these partitions hold; the records are redelivered to their next owner.
        Per-topic series and caches go with a topic's last partition, so a regex
        subscription whose topics come and go does not grow them without bound."""
        self.batcher.drop(partitions)
        self.retries.drop(partitions)
        self.tracker.forget(partitions)
        self.paused.difference_update(partitions)
        if keep_metrics:
            return
        for topic, partition in partitions:
            with contextlib.suppress(KeyError):
                self.metrics.consumer_lag.remove(topic, str(partition))
        held = {topic for topic, _ in self.tracker.partitions}
        self._flush_counts()
        for topic in {topic for topic, _ in partitions} - held:
            self.mapper.forget_topic(topic)
            for key in [k for k in self._counters if k[1] == topic]:
                del self._counters[key]
            self.metrics.forget_topic(topic)

    def drain(
        self,
        partitions: list[PartitionId],
        timeout: float,
        reason: str = "revoke",
        *,
        poll: bool = False,
    ) -> None:
        """Publish and settle what these partitions hold, for at most ``timeout`` seconds;
        with ``poll`` (not from inside a callback), polling the paused consumer after each
        wait (the caller polls before it, so a drain with nothing to wait for polls too)."""
        deadline = self.clock.monotonic() + timeout
        while self.tracker.unresolved(partitions):
            now = self.clock.monotonic()
            if now >= deadline:
                break
            wait = min(self._idle_wait(now), deadline - now)
            if self.dead_letters.pending:
                wait = min(wait, DRAIN_POLL)
            if self.publisher.in_flight:
                completions = self.publisher.completions(wait)
            else:
                self.clock.sleep(wait)
                completions = []
            self.pump(completions, self.clock.monotonic(), force=True)
            self.health.beat()
            if poll:
                self._poll_paused()
        left = self.tracker.unresolved(partitions)
        if left:
            self.metrics.records_abandoned.labels(reason=reason).inc(left)
            log.warning(
                "drain timed out; unresolved records will be redelivered",
                extra={"unresolved": left},
            )

    def _poll_paused(self) -> None:
        """Serve the consumer's callbacks while every partition is paused. A record that
        still comes (fetched before its partition was paused) is taken as any other: it is
        tracked, so the drain settles it or leaves it uncommitted."""
        messages = self._consume(self.settings.pipeline.consume_batch_size, 0)
        now = self._polled_at
        for message in messages:
            self.submit(message, now)
        self._raise_fatal()

    # -- observation and shutdown -------------------------------------------------------

    def observe(self, now: float) -> None:
        m = self.metrics
        m.buffered_records.set(self.tracker.buffered_records)
        m.buffered_bytes.set(self.tracker.buffered_bytes)
        m.in_flight_requests.set(self.publisher.in_flight)
        m.backpressure_paused.set(1 if self.backpressure else 0)
        m.assigned_partitions.set(len(self.consumer.assignment))
        self.health.beat()
        if self.lag is not None:
            self.lag.sample(now)
        if self.ages.due(now):
            m.oldest_unresolved_age.set(self.ages.of_tracker(now, self.tracker))
        self._share_rate_budget(now)
        m.rate_limit.set(self.limiter.rate)
        m.rate_limit_wait.inc(self.limiter.take_waited(now))

    def _share_rate_budget(self, now: float) -> None:
        """This replica's share of BRIDGE_GROUP_MAX_ENTRIES_PER_SECOND, by its partitions."""
        pipeline = self.settings.pipeline
        if pipeline.group_max_entries_per_second:
            share = group_share(
                pipeline.group_max_entries_per_second,
                len(self.consumer.assignment),
                self.lag.group_partitions if self.lag is not None else None,
                pipeline.max_entries_per_second,
            )
            self.limiter.set_rate(share, now)

    def fail(self, exc: FatalError) -> None:
        self.fatal = exc
        self.health.failed(exc.code)
        log.error(
            "fatal: %s: %s", exc.code, exc.message, extra={"unresolved": self.tracker.unresolved()}
        )
        try:
            # Resolved records may still be committed: the watermark never passes an
            # unresolved one.
            self.commit(wait=True)
        except Exception:
            log.warning("commit after fatal error failed", exc_info=True)

    def close(self) -> None:
        self.phase = Phase.CLOSING
        if self.lag is not None:
            self.lag.stop()
        try:
            self.consumer.close()
        except Exception:
            log.warning("closing the consumer failed", exc_info=True)
        left = self.dead_letters.close(5.0)
        if left:
            log.warning("dead letters not confirmed at exit", extra={"count": left})
        self.publisher.close()
        self.tracing.close()


def _keep_order(
    batch: Batch, accepted: list[Pending], retry: list[tuple[Pending, str]]
) -> tuple[list[Pending], list[tuple[Pending, str]]]:
    """Ordered mode: entries accepted behind one that must be retried go again behind it,
    so the partition's entries, each counted at its last acceptance, stay in offset order."""
    position = {id(item): index for index, item in enumerate(batch.items)}
    first = min(position[id(item)] for item, _ in retry)
    kept = [item for item in accepted if position[id(item)] < first]
    again = [(item, ORDER_KEPT) for item in accepted if position[id(item)] > first]
    return kept, [*retry, *again]


def _names(partitions: list[PartitionId]) -> list[str]:
    return [f"{topic}[{partition}]" for topic, partition in partitions]
