"""Produce→accepted latency at a steady rate, with the bridge's default settings.

A producer (linger 5 ms, as a latency-minded application would set it) writes records at a
fixed rate into a 12-partition topic that a running bridge consumes. Each entry's Time is the
record's CreateTime (the bridge's default mapping), and the stand-in stamps when it accepted
it; the latency is the difference, both from this machine's wall clock, at millisecond
resolution. The stand-in keeps only those two times an entry (store mode ``times``): keeping
whole entries cost it ~3x the CPU and, at 24k entries/s, made it the bottleneck (its garbage
collector walking every dict it kept). Before the measured bridge starts, a warm-up bridge of
the same group carries the same load on the same topic (see ``BROKER_WARM_UP_SECONDS``); the
measured one starts where it committed. Its first seconds (joining the group, first fetches
and connections, the backlog they leave) are reported apart as warm-up; the percentiles are
of the steady state after them.
"""

from __future__ import annotations

import logging
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from benchmarks.bridge import BridgeProcess, BridgeRunError, StandInStats, bridge_env
from benchmarks.workload import PARTITIONS, record_value, unique
from kafka_eventbridge_testing.brokers import KafkaBroker
from kafka_eventbridge_testing.fake_eventbridge import FakeEventBridgeClient

WARM_UP_SECONDS = 5.0
# Before the measured bridge starts, another bridge of the same group carries the same load on
# the same topic for this long. A broker fresh to a topic and group spent 0.9-1.4 cores on
# them for their first 5-10 s (the JVM compiling its produce and fetch paths; new segments
# and group state), which on this 2-core machine starved everything else: records waited
# 0.3-0.8 s in Kafka through the first 8 s of a run, whether or not a scratch topic had
# warmed the broker before. A production broker is warm, and has machines of its own.
BROKER_WARM_UP_SECONDS = 10.0
_LOG = logging.getLogger("benchmarks.librdkafka")


def _ready(port: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def _wait_ready(bridge: BridgeProcess, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not bridge.running:
            raise BridgeRunError(f"bridge exited before it was ready:\n{bridge.tail()}")
        if _ready(bridge.env["BRIDGE_HTTP_PORT"]):
            return
        time.sleep(0.2)
    raise BridgeRunError("bridge not ready within 60s")


def produce_paced(broker: KafkaBroker, topic: str, rate: float, seconds: float) -> int:
    """Produce ``rate`` records a second for ``seconds``; returns how many."""
    producer = Producer(broker.client_config({"linger.ms": 5, "logger": _LOG}))
    sent = 0
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        due = int(rate * elapsed)
        while sent < due:
            producer.produce(topic, record_value(sent), partition=sent % PARTITIONS)
            sent += 1
        producer.poll(0)
        time.sleep(0.002)
    if producer.flush(30):
        raise RuntimeError("latency producer could not deliver everything")
    return sent


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted ``values``."""
    if not values:
        return float("nan")
    rank = min(len(values) - 1, max(0, round(q / 100 * len(values) + 0.5) - 1))
    return values[rank]


def _latencies(
    control: FakeEventBridgeClient, since: int, not_before: float
) -> tuple[list[float], list[float]]:
    """Sorted latencies of entries produced before ``not_before`` (warm-up) and after."""
    warm_up: list[float] = []
    steady: list[float] = []
    while True:
        entries, following = control.entries_page(since, 50_000)
        for received in entries:
            produced = float(received.entry["Time"])
            bucket = steady if produced >= not_before else warm_up
            bucket.append(received.received_at - produced)
        if not entries or following <= since + len(entries):
            break
        since += len(entries)
    return sorted(warm_up), sorted(steady)


def run_latency(
    broker: KafkaBroker,
    stand_in_url: str,
    *,
    rate: float,
    seconds: float,
    overrides: dict[str, str],
    log: Path,
) -> dict[str, Any]:
    """Latency percentiles (ms) of entries produced after the warm-up."""
    control = FakeEventBridgeClient(stand_in_url, timeout=60)
    topic = unique("bench-latency")
    broker.create_topic(topic, PARTITIONS)
    env = bridge_env(broker, topic, stand_in_url, overrides)
    warming = BridgeProcess(env, log.with_name(f"{log.stem}-warm-up{log.suffix}")).start()
    warm_up_stats = StandInStats(stand_in_url)
    try:
        _wait_ready(warming)
        control.clear()
        warm_up_sent = produce_paced(broker, topic, rate, BROKER_WARM_UP_SECONDS)
        # Caught up before it leaves, so the measured bridge starts with nothing behind it.
        deadline = time.monotonic() + 60
        while warm_up_stats.accepted() < warm_up_sent and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        warm_up_code = warming.stop()
        warm_up_stats.close()
    if warm_up_code != 0:
        raise BridgeRunError(f"the warm-up bridge exited with {warm_up_code}:\n{warming.tail()}")
    control.clear()
    since = control.entries_page(0, 0)[1]
    # The measured bridge takes over the warm-up's group where it committed: a running
    # topic and group, with a bridge (re)started on them.
    bridge = BridgeProcess(env, log).start()
    stats = StandInStats(stand_in_url)
    try:
        _wait_ready(bridge)
        # Give the consumer its first fetch before the clock starts.
        time.sleep(1.0)
        not_before = time.time() + WARM_UP_SECONDS
        sent = produce_paced(broker, topic, rate, seconds)
        deadline = time.monotonic() + 60
        while stats.accepted() < sent and time.monotonic() < deadline:
            time.sleep(0.1)
        accepted = stats.accepted()
    finally:
        code = bridge.stop()
        stats.close()
    warm_up, latencies = _latencies(control, since, not_before)
    control.clear()
    return {
        "rate_per_s": round(rate, 1),
        "seconds": seconds,
        "produced": sent,
        "accepted": accepted,
        "measured": len(latencies),
        "p50_ms": round(percentile(latencies, 50) * 1000, 1),
        "p90_ms": round(percentile(latencies, 90) * 1000, 1),
        "p99_ms": round(percentile(latencies, 99) * 1000, 1),
        "max_ms": round(latencies[-1] * 1000, 1) if latencies else None,
        "warm_up_seconds": WARM_UP_SECONDS,
        "warm_up_p99_ms": round(percentile(warm_up, 99) * 1000, 1),
        "warm_up_max_ms": round(warm_up[-1] * 1000, 1) if warm_up else None,
        "exit_code": code,
    }
