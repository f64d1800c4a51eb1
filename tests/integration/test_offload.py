"""Large payloads to S3 (claim check), against the stand-in's S3 (it checks every signature)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import orjson
import pytest

from kafka_eventbridge.offload import MARKER
from kafka_eventbridge_testing.brokers import KafkaBroker
from kafka_eventbridge_testing.fake_eventbridge import FakeEventBridge
from tests.integration.conftest import BridgeFactory
from tests.integration.support import committed, produce, wait_until

pytestmark = pytest.mark.integration


def offload_env(fake: FakeEventBridge, bucket: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": "",
        "AWS_ENDPOINT_URL_EVENTBRIDGE": fake.url,
        "AWS_ENDPOINT_URL_S3": fake.url,
        "BRIDGE_OFFLOAD_S3_BUCKET": bucket,
        "BRIDGE_EVENTBRIDGE_PARTNER_MAX_BYTES": "4096",
    }


def test_oversized_details_go_to_s3_and_entries_carry_the_reference(
    kafka_broker: KafkaBroker,
    fake: FakeEventBridge,
    topic: Callable[..., str],
    group: str,
    dlq: str,
    bridge: BridgeFactory,
) -> None:
    fake.create_bucket("large-events")
    name = topic(partitions=1)
    small = orjson.dumps({"id": "small", "type": "order.created"})
    large = orjson.dumps({"id": "large", "type": "order.created", "blob": "é" * 20_000})
    produce(kafka_broker, name, [small, large])
    process = bridge(name, group, fake.url, **offload_env(fake, "large-events"))
    wait_until(lambda: fake.stats().entries_accepted >= 2, 60, "both entries accepted")
    wait_until(lambda: committed(kafka_broker, group, name, 1)[0] == 2, 30, "commit")
    assert process.terminate() == 0

    details = {e.detail.get("id", "ref"): e.detail for e in fake.entries()}
    assert details["small"] == orjson.loads(small)  # within the limit: untouched
    reference = details["ref"][MARKER]
    stored = fake.s3_object("large-events", reference["key"])
    assert stored is not None
    assert orjson.loads(stored) == orjson.loads(large)
    assert reference["size"] == len(stored)
    assert reference["sha256"] == hashlib.sha256(stored).hexdigest()
    assert reference["uri"] == f"s3://large-events/{reference['key']}"


def test_a_missing_bucket_is_fatal_not_a_dead_letter(
    kafka_broker: KafkaBroker,
    fake: FakeEventBridge,
    topic: Callable[..., str],
    group: str,
    dlq: str,
    bridge: BridgeFactory,
) -> None:
    name = topic(partitions=1)
    produce(kafka_broker, name, [orjson.dumps({"id": "x", "type": "t", "blob": "b" * 20_000})])
    process = bridge(name, group, fake.url, **offload_env(fake, "no-such-bucket"))
    assert process.wait(60) == 1
    errors = [line for line in process.log_lines() if line.get("level") == "error"]
    assert len(errors) == 1 and "NoSuchBucket" in errors[0]["message"]
    assert committed(kafka_broker, group, name, 1)[0] == 0
    assert fake.stats().entries_accepted == 0
    assert fake.stats().calls_by_outcome.get("InvalidSignatureException") is None
