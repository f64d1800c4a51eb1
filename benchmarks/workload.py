"""The workload: one broker, preloaded topics of ~200-byte JSON records, one consumer group per run.

Every scenario reads the same kind of record, so their numbers compare. Preloading is built to
be quick even at 2M records: explicit partitions (no partitioner work), 1 MB batches, 100 ms
linger and lz4, and values formatted from one template rather than serialized one by one.
"""

from __future__ import annotations

import logging
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition

from kafka_eventbridge_testing.brokers import KafkaBroker

PARTITIONS = 12
DLQ_TOPIC = "bench.dlq"  # created once per broker; a clean run dead-letters nothing
PARTNER_SOURCE = "aws.partner/example.com/orders"
DETAIL_TYPE = "order.created"
_LOG = logging.getLogger("benchmarks.librdkafka")

# 200 bytes with a 9-digit id: an order event as a partner would send it.
_TEMPLATE = (
    b'{"id":"ord-%09d","type":"order.created","customer":"cust-%06d",'
    b'"amount_cents":%6d,"currency":"EUR","status":"confirmed",'
    b'"channel":"web","items":%2d,"note":"%s"}'
)
_PAD = b"x" * 33


def record_value(i: int) -> bytes:
    """The value of record ``i``: a JSON object of about 200 bytes."""
    return _TEMPLATE % (i, i % 100_000, (i * 7919) % 1_000_000, i % 20 + 1, _PAD)


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def bulk_producer(broker: KafkaBroker) -> Producer:
    return Producer(
        broker.client_config(
            {
                "linger.ms": 100,
                "batch.size": 1_000_000,
                "batch.num.messages": 100_000,
                "compression.type": "lz4",
                "queue.buffering.max.messages": 1_000_000,
                "queue.buffering.max.kbytes": 1_048_576,
                "acks": "all",
                "logger": _LOG,
            }
        )
    )


def preload(broker: KafkaBroker, topic: str, count: int) -> float:
    """Create ``topic`` with 12 partitions and write ``count`` records; returns the seconds."""
    broker.create_topic(topic, PARTITIONS)
    producer = bulk_producer(broker)
    failed: list[str] = []

    def report(err: object, _msg: object) -> None:
        if err is not None:
            failed.append(str(err))

    started = time.perf_counter()
    for i in range(count):
        value = record_value(i)
        while True:
            try:
                producer.produce(topic, value, partition=i % PARTITIONS, on_delivery=report)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 20_000 == 0:
            producer.poll(0)
    left = producer.flush(120)
    if left or failed:
        raise RuntimeError(f"preloading {topic}: {left} undelivered, errors: {failed[:3]}")
    return time.perf_counter() - started


def committed_total(broker: KafkaBroker, group: str, topic: str) -> int:
    """Sum of the group's committed offsets over the topic's partitions."""
    consumer = Consumer(broker.consumer_config(group, {"logger": _LOG}))
    try:
        offsets = consumer.committed(
            [TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10
        )
    finally:
        consumer.close()
    return sum(max(tp.offset, 0) for tp in offsets)
