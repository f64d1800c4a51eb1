"""CPU per record of the bridge's two halves, measured apart and without a broker.

``loop``: the main loop's work per record — ``Bridge.submit`` (decode, map, batch), sending
batches, settling their (instantly successful) results and moving the watermark — on real
``confluent_kafka.Message`` objects, with the publisher replaced by one that accepts every
entry at once. ``publish``: one thread's CPU per 20-entry call, the bridge's call path and
boto3's, against a stand-in in its own process.

CPU time, not wall time, so the numbers hold on a busy machine; medians of ``--repeat``.
Run as ``python -m benchmarks.micro [loop|publish|all]``.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from botocore.config import Config
from confluent_kafka import Message

from benchmarks.bridge import cpu_seconds
from benchmarks.workload import (
    DETAIL_TYPE,
    PARTITIONS,
    PARTNER_SOURCE,
    record_value,
)
from kafka_eventbridge.app import Bridge, tune_garbage_collector
from kafka_eventbridge.batching import Batch
from kafka_eventbridge.classify import BatchOutcome
from kafka_eventbridge.crt import CrtTransport
from kafka_eventbridge.mapping import Entry
from kafka_eventbridge.publisher import Completion
from kafka_eventbridge.settings import load_settings
from kafka_eventbridge_testing.fake_eventbridge import (
    EventLoop,
    FakeEventBridgeProcess,
    signed_session,
)

TOPIC = "orders"


class _InstantPublisher:
    """Accepts every batch at once: what is left is the main loop's own work."""

    def __init__(self, max_in_flight: int) -> None:
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self._done: list[Completion] = []

    @property
    def capacity(self) -> int:
        return self.max_in_flight - self.in_flight

    def submit(self, batch: Batch) -> None:
        self.in_flight += 1
        self._done.append(Completion(batch, BatchOutcome(accepted=list(batch.items)), 0.001))

    def flush(self) -> None:
        pass

    def completions(self, timeout: float = 0.0) -> list[Completion]:
        done, self._done = self._done, []
        self.in_flight -= len(done)
        return done

    def close(self) -> None:
        pass


Headers = list[tuple[str, str | bytes | None]]  # as confluent_kafka.Message takes them


def messages(count: int, headers: Callable[[int], Headers] | None = None) -> list[Message]:
    """``count`` records as the consumer hands them over, spread over the partitions; each
    with ``headers(i)`` when given."""
    now = int(time.time() * 1000)
    return [
        Message(
            topic=TOPIC,
            partition=i % PARTITIONS,
            offset=i // PARTITIONS,
            key=str(i).encode(),
            value=record_value(i),
            headers=headers(i) if headers else None,
            timestamp=(1, now),
        )
        for i in range(count)
    ]


def _bridge() -> Bridge:
    env = {
        "BRIDGE_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
        "BRIDGE_KAFKA_TOPICS": TOPIC,
        "BRIDGE_MAP_SOURCE": f"'{PARTNER_SOURCE}'",
        "BRIDGE_MAP_DETAIL_TYPE": "value.type || topic",
        "BRIDGE_EVENTBRIDGE_REGION": "us-east-1",
    }
    bridge = Bridge(load_settings(env))
    bridge.partitions_assigned([(TOPIC, p) for p in range(PARTITIONS)])
    bridge.publisher = _InstantPublisher(bridge.publisher.max_in_flight)  # type: ignore[assignment]
    return bridge


def drive(bridge: Bridge, records: Sequence[Message], chunk: int) -> None:
    """The loop's work on ``records``: submitted ``chunk`` at a time, as consumed, each chunk
    sent and settled (by an instant publisher) before the next."""
    for start in range(0, len(records), chunk):
        now = time.monotonic()
        for message in records[start : start + chunk]:
            bridge.submit(message, now)
        while bridge.batcher:
            bridge.pump(bridge.publisher.completions(), now, force=True)
        bridge.pump(bridge.publisher.completions(), now)


def loop_us_per_record(count: int = 50_000, chunk: int = 500) -> float:
    """Main-loop CPU per record: submit in consume-sized chunks, then send and settle."""
    bridge = _bridge()
    records = messages(count)
    tune_garbage_collector()  # as `kafka-eventbridge run` does once set up
    started = time.thread_time()
    drive(bridge, records, chunk)
    spent = time.thread_time() - started
    assert bridge.tracker.unresolved() == 0
    bridge.dead_letters.close(0)
    return spent / count * 1e6


