from __future__ import annotations

import pytest

from kafka_eventbridge.lag import WatermarkAge, admin_config, partition_lag
from kafka_eventbridge.offsets import OffsetTracker


@pytest.mark.parametrize(
    ("committed", "start", "end", "expected"),
    [
        (40, 0, 100, 60),  # from the committed offset
        (None, 10, 100, 90),  # a new group starts at the log start (auto.offset.reset)
        (100, 0, 100, 0),
        (120, 0, 100, 0),  # an end read before a commit landed: never negative
        (40, 0, None, None),  # end unknown: no figure rather than a wrong one
        (None, None, 100, None),
    ],
)
def test_partition_lag(
    committed: int | None, start: int | None, end: int | None, expected: int | None
) -> None:
    assert partition_lag(committed, start, end) == expected


def test_admin_config_keeps_security_and_drops_consumer_properties() -> None:
    config = admin_config(
        {
            "bootstrap.servers": "b:9092",
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512",
            "group.id": "g",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": "false",
            "fetch.max.bytes": "1048576",
        }
    )
    assert config == {
        "bootstrap.servers": "b:9092",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
    }


def test_age_runs_while_a_watermark_stays_and_restarts_when_it_moves() -> None:
    ages = WatermarkAge()
    a, b = ("orders", 0), ("orders", 1)
    assert ages.oldest(0.0, [(a, 5), (b, 9)]) == 0.0
    assert ages.oldest(3.0, [(a, 5), (b, 12)]) == 3.0  # a is stuck at 5; b moved
    assert ages.oldest(4.0, [(a, 6), (b, 12)]) == 1.0  # a moved; b held since 3.0
    assert ages.oldest(9.0, []) == 0.0  # nothing unresolved


def test_age_is_sampled_at_its_period() -> None:
    ages = WatermarkAge(period=0.5)
    assert ages.due(10.0)
    assert not ages.due(10.2)
    assert ages.due(10.5)


def test_age_counts_only_partitions_with_unresolved_records() -> None:
    tracker = OffsetTracker()
    busy, idle = ("orders", 0), ("orders", 1)
    tracker.assign([busy, idle])
    epoch = tracker.add(busy, 0, 10)
    assert epoch is not None
    idle_epoch = tracker.add(idle, 0, 10)
    assert idle_epoch is not None
    tracker.resolve(idle, 0, idle_epoch)  # nothing left on idle: its watermark stands still
    ages = WatermarkAge()
    assert ages.of_tracker(0.0, tracker) == 0.0
    assert ages.of_tracker(30.0, tracker) == 30.0  # busy's record 0 still unresolved
    tracker.resolve(busy, 0, epoch)
    assert ages.of_tracker(40.0, tracker) == 0.0
