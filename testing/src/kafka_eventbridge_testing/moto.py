"""moto's EventBridge server as a local emulator, and a way to read back what it received.

moto forwards events to the bus's rules; a rule with an SQS target is how a test or the demo
sees the events that were accepted. Partner events land on the *default* bus (a rule on a
bus whose name has slashes fails there).

moto answers ``PutPartnerEvents`` with ``{"Entries": [], "FailedEntryCount": 0}``, where AWS
returns one result per entry; the bridge rightly takes such an answer as a failed call.
:func:`moto_server` wraps moto's handler so that the emulator answers as the service does.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

from kafka_eventbridge_testing import free_port

REGION = "us-east-1"
ACCOUNT = "123456789012"


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """moto's server on a free loopback port; yields its URL."""
    from moto.events.responses import EventsHandler
    from moto.server import ThreadedMotoServer

    moto_handler = EventsHandler.put_partner_events

    def put_partner_events(handler: Any) -> str:
        moto_handler(handler)  # delivers every entry, or raises
        results = [{"EventId": str(uuid.uuid4())} for _ in handler._get_param("Entries")]
        return json.dumps({"Entries": results, "FailedEntryCount": 0})

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    with mock.patch.object(EventsHandler, "put_partner_events", put_partner_events):
        server.start()
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.stop()


def client(service: str, url: str) -> Any:
    """A boto3 client of the emulator, with its dummy credentials."""
    import boto3

    session = boto3.session.Session(
        aws_access_key_id="moto",
        aws_secret_access_key="moto",  # noqa: S106 - the emulator's dummy
        region_name=REGION,
    )
    return session.client(service, endpoint_url=url)  # type: ignore[call-overload]


Reader = Callable[[], list[dict[str, Any]]]


def route_to_queue(url: str, bus: str, pattern: dict[str, Any]) -> Reader:
    """A rule on ``bus`` copying matching events to a new SQS queue; returns a reader that
    accumulates what has arrived so far (each call fetches up to 10 more)."""
    sqs, events = client("sqs", url), client("events", url)
    name = f"kafka-eventbridge-{time.monotonic_ns()}"
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    events.put_rule(Name=name, EventBusName=bus, EventPattern=json.dumps(pattern))
    events.put_targets(
        Rule=name,
        EventBusName=bus,
        Targets=[{"Id": "sqs", "Arn": attributes["Attributes"]["QueueArn"]}],
    )
    received: list[dict[str, Any]] = []

    def read() -> list[dict[str, Any]]:
        reply = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)
        received.extend(json.loads(m["Body"]) for m in reply.get("Messages", []))
        return received

    return read


def partner_source(url: str, name: str) -> Reader:
    """Create a partner event source and return a reader of the events sent to it."""
    client("events", url).create_partner_event_source(Name=name, Account=ACCOUNT)
    return route_to_queue(url, "default", {"source": [name]})
