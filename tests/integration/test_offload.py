"""Large payloads to S3 (claim check), against the stand-in's S3 (it checks every signature)."""

from __future__ import annotations

import hashlib

import orjson
import pytest

from kafka_eventbridge.offload import MARKER
from kafka_eventbridge_testing.fake_eventbridge import FakeEventBridge
from tests.integration.conftest import Scenario
from tests.integration.support import assert_one_fatal_line, produce, wait_until

pytestmark = pytest.mark.integration


def offload_env(fake: FakeEventBridge, bucket: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": "",
        "AWS_ENDPOINT_URL_EVENTBRIDGE": fake.url,
        "AWS_ENDPOINT_URL_S3": fake.url,
        "BRIDGE_OFFLOAD_S3_BUCKET": bucket,
        "BRIDGE_EVENTBRIDGE_PARTNER_MAX_BYTES": "4096",
    }


def test_oversized_details_go_to_s3_and_entries_carry_the_reference(scenario: Scenario) -> None:
    fake = scenario.fake
    fake.create_bucket("large-events")
    name = scenario.topic(partitions=1)
    small = orjson.dumps({"id": "small", "type": "order.created"})
    large = orjson.dumps({"id": "large", "type": "order.created", "blob": "é" * 20_000})
    produce(scenario.broker, name, [small, large])
    process = scenario.bridge(name, **offload_env(fake, "large-events"))
    wait_until(lambda: fake.stats().entries_accepted >= 2, 60, "both entries accepted")
    wait_until(lambda: scenario.committed(name, 1)[0] == 2, 30, "commit")
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


def test_a_missing_bucket_is_fatal_not_a_dead_letter(scenario: Scenario) -> None:
    fake = scenario.fake
    name = scenario.topic(partitions=1)
    produce(scenario.broker, name, [orjson.dumps({"id": "x", "type": "t", "blob": "b" * 20_000})])
    process = scenario.bridge(name, **offload_env(fake, "no-such-bucket"))
    assert_one_fatal_line(process, "NoSuchBucket")
    assert scenario.committed(name, 1)[0] == 0
    assert fake.stats().entries_accepted == 0
    assert fake.stats().calls_by_outcome.get("InvalidSignatureException") is None
