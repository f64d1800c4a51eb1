"""Dead letters: records that cannot be delivered, written to a Kafka topic.

A dead letter keeps the original key, value and headers byte for byte and adds the
``bridge.*`` headers that say what went wrong and where the record came from. The producer
is idempotent with ``acks=all``; a record counts as resolved only once its delivery report
says the topic has it. A topic that cannot be written is fatal: dead letters that cannot
be stored must stop the bridge, not be dropped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, cast

from confluent_kafka import KafkaError, KafkaException, Producer

from kafka_eventbridge import kafka_auth
from kafka_eventbridge.errors import FatalError, RecordError
from kafka_eventbridge.records import Headers, SourceRecord

log = logging.getLogger(__name__)

MAX_MESSAGE_HEADER = 1000  # characters of bridge.error.message kept

# The delivery reports of the dead letters close() gave up on.
PURGED = (KafkaError._PURGE_QUEUE, KafkaError._PURGE_INFLIGHT)

# Properties the dead-letter producer always uses, whatever BRIDGE_KAFKA_* says.
PRODUCER_DEFAULTS = {
    "enable.idempotence": "true",
    "acks": "all",
}
# Defaults a BRIDGE_KAFKA_* property may override. A dead letter that cannot be written is
# fatal, and the partition waits behind it until then: a minute, not librdkafka's five.
PRODUCER_TUNING = {
    "linger.ms": "5",
    "compression.type": "lz4",
    "message.timeout.ms": "60000",
}

# Consumer-only properties the producer would warn about at every start.
CONSUMER_ONLY = (
    "group.",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "partition.assignment.strategy",
    "auto.offset.reset",
    "enable.auto",
    "auto.commit",
    "max.poll.interval.ms",
    "fetch.",
    "queued.",
    "isolation.level",
    "check.crcs",
    "allow.auto.create.topics",
    "client.rack",
)


def producer_config(kafka: Mapping[str, Any]) -> dict[str, Any]:
    """The dead-letter producer's librdkafka config from the consumer's.

    Everything but consumer-only properties is kept: security (``security.protocol``,
    ``ssl.*``, ``sasl.*``, ``enable.ssl.certificate.verification``) and the MSK IAM token
    callback, so the producer authenticates exactly as the consumer does.
    """
    config = {k: v for k, v in kafka.items() if not k.startswith(CONSUMER_ONLY)}
    return {**PRODUCER_TUNING, **config, **PRODUCER_DEFAULTS}


def dead_letter_headers(record: SourceRecord, error: RecordError, attempts: int) -> Headers:
    """The original headers followed by the seven ``bridge.*`` headers."""
    added = {
        "bridge.error.code": error.code,
        "bridge.error.message": error.message[:MAX_MESSAGE_HEADER],
        "bridge.error.stage": str(error.stage),
        "bridge.source.topic": record.topic,
        "bridge.source.partition": str(record.partition),
        "bridge.source.offset": str(record.offset),
        "bridge.attempts": str(attempts),
    }
    return [*record.headers, *((name, value.encode()) for name, value in added.items())]


Delivered = Callable[[SourceRecord, Any], None]


class DeadLetterProducer:
    """Produces dead letters and reports each one back once the topic acknowledged it."""

    def __init__(
        self,
        config: Mapping[str, Any],
        topic: str,
        on_delivered: Delivered,
        on_wait: Callable[[], None] = lambda: None,
        on_error: Callable[[], None] | None = None,
    ) -> None:
        self.topic = topic
        self.on_delivered = on_delivered
        self.on_wait = on_wait  # called while a full local queue holds a dead letter back
        self.on_error = on_error
        self.pending = 0
        self.fatal: FatalError | None = None
        self._producer = Producer(
            {
                **config,
                "error_cb": self._on_error,
                "logger": kafka_auth.client_logger(),
            }
        )

    def check_topic(self, timeout: float = 10.0) -> None:
        """Fail at start when the dead-letter topic does not exist (or cannot be seen).

        Asked in short rounds with the client's error callbacks served in between, so that
        a login the broker refuses (wrong password, untrusted certificate) stops the bridge
        at once, named as such, instead of after ``timeout`` as an unreadable metadata error.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                metadata = self._producer.list_topics(self.topic, timeout=1.0)
                break
            except KafkaException as exc:
                self._producer.poll(0.1)  # serves error_cb; also paces the rounds
                if self.fatal is not None:
                    raise self.fatal from None
                if time.monotonic() >= deadline:
                    raise FatalError(
                        "DeadLetterTopicUnavailable", f"cannot read metadata: {exc}"
                    ) from None
        topic = metadata.topics.get(self.topic)
        if topic is None or topic.error is not None:
            reason = topic.error.str() if topic is not None and topic.error else "not found"
            raise FatalError(
                "DeadLetterTopicUnavailable",
                f"dead-letter topic {self.topic!r} is not usable ({reason}); create it or set "
                "BRIDGE_DLQ_TOPIC",
            )

    def send(self, record: SourceRecord, error: RecordError, attempts: int, token: Any) -> None:
        """Produce one dead letter; ``token`` comes back through ``on_delivered``."""

        def report(err: KafkaError | None, _msg: object) -> None:
            self.pending -= 1
            if err is not None and err.code() in PURGED:
                return  # dropped by close(): the record stays uncommitted, and comes again
            if err is not None:
                self._count_error()
                self._fail(err)
            else:
                self.on_delivered(record, token)

        headers = dead_letter_headers(record, error, attempts)
        self.pending += 1
        while True:
            try:
                self._producer.produce(
                    self.topic,
                    record.value,
                    record.key,
                    headers=cast(list[tuple[str, str | bytes | None]], headers),
                    on_delivery=report,
                )
                return
            except BufferError:
                # The local queue is full: serve delivery reports until there is room. The
                # loop is alive meanwhile (its liveness must say so), unless the producer
                # has failed for good.
                self._producer.poll(0.1)
                self.on_wait()
                if self.fatal is not None:
                    self.pending -= 1
                    return
            except KafkaException as exc:
                # Refused before it was queued (e.g. larger than message.max.bytes): this
                # record can never be written, so it can never be resolved. Stop, readably.
                self.pending -= 1
                self._fail(exc.args[0], record)
                return

    def _fail(self, err: KafkaError, record: SourceRecord | None = None) -> None:
        if self.fatal is None:
            where = (
                f" (record {record.topic}[{record.partition}]@{record.offset}, "
                f"{record.size} bytes; see BRIDGE_KAFKA_MESSAGE_MAX_BYTES)"
                if record is not None and err.code() == KafkaError.MSG_SIZE_TOO_LARGE
                else ""
            )
            self.fatal = FatalError(
                "DeadLetterWriteFailed",
                f"cannot write to dead-letter topic {self.topic!r}: {err.str()}{where}",
            )

    def _count_error(self) -> None:
        if self.on_error is not None:
            self.on_error()

    def _on_error(self, err: KafkaError) -> None:
        self._count_error()
        if kafka_auth.is_security_failure(err):
            # Not the topic's fault: the producer cannot log in (or is not allowed).
            self.fatal = self.fatal or kafka_auth.fatal_error(err, "dead-letter producer")
        elif err.fatal():
            self._fail(err)
        else:
            log.warning("dead-letter producer: %s", err.str())

    def poll(self) -> None:
        """Serve delivery reports (their callbacks run here, on the caller's thread)."""
        self._producer.poll(0)

    def close(self, timeout: float) -> int:
        """Wait up to ``timeout`` for the outstanding reports, then destroy the client.

        Returns how many dead letters were never confirmed; their records were not
        committed, so the group reads them again. The client is destroyed here, not left
        to the garbage collector: its threads would otherwise still be in a TLS handshake
        while the process exits and OpenSSL's exit handler frees what they use (a crash,
        signal 11, seen when the broker refused the producer's certificate).
        """
        left = int(self._producer.flush(timeout))
        if left:
            self._producer.purge()  # close() waits for every message, so none may be left
        self._producer.close()
        return left
