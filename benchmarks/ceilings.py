"""Ceilings: what plain boto3 and plain confluent-kafka do on this machine, each in its own process.

``boto3``: a bare loop of ``put_partner_events`` calls with pre-built 20-entry batches, on as many
threads as the bridge has requests in flight, sharing one client (as the boto3 docs advise). With
``--tuned`` the client gets the bridge's own botocore settings (no parameter validation, one
attempt); without, boto3's defaults, i.e. what a user's own loop would do.

``consume``: a fresh consumer group reads the preloaded topic to its end, ``consume(500)`` batches.

Run as ``python -m benchmarks.ceilings boto3|consume ...``; prints one JSON object.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import resource
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from botocore.config import Config
from confluent_kafka import Consumer

from benchmarks.workload import DETAIL_TYPE, PARTNER_SOURCE, record_value
from kafka_eventbridge_testing.fake_eventbridge import signed_session

BATCH = 20


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _batches(count: int) -> list[list[dict[str, Any]]]:
    """``count`` distinct 20-entry batches built from the topic's own records."""
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=123_000)
    return [
        [
            {
                "Source": PARTNER_SOURCE,
                "DetailType": DETAIL_TYPE,
                "Detail": record_value(b * BATCH + i).decode(),
                "Time": now,
            }
            for i in range(BATCH)
        ]
        for b in range(count)
    ]


def boto3_loop(endpoint: str, threads: int, calls: int, tuned: bool) -> dict[str, Any]:
    options: dict[str, Any] = {"max_pool_connections": threads}
    if tuned:
        options |= {
            "retries": {"total_max_attempts": 1, "mode": "standard"},
            "parameter_validation": False,
        }
    client: Any = signed_session().client("events", endpoint_url=endpoint, config=Config(**options))
    batches = _batches(64)
    client.put_partner_events(Entries=batches[0])  # connect and warm up outside the clock
    per_thread = calls // threads
    failed: list[int] = []

    def work(offset: int) -> None:
        for n in range(per_thread):
            response = client.put_partner_events(Entries=batches[(offset + n) % len(batches)])
            if response["FailedEntryCount"]:
                failed.append(response["FailedEntryCount"])

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    cpu, started = _cpu_seconds(), time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    seconds = time.perf_counter() - started
    entries = per_thread * threads * BATCH
    return {
        "entries": entries,
        "seconds": seconds,
        "entries_per_s": entries / seconds,
        "cpu_seconds": _cpu_seconds() - cpu,
        "failed_entries": sum(failed),
    }


def consume(bootstrap: str, topic: str, group: str, count: int) -> dict[str, Any]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "logger": logging.getLogger("librdkafka"),
        }
    )
    consumer.subscribe([topic])
    seen = 0
    started = 0.0
    cpu = 0.0
    deadline = time.monotonic() + 120
    while seen < count and time.monotonic() < deadline:
        messages = consumer.consume(500, 1.0)
        if messages and not started:
            cpu, started = _cpu_seconds(), time.perf_counter()
        seen += sum(1 for m in messages if m.error() is None)
    seconds = time.perf_counter() - started
    cpu = _cpu_seconds() - cpu
    consumer.close()
    return {
        "records": seen,
        "seconds": seconds,
        "records_per_s": seen / seconds if seconds else 0.0,
        "cpu_seconds": cpu,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ceilings")
    commands = parser.add_subparsers(dest="command", required=True)
    loop = commands.add_parser("boto3")
    loop.add_argument("--endpoint", required=True)
    loop.add_argument("--threads", type=int, required=True)
    loop.add_argument("--calls", type=int, required=True)
    loop.add_argument("--tuned", action="store_true")
    reader = commands.add_parser("consume")
    reader.add_argument("--bootstrap", required=True)
    reader.add_argument("--topic", required=True)
    reader.add_argument("--group", required=True)
    reader.add_argument("--count", type=int, required=True)
    args = parser.parse_args(argv)
    if args.command == "boto3":
        result = boto3_loop(args.endpoint, args.threads, args.calls, args.tuned)
    else:
        result = consume(args.bootstrap, args.topic, args.group, args.count)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
