"""Fixtures of the integration suite: a stand-in EventBridge, topics, bridge processes."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from kafka_eventbridge_testing.brokers import KafkaBroker
from kafka_eventbridge_testing.fake_eventbridge import FakeEventBridge
from tests.integration.support import BridgeProcess, bridge_env, committed, unique

pytestmark = pytest.mark.integration


@pytest.fixture
def fake() -> Iterator[FakeEventBridge]:
    """The project's fault-injecting EventBridge stand-in, fresh for each test."""
    with FakeEventBridge() as server:
        yield server


@pytest.fixture
def topic(kafka_broker: KafkaBroker) -> Callable[..., str]:
    """Creates a uniquely named topic (and its dead-letter topic) for one test."""

    def create(name: str = "orders", partitions: int = 3) -> str:
        full = unique(name)
        kafka_broker.create_topic(full, partitions)
        return full

    return create


StartBridge = Callable[[dict[str, str]], BridgeProcess]
BridgeFactory = Callable[..., BridgeProcess]


@pytest.fixture
def start_bridge(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[StartBridge]:
    """Starts ``kafka-eventbridge run`` with an environment; kills any left running at the
    end and shows their logs when the test failed."""
    started: list[BridgeProcess] = []

    def start(env: dict[str, str]) -> BridgeProcess:
        process = BridgeProcess(env, tmp_path / f"bridge-{len(started)}.log").start()
        started.append(process)
        return process

    yield start
    report = getattr(request.node, "rep_call", None)
    failed = report is not None and report.failed
    for process in started:
        if process.running:
            if failed:
                print(f"--- {process.log_path.name}: running at the failure\n{process.snapshot()}")
            process.kill()
    if failed:
        for process in started:
            print(f"--- {process.log_path.name}\n{process.log()[-6000:]}")


@pytest.fixture
def bridge(kafka_broker: KafkaBroker, start_bridge: StartBridge) -> BridgeFactory:
    """Starts a bridge on the session's broker: topic, group and endpoint, plus settings."""

    def start(topic: str, group: str, endpoint: str, **extra: str) -> BridgeProcess:
        return start_bridge(bridge_env(kafka_broker, topic, group, endpoint, **extra))

    return start


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def group() -> str:
    return unique("group")


@pytest.fixture
def dlq(kafka_broker: KafkaBroker, group: str) -> str:
    """The dead-letter topic of ``group`` (default name ``<group>.dlq``), created up front."""
    name = f"{group}.dlq"
    kafka_broker.create_topic(name, 1)
    return name


@dataclass
class Scenario:
    """What one bridge test works with: the broker, the stand-in, its group and topics."""

    broker: KafkaBroker
    fake: FakeEventBridge
    group: str
    dlq: str
    create_topic: Callable[..., str]
    start_bridge: BridgeFactory

    def topic(self, name: str = "orders", partitions: int = 3) -> str:
        return self.create_topic(name, partitions)

    def bridge(self, topic: str, endpoint: str | None = None, **extra: str) -> BridgeProcess:
        """``kafka-eventbridge run`` on ``topic`` in this group, against the stand-in."""
        return self.start_bridge(topic, self.group, endpoint or self.fake.url, **extra)

    def committed(self, topic: str, partitions: int) -> dict[int, int]:
        return committed(self.broker, self.group, topic, partitions)

    def total_committed(self, topic: str, partitions: int) -> int:
        return sum(self.committed(topic, partitions).values())


@pytest.fixture
def scenario(
    kafka_broker: KafkaBroker,
    fake: FakeEventBridge,
    topic: Callable[..., str],
    group: str,
    dlq: str,
    bridge: BridgeFactory,
) -> Scenario:
    return Scenario(kafka_broker, fake, group, dlq, topic, bridge)
