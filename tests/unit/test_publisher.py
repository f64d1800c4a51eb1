"""The two publish paths, crt and boto3, on the wire against the signature-checking stand-in:
same entries delivered, same exceptions for the same failures, so the classifier sees no
difference."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from unittest import mock

import boto3
import pytest
from botocore.config import Config
from botocore.credentials import RefreshableCredentials
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from kafka_eventbridge.batching import Batch, Pending
from kafka_eventbridge.classify import call_failure, classify_exception
from kafka_eventbridge.crt import CrtTransport, Endpoint
from kafka_eventbridge.mapping import Entry
from kafka_eventbridge.publisher import Completion, Publisher, make_publisher
from kafka_eventbridge.records import SourceRecord
from kafka_eventbridge.settings import Api, EventBridgeSettings, HttpClient
from kafka_eventbridge_testing.brokers import make_tls_files
from kafka_eventbridge_testing.fake_eventbridge import FakeEventBridge, Faults

SOURCE = "aws.partner/example.com/orders"
PATHS = [HttpClient.CRT, HttpClient.BOTO3]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeEventBridge]:
    with FakeEventBridge() as server:
        for name, value in {
            "AWS_ENDPOINT_URL": server.url,
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_EC2_METADATA_DISABLED": "true",
        }.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("AWS_PROFILE", raising=False)
        yield server


def publisher(http_client: HttpClient, api: Api = Api.PARTNER, **settings: Any) -> Publisher:
    return make_publisher(
        EventBridgeSettings(api=api, http_client=http_client, **settings), max_in_flight=4
    )


def entries(api: Api = Api.PARTNER) -> list[Entry]:
    with_ms = 1767268800123  # 2026-01-01T12:00:00.123Z
    whole = 1767268800000
    source = SOURCE if api is Api.PARTNER else "orders"
    bus = None if api is Api.PARTNER else "default"
    return [
        Entry(source, "order.created", '{"id": 1, "é": "ü"}', ["arn:a"], with_ms, bus, None, 10),
        Entry(source, "order.updated", '{"id": 2}', None, whole, bus, None, 10),
        Entry(source, "order.deleted", '{"id": 3}', None, None, bus, None, 10),
    ]


def batch(items: list[Entry]) -> Batch:
    record = SourceRecord("orders", 0, 0, None, None, b"{}", [])
    return Batch(("", -1), [Pending(entry, record, epoch=1) for entry in items])


def publish(pub: Publisher, items: list[Entry] | None = None) -> Completion:
    pub.submit(batch(items or entries()))
    done: list[Completion] = []
    for _ in range(100):
        done += pub.completions(timeout=0.2)
        if done:
            break
    (completion,) = done
    return completion


def call_error(pub: Publisher) -> Exception:
    """The exception a failed call raised, as the publisher handed it to the classifier."""
    with mock.patch(
        "kafka_eventbridge.publisher.classify_exception", side_effect=classify_exception
    ) as spy:
        completion = publish(pub)
    assert completion.outcome.call_error, completion.outcome
    ((_, error),) = [c.args for c in spy.call_args_list]
    assert isinstance(error, Exception)
    return error


@pytest.mark.parametrize("path", PATHS)
def test_both_paths_deliver_the_same_entries(fake: FakeEventBridge, path: HttpClient) -> None:
    pub = publisher(path)
    completion = publish(pub)
    pub.close()
    assert len(completion.outcome.accepted) == 3 and not completion.outcome.retry
    received = [r.entry for r in fake.entries()]
    assert received == [
        {
            "Source": SOURCE,
            "DetailType": "order.created",
            "Detail": '{"id": 1, "é": "ü"}',
            "Resources": ["arn:a"],
            "Time": 1767268800.123,
        },
        {
            "Source": SOURCE,
            "DetailType": "order.updated",
            "Detail": '{"id": 2}',
            "Time": 1767268800,
        },
        {"Source": SOURCE, "DetailType": "order.deleted", "Detail": '{"id": 3}'},
    ]
    assert fake.stats().auth_schemes == {"AWS4-HMAC-SHA256": 1}


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
        (Faults(call_error_rate=1.0, call_error_status=503, call_error_code="Busy"), "Busy"),
    ],
)
def test_error_answers_raise_what_botocore_raises(
    fake: FakeEventBridge, faults: Faults, code: str
) -> None:
    fake.set_faults(faults)
    by_crt = call_error(publisher(HttpClient.CRT))
    by_boto3 = call_error(publisher(HttpClient.BOTO3))
    assert isinstance(by_crt, ClientError) and isinstance(by_boto3, ClientError)
    assert type(by_crt).__name__ == type(by_boto3).__name__  # the modeled class
    assert by_crt.response["Error"]["Code"] == by_boto3.response["Error"]["Code"] == code
    assert by_crt.response["Error"]["Message"] == by_boto3.response["Error"]["Message"]
    status = by_boto3.response["ResponseMetadata"]["HTTPStatusCode"]
    assert by_crt.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert call_failure(by_crt)[1:] == call_failure(by_boto3)[1:]


def test_connection_failures_raise_botocore_connection_errors(fake: FakeEventBridge) -> None:
    pub = publisher(HttpClient.CRT, read_timeout_seconds=0.5)
    assert publish(pub).outcome.accepted  # a pooled keep-alive connection
    fake.set_faults(Faults(reset_rate=1.0))
    assert isinstance(call_error(pub), ConnectionClosedError)
    fake.set_faults(Faults(latency_ms=3000))
    assert isinstance(call_error(pub), ReadTimeoutError)
    fake.set_faults(Faults())
    fake.outage()
    assert isinstance(call_error(pub), EndpointConnectionError)
    fake.recover()
    assert publish(pub).outcome.accepted
    pub.close()


def test_a_wrong_secret_is_refused_and_fatal(
    fake: FakeEventBridge, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    completion = publish(publisher(HttpClient.CRT))
    assert completion.outcome.call_error == "InvalidSignatureException"
    assert completion.outcome.fatal is not None
    assert fake.stats().entries_accepted == 0


def test_clock_skew_is_learned_from_date_and_the_call_signed_again(fake: FakeEventBridge) -> None:
    fake.set_faults(Faults(clock_skew_seconds=3600))
    pub = publisher(HttpClient.CRT)
    assert len(publish(pub).outcome.accepted) == 3
    assert len(publish(pub).outcome.accepted) == 3  # the offset is kept: no second refusal
    assert fake.stats().calls_by_outcome == {"InvalidSignatureException": 1, "ok": 2}
    pub.close()


def test_a_global_endpoint_is_signed_with_sigv4a(fake: FakeEventBridge) -> None:
    pub = publisher(HttpClient.CRT, Api.EVENTS, endpoint_id="abcde.veo")
    assert len(publish(pub, entries(Api.EVENTS)).outcome.accepted) == 3
    stats = fake.stats()
    assert stats.auth_schemes == {"AWS4-ECDSA-P256-SHA256": 1}
    assert stats.endpoint_ids == {"abcde.veo": 1}


def test_credentials_are_refreshed_through_botocore(fake: FakeEventBridge) -> None:
    """A delegate provider asks botocore for every signature; botocore refreshes credentials
    close to expiry (IRSA, roles), and the next call is signed with the new key."""
    current = {"key-1": "secret-1"}
    refreshed = []

    def refresh() -> dict[str, str]:
        ((key, secret),) = current.items()
        refreshed.append(key)
        soon = datetime.now(UTC) + timedelta(minutes=5)  # inside botocore's refresh window
        return {
            "access_key": key,
            "secret_key": secret,
            "token": "",
            "expiry_time": soon.isoformat(),
        }

    credentials = RefreshableCredentials.create_from_metadata(refresh(), refresh, "test")
    client = boto3.session.Session().client(
        "events", region_name="us-east-1", config=Config(read_timeout=5)
    )
    transport = CrtTransport(client, credentials, "PutPartnerEvents", 2)
    pub = Publisher(client, Api.PARTNER, 2, transport=transport)
    fake.set_credentials(current)
    assert publish(pub).outcome.accepted
    assert transport.connections == 1  # kept alive for the next call
    current = {"key-2": "secret-2"}  # rotated: key-1 is revoked
    fake.set_credentials(current)
    assert publish(pub).outcome.accepted
    assert transport.connections == 1  # kept alive for the next call
    assert {"key-1", "key-2"} <= set(refreshed)
    assert fake.stats().entries_accepted == 6
    pub.close()


@pytest.mark.parametrize("path", PATHS)
def test_publisher_reports_each_entry_outcome(fake: FakeEventBridge, path: HttpClient) -> None:
    fake.set_faults(Faults(entry_failure_rates={"ThrottlingException": 0.5}, seed=3))
    pub = publisher(path)
    outcome = publish(pub, entries() * 4).outcome
    assert len(outcome.accepted) + len(outcome.retry) == 12
    assert outcome.retry and outcome.accepted
    assert {code for _, code in outcome.retry} == {"ThrottlingException"}
    assert fake.stats().entries_accepted == len(outcome.accepted)
    pub.close()


@pytest.mark.parametrize("path", PATHS)
def test_https_with_the_ca_bundle_of_aws_ca_bundle(
    fake: FakeEventBridge, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: HttpClient
) -> None:
    """The default endpoint is HTTPS: TLS to the stand-in, trusting only AWS_CA_BUNDLE's CA."""
    files = make_tls_files(tmp_path, hosts=("127.0.0.1",))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(files.broker)
    with FakeEventBridge(tls=context) as server:
        assert server.url.startswith("https://127.0.0.1:")
        monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
        monkeypatch.setenv("AWS_CA_BUNDLE", str(files.ca))
        pub = publisher(path)
        assert len(publish(pub).outcome.accepted) == 3
        pub.close()
        monkeypatch.delenv("AWS_CA_BUNDLE")  # the system's trust store knows no such CA
        pub = publisher(path, connect_timeout_seconds=1.0)
        refused = publish(pub).outcome
        assert refused.call_error and len(refused.retry) == 3  # retried, as botocore's SSLError
        pub.close()
        assert server.stats().entries_accepted == 3


