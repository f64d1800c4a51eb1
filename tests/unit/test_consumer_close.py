"""Leaving the group is bounded: a librdkafka close that never returns does not hold the exit."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading

import pytest
from confluent_kafka import TopicPartition

from kafka_eventbridge.consumer import KafkaConsumer
from kafka_eventbridge.offsets import PartitionId


class Listener:
    def __init__(self) -> None:
        self.events: list[tuple[str, list[PartitionId]]] = []

    def partitions_assigned(self, partitions: list[PartitionId]) -> None:
        self.events.append(("assigned", partitions))

    def partitions_revoked(self, partitions: list[PartitionId]) -> None:
        self.events.append(("revoked", partitions))

    def partitions_lost(self, partitions: list[PartitionId]) -> None:
        self.events.append(("lost", partitions))


class HangingClose:
    """Stands in for confluent-kafka's consumer, whose close does not return until released."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def close(self) -> None:
        self.entered.set()
        self.release.wait()


class FailingClose:
    def close(self) -> None:
        raise RuntimeError("broker gone")


def consumer(listener: Listener) -> KafkaConsumer:
    made = KafkaConsumer(
        {"bootstrap.servers": "127.0.0.1:9", "group.id": "close-test"},
        ["t"],
        listener,
        lambda _committed, _failed: None,
    )
    made._consumer.close()  # the real one, never connected: what it would leave behind
    return made


def test_a_close_that_never_returns_is_given_up_after_the_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    listener = Listener()
    kafka = consumer(listener)
    hanging = HangingClose()
    kafka._consumer = hanging  # type: ignore[assignment]
    closer = threading.Thread(target=kafka.close, kwargs={"timeout": 0.2})
    try:
        with caplog.at_level(logging.WARNING, logger="kafka_eventbridge.consumer"):
            closer.start()
            closer.join(30)
            assert not closer.is_alive(), "close waited for librdkafka past its timeout"
        assert hanging.entered.is_set()
        assert "did not finish" in caplog.text
        # A revoke that librdkafka delivers later, from the abandoned close, is not handed
        # to a pipeline that has moved on to exiting.
        kafka._revoked(None, [TopicPartition("t", 0)])  # type: ignore[arg-type]
        kafka._assigned(None, [TopicPartition("t", 1)])  # type: ignore[arg-type]
        kafka._lost(None, [TopicPartition("t", 2)])  # type: ignore[arg-type]
        assert listener.events == []
    finally:
        hanging.release.set()


def test_a_close_that_returns_in_time_runs_its_callbacks_and_reports_its_error() -> None:
    listener = Listener()
    kafka = consumer(listener)
    kafka._revoked(None, [TopicPartition("t", 0)])  # type: ignore[arg-type]
    assert listener.events == [("revoked", [("t", 0)])]
    kafka._consumer = FailingClose()  # type: ignore[assignment]
    with pytest.raises(RuntimeError, match="broker gone"):
        kafka.close(timeout=30)


_RUN_WITH_A_CLOSE_GIVEN_UP = """
import atexit, logging, sys
from kafka_eventbridge import app, cli

class Consumer:
    abandoned = {abandoned}

class Bridge:
    def __init__(self, settings, metrics, health):
        self.consumer = Consumer()

    def stop(self):
        pass

    def run(self):
        logging.getLogger("kafka_eventbridge.app").warning("drained, leaving the group")
        return 3

app.Bridge = Bridge
atexit.register(lambda: print("exit handlers ran", flush=True))
cli.main(["run"])
"""


@pytest.mark.parametrize("abandoned", [True, False])
def test_run_skips_the_exit_handlers_only_when_leaving_the_group_was_given_up(
    abandoned: bool,
) -> None:
    """The threads of a close that never returned still use OpenSSL: its exit handler would free
    what they hold. ``run`` then flushes its logs and leaves without exit handlers, with the
    bridge's exit code; otherwise it exits as any program does."""
    environ = {
        **os.environ,
        "BRIDGE_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
        "BRIDGE_KAFKA_TOPICS": "t",
        "BRIDGE_HTTP_HOST": "127.0.0.1",
        "BRIDGE_HTTP_PORT": "0",
    }
    done = subprocess.run(
        [sys.executable, "-c", _RUN_WITH_A_CLOSE_GIVEN_UP.format(abandoned=abandoned)],
        env=environ,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 3, done.stderr
    assert "drained, leaving the group" in done.stderr
    assert ("exit handlers ran" in done.stdout) is not abandoned
