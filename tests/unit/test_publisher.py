"""The publisher's direct call path against botocore's own, on the wire (the stand-in)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, cast

import boto3
import orjson
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from kafka_eventbridge.batching import Batch, Pending
from kafka_eventbridge.classify import classify_exception
from kafka_eventbridge.mapping import Entry
from kafka_eventbridge.publisher import DirectPut, Publisher
from kafka_eventbridge.records import SourceRecord
from kafka_eventbridge.settings import Api
from kafka_eventbridge_testing.fake_eventbridge import FakeEventBridge, Faults

SOURCE = "aws.partner/example.com/orders"


@pytest.fixture
def fake() -> Iterator[FakeEventBridge]:
    with FakeEventBridge() as server:
        yield server


def events_client(url: str) -> Any:
    session = boto3.session.Session(
        aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1"
    )
    config = Config(retries={"total_max_attempts": 1}, parameter_validation=False)
    return session.client("events", endpoint_url=url, config=config)


def entries() -> list[Entry]:
    with_ms = datetime(2026, 1, 1, 12, 0, 0, 123_000, tzinfo=UTC)
    whole = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    return [
        Entry(SOURCE, "order.created", '{"id": 1, "é": "ü"}', ["arn:a"], with_ms, None, None, 10),
        Entry(SOURCE, "order.updated", '{"id": 2}', None, whole, None, None, 10),
        Entry(SOURCE, "order.deleted", '{"id": 3}', None, None, None, None, 10),
    ]


def sent_body(client: Any, call: Any) -> dict[str, Any]:
    """The JSON body a call puts on the wire, captured just before sending."""
    bodies: list[bytes] = []

    def capture(request: Any, **_: Any) -> None:
        bodies.append(request.body)

    client.meta.events.register("before-send.eventbridge.PutPartnerEvents", capture)
    call()
    client.meta.events.unregister("before-send.eventbridge.PutPartnerEvents", capture)
    parsed: dict[str, Any] = orjson.loads(bodies[-1])
    return parsed


def test_direct_path_sends_the_body_botocore_would(fake: FakeEventBridge) -> None:
    client = events_client(fake.url)
    direct = DirectPut(client, "PutPartnerEvents")
    direct(entries())  # the first call captures botocore's request template
    by_botocore = sent_body(
        client, lambda: client.put_partner_events(Entries=[e.request() for e in entries()])
    )
    assert orjson.loads(orjson.dumps({"Entries": [e.wire() for e in entries()]})) == by_botocore
    assert fake.stats().entries_accepted == 6
    assert {r.entry["DetailType"] for r in fake.entries()} == {
        "order.created",
        "order.updated",
        "order.deleted",
    }


@pytest.mark.parametrize(
    ("faults", "code"),
    [
        (Faults(deny=True), "AccessDeniedException"),
        (
            Faults(
                call_error_rate=1.0, call_error_status=400, call_error_code="ThrottlingException"
            ),
            "ThrottlingException",
        ),
        (Faults(call_error_rate=1.0), "InternalFailure"),
    ],
)
def test_direct_path_raises_what_botocore_raises(
    fake: FakeEventBridge, faults: Faults, code: str
) -> None:
    client = events_client(fake.url)
    direct = DirectPut(client, "PutPartnerEvents")
    fake.set_faults(faults)
    with pytest.raises(ClientError) as by_direct:
        direct(entries())
    with pytest.raises(ClientError) as by_botocore:
        client.put_partner_events(Entries=[e.request() for e in entries()])
    assert type(by_direct.value) is type(by_botocore.value)
    assert by_direct.value.response["Error"]["Code"] == code
    direct_outcome = classify_exception([], by_direct.value)
    botocore_outcome = classify_exception([], by_botocore.value)
    assert (direct_outcome.call_error, direct_outcome.fatal is None) == (
        botocore_outcome.call_error,
        botocore_outcome.fatal is None,
    )


def test_publisher_reports_each_entry_outcome(fake: FakeEventBridge) -> None:
    fake.set_faults(Faults(entry_failure_rates={"ThrottlingException": 0.5}, seed=3))
    publisher = Publisher(events_client(fake.url), Api.PARTNER, max_in_flight=2)
    record = SourceRecord("orders", 0, 0, None, None, b"{}", [])
    items = [Pending(entry, record, epoch=1) for entry in entries() * 4]
    publisher.submit(Batch(("", -1), items))
    (completion,) = publisher.completions(timeout=10)
    outcome = completion.outcome
    assert len(outcome.accepted) + len(outcome.retry) == len(items)
    assert outcome.retry and outcome.accepted
    assert {code for _, code in outcome.retry} == {"ThrottlingException"}
    assert fake.stats().entries_accepted == len(outcome.accepted)
    publisher.close()


def test_a_batch_always_comes_back_even_when_classifying_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from kafka_eventbridge import publisher as module

    class Client:
        def put_partner_events(self, **_: Any) -> dict[str, Any]:
            raise RuntimeError("connection reset")

    def broken(*_: Any) -> Any:
        raise ValueError("a classifier bug")

    monkeypatch.setattr(module, "classify_exception", broken)
    publisher = Publisher(cast(Any, Client()), Api.PARTNER, max_in_flight=1)
    record = SourceRecord("orders", 0, 0, None, None, b"{}", [])
    batch = Batch(("orders", 0), [Pending(entries()[0], record, epoch=1)])
    publisher.submit(batch)

    (completion,) = publisher.completions(timeout=10)
    # The slot is free again and the entry is retried, not lost with its thread.
    assert publisher.in_flight == 0
    assert [code for _, code in completion.outcome.retry] == ["InternalError"]
    publisher.close()
