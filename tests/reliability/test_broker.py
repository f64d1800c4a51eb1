"""The Kafka side failing: a broker restart mid-run, a dead-letter topic that is not there.

Both need what only Apache Kafka offers here. The embedded broker (Tansu) keeps everything
in memory, so a restart loses topics, records and offsets, and it always auto-creates topics,
so a missing dead-letter topic would simply appear. On the embedded broker these scenarios
skip with that reason; ``BRIDGE_TEST_KAFKA=apache`` runs them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import orjson
import pytest

from kafka_eventbridge_testing.brokers import (
    BrokerOptions,
    BrokerUnavailableError,
    KafkaBroker,
    create_broker,
)
from kafka_eventbridge_testing.fake_eventbridge import FakeEventBridge, Faults
from tests.integration.conftest import BridgeFactory, Scenario, StartBridge
from tests.integration.support import (
    BridgeProcess,
    assert_one_fatal_line,
    bridge_env,
    produce,
    unique,
    wait_until,
)
from tests.reliability.harness import (
    LoadProducer,
    Results,
    committed_when_ready,
    delivered_ids,
    offsets_sum,
    record_value,
    tally,
    wait_all_committed,
)

pytestmark = pytest.mark.reliability

PARTITIONS = 4


@pytest.mark.timeout(300)
def test_broker_restart_mid_run_loses_nothing(scenario: Scenario, results: Results) -> None:
    broker, fake = scenario.broker, scenario.fake
    if not broker.capabilities.restart_keeps_data:
        pytest.skip(
            f"the {broker.kind} broker loses topics, records and offsets on restart; "
            "run with BRIDGE_TEST_KAFKA=apache"
        )
    fake.set_faults(Faults(latency_ms=10))
    name = scenario.topic(partitions=PARTITIONS)
    started = time.monotonic()
    load = LoadProducer(broker, name, "restart", 20_000, 1_000)
    load.start()
    process = scenario.bridge(name)
    process.wait_ready()
    wait_until(lambda: fake.stats().entries_accepted >= 3_000, 60, "entries flowing")
    down = time.monotonic()
    broker.restart()  # SIGTERM, then the same port and log directory
    outage = time.monotonic() - down
    assert process.running, f"the bridge exited on a broker restart:\n{process.log()[-3000:]}"
    produced = load.finish()
    wait_all_committed(
        scenario, name, PARTITIONS, len(produced), what="every record committed after the restart"
    )
    assert process.terminate() == 0

    figures = results.count(
        "broker restart mid-run", scenario, produced, started, broker_down_s=round(outage, 1)
    )
    assert figures.lost == 0
    assert figures.dead_lettered == 0


# --------------------------------------------------------------------------- dead-letter topic


@pytest.fixture(scope="module")
def strict_broker() -> Iterator[KafkaBroker]:
    """A broker of the session's kind with topic auto-creation off, for this module only."""
    broker = create_broker(options=BrokerOptions(auto_create_topics=False))
    try:
        broker.start()
    except BrokerUnavailableError as exc:
        pytest.skip(f"needs a broker with topic auto-creation off: {exc}")
    yield broker
    broker.stop()


@pytest.fixture
def strict_bridge(strict_broker: KafkaBroker, start_bridge: StartBridge) -> BridgeFactory:
    """Like ``bridge``, against the strict broker."""

    def start(topic: str, group: str, endpoint: str, **extra: str) -> BridgeProcess:
        return start_bridge(bridge_env(strict_broker, topic, group, endpoint, **extra))

    return start


def test_missing_dead_letter_topic_is_fatal_at_start(
    strict_broker: KafkaBroker,
    fake: FakeEventBridge,
    strict_bridge: BridgeFactory,
    results: Results,
) -> None:
    name, group = unique("orders"), unique("group")
    strict_broker.create_topic(name, 3)
    produced = [f"m-{n}" for n in range(300)]
    produce(strict_broker, name, [record_value(i) for i in produced])
    started = time.monotonic()
    process = strict_bridge(name, group, fake.url)

    code = process.wait(60)
    results.report(
        tally(
            "dead-letter topic missing at start",
            strict_broker,
            [],
            delivered_ids(fake),
            seconds=time.monotonic() - started,
            exit_code=code,
            records_produced=len(produced),
            committed=offsets_sum(committed_when_ready(strict_broker, group, name, 3)),
        )
    )
    assert code == 1
    assert offsets_sum(committed_when_ready(strict_broker, group, name, 3)) == 0
    assert fake.stats().entries_accepted == 0  # it stopped before consuming anything
    assert_one_fatal_line(process, "DeadLetterTopicUnavailable", f"{group}.dlq")
    # Asking for the topic's metadata must not have created it behind the operator's back.
    assert strict_broker.partition_count(f"{group}.dlq") is None


@pytest.mark.timeout(240)
def test_dead_letter_topic_deleted_while_running_is_fatal_and_commits_nothing_unresolved(
    strict_broker: KafkaBroker,
    fake: FakeEventBridge,
    strict_bridge: BridgeFactory,
    results: Results,
) -> None:
    name, group = unique("orders"), unique("group")
    strict_broker.create_topic(name, 1)
    strict_broker.create_topic(f"{group}.dlq", 1)
    before = [f"ok-{n}" for n in range(200)]
    produce(strict_broker, name, [record_value(i) for i in before])
    started = time.monotonic()
    # librdkafka fails a dead letter for a vanished topic after message.timeout.ms.
    process = strict_bridge(name, group, fake.url, BRIDGE_KAFKA_MESSAGE_TIMEOUT_MS="15000")
    wait_until(
        lambda: committed_when_ready(strict_broker, group, name, 1)[0] == len(before), 60, "commits"
    )

    strict_broker.delete_topic(f"{group}.dlq")
    # A DetailType over 128 characters: a dead letter, which now has nowhere to go.
    bad = orjson.dumps({"id": "bad", "type": "t" * 200})
    after = [f"late-{n}" for n in range(100)]
    produce(strict_broker, name, [bad, *(record_value(i) for i in after)])
    code = process.wait(120)

    mark = committed_when_ready(strict_broker, group, name, 1)[0]
    everything = [*before, "bad", *after]
    # At-least-once in a fatal stop: every record below the committed offset is resolved;
    # the rest (the undeliverable one and those behind it) is read again after a restart.
    figures = results.report(
        tally(
            "dead-letter topic deleted while running",
            strict_broker,
            everything[:mark],
            delivered_ids(fake),
            seconds=time.monotonic() - started,
            exit_code=code,
            committed=mark,
            records_produced=len(everything),
            unresolved_offset=len(before),
        )
    )
    assert code == 1
    assert mark == len(before), "the commit must stop at the record that could not be resolved"
    assert figures.lost == 0
    assert_one_fatal_line(process, "DeadLetter", f"{group}.dlq")
