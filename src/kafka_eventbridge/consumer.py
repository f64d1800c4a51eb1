"""The Kafka side: a confluent-kafka consumer set up for at-least-once.

Offsets are never committed or stored automatically: the bridge commits the contiguous
watermark of resolved records itself. Rebalances default to cooperative-sticky, so a
rebalance only takes away the partitions that move. Rebalance events are handed to a
:class:`RebalanceListener` (the pipeline), called from inside :meth:`Consumer.consume`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from kafka_eventbridge import kafka_auth
from kafka_eventbridge.errors import ConfigError, FatalError
from kafka_eventbridge.offsets import PartitionId
from kafka_eventbridge.settings import KafkaSettings, property_variable

log = logging.getLogger(__name__)

CONSUMER_DEFAULTS = {
    "partition.assignment.strategy": "cooperative-sticky",
    "auto.offset.reset": "earliest",
    # Bound what librdkafka prefetches, so memory does not grow with the backlog.
    # 1 MiB each: the bridge's own buffer is the backlog bound, and librdkafka's prefetch of
    # 16 MiB fetches alone took peak RSS from 129 MB to 375 MB at a 2M-record backlog, with
    # no gain in throughput (docs/performance.md).
    "queued.max.messages.kbytes": "1024",
    "fetch.max.bytes": "1048576",
    # With so small a prefetch queue it is often full, and librdkafka then waits
    # fetch.queue.backoff.ms (1 s by default) before fetching that partition again: p50
    # produce→accepted was 834 ms at 10k records/s, 28 ms with 10 ms (docs/performance.md).
    "fetch.queue.backoff.ms": "10",
    # A fetch is answered once 64 KiB are there or after 10 ms, not as soon as any record is
    # (fetch.min.bytes=1): at most 100 fetches a second per broker. In make bench, at half the
    # maximum rate, the broker's CPU went from 0.49 to 0.35 cores, and the p99 produce->accepted
    # from 95-273 ms (median 162) to 52-105 ms (median 75; docs/performance.md). A record
    # waits at most 10 ms more.
    "fetch.min.bytes": "65536",
    "fetch.wait.max.ms": "10",
}
# Properties the bridge owns: changing them would break at-least-once.
FORCED = {"enable.auto.commit": "false", "enable.auto.offset.store": "false"}

# Leaving the group gets this long. librdkafka's close can hang when a rebalance starts while
# it leaves (an assignment and a revoke arrive inside close, the revoke's commit is refused
# with UNKNOWN_MEMBER_ID, and close never returns); the bridge then exits without it. Nothing
# is lost: what was resolved was committed before, the rest is redelivered to the next owner,
# and the group drops the member after session.timeout.ms.
CLOSE_TIMEOUT = 10.0

# Errors that no amount of waiting fixes: stop and let Kubernetes restart with backoff.
FATAL_CODES = kafka_auth.FATAL_CODES


# Called with the offsets the broker confirmed and the partitions whose commit failed.
CommitListener = Callable[[dict[PartitionId, int], list[PartitionId]], None]


class RebalanceListener(Protocol):
    def partitions_assigned(self, partitions: list[PartitionId]) -> None: ...
    def partitions_revoked(self, partitions: list[PartitionId]) -> None: ...
    def partitions_lost(self, partitions: list[PartitionId]) -> None: ...


def consumer_config(kafka: KafkaSettings, properties: Mapping[str, str]) -> dict[str, Any]:
    """The librdkafka configuration: our defaults, then the user's, then what we must own.

    Security (TLS, SASL) is the user's librdkafka properties as given; MSK IAM adds its
    SASL settings and token callback (:func:`kafka_auth.security_config`). The dead-letter
    producer is configured from this result, so it authenticates the same way.
    """
    problems = [
        f"{property_variable(name)}: the bridge commits offsets itself; this must stay false"
        for name in FORCED
        if properties.get(name, "false").lower() != "false"
    ]
    if problems:
        raise ConfigError(problems)
    return {
        **CONSUMER_DEFAULTS,
        **properties,
        **kafka_auth.security_config(properties),
        "bootstrap.servers": kafka.bootstrap_servers,
        "group.id": kafka.group_id,
        **FORCED,
    }


def _tps(partitions: Iterable[TopicPartition]) -> list[PartitionId]:
    return [(p.topic, p.partition) for p in partitions]


class KafkaConsumer:
    """The subscription, pause/resume, commits and lag, on top of confluent-kafka."""

    def __init__(
        self,
        config: Mapping[str, Any],
        topics: list[str],
        listener: RebalanceListener,
        on_commit: CommitListener,
    ) -> None:
        self.topics = topics
        self.listener = listener
        self.on_commit = on_commit
        self.fatal: FatalError | None = None
        self.assignment: set[PartitionId] = set()
        self._cooperative = "cooperative" in str(config.get("partition.assignment.strategy"))
        self._assigning: list[TopicPartition] | None = None  # inside on_assign
        self.abandoned = False  # close gave up: its threads run on, callbacks are not ours
        try:
            self._consumer = Consumer(
                {
                    **config,
                    "on_commit": self._committed,
                    "error_cb": self._on_error,
                    "logger": kafka_auth.client_logger(),
                }
            )
        except KafkaException as exc:
            raise ConfigError([f"BRIDGE_KAFKA_*: {exc.args[0].str()}"]) from None

    def subscribe(self) -> None:
        self._consumer.subscribe(
            self.topics,
            on_assign=self._assigned,
            on_revoke=self._revoked,
            on_lost=self._lost,
        )

    def _assigned(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self.abandoned:
            return
        tps = _tps(partitions)
        self.assignment.update(tps)
        self._assigning = partitions
        try:
            self.listener.partitions_assigned(tps)
        finally:
            self._assigning = None

    def _revoked(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self.abandoned:
            return
        tps = _tps(partitions)
        self.listener.partitions_revoked(tps)
        self.assignment.difference_update(tps)

    def _lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self.abandoned:
            return
        tps = _tps(partitions)
        self.listener.partitions_lost(tps)
        self.assignment.difference_update(tps)

    def _committed(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """librdkafka's report of a commit: the only word that an offset is committed."""
        if err is not None and err.code() == KafkaError._NO_OFFSET:
            return
        done: dict[PartitionId, int] = {}
        failed: list[PartitionId] = []
        for tp in partitions:
            if err is None and tp.error is None:
                done[(tp.topic, tp.partition)] = tp.offset
            else:
                failed.append((tp.topic, tp.partition))
        if failed:
            reason = (err or next(tp.error for tp in partitions if tp.error)).str()
            log.warning("offset commit failed, retried at the next commit: %s", reason)
        self.on_commit(done, failed)

    def _on_error(self, err: KafkaError) -> None:
        if kafka_auth.is_fatal(err):
            self._fail(err)
        else:
            log.warning("kafka: %s", err.str())

    def _fail(self, err: KafkaError) -> None:
        if self.fatal is None:
            self.fatal = kafka_auth.fatal_error(err, "kafka")

    def consume(self, count: int, timeout: float) -> list[Message]:
        messages: list[Message] = self._consumer.consume(count, timeout)
        return messages

    def message_error(self, err: KafkaError) -> None:
        """An error delivered in place of a message."""
        if err.code() != KafkaError._PARTITION_EOF:
            self._on_error(err)

    def pause(self, partitions: Iterable[PartitionId]) -> None:
        """Stop fetching these partitions. Called from the assignment callback, it applies
        the assignment first (as confluent-kafka allows there), so that partitions assigned
        while the buffer is full join paused instead of fetching one more batch."""
        chosen = [TopicPartition(t, p) for t, p in partitions]
        if not chosen:
            return
        if self._assigning is not None:
            assigning, self._assigning = self._assigning, None
            if self._cooperative:
                self._consumer.incremental_assign(assigning)
            else:
                self._consumer.assign(assigning)
        self._consumer.pause(chosen)

    def resume(self, partitions: Iterable[PartitionId]) -> None:
        chosen = [TopicPartition(t, p) for t, p in partitions]
        if chosen:
            self._consumer.resume(chosen)

    def commit(self, offsets: Mapping[PartitionId, int], *, wait: bool) -> None:
        """Commit offsets (the next offset to read, per partition).

        Asynchronous: the result comes through the commit listener, from a later
        :meth:`consume`. Synchronous (revoke, shutdown): the result is reported before this
        returns; a failure is reported as such, and the caller may try again.
        """
        if not offsets:
            return
        tps = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        if not wait:
            try:
                self._consumer.commit(offsets=tps, asynchronous=True)
            except KafkaException as exc:
                log.warning("offset commit refused, retried at the next commit: %s", exc)
                self.on_commit({}, list(offsets))
            return
        try:
            result = self._consumer.commit(offsets=tps, asynchronous=False)
        except KafkaException as exc:
            log.warning("synchronous offset commit failed: %s", exc)
            self.on_commit({}, list(offsets))
            return
        self._committed(None, list(result or tps))

    def seek(self, tp: PartitionId, offset: int) -> None:
        """Fetch the partition again from ``offset`` (the records after it are redelivered)."""
        self._consumer.seek(TopicPartition(tp[0], tp[1], offset))

    def high_watermark(self, tp: PartitionId) -> int | None:
        """The high watermark carried by the latest fetch response (no broker round trip;
        frozen while the partition is paused). From the loop's thread only."""
        try:
            _low, high = self._consumer.get_watermark_offsets(TopicPartition(*tp), cached=True)
        except KafkaException:
            return None
        return high if high >= 0 else None

    def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Leave the group, for at most ``timeout`` seconds (see :data:`CLOSE_TIMEOUT`).

        librdkafka's close runs in a thread of its own, so that a close that never returns
        does not keep the process from exiting; the rebalance callbacks it runs meanwhile
        run there, while the caller waits. Past the timeout the callbacks still to come do
        nothing, and the thread (a daemon) is left behind.
        """
        failed: list[Exception] = []

        def leave() -> None:
            try:
                self._consumer.close()
            except Exception as exc:
                failed.append(exc)

        thread = threading.Thread(target=leave, name="kafka-consumer-close", daemon=True)
        thread.start()
        thread.join(timeout)
        if thread.is_alive():
            self.abandoned = True
            log.warning(
                "leaving the consumer group did not finish; exiting without it (resolved "
                "records are committed, the rest is redelivered; the group drops this member "
                "after session.timeout.ms)",
                extra={"timeout_s": timeout},
            )
            return
        if failed:
            raise failed[0]
