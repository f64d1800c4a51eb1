"""Large payloads to S3 (claim check) against moto's S3 server."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator

import orjson
import pytest

from kafka_eventbridge.offload import MARKER
from kafka_eventbridge_testing.brokers import KafkaBroker
from kafka_eventbridge_testing.fake_eventbridge import FakeEventBridge
from kafka_eventbridge_testing.moto import client, moto_server
from tests.integration.conftest import BridgeFactory
from tests.integration.support import committed, produce, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def s3_url() -> Iterator[str]:
    with moto_server() as url:
        yield url


def offload_env(fake: FakeEventBridge, s3_url: str, bucket: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": "",
        "AWS_ENDPOINT_URL_EVENTBRIDGE": fake.url,
        "AWS_ENDPOINT_URL_S3": s3_url,
        "BRIDGE_OFFLOAD_S3_BUCKET": bucket,
        "BRIDGE_EVENTBRIDGE_PARTNER_MAX_BYTES": "4096",
    }


def test_oversized_details_go_to_s3_and_entries_carry_the_reference(
    kafka_broker: KafkaBroker,
    fake: FakeEventBridge,
    s3_url: str,
    topic: Callable[..., str],
    group: str,
    dlq: str,
    bridge: BridgeFactory,
) -> None:
    s3 = client("s3", s3_url)
    s3.create_bucket(Bucket="large-events")
    name = topic(partitions=1)
    small = orjson.dumps({"id": "small", "type": "order.created"})
    large = orjson.dumps({"id": "large", "type": "order.created", "blob": "é" * 20_000})
    produce(kafka_broker, name, [small, large])
    process = bridge(name, group, fake.url, **offload_env(fake, s3_url, "large-events"))
    wait_until(lambda: fake.stats().entries_accepted >= 2, 60, "both entries accepted")
    wait_until(lambda: committed(kafka_broker, group, name, 1)[0] == 2, 30, "commit")
    assert process.terminate() == 0

    details = {e.detail.get("id", "ref"): e.detail for e in fake.entries()}
    assert details["small"] == orjson.loads(small)  # within the limit: untouched
    reference = details["ref"][MARKER]
    stored = s3.get_object(Bucket="large-events", Key=reference["key"])["Body"].read()
    assert orjson.loads(stored) == orjson.loads(large)
    assert reference["size"] == len(stored)
    assert reference["sha256"] == hashlib.sha256(stored).hexdigest()
    assert reference["uri"] == f"s3://large-events/{reference['key']}"


def test_a_missing_bucket_is_fatal_not_a_dead_letter(
    kafka_broker: KafkaBroker,
    fake: FakeEventBridge,
    s3_url: str,
    topic: Callable[..., str],
    group: str,
    dlq: str,
    bridge: BridgeFactory,
) -> None:
    name = topic(partitions=1)
    produce(kafka_broker, name, [orjson.dumps({"id": "x", "type": "t", "blob": "b" * 20_000})])
    process = bridge(name, group, fake.url, **offload_env(fake, s3_url, "no-such-bucket"))
    assert process.wait(60) == 1
    errors = [line for line in process.log_lines() if line.get("level") == "error"]
    assert len(errors) == 1 and "NoSuchBucket" in errors[0]["message"]
    assert committed(kafka_broker, group, name, 1)[0] == 0
    assert fake.stats().entries_accepted == 0