def _entries(count: int) -> list[Entry]:
    when = int(time.time()) * 1000 + 123
    return [
        Entry(PARTNER_SOURCE, DETAIL_TYPE, record_value(i).decode(), None, when, None, None, 0)
        for i in range(count)
    ]


def publish_us_per_call(url: str, calls: int = 1000) -> dict[str, float]:
    """CPU per 20-entry call: the crt path (this process and its HTTP process), and boto3's
    own method."""
    session = signed_session()
    client: Any = session.client(
        "events",
        endpoint_url=url,
        config=Config(
            retries={"total_max_attempts": 1, "mode": "standard"}, parameter_validation=False
        ),
    )
    entries = _entries(20)
    requests = [e.request() for e in entries]
    transport = CrtTransport(client, session.get_credentials(), "PutPartnerEvents", 1)

    def crt_call() -> None:
        body = orjson.dumps({"Entries": [e.wire() for e in entries]})
        transport.send(None, body)
        ((_, result, _),) = transport.results(timeout=10)
        assert isinstance(result, dict) and not result.get("FailedEntryCount"), result

    paths: dict[str, Callable[[], Any]] = {
        "crt path (awscrt)": crt_call,
        "boto3 put_partner_events": lambda: client.put_partner_events(Entries=requests),
    }

    def cpu() -> float:
        child = transport.process_id
        return time.process_time() + (cpu_seconds(child) if child is not None else 0.0)

    result = {}
    for name, call in paths.items():
        call()
        started = cpu()
        for _ in range(calls):
            call()
        result[name] = (cpu() - started) / calls * 1e6
    transport.close()
    return result


def stand_in_us_per_call(event_loop: EventLoop, calls: int = 5_000, in_flight: int = 64) -> float:
    """The stand-in's own CPU per 20-entry call (verified, judged, counted, answered), with
    ``in_flight`` calls kept open by the crt path, as a bridge keeps them."""
    session = signed_session()
    body = orjson.dumps({"Entries": [e.wire() for e in _entries(20)]})
    with FakeEventBridgeProcess(store="counts", event_loop=event_loop) as fake:
        assert fake.pid is not None
        client = session.client("events", endpoint_url=fake.url)
        transport = CrtTransport(client, session.get_credentials(), "PutPartnerEvents", in_flight)
        sent = answered = 0
        started = 0.0
        while answered < calls + in_flight:  # the first window warms the connections up
            while sent < calls + in_flight and transport.in_flight < in_flight:
                transport.send(None, body)
                sent += 1
            transport.flush()
            for _, result, _ in transport.results(timeout=10):
                assert isinstance(result, dict) and not result.get("FailedEntryCount"), result
                answered += 1
                if answered == in_flight:
                    started = cpu_seconds(fake.pid)
        spent = cpu_seconds(fake.pid) - started
        transport.close()
    return spent / calls * 1e6


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.micro")
    choices = ["loop", "publish", "stand-in", "all"]
    parser.add_argument("what", nargs="?", choices=choices, default="all")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    logging.disable(logging.CRITICAL)  # the dead-letter producer has no broker to talk to
    if args.what in ("loop", "all"):
        runs = [loop_us_per_record() for _ in range(args.repeat)]
        print(
            f"main loop: {statistics.median(runs):.1f} us CPU per record "
            f"(runs {', '.join(f'{r:.1f}' for r in runs)})"
        )
    if args.what in ("publish", "all"):
        with FakeEventBridgeProcess(store="counts") as fake:
            runs_by_path: dict[str, list[float]] = {}
            for _ in range(args.repeat):
                for name, value in publish_us_per_call(fake.url).items():
                    runs_by_path.setdefault(name, []).append(value)
        for name, runs in runs_by_path.items():
            print(
                f"{name}: {statistics.median(runs):.0f} us CPU per 20-entry call "
                f"({statistics.median(runs) / 20:.1f} us per entry)"
            )
    if args.what in ("stand-in", "all"):
        by_loop: dict[EventLoop, list[float]] = {loop: [] for loop in EventLoop}
        for _ in range(args.repeat):  # interleaved, so drifting load hits both alike
            for loop, runs in by_loop.items():
                runs.append(stand_in_us_per_call(loop))
        for loop, runs in by_loop.items():
            print(
                f"stand-in on {loop}: {statistics.median(runs):.0f} us CPU per 20-entry call "
                f"(runs {', '.join(f'{r:.0f}' for r in runs)})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