def test_endpoint_comes_from_botocore_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_EVENTBRIDGE"):
        monkeypatch.delenv(name, raising=False)
    session = boto3.session.Session(region_name="eu-west-1")
    plain = Endpoint.of(session.client("events"))
    assert plain == Endpoint("https://events.eu-west-1.amazonaws.com", "eu-west-1")
    fips = session.client("events", config=Config(use_fips_endpoint=True))
    assert Endpoint.of(fips).url == "https://events-fips.eu-west-1.amazonaws.com"
    dual = session.client("events", config=Config(use_dualstack_endpoint=True))
    assert Endpoint.of(dual).url == "https://events.eu-west-1.api.aws"
    monkeypatch.setenv("AWS_ENDPOINT_URL_EVENTBRIDGE", "http://127.0.0.1:4010")
    assert Endpoint.of(session.client("events")).url == "http://127.0.0.1:4010"
    assert Endpoint.of(session.client("events"), "abcde.veo") == Endpoint(
        "http://127.0.0.1:4010", "*", sigv4a=True
    )
    monkeypatch.delenv("AWS_ENDPOINT_URL_EVENTBRIDGE")
    assert Endpoint.of(session.client("events"), "abcde.veo").url == (
        "https://abcde.veo.endpoint.events.amazonaws.com"
    )


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
