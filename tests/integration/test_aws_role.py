"""Assumed roles (BRIDGE_AWS_ROLE_*): moto's STS issues the credentials, and they sign.

Every AWS call the bridge makes goes to an endpoint that verifies its SigV4 signature with
the secret moto's STS issued for the access key it names: a call signed with the pod's own
(source) credentials, or with a wrong secret or session token, is refused and counted.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import orjson
import pytest

from kafka_eventbridge.errors import FatalError
from kafka_eventbridge.mapping import Entry
from kafka_eventbridge.offload import Upload, Uploader
from kafka_eventbridge.publisher import make_publisher, make_s3_client
from kafka_eventbridge.records import SourceRecord
from kafka_eventbridge.schemas import GlueDecoder
from kafka_eventbridge.settings import (
    EventBridgeSettings,
    MappingSettings,
    ValueFormat,
)
from kafka_eventbridge_testing.moto import moto_server
from tests.integration.aws_peers import (
    SigningEndpoint,
    assumed_role,
    assumed_role_secrets,
    assumed_roles,
    signing_endpoint,
)

pytestmark = pytest.mark.integration

ROLE = "arn:aws:iam::111122223333:role/partner-bridge"
SOURCE = "aws.partner/example.com/orders"


VERSION_ID = "0c6f2b43-9b1e-4c3f-8d55-3c1a2b7e9f10"


def reply(service: str, _body: bytes) -> tuple[int, bytes]:
    if service == "events":
        return 200, orjson.dumps({"FailedEntryCount": 0, "Entries": [{"EventId": "e-1"}]})
    if service == "glue":
        return 200, orjson.dumps(
            {
                "SchemaVersionId": VERSION_ID,
                "DataFormat": "JSON",
                "SchemaDefinition": '{"type": "object"}',
                "SchemaArn": "arn:aws:glue:eu-west-1:111122223333:schema/orders/orders-value",
                "Status": "AVAILABLE",
            }
        )
    return 200, b""


@pytest.fixture(scope="module")
def sts_url() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture
def endpoint(sts_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[SigningEndpoint]:
    """The bridge's AWS environment: source credentials, moto's STS, a signing endpoint."""
    with signing_endpoint(assumed_role_secrets, reply) as server:
        for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIASOURCEKEY0000000")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "source-secret")
        monkeypatch.setenv("AWS_REGION", "eu-west-1")
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", sts_url)
        monkeypatch.setenv("AWS_ENDPOINT_URL_EVENTBRIDGE", server.url)
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", server.url)
        monkeypatch.setenv("AWS_ENDPOINT_URL_GLUE", server.url)
        monkeypatch.setenv("BRIDGE_AWS_ROLE_ARN", ROLE)
        monkeypatch.setenv("BRIDGE_AWS_ROLE_EXTERNAL_ID", "partner-7f3a")
        monkeypatch.setenv("BRIDGE_AWS_ROLE_SESSION_NAME", "orders-bridge")
        yield server


def entry() -> Entry:
    return Entry(
        SOURCE, "order.created", '{"id": 1}', None, int(time.time() * 1000), None, None, 10
    )


def publish(count: int = 1) -> None:
    """PutPartnerEvents calls through the bridge's default (crt) publish path."""
    transport = make_publisher(EventBridgeSettings(), 1)._transport
    assert transport is not None
    try:
        for n in range(count):
            transport.send(n, orjson.dumps({"Entries": [entry().wire()]}))
            [(_key, answer, _at)] = transport.results(timeout=10)
            assert not isinstance(answer, Exception), answer
            assert answer["Entries"] == [{"EventId": "e-1"}]
    finally:
        transport.close()


def test_the_assumed_role_signs_eventbridge_calls(endpoint: SigningEndpoint) -> None:
    publish()

    [call] = endpoint.calls
    assert call.service == "events"
    assert call.valid, "the signature does not verify with the assumed role's secret"
    role = assumed_role(call.access_key)
    assert role is not None, "signed with credentials STS did not issue"
    assert role.role_arn == ROLE
    assert role.external_id == "partner-7f3a"
    assert role.session_name == "orders-bridge"
    assert role.account_id == "111122223333"


