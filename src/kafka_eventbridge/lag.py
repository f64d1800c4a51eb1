"""Consumer lag as the brokers see it, read on a timer off the main thread.

``consumer_lag_records{topic, partition}`` is the group's *committed* offset subtracted
from the partition's end, for the partitions this replica owns. Both come from the brokers,
through this module's own admin client (``OffsetFetch`` for the group, ``ListOffsets`` for
the ends), so the figure is what a broker-side exporter (KEDA's kafka scaler,
kafka-exporter) would compute, and it keeps moving while the bridge has paused its
partitions (backpressure on a slow or stalled endpoint): exactly when it falls behind.

The end of a partition is the larger of ``ListOffsets(latest)`` and the high watermark of
the consumer's latest fetch. Either can only be behind the truth, never ahead: a fetch's
mark freezes while the partition is paused, and some Kafka-compatible brokers answer
``ListOffsets`` with the start of the last batch. A partition without a committed offset
(a new group) counts from its log start, as the bridge does (``auto.offset.reset``
defaults to ``earliest``).

A replica reports only its own partitions, and nothing when it is down: alert on the
broker-side figure; this one is for the bridge's dashboard and for the replica's view.

The consumer itself is never called from the monitor's thread (confluent-kafka's consumer
blocks such calls while the loop sits in ``consume``): the loop hands over its assignment
and the fetch high watermarks through :meth:`LagMonitor.sample`, once a second.

Each round also counts the partitions of the subscribed topics (``group_partitions``),
which a group-wide rate budget is shared by (:func:`ratelimit.group_share`).
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]

from kafka_eventbridge import kafka_auth
from kafka_eventbridge.deadletter import CONSUMER_ONLY
from kafka_eventbridge.offsets import OffsetTracker, PartitionId
from kafka_eventbridge.telemetry import Metrics

log = logging.getLogger(__name__)

Assignment = Callable[[], Iterable[PartitionId]]
HighWatermark = Callable[[PartitionId], int | None]
SAMPLE_PERIOD = 1.0  # seconds between two hand-overs of the loop's view


def admin_config(kafka: Mapping[str, Any]) -> dict[str, Any]:
    """The admin client's librdkafka config from the consumer's: the same brokers and
    security (TLS, SASL, the MSK IAM token callback), without consumer-only properties."""
    return {k: v for k, v in kafka.items() if not k.startswith(CONSUMER_ONLY)}


def partition_lag(committed: int | None, start: int | None, end: int | None) -> int | None:
    """Records from the committed offset (or the log start without one) to the end."""
    if end is None:
        return None
    position = committed if committed is not None else start
    return None if position is None else max(end - position, 0)


class LagMonitor:
    """Sets ``consumer_lag_records`` every ``interval`` seconds from the brokers' offsets."""

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        group: str,
        topics: list[str],
        metrics: Metrics,
        interval: float,
        assignment: Assignment,
        high_watermark: HighWatermark | None = None,
    ) -> None:
        self.group = group
        self.topics = topics
        self.group_partitions: int | None = None
        self.metrics = metrics
        self.interval = interval
        self._assignment = assignment
        self._high_watermark = high_watermark
        self._timeout = max(min(interval, 10.0), 1.0)
        client: dict[str, Any] = {
            **admin_config(config),
            "error_cb": self._on_error,
            "logger": kafka_auth.client_logger(),
        }
        self._admin = AdminClient(client)
        self._reported: set[PartitionId] = set()
        self._lock = threading.Lock()
        self._partitions: tuple[PartitionId, ...] = ()
        self._fetched: dict[PartitionId, int] = {}
        self._next_sample = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="consumer-lag", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread, then destroy the admin client (as the dead-letter producer's
        close does: its threads must not outlive the process's exit handlers)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(self._timeout + 1)
        if not self._thread.is_alive():
            # The last reference: the client is destroyed now, not by a later collection
            # (its error callback holds this monitor, so the two form a cycle).
            del self._admin

    def sample(self, now: float) -> None:
        """On the loop's thread: hand over the assignment and the fetch high watermarks."""
        if now < self._next_sample:
            return
        self._next_sample = now + SAMPLE_PERIOD
        partitions = tuple(sorted(set(self._assignment())))
        fetched: dict[PartitionId, int] = {}
        if self._high_watermark is not None:
            for tp in partitions:
                high = self._high_watermark(tp)
                if high is not None:
                    fetched[tp] = high
        with self._lock:
            self._partitions, self._fetched = partitions, fetched

    def _run(self) -> None:
        while True:
            try:
                self.refresh()
            except Exception:  # never let a monitoring thread die silently
                self.metrics.lag_refresh_errors.inc()
                log.warning("reading consumer lag from the brokers failed", exc_info=True)
            if self._stop.wait(self.interval):
                return

    def refresh(self) -> dict[PartitionId, int]:
        """One round: read the offsets, set the gauges, drop the series of partitions gone."""
        with self._lock:
            partitions, fetched = list(self._partitions), self._fetched
        self.group_partitions = self._subscribed_partitions()
        lags: dict[PartitionId, int] = {}
        if partitions:
            committed = self._committed(partitions)
            ends = self._ends(partitions, fetched)
            # None: no commit yet (count from the log start); absent: the read failed (no figure).
            new = [tp for tp in partitions if tp in committed and committed[tp] is None]
            starts = self._starts(new)
            for tp in partitions:
                if tp not in committed:
                    continue
                lag = partition_lag(committed[tp], starts.get(tp), ends.get(tp))
                if lag is not None:
                    lags[tp] = lag
        gauge = self.metrics.consumer_lag
        for topic, partition in self._reported - set(lags):
            with contextlib.suppress(KeyError):
                gauge.remove(topic, str(partition))
        for (topic, partition), lag in lags.items():
            gauge.labels(topic=topic, partition=str(partition)).set(lag)
        self._reported = set(lags)
        self.metrics.lag_last_refresh.set(time.time())
        return lags

    def _subscribed_partitions(self) -> int | None:
        """Partitions of the topics the subscription matches (names, or ``^`` regexes)."""
        metadata = self._admin.list_topics(timeout=self._timeout)
        patterns = [re.compile(t) for t in self.topics if t.startswith("^")]
        names = {t for t in self.topics if not t.startswith("^")}
        total = sum(
            len(topic.partitions)
            for name, topic in metadata.topics.items()
            if topic.error is None
            and (
                name in names
                or (not name.startswith("__") and any(p.search(name) for p in patterns))
            )
        )
        return total or None

    def _committed(self, partitions: list[PartitionId]) -> dict[PartitionId, int | None]:
        request = ConsumerGroupTopicPartitions(
            self.group, [TopicPartition(t, p) for t, p in partitions]
        )
        futures = self._admin.list_consumer_group_offsets([request], request_timeout=self._timeout)
        result = futures[self.group].result(timeout=self._timeout + 1)
        if any(tp.error is not None for tp in result.topic_partitions):
            self.metrics.lag_refresh_errors.inc()
        return {
            (tp.topic, tp.partition): tp.offset if tp.offset >= 0 else None
            for tp in result.topic_partitions
            if tp.error is None
        }

    def _list_offsets(self, partitions: list[PartitionId], spec: Any) -> dict[PartitionId, int]:
        if not partitions:
            return {}
        futures = self._admin.list_offsets(
            {TopicPartition(t, p): spec for t, p in partitions}, request_timeout=self._timeout
        )
        offsets: dict[PartitionId, int] = {}
        for tp, future in futures.items():
            try:
                offset = future.result(timeout=self._timeout + 1).offset
            except KafkaException:
                self.metrics.lag_refresh_errors.inc()
                continue
            if offset >= 0:
                offsets[(tp.topic, tp.partition)] = offset
        return offsets

    def _ends(
        self, partitions: list[PartitionId], fetched: Mapping[PartitionId, int]
    ) -> dict[PartitionId, int]:
        ends = self._list_offsets(partitions, OffsetSpec.latest())  # type: ignore[no-untyped-call]
        for tp in partitions:
            if tp in fetched and fetched[tp] > ends.get(tp, -1):
                ends[tp] = fetched[tp]
        return ends

    def _starts(self, partitions: list[PartitionId]) -> dict[PartitionId, int]:
        return self._list_offsets(partitions, OffsetSpec.earliest())  # type: ignore[no-untyped-call]

    def _on_error(self, err: Any) -> None:
        # The consumer reports the same brokers' trouble, with its own consequences.
        log.debug("consumer lag admin client: %s", err)


class WatermarkAge:
    """How long the oldest unresolved record has held back its partition's commit position.

    Sampled every ``period`` seconds from the watermarks of partitions with unresolved
    records: a partition's clock starts when its watermark takes a new value and runs until
    the watermark moves. A stuck partition (an endpoint that never answers, a retry loop)
    shows as a steadily rising age while a busy, healthy one stays near its publish latency.
    """

    def __init__(self, period: float = 0.5) -> None:
        self.period = period
        self._next = 0.0
        self._since: dict[PartitionId, tuple[int | None, float]] = {}

    def due(self, now: float) -> bool:
        if now < self._next:
            return False
        self._next = now + self.period
        return True

    def of_tracker(self, now: float, tracker: OffsetTracker) -> float:
        """:meth:`oldest` over the tracker's partitions that hold unresolved records."""
        partitions = tracker.partitions
        held = [(tp, tracker.watermark(tp)) for tp in partitions if tracker.unresolved([tp])]
        return self.oldest(now, held)

    def oldest(self, now: float, held: Iterable[tuple[PartitionId, int | None]]) -> float:
        """The largest age over ``held`` (partition, watermark) pairs; 0 when none."""
        since: dict[PartitionId, tuple[int | None, float]] = {}
        for tp, mark in held:
            previous = self._since.get(tp)
            started = previous[1] if previous is not None and previous[0] == mark else now
            since[tp] = (mark, started)
        self._since = since
        return max((now - started for _, started in since.values()), default=0.0)
