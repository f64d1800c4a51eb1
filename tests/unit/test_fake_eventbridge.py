"""The fault-injecting EventBridge stand-in, exercised by a real boto3 client over HTTP.

What matters is what botocore makes of each answer, since that is what the bridge sees: the
error code in ``ClientError``, the exception class of a dropped or refused connection.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from unittest import mock

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    ParamValidationError,
)

from kafka_eventbridge_testing.fake_eventbridge import (
    FAIL_MARKER,
    EventLoop,
    FakeEventBridge,
    FakeEventBridgeClient,
    FakeEventBridgeProcess,
    Faults,
    StoreMode,
    _Connection,
    signed_session,
)

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_events.type_defs import (
        PutEventsRequestEntryTypeDef,
        PutPartnerEventsRequestEntryTypeDef,
    )

SOURCE = "aws.partner/acme.com/orders"


@pytest.fixture(scope="module")
def session() -> boto3.session.Session:
    return signed_session()


def make_client(
    session: boto3.session.Session, url: str, *, parameter_validation: bool = True
) -> EventBridgeClient:
    # One attempt: the test sees each answer itself, not botocore's retries of it.
    config = Config(
        retries={"total_max_attempts": 1},
        connect_timeout=2,
        read_timeout=10,
        parameter_validation=parameter_validation,
    )
    client: EventBridgeClient = session.client("events", endpoint_url=url, config=config)
    return client


@pytest.fixture
def fake() -> Iterator[FakeEventBridge]:
    with FakeEventBridge() as server:
        yield server


@pytest.fixture
def client(session: boto3.session.Session, fake: FakeEventBridge) -> EventBridgeClient:
    return make_client(session, fake.url)


def partner_entry(detail: object = None, **fields: Any) -> PutPartnerEventsRequestEntryTypeDef:
    entry: dict[str, Any] = {
        "Source": SOURCE,
        "DetailType": "order.created",
        "Detail": json.dumps({"id": 1} if detail is None else detail),
    }
    return entry | fields  # type: ignore[return-value]


def events_entry() -> PutEventsRequestEntryTypeDef:
    return {"Source": "orders", "DetailType": "order.created", "Detail": '{"id": 1}'}


def error_code(error: pytest.ExceptionInfo[ClientError]) -> str:
    return str(error.value.response["Error"]["Code"])


def control(url: str, method: str, path: str, body: object = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{url}/_control/{path}", data=data, method=method)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


# ----------------------------------------------------------------------------- accepted


def test_accepted_partner_entries_are_stored_with_event_ids(
    fake: FakeEventBridge, client: EventBridgeClient
) -> None:
    entries = [partner_entry({"n": n}, Resources=["arn:x"]) for n in range(20)]
    response = client.put_partner_events(Entries=entries)

    assert response["FailedEntryCount"] == 0
    event_ids = [result["EventId"] for result in response["Entries"]]
    assert len(set(event_ids)) == 20
    stored = fake.entries()
    assert [e.event_id for e in stored] == event_ids
    assert [e.detail for e in stored] == [{"n": n} for n in range(20)]
    assert {(e.api, e.event_bus) for e in stored} == {("PutPartnerEvents", SOURCE)}
    assert stored[0].entry["Resources"] == ["arn:x"]
    assert fake.stats().entries_accepted == 20


def test_put_events_records_bus_and_time_as_epoch_seconds(
    fake: FakeEventBridge, client: EventBridgeClient
) -> None:
    custom: PutEventsRequestEntryTypeDef = {
        "Source": "my.app",
        "DetailType": "t",
        "Detail": "{}",
        "EventBusName": "orders-bus",
        "Time": 1767225600.5,  # type: ignore[typeddict-item]  # botocore takes numbers too
    }
    default: PutEventsRequestEntryTypeDef = {"Source": "my.app", "DetailType": "t", "Detail": "{}"}

    client.put_events(Entries=[custom, default])

    first, second = fake.entries()
    assert (first.event_bus, second.event_bus) == ("orders-bus", "default")
    assert first.entry["Time"] == 1767225600.5
    assert "Time" not in second.entry


def test_entries_since_continues_after_the_last_seen(
    fake: FakeEventBridge, client: EventBridgeClient
) -> None:
    client.put_partner_events(Entries=[partner_entry({"n": n}) for n in range(3)])
    seen = fake.entries()
    client.put_partner_events(Entries=[partner_entry({"n": 3})])

    assert [e.detail["n"] for e in fake.entries(since=seen[-1].seq + 1)] == [3]


# ----------------------------------------------------------------------------- entry failures


def test_invalid_entries_fail_individually_in_request_order(
    session: boto3.session.Session,
) -> None:
    with FakeEventBridge(max_entry_bytes=1000, max_request_bytes=10_000) as fake:
        client = make_client(session, fake.url)
        response = client.put_partner_events(
            Entries=[
                partner_entry(),
                partner_entry(Detail="[1, 2]"),
                partner_entry(Detail="{not json"),
                partner_entry(DetailType="x" * 129),
                partner_entry(Source="acme.orders"),
                partner_entry({"pad": "x" * 1000}),
                partner_entry(Resources=["r" * 2049]),
                partner_entry(),
            ]
        )

    codes = [result.get("ErrorCode") for result in response["Entries"]]
    assert codes == [
        None,
        "MalformedDetail",
        "MalformedDetail",
        "InvalidArgument",
        "InvalidArgument",
        "InvalidArgument",
        "InvalidArgument",
        None,
    ]
    assert response["FailedEntryCount"] == 6
    assert fake.stats().entries_failed == {"MalformedDetail": 2, "InvalidArgument": 4}
    assert fake.stats().calls_by_outcome == {"partial": 1}


def test_entry_size_counts_time_and_utf8_bytes(session: boto3.session.Session) -> None:
    entry = partner_entry(Detail='{"k": "é"}')  # 10 characters, 11 bytes
    size = len(SOURCE) + len("order.created") + 11

    def first_error(max_entry_bytes: int, entry: PutPartnerEventsRequestEntryTypeDef) -> str | None:
        with FakeEventBridge(max_entry_bytes=max_entry_bytes, max_request_bytes=10_000) as fake:
            response = make_client(session, fake.url).put_partner_events(Entries=[entry])
        return response["Entries"][0].get("ErrorCode")

    assert first_error(size, entry) is None
    assert first_error(size - 1, entry) == "InvalidArgument"
    assert first_error(size + 13, partner_entry(Detail='{"k": "é"}', Time=1767225600)) == (
        "InvalidArgument"
    )


def test_request_over_the_total_size_limit_fails_whole(session: boto3.session.Session) -> None:
    with FakeEventBridge(max_entry_bytes=500, max_request_bytes=1000) as fake:
        client = make_client(session, fake.url)
        with pytest.raises(ClientError) as error:
            client.put_partner_events(Entries=[partner_entry({"pad": "x" * 300})] * 5)

    assert error_code(error) == "ValidationException"


def test_marker_fails_the_entry_permanently(
    fake: FakeEventBridge, client: EventBridgeClient
) -> None:
    entries = [partner_entry({FAIL_MARKER: "MalformedDetail"}), partner_entry()]
    for _ in range(3):
        response = client.put_partner_events(Entries=entries)
        assert [r.get("ErrorCode") for r in response["Entries"]] == ["MalformedDetail", None]

    assert fake.stats().entries_failed == {"MalformedDetail": 3}
    assert fake.stats().entries_accepted == 3


def test_seeded_throttling_rate_is_roughly_right_and_repeatable(
    session: boto3.session.Session,
) -> None:
    def failures(seed: int) -> list[bool]:
        faults = Faults(entry_failure_rates={"ThrottlingException": 0.3}, seed=seed)
        with FakeEventBridge(faults) as fake:
            client = make_client(session, fake.url)
            results = [
                "ErrorCode" in r
                for _ in range(50)
                for r in client.put_partner_events(Entries=[partner_entry()] * 20)["Entries"]
            ]
            assert fake.stats().entries_failed == {"ThrottlingException": sum(results)}
            return results

    first = failures(seed=7)
    assert 0.25 < sum(first) / len(first) < 0.35
    assert failures(seed=7) == first
    assert failures(seed=8) != first


def test_several_codes_share_one_draw(session: boto3.session.Session) -> None:
    rates = {"ThrottlingException": 0.5, "InternalFailure": 0.5}
    with FakeEventBridge(Faults(entry_failure_rates=rates)) as fake:
        client = make_client(session, fake.url)
        response = client.put_partner_events(Entries=[partner_entry()] * 20)

    assert response["FailedEntryCount"] == 20
    assert set(fake.stats().entries_failed) == {"ThrottlingException", "InternalFailure"}


# ----------------------------------------------------------------------------- call failures


@pytest.mark.parametrize(
    ("status", "code"), [(500, "InternalFailure"), (400, "ThrottlingException")]
)
def test_call_errors_surface_as_client_error_with_the_code(
    fake: FakeEventBridge, client: EventBridgeClient, status: int, code: str
) -> None:
    fake.set_faults(Faults(call_error_rate=1.0, call_error_status=status, call_error_code=code))

    with pytest.raises(ClientError) as error:
        client.put_partner_events(Entries=[partner_entry()])

    assert error_code(error) == code
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert fake.stats().calls_by_outcome == {code: 1}
    assert fake.entries() == []


def test_deny_refuses_every_call(fake: FakeEventBridge, client: EventBridgeClient) -> None:
    fake.set_faults(Faults(deny=True))

    with pytest.raises(ClientError) as put:
        client.put_events(Entries=[{"Source": "a", "DetailType": "t", "Detail": "{}"}])
    with pytest.raises(ClientError) as describe:
        client.describe_event_bus(Name="default")
    fake.update_faults(deny_code="OperationDisabledException")
    with pytest.raises(ClientError) as disabled:
        client.put_partner_events(Entries=[partner_entry()])

    assert error_code(put) == error_code(describe) == "AccessDeniedException"
    assert error_code(disabled) == "OperationDisabledException"


def test_resets_surface_as_connection_closed(
    fake: FakeEventBridge, client: EventBridgeClient
) -> None:
    fake.set_faults(Faults(reset_rate=1.0))
    with pytest.raises(ConnectionClosedError):
        client.put_partner_events(Entries=[partner_entry()])

    fake.set_faults(Faults())
    assert client.put_partner_events(Entries=[partner_entry()])["FailedEntryCount"] == 0
    assert fake.stats().calls_by_outcome == {"reset": 1, "ok": 1}


def test_outage_refuses_connections_and_recover_serves_on_the_same_port(
    fake: FakeEventBridge, client: EventBridgeClient
) -> None:
    client.put_partner_events(Entries=[partner_entry()])  # a pooled keep-alive connection
    port = fake.port

    fake.outage()
    assert fake.is_down
    with pytest.raises(EndpointConnectionError):
        client.put_partner_events(Entries=[partner_entry()])
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()

    fake.recover()
    assert fake.port == port
    assert client.put_partner_events(Entries=[partner_entry()])["FailedEntryCount"] == 0


def test_a_connection_made_after_an_outage_began_is_dropped(fake: FakeEventBridge) -> None:
    # The race of a 30 s outage test in CI: a connection accepted just before the listener
    # closed was made after the open ones were dropped, and served calls through the outage.
    transport = mock.Mock()
    fake.outage()
    opened = fake.stats().connections_opened
    connection = _Connection(fake._server)
    connection.connection_made(transport)

    assert transport.abort.called
    assert fake.stats().connections_opened == opened


def test_latency_delays_one_call_without_blocking_others(
    fake: FakeEventBridge, client: EventBridgeClient
) -> None:
    fake.set_faults(Faults(latency_ms=60_000))
    slow = socket.create_connection(("127.0.0.1", fake.port), timeout=5)
    body = b'{"Entries": [{"Source": "a", "DetailType": "t", "Detail": "{}"}]}'
    request = AWSRequest("POST", f"{fake.url}/", {"X-Amz-Target": "AWSEvents.PutEvents"}, body)
    SigV4Auth(Credentials("testing", "testing"), "events", "us-east-1").add_auth(request)
    head = "".join(f"{name}: {value}\r\n" for name, value in request.headers.items())
    slow.sendall(
        f"POST / HTTP/1.1\r\nHost: 127.0.0.1:{fake.port}\r\n{head}".encode()
        + b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    assert fake.wait_for_accepted(1)  # the slow call is in, its answer is a minute away

    fake.set_faults(Faults())
    assert client.put_partner_events(Entries=[partner_entry()])["FailedEntryCount"] == 0
    slow.setblocking(False)
    with pytest.raises(BlockingIOError):
        slow.recv(1)
    slow.close()


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(("operation", "limit"), [("put_events", 10), ("put_partner_events", 20)])
def test_entry_count_limits(
    fake: FakeEventBridge, client: EventBridgeClient, operation: str, limit: int
) -> None:
    entry = partner_entry()
    put = getattr(client, operation)

    assert put(Entries=[entry] * limit)["FailedEntryCount"] == 0
    with pytest.raises(ClientError) as too_many:
        put(Entries=[entry] * (limit + 1))
    assert error_code(too_many) == "ValidationException"


def test_empty_entries_are_refused_by_botocore_or_else_by_the_server(
    session: boto3.session.Session, fake: FakeEventBridge, client: EventBridgeClient
) -> None:
    with pytest.raises(ParamValidationError):
        client.put_partner_events(Entries=[])

    unchecked = make_client(session, fake.url, parameter_validation=False)
    with pytest.raises(ClientError) as error:
        unchecked.put_partner_events(Entries=[])
    assert error_code(error) == "ValidationException"


def test_other_operations(client: EventBridgeClient) -> None:
    partner_bus = f"arn:aws:events:us-east-1:123456789012:event-bus/{SOURCE}"
    assert client.describe_event_bus(Name=partner_bus)["Name"] == SOURCE
    assert client.describe_event_bus()["Arn"].endswith(":event-bus/default")
    assert [b["Name"] for b in client.list_event_buses()["EventBuses"]] == ["default"]
    with pytest.raises(ClientError) as error:
        client.list_rules()
    assert error_code(error) == "UnknownOperationException"


def test_faults_are_validated() -> None:
    with pytest.raises(ValueError, match="sum over 1"):
        Faults(entry_failure_rates={"ThrottlingException": 0.7, "InternalFailure": 0.4})
    with pytest.raises(ValueError, match="reset_rate"):
        Faults(reset_rate=1.5)
    with pytest.raises(ValueError, match="unknown fault fields: latency"):
        Faults.from_json({"latency": 5})


# ----------------------------------------------------------------------------- storage


@pytest.mark.parametrize("store", [StoreMode.IDS, StoreMode.COUNTS])
def test_lean_store_modes_keep_counts(session: boto3.session.Session, store: StoreMode) -> None:
    with FakeEventBridge(store=store) as fake:
        response = make_client(session, fake.url).put_partner_events(Entries=[partner_entry()])
        expected_ids = [response["Entries"][0]["EventId"]] if store is StoreMode.IDS else []
        assert fake.entries() == []
        assert fake.event_ids() == expected_ids
        assert fake.stats().entries_accepted == 1


def test_times_store_keeps_each_entrys_time_and_when_it_was_accepted(
    session: boto3.session.Session,
) -> None:
    when = datetime(2026, 12, 1, 12, 0, 0, 250_000, tzinfo=UTC)
    timed = partner_entry(Time=when)
    with FakeEventBridge(store=StoreMode.TIMES) as fake:
        client = make_client(session, fake.url)
        before = time.time()
        client.put_partner_events(Entries=[partner_entry({"n": 0}), timed])
        client.put_partner_events(Entries=[timed])
        after = time.time()
        first, second, third = fake.entries()
        assert [e.seq for e in fake.entries(since=1)] == [1, 2]
        assert first.entry == {}
        assert second.entry == {"Time": when.timestamp()} == third.entry
        assert before <= first.received_at == second.received_at <= third.received_at <= after
        assert fake.event_ids() == []
        fake.clear()
        assert fake.entries() == []


# ----------------------------------------------------------------------------- control


def test_control_endpoint(fake: FakeEventBridge, client: EventBridgeClient) -> None:
    client.put_partner_events(Entries=[partner_entry({"n": n}) for n in range(3)])

    status, page = control(fake.url, "GET", "entries?since=1&limit=1")
    assert status == 200
    assert [e["detail"] for e in page["entries"]] == [{"n": 1}]
    assert page["next"] == 3
    assert control(fake.url, "GET", "stats")[1]["entries_accepted"] == 3

    status, faults = control(fake.url, "PATCH", "faults", {"deny": True})
    assert (status, faults["deny"]) == (200, True)
    with pytest.raises(ClientError):
        client.put_partner_events(Entries=[partner_entry()])
    assert control(fake.url, "POST", "faults", {})[1] == Faults().to_json()
    assert control(fake.url, "POST", "faults", {"reset_rate": 2})[0] == 400
    assert control(fake.url, "GET", "nothing")[0] == 404

    assert control(fake.url, "POST", "clear", {}) == (200, {})
    assert fake.stats().calls_total == 0
    assert fake.entries() == []


def test_control_outage_drops_connections_and_comes_back_by_itself(
    fake: FakeEventBridge, client: EventBridgeClient
) -> None:
    port = fake.port
    idle = socket.create_connection(("127.0.0.1", port), timeout=5)

    FakeEventBridgeClient(fake.url).outage(seconds=0.2)

    assert idle.recv(1) == b""  # dropped by the outage, whenever the test thread gets here
    idle.close()
    deadline = time.monotonic() + 5
    while True:  # nobody calls recover(): it must listen again by itself, on the same port
        try:
            client.put_partner_events(Entries=[partner_entry()])
            break
        except EndpointConnectionError:
            assert time.monotonic() < deadline, "did not come back"
            time.sleep(0.02)
    assert fake.port == port


def test_process_mode_with_cli_flags(session: boto3.session.Session) -> None:
    flags = ["--entry-failure-rate", "ThrottlingException=1", "--seed", "3"]
    with FakeEventBridgeProcess(Faults(latency_ms=1), store="ids", extra_args=flags) as process:
        client = make_client(session, process.url)
        response = client.put_partner_events(Entries=[partner_entry()] * 2)
        remote = process.control
        assert (remote.faults.latency_ms, remote.faults.seed) == (1, 3)
        remote.update_faults(entry_failure_rates={})
        client.put_partner_events(Entries=[partner_entry({"x": 1})])
        stats = remote.stats()

    assert response["FailedEntryCount"] == 2
    assert stats.entries_failed == {"ThrottlingException": 2}
    assert stats.entries_accepted == 1


@pytest.mark.parametrize("event_loop", list(EventLoop))
def test_process_mode_serves_on_either_event_loop(
    session: boto3.session.Session, event_loop: EventLoop
) -> None:
    with FakeEventBridgeProcess(Faults(latency_ms=20), event_loop=event_loop) as process:
        client = make_client(session, process.url)
        started = time.monotonic()
        response = client.put_partner_events(Entries=[partner_entry()])
        took = time.monotonic() - started
        wrong = signed_client(process.url, "not-the-secret")
        with pytest.raises(ClientError) as refused:
            wrong.put_partner_events(Entries=[partner_entry()])
        stats = process.control.stats()

    assert response["FailedEntryCount"] == 0 and took >= 0.02  # the latency's timer fired
    assert refused.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert stats.entries_accepted == 1
    assert stats.calls_by_outcome == {"ok": 1, "InvalidSignatureException": 1}


# --------------------------------------------------------------------------- signatures


def signed_client(url: str, secret: str, service: str = "events", key: str | None = None) -> Any:
    new_client: Any = signed_session(key, secret).client
    return new_client(service, endpoint_url=url, config=Config(retries={"total_max_attempts": 1}))


@pytest.mark.parametrize("operation", ["PutPartnerEvents", "PutEvents"])
def test_a_wrong_secret_is_refused_with_invalid_signature(
    fake: FakeEventBridge, operation: str
) -> None:
    wrong = signed_client(fake.url, "not-the-secret")
    with pytest.raises(ClientError) as refused:
        if operation == "PutPartnerEvents":
            wrong.put_partner_events(Entries=[partner_entry()])
        else:
            wrong.put_events(Entries=[events_entry()])
    assert refused.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert fake.stats().entries_accepted == 0
    assert fake.stats().calls_by_outcome == {"InvalidSignatureException": 1}


def test_an_unknown_access_key_and_a_missing_signature_are_refused(fake: FakeEventBridge) -> None:
    with pytest.raises(ClientError) as unknown:
        signed_client(fake.url, "testing", key="nobody").put_partner_events(
            Entries=[partner_entry()]
        )
    assert unknown.value.response["Error"]["Code"] == "UnrecognizedClientException"
    request = urllib.request.Request(  # noqa: S310 - loopback
        f"{fake.url}/", data=b"{}", headers={"X-Amz-Target": "AWSEvents.PutEvents"}
    )
    with pytest.raises(urllib.error.HTTPError) as unsigned:
        urllib.request.urlopen(request, timeout=5)  # noqa: S310
    assert unsigned.value.code == 403
    assert fake.stats().entries_accepted == 0


def test_the_secret_added_later_is_accepted(fake: FakeEventBridge) -> None:
    fake.add_credentials("second", "its-secret")
    client = signed_client(fake.url, "its-secret", key="second")
    assert client.put_partner_events(Entries=[partner_entry()])["FailedEntryCount"] == 0


def test_a_request_signed_far_from_the_stand_ins_clock_has_expired(
    fake: FakeEventBridge, client: EventBridgeClient
) -> None:
    fake.set_faults(Faults(clock_skew_seconds=3600))
    with pytest.raises(ClientError) as expired:
        client.put_partner_events(Entries=[partner_entry()])
    assert expired.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert "Signature expired" in expired.value.response["Error"]["Message"]
    date = expired.value.response["ResponseMetadata"]["HTTPHeaders"]["date"]
    skew = parsedate_to_datetime(date) - datetime.now(UTC)
    assert 3590 < skew.total_seconds() < 3610
    fake.set_faults(Faults(clock_skew_seconds=600))  # inside the 15-minute window
    assert client.put_partner_events(Entries=[partner_entry()])["FailedEntryCount"] == 0


def test_sigv4a_of_a_global_endpoint_is_verified(fake: FakeEventBridge) -> None:
    for secret, accepted in (("testing", True), ("wrong", False)):
        client = signed_client(fake.url, secret)
        try:
            client.put_events(Entries=[events_entry()], EndpointId="abcde.veo")
        except ClientError as refused:
            assert not accepted
            assert refused.response["Error"]["Code"] == "InvalidSignatureException"
        else:
            assert accepted
    assert fake.stats().auth_schemes == {"AWS4-ECDSA-P256-SHA256": 1}
    assert fake.stats().entries_accepted == 1


def test_s3_calls_of_the_claim_check_are_signed_and_stored(fake: FakeEventBridge) -> None:
    s3 = signed_client(fake.url, "testing", "s3")
    s3.create_bucket(Bucket="large-events")
    s3.put_object(Bucket="large-events", Key="a/b c.json", Body=b'{"x": 1}')
    assert fake.s3_object("large-events", "a/b c.json") == b'{"x": 1}'
    assert s3.get_object(Bucket="large-events", Key="a/b c.json")["Body"].read() == b'{"x": 1}'
    with pytest.raises(ClientError) as missing:
        s3.put_object(Bucket="no-such-bucket", Key="k", Body=b"{}")
    assert missing.value.response["Error"]["Code"] == "NoSuchBucket"
    with pytest.raises(ClientError) as refused:
        signed_client(fake.url, "wrong", "s3").put_object(Bucket="large-events", Key="k", Body=b"")
    assert refused.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert fake.s3_object("large-events", "k") is None
