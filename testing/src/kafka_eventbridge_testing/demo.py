"""``kafka-eventbridge-demo``: the bridge working end to end, on one machine, in a minute.

It starts an embedded Kafka-compatible broker and moto's EventBridge emulator, produces
sample orders (a few bad ones among them), runs the real bridge in this process, and
prints what happened: delivered events (read back through an EventBridge rule and an SQS
queue), dead letters with their reasons, committed offsets and some metrics.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from kafka_eventbridge.app import Bridge
from kafka_eventbridge.settings import load_settings
from kafka_eventbridge.telemetry import Health, HttpServer, Metrics, configure_logging
from kafka_eventbridge_testing import free_port

TOPIC = "demo.orders"
GROUP = "kafka-eventbridge-demo"
SOURCE = "aws.partner/example.com/orders"
PARTITIONS = 3


def sample_values(count: int) -> list[bytes]:
    """Orders, with a draft (filtered) every 25th and one bad record of each kind."""
    values = []
    for i in range(count):
        status = "draft" if i % 25 == 24 else "placed"
        order = {"id": f"order-{i}", "type": "order.created", "status": status, "total": i * 3}
        values.append(json.dumps(order).encode())
    bad = [
        b"{this is not json",  # decode
        b'["an", "array"]',  # Detail must be an object
        json.dumps({"id": "long", "type": "x" * 200, "status": "placed"}).encode(),  # DetailType
    ]
    for n, value in enumerate(bad):
        values.insert((n + 1) * len(values) // (len(bad) + 1), value)
    return values


def _environment(bootstrap: str, url: str, port: int) -> dict[str, str]:
    return {
        "BRIDGE_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "BRIDGE_KAFKA_TOPICS": TOPIC,
        "BRIDGE_KAFKA_GROUP_ID": GROUP,
        "BRIDGE_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "BRIDGE_MAP_SOURCE": f"'{SOURCE}'",
        "BRIDGE_MAP_DETAIL_TYPE": "value.type",
        "BRIDGE_MAP_FILTER": "value.status != 'draft'",
        "BRIDGE_COMMIT_INTERVAL_MS": "200",
        "BRIDGE_HTTP_PORT": str(port),
        "BRIDGE_LOG_FORMAT": "text",
        "BRIDGE_LOG_LEVEL": "WARNING",
        "AWS_ENDPOINT_URL": url,
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "demo",
        "AWS_SECRET_ACCESS_KEY": "demo",
    }


def _committed(bootstrap: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP})
    try:
        tps = consumer.committed([TopicPartition(TOPIC, p) for p in range(PARTITIONS)], timeout=10)
    finally:
        consumer.close()
    return {tp.partition: max(tp.offset, 0) for tp in tps}


def _dead_letters(bootstrap: str, topic: str, expected: int) -> list[dict[str, str]]:
    # Assigned, not subscribed: reading needs no group (and no wait for a group join).
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "demo-reader"})
    consumer.assign([TopicPartition(topic, 0, 0)])
    found: list[dict[str, str]] = []
    deadline = time.monotonic() + 20
    while len(found) < expected and time.monotonic() < deadline:
        for message in consumer.consume(100, 0.5):
            if message.error() is None:
                headers = message.headers() or []
                pairs = headers.items() if isinstance(headers, dict) else headers
                found.append({k: v.decode() for k, v in pairs if isinstance(v, bytes)})
    consumer.close()
    return found


def _wait(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.3)
    return False


def run_demo(records: int = 300, keep_running: bool = False) -> int:
    from kafka_eventbridge_testing.brokers import create_broker
    from kafka_eventbridge_testing.moto import moto_server, partner_source

    print("kafka-eventbridge demo: embedded Kafka broker + moto EventBridge emulator")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    with create_broker("embedded") as broker, moto_server() as url:
        bootstrap = broker.bootstrap_servers
        broker.create_topic(TOPIC, PARTITIONS)
        broker.create_topic(f"{GROUP}.dlq", 1)
        read_events = partner_source(url, SOURCE)
        values = sample_values(records)
        producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
        for n, value in enumerate(values):
            producer.produce(TOPIC, value, key=f"customer-{n % 17}".encode())
        producer.flush(30)
        del producer
        print(
            f"  produced {len(values)} records to {TOPIC} ({PARTITIONS} partitions), 3 of them bad"
        )
        port = int(os.environ.get("BRIDGE_HTTP_PORT") or free_port())
        os.environ.update(_environment(bootstrap, url, port))
        settings = load_settings()
        configure_logging(settings.telemetry.log_format, settings.telemetry.log_level)
        metrics, health = Metrics(), Health(60)
        bridge = Bridge(settings, metrics=metrics, health=health)
        http = HttpServer("127.0.0.1", port, metrics, health)
        http.start()
        runner = threading.Thread(target=bridge.run, name="bridge")
        runner.start()
        done = _wait(lambda: sum(_committed(bootstrap).values()) >= len(values), 90)
        _wait(
            lambda: len(read_events()) >= metrics.entries_published.labels(TOPIC)._value.get(), 30
        )
        _report(
            bootstrap,
            dlq=settings.dlq_topic,
            events=read_events(),
            metrics=metrics,
            port=port,
            done=done,
        )
        if keep_running:
            print("  serving; press Ctrl-C to stop")
            with contextlib.suppress(KeyboardInterrupt):
                while runner.is_alive():
                    runner.join(1)
        bridge.stop()
        runner.join(60)
        http.stop()
    print("demo finished: bridge drained and stopped, broker and emulator shut down")
    return 0 if done else 1


def _report(
    bootstrap: str,
    *,
    dlq: str,
    events: list[dict[str, Any]],
    metrics: Metrics,
    port: int,
    done: bool,
) -> None:
    print(
        f"\ndelivered to EventBridge: {len(events)} events (read back via a rule and SQS); "
        "a sample:"
    )
    for event in events[:3]:
        print(f"  {event['source']} | {event['detail-type']} | {json.dumps(event['detail'])}")
    print("\ndead letters (original bytes kept; reason in headers):")
    for headers in _dead_letters(bootstrap, dlq, 3):
        print(
            f"  {headers.get('bridge.source.topic')}[{headers.get('bridge.source.partition')}]"
            f"@{headers.get('bridge.source.offset')}: stage={headers.get('bridge.error.stage')} "
            f"code={headers.get('bridge.error.code')}: {headers.get('bridge.error.message')}"
        )
    print(f"\ncommitted offsets ({'all records resolved' if done else 'NOT all resolved'}):")
    for partition, offset in sorted(_committed(bootstrap).items()):
        print(f"  {TOPIC}[{partition}] = {offset}")
    print(f"\nmetrics: http://127.0.0.1:{port}/metrics")
    text = metrics.exposition().decode()
    wanted = (
        "kafka_eventbridge_records_consumed_total",
        "kafka_eventbridge_records_filtered_total",
        "kafka_eventbridge_entries_published_total",
        "kafka_eventbridge_dead_letters_total",
        "kafka_eventbridge_publish_requests_total",
    )
    for line in text.splitlines():
        if line.startswith(wanted):
            print(f"  {line}")


def main(argv: Sequence[str] | None = None) -> None:
    """The ``kafka-eventbridge-demo`` console script (``make demo``)."""
    parser = argparse.ArgumentParser(
        prog="kafka-eventbridge-demo",
        description="Start an embedded Kafka-compatible broker and a local EventBridge "
        "emulator, produce sample records (a few bad ones among them), run the bridge and "
        "print what happened.",
    )
    parser.add_argument("--records", type=int, default=300, help="sample records to produce")
    parser.add_argument("--keep-running", action="store_true", help="keep serving until Ctrl-C")
    args = parser.parse_args(argv)
    raise SystemExit(run_demo(records=args.records, keep_running=args.keep_running))