def test_the_assumed_role_signs_s3_offload_uploads(endpoint: SigningEndpoint) -> None:
    s3 = make_s3_client(EventBridgeSettings(), 1)
    Uploader(s3).put(Upload("large-events", "kafka-eventbridge/orders/0/1-ab.json", b"{}"))

    [call] = endpoint.calls
    assert call.service == "s3"
    assert call.valid
    assert assumed_role(call.access_key).role_arn == ROLE


def test_the_assumed_role_signs_glue_schema_look_ups(endpoint: SigningEndpoint) -> None:
    decoder = GlueDecoder(ValueFormat.GLUE_JSON_SCHEMA, "value", MappingSettings())
    framed = b"\x03\x00" + uuid.UUID(VERSION_ID).bytes + b'{"id": 1}'
    record = SourceRecord("orders", 0, 0, None, None, framed, [])

    assert decoder(framed, record) == {"id": 1}
    [call] = endpoint.calls
    assert call.service == "glue"
    assert call.valid
    assert assumed_role(call.access_key).role_arn == ROLE


def test_credentials_are_assumed_again_before_they_expire(
    endpoint: SigningEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 900 s (STS's shortest session) is inside botocore's 15-minute refresh window: each
    # call finds its credentials about to expire and assumes the role again first.
    monkeypatch.setenv("BRIDGE_AWS_ROLE_DURATION_SECONDS", "900")
    sessions_before = len(assumed_roles())
    publish(3)

    keys = [call.access_key for call in endpoint.calls]
    assert all(call.valid for call in endpoint.calls)
    assert len(set(keys)) == 3, "credentials near their expiry were used again"
    # (The first call also signs the request botocore builds once for the direct path.)
    assert len(assumed_roles()) - sessions_before >= 3


def test_credentials_far_from_expiry_are_reused(endpoint: SigningEndpoint) -> None:
    sessions_before = len(assumed_roles())
    publish(3)

    keys = {call.access_key for call in endpoint.calls}
    assert len(keys) == 1
    assert all(call.valid for call in endpoint.calls)
    assert len(assumed_roles()) - sessions_before == 1


def test_without_a_role_the_default_chain_signs(
    endpoint: SigningEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("BRIDGE_AWS_ROLE_ARN", "BRIDGE_AWS_ROLE_EXTERNAL_ID"):
        monkeypatch.delenv(name)
    sessions_before = len(assumed_roles())
    with pytest.raises(AssertionError):
        publish()  # the endpoint knows only STS-issued keys: it refuses the source key

    [call] = endpoint.calls
    assert call.access_key == "AKIASOURCEKEY0000000"
    assert len(assumed_roles()) == sessions_before


def refuse_assume_role(service: str, _body: bytes) -> tuple[int, bytes]:
    assert service == "sts"
    return 403, (
        b"<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>"
        b"<Message>not authorized to perform sts:AssumeRole</Message></Error></ErrorResponse>"
    )


def test_a_refused_assume_role_is_fatal_not_a_dead_letter(
    endpoint: SigningEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = {"AKIASOURCEKEY0000000": ("source-secret", None)}
    with signing_endpoint(source.get, refuse_assume_role) as sts:
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", sts.url)
        decoder = GlueDecoder(ValueFormat.GLUE_JSON_SCHEMA, "value", MappingSettings())
        framed = b"\x03\x00" + uuid.UUID(VERSION_ID).bytes + b"{}"
        with pytest.raises(FatalError) as caught:
            decoder(framed, SourceRecord("orders", 0, 0, None, None, framed, []))

    assert caught.value.code == "AssumeRoleFailed"
    assert [call.service for call in sts.calls] == ["sts"] * len(sts.calls)
    assert all(call.valid for call in sts.calls)  # the source credentials asked
    assert endpoint.calls == []  # Glue was never called unsigned or with the source keys
