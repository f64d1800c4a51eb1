"""The composition root: the one path a record takes, readable top to bottom.

    consume → map (or dead-letter / skip) → batcher → publisher (N in flight)
        accepted → resolved · retryable → backoff → batcher · permanent → dead letter
    resolved records move each partition's watermark; the watermark is committed.

Everything runs on the main thread except the publish calls themselves, whose results
come back through the publisher's completion queue. Rebalance callbacks run inside
``consume`` on this same thread.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from confluent_kafka import Message

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient

from kafka_eventbridge.batching import Batch, Batcher, Pending, RetryQueue
from kafka_eventbridge.consumer import KafkaConsumer, consumer_config
from kafka_eventbridge.deadletter import DeadLetterProducer, producer_config
from kafka_eventbridge.errors import FatalError, RecordError, Stage
from kafka_eventbridge.guard import DeadLetterGuard
from kafka_eventbridge.mapping import Mapper, load_routes
from kafka_eventbridge.offload import OffloadPolicy, Uploader
from kafka_eventbridge.offsets import OffsetTracker, PartitionId
from kafka_eventbridge.publisher import (
    Backoff,
    Completion,
    make_publisher,
    make_s3_client,
)
from kafka_eventbridge.ratelimit import RateLimiter
from kafka_eventbridge.records import SourceRecord
from kafka_eventbridge.schemas import build_decoders
from kafka_eventbridge.settings import Ordering, Settings
from kafka_eventbridge.telemetry import Health, Metrics

log = logging.getLogger("kafka_eventbridge")

IDLE_WAIT = 0.1  # longest a loop turn waits for records or results
LAG_INTERVAL = 5.0


@dataclass(frozen=True)
class _Token:
    """What a dead letter carries back to its delivery report."""

    epoch: int
    stage: Stage


def build_mapper(settings: Settings) -> Mapper:
    routes = load_routes(settings.mapping, settings.eventbridge.api, settings.kafka.topics)
    return Mapper(
        routes,
        api=settings.eventbridge.api,
        max_bytes=settings.eventbridge.max_bytes,
        value_format=settings.mapping.value_format,
        tombstones=settings.mapping.tombstones,
        event_bus=settings.eventbridge.event_bus or "default",
        **build_decoders(settings.mapping),
        offload=offload_policy(settings),
    )


def offload_policy(settings: Settings) -> OffloadPolicy | None:
    offload = settings.offload
    if offload.bucket is None:
        return None
    return OffloadPolicy(offload.bucket, offload.prefix, offload.field)


class Bridge:
    """Kafka in, EventBridge out, offsets committed behind what is resolved."""

    def __init__(
        self,
        settings: Settings,
        *,
        metrics: Metrics | None = None,
        health: Health | None = None,
        client: EventBridgeClient | None = None,
    ) -> None:
        self.settings = settings
        pipeline = settings.pipeline
        self.metrics = metrics or Metrics()
        self.health = health or Health(settings.telemetry.health_stall_seconds)
        self.mapper = build_mapper(settings)
        self.tracker = OffsetTracker()
        self.batcher = Batcher(
            max_entries=settings.batch_max_entries,
            max_bytes=settings.eventbridge.max_bytes,
            linger=pipeline.batch_linger_ms / 1000,
            ordered=pipeline.ordering is Ordering.PARTITION,
        )
        self.retries = RetryQueue()
        self.backoff = Backoff(
            pipeline.retry_backoff_initial_ms / 1000, pipeline.retry_backoff_max_ms / 1000
        )
        self.guard = DeadLetterGuard(pipeline.dlq_max_ratio, pipeline.dlq_ratio_window)
        self.limiter = RateLimiter(pipeline.max_entries_per_second)
        kafka = consumer_config(settings.kafka, settings.kafka_properties.values)
        self.consumer = KafkaConsumer(kafka, settings.kafka.topics, self, self._commit_result)
        self.dead_letters = DeadLetterProducer(
            producer_config(kafka), settings.dlq_topic, self._dead_letter_delivered
        )
        uploader = (
            Uploader(make_s3_client(settings.eventbridge, pipeline.max_in_flight_requests))
            if settings.offload.bucket
            else None
        )
        self.publisher = make_publisher(
            settings.eventbridge, pipeline.max_in_flight_requests, uploader, client
        )
        self.stopping = False
        self.closing = False
        self.paused = False
        self.fatal: FatalError | None = None
        self._last_commit = 0.0
        self._last_lag = 0.0
        self._counters: dict[tuple[int, str], Any] = {}
        self._tallies: dict[tuple[int, str], int] = {}
        self._pause_new = False

    # -- the loop -----------------------------------------------------------------------

    def run(self) -> int:
        """Run until stopped (exit code 0) or a fatal error (exit code 1)."""
        try:
            self.dead_letters.check_topic()
            self.consumer.subscribe()
            while not self.stopping:
                self.step()
            self.drain(self.tracker.partitions, self.settings.pipeline.shutdown_timeout_seconds)
            self.commit(wait=True)
            log.info("stopped", extra={"unresolved": self.tracker.unresolved()})
            return 0
        except FatalError as exc:
            self.fail(exc)
            return 1
        finally:
            self.close()

    def stop(self) -> None:
        """Ask the loop to drain and exit (from a signal handler)."""
        self.stopping = True

    def step(self) -> None:
        """One turn: take records, publish what is due, settle results, commit, observe."""
        now = time.monotonic()
        wait = self._idle_wait(now)
        if self.publisher.in_flight:
            messages = self.consumer.consume(self.settings.pipeline.consume_batch_size, 0)
            completions = self.publisher.completions(0 if messages else wait)
        else:
            messages = self.consumer.consume(self.settings.pipeline.consume_batch_size, wait)
            completions = self.publisher.completions()
        now = time.monotonic()
        for message in messages:
            self.submit(message, now)
            if self.fatal is not None:
                raise self.fatal
        self.pump(completions, now)
        self.apply_backpressure()
        if now - self._last_commit >= self.settings.pipeline.commit_interval_ms / 1000:
            self.commit(wait=False)
        self.observe(now)

    def _idle_wait(self, now: float) -> float:
        # A due batch is no reason to wake up while every request slot is taken: only a
        # completion can free one, and waiting for it (rather than spinning) leaves the GIL
        # to the publisher threads that produce it.
        batch_due = self.batcher.next_due() if self.publisher.capacity else None
        due = [
            t
            for t in (
                batch_due,
                self.retries.next_due(),
                self.limiter.next_ready(now),
            )
            if t is not None
        ]
        wait = min([IDLE_WAIT, *(t - now for t in due)])
        return max(wait, 0.0) if not self.publisher.in_flight else min(max(wait, 0.0), 0.05)

    # -- records in ---------------------------------------------------------------------

    def submit(self, message: Message, now: float) -> None:
        err = message.error()
        if err is not None:
            self.consumer.message_error(err)
            return
        record = SourceRecord.from_message(message)
        epoch = self.tracker.add((record.topic, record.partition), record.offset, record.size)
        if epoch is None:
            return  # its partition was revoked while the record sat in the local queue
        self._count(self.metrics.records_consumed, record.topic)
        try:
            entry = self.mapper.map(record)
        except RecordError as error:
            self.dead_letter(record, error, 0, epoch)
            return
        if entry is None:
            self._count(self.metrics.records_filtered, record.topic)
            self.resolve(record, epoch)
            return
        self.batcher.add(Pending(entry, record, epoch), now)

    def _count(self, counter: Any, topic: str) -> None:
        """Tally per record; :meth:`_flush_counts` adds the tallies once per loop turn (a
        labelled counter's ``inc`` takes a lock, which showed in profiles at two per record)."""
        key = (id(counter), topic)
        tally = self._tallies.get(key)
        if tally is None:
            if key not in self._counters:
                self._counters[key] = counter.labels(topic=topic)
            tally = 0
        self._tallies[key] = tally + 1

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
        self._flush_counts()
        self.dead_letters.poll()
        for fatal in (self.dead_letters.fatal, self.consumer.fatal, self.fatal):
            if fatal is not None:
                raise fatal

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
        self.publisher.submit(batch)

    def settle(self, completion: Completion, now: float) -> None:
        outcome = completion.outcome
        self.batcher.release(completion.batch)
        self.metrics.publish_requests.labels(outcome=outcome.label).inc()
        self.metrics.publish_duration.observe(completion.duration)
        for item in outcome.accepted:
            self._count(self.metrics.entries_published, item.record.topic)
            self.resolve(item.record, item.epoch)
        if outcome.fatal is not None:
            raise outcome.fatal
        for item, code in outcome.retry:
            if outcome.call_error is None:
                self.metrics.entry_failures.labels(code=code).inc()
            self.retry(item, code, now)
        for item, code, message in outcome.dead:
            self.metrics.entry_failures.labels(code=code).inc()
            error = RecordError(Stage.PUBLISH, code, message or code)
            self.dead_letter(item.record, error, item.attempts, item.epoch)
        for item in outcome.split:
            # The request was refused as a whole: send each entry alone to find the bad one.
            item.solo = True
            self.retry(item, outcome.call_error or "ValidationException", now, delay=0.0)

    def retry(self, item: Pending, code: str, now: float, delay: float | None = None) -> None:
        if not self._current(item):
            return  # revoked meanwhile: the new owner will deliver it
        deadline = self.settings.pipeline.retry_deadline_seconds
        started = item.first_attempt_at if item.first_attempt_at is not None else now
        if deadline and now - started >= deadline:
            error = RecordError(
                Stage.RETRIES_EXHAUSTED,
                code,
                f"still failing with {code} after {item.attempts} attempts in {now - started:.0f}s",
            )
            self.dead_letter(item.record, error, item.attempts, item.epoch)
            return
        self.metrics.retries.labels(reason=code).inc()
        wait = self.backoff.delay(item.attempts) if delay is None else delay
        self.retries.schedule(item, now + wait)

    def _current(self, item: Pending) -> bool:
        return self.tracker.epoch(item.tp) == item.epoch

    # -- resolution ---------------------------------------------------------------------

    def resolve(self, record: SourceRecord, epoch: int) -> None:
        if self.tracker.resolve((record.topic, record.partition), record.offset, epoch):
            self.guard.record(dead=False)

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
        self.dead_letters.send(record, error, attempts, _Token(epoch, error.stage))
        # Judged when the decision is made, not when the topic confirms it, so that a bad
        # deploy stops within one window instead of after a whole consumed batch.
        self.guard.record(dead=True)
        if self.guard.tripped and self.fatal is None:
            self.fatal = FatalError(
                "DeadLetterRatioExceeded",
                f"{self.guard.ratio:.0%} of the last {self.guard.window} records were "
                f"dead-lettered (limit {self.guard.max_ratio:.0%}, BRIDGE_DLQ_MAX_RATIO): "
                "a mapping or setting is most likely wrong",
            )

    def _dead_letter_delivered(self, record: SourceRecord, token: _Token) -> None:
        self.metrics.dead_letters.labels(stage=str(token.stage)).inc()
        self.tracker.resolve((record.topic, record.partition), record.offset, token.epoch)

    # -- offsets ------------------------------------------------------------------------

    def commit(self, partitions: list[PartitionId] | None = None, *, wait: bool) -> None:
        offsets = self.tracker.to_commit(partitions, changed_only=not wait)
        self._last_commit = time.monotonic()
        if offsets and self.consumer.commit(offsets, wait=wait):
            self.tracker.committed(offsets)

    def _commit_result(self, ok: bool) -> None:
        self.metrics.commits.labels(result="success" if ok else "failure").inc()

    # -- backpressure and rebalances ----------------------------------------------------

    def apply_backpressure(self) -> None:
        pipeline = self.settings.pipeline
        records, size = self.tracker.buffered_records, self.tracker.buffered_bytes
        if not self.paused and (
            records >= pipeline.max_buffered_records or size >= pipeline.max_buffered_bytes
        ):
            self.consumer.pause(self.consumer.assignment)
            self.paused = True
        elif (
            self.paused
            and records < pipeline.max_buffered_records // 2
            and size < pipeline.max_buffered_bytes // 2
        ):
            self.consumer.resume(self.consumer.assignment)
            self.paused = self._pause_new = False
        elif self._pause_new:
            self.consumer.pause(self.consumer.assignment)
            self._pause_new = False

    def partitions_assigned(self, partitions: list[PartitionId]) -> None:
        self.tracker.assign(partitions)
        self.health.assigned = True
        self.metrics.rebalances.labels(event="assigned").inc()
        log.info("partitions assigned", extra={"partitions": _names(partitions)})
        if self.paused:
            # New partitions join paused (once the assignment is in effect, after this
            # callback); they resume with the rest below the low-water mark.
            self._pause_new = True

    def partitions_revoked(self, partitions: list[PartitionId]) -> None:
        self.metrics.rebalances.labels(event="revoked").inc()
        log.info("partitions revoked", extra={"partitions": _names(partitions)})
        if not self.closing and self.fatal is None:
            self.drain(partitions, self.settings.pipeline.revoke_timeout_seconds)
        if self.fatal is None or self.closing:
            self.commit(partitions, wait=True)
        self.forget(partitions)

    def partitions_lost(self, partitions: list[PartitionId]) -> None:
        self.metrics.rebalances.labels(event="lost").inc()
        log.warning("partitions lost", extra={"partitions": _names(partitions)})
        self.forget(partitions)

    def forget(self, partitions: list[PartitionId]) -> None:
        self.batcher.drop(partitions)
        self.retries.drop(partitions)
        self.tracker.forget(partitions)
        for topic, partition in partitions:
            with contextlib.suppress(KeyError):
                self.metrics.consumer_lag.remove(topic, str(partition))

    def drain(self, partitions: list[PartitionId], timeout: float) -> None:
        """Publish and settle what these partitions hold, for at most ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while self.tracker.unresolved(partitions) and time.monotonic() < deadline:
            completions = self.publisher.completions(0.05)
            self.pump(completions, time.monotonic(), force=True)
            if not self.publisher.in_flight and not self.batcher and not self.dead_letters.pending:
                # Only backoffs remain: wait for the next one rather than spin.
                due = self.retries.next_due()
                time.sleep(min(max((due or 0) - time.monotonic(), 0.01), 0.1))
            self.health.beat()
        left = self.tracker.unresolved(partitions)
        if left:
            log.warning(
                "drain timed out; unresolved records will be redelivered",
                extra={"unresolved": left},
            )

    # -- observation and shutdown -------------------------------------------------------

    def observe(self, now: float) -> None:
        m = self.metrics
        m.buffered_records.set(self.tracker.buffered_records)
        m.buffered_bytes.set(self.tracker.buffered_bytes)
        m.in_flight_requests.set(self.publisher.in_flight)
        m.backpressure_paused.set(1 if self.paused else 0)
        m.assigned_partitions.set(len(self.consumer.assignment))
        ready, _ = self.health.ready()
        m.ready.set(1 if ready else 0)
        self.health.beat()
        if now - self._last_lag >= LAG_INTERVAL:
            self._last_lag = now
            for tp in list(self.consumer.assignment):
                lag = self.consumer.lag(tp, self.tracker.watermark(tp))
                if lag is not None:
                    m.consumer_lag.labels(topic=tp[0], partition=str(tp[1])).set(lag)

    def fail(self, exc: FatalError) -> None:
        self.fatal = exc
        self.health.fatal = exc.code
        self.metrics.ready.set(0)
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
        self.closing = True
        try:
            self.consumer.close()
        except Exception:
            log.warning("closing the consumer failed", exc_info=True)
        left = self.dead_letters.flush(5.0)
        if left:
            log.warning("dead letters not confirmed at exit", extra={"count": left})
        self.publisher.close()


def _names(partitions: list[PartitionId]) -> list[str]:
    return [f"{topic}[{partition}]" for topic, partition in partitions]
