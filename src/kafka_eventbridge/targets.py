"""What ``check`` asks AWS about the targets: do they exist, may the bridge use them?

One read-only call per target the configuration names as a constant:

* ``events``: ``DescribeEventBus`` for each bus the routes name (``event_bus`` constants, else
  ``BRIDGE_EVENTBRIDGE_EVENT_BUS``, else the account's default bus);
* ``partner``: ``DescribePartnerEventSource`` for each constant ``source``;
* the claim check: ``HeadBucket`` for ``BRIDGE_OFFLOAD_S3_BUCKET``;
* the Glue formats: ``GetRegistry`` for ``BRIDGE_GLUE_REGISTRY_NAME``.

A target that does not exist fails the check. A call the bridge is not permitted to make (or
an endpoint that does not serve it) is reported as ``warn``, "cannot verify": the role may
well be allowed ``events:PutEvents`` without ``events:DescribeEventBus``, and the check must
not fail a configuration that works. Targets computed per record are ``skip``. Writing itself
cannot be verified without writing: PutEvents, PutPartnerEvents and PutObject have no dry
run, and the check publishes nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from kafka_eventbridge.errors import ConfigError
from kafka_eventbridge.mapping import Route, load_routes
from kafka_eventbridge.publisher import make_s3_client
from kafka_eventbridge.settings import Api, Settings

Result = tuple[str, str]  # (status, detail)
Row = tuple[str, Result]

# The target is not there.
_NOT_FOUND = frozenset(
    {"ResourceNotFoundException", "EntityNotFoundException", "NoSuchBucket", "NotFound", "404"}
)
# The question cannot be asked: not permitted, or not served by this endpoint.
_CANNOT_VERIFY = frozenset(
    {
        "AccessDeniedException",
        "AccessDenied",
        "Forbidden",
        "403",
        "UnauthorizedOperation",
        "UnknownOperationException",
        "UnknownOperation",
        "InvalidAction",
    }
)


def check_targets(settings: Settings, events: Any, s3: Any = None, glue: Any = None) -> list[Row]:
    """One row per target; clients not given are made from the bridge's AWS session."""
    try:
        routes = load_routes(settings.mapping, settings.eventbridge.api, settings.kafka.topics)
    except ConfigError:
        routes = []  # the mapping row already says why
    rows = _event_targets(settings, routes, events)
    bucket = settings.offload.bucket
    if bucket:
        s3 = s3 or make_s3_client(settings.eventbridge, 1)
        rows.append(
            probe(
                f"offload bucket {bucket}", lambda: s3.head_bucket(Bucket=bucket), "s3:ListBucket"
            )
        )
    rows.extend(_glue_registry(settings, glue))
    return rows


def _event_targets(settings: Settings, routes: list[Route], events: Any) -> list[Row]:
    if settings.eventbridge.api is Api.EVENTS:
        default = settings.eventbridge.event_bus or "default"
        buses, computed = _constants(routes, "event_bus", default)
        rows = [
            probe(
                f"event bus {bus}",
                functools.partial(events.describe_event_bus, Name=bus),
                "events:DescribeEventBus",
                lambda answer: f"exists ({answer.get('Arn', '')})",
            )
            for bus in buses
        ]
        return rows + [
            (f"event bus of {label}", ("skip", "computed per record")) for label in computed
        ]
    sources, computed = _constants(routes, "source", None)
    rows = [
        probe(
            f"partner event source {source}",
            functools.partial(events.describe_partner_event_source, Name=source),
            "events:DescribePartnerEventSource",
        )
        for source in sources
    ]
    return rows + [(f"source of {label}", ("skip", "computed per record")) for label in computed]


def _constants(
    routes: Iterable[Route], field: str, default: str | None
) -> tuple[list[str], list[str]]:
    """The distinct constant values of a field over the routes, and the routes computing it."""
    values: list[str] = []
    computed: list[str] = []
    for route in routes:
        expression = route.fields.get(field)
        if expression is None:
            value: Any = default
        else:
            is_literal, value = expression.literal
            if not is_literal:
                computed.append(route.label)
                continue
        if isinstance(value, str) and value and value not in values:
            values.append(value)
    return values, computed


def _glue_registry(settings: Settings, glue: Any) -> list[Row]:
    mapping = settings.mapping
    if not (mapping.value_format.uses_glue or mapping.key_format.uses_glue):
        return []
    name = mapping.glue_registry_name
    if name is None:
        return [("glue registry", ("ok", "any registry (BRIDGE_GLUE_REGISTRY_NAME not set)"))]
    if glue is None:
        from kafka_eventbridge.schemas import glue_client

        try:
            glue = glue_client(mapping)
        except ConfigError as exc:
            return [(f"glue registry {name}", ("FAIL", "; ".join(exc.problems)))]
    return [
        probe(
            f"glue registry {name}",
            lambda: glue.get_registry(RegistryId={"RegistryName": name}),
            "glue:GetRegistry",
            lambda answer: f"exists ({answer.get('Status', 'status unknown')})",
        )
    ]


def probe(
    name: str,
    call: Callable[[], Any],
    permission: str,
    describe: Callable[[dict[str, Any]], str] = lambda _answer: "exists",
) -> Row:
    """Make one read-only call and judge its answer."""
    try:
        answer = call()
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in _NOT_FOUND or status == 404:
            return name, ("FAIL", f"does not exist ({code or status})")
        if code in _CANNOT_VERIFY or status == 403:
            return name, (
                "warn",
                f"cannot verify: {code or status} for {permission} (the bridge may still be "
                "allowed to write; grant it to have this checked)",
            )
        return name, ("FAIL", f"{code}: {error.get('Message', '')}")
    except BotoCoreError as exc:
        return name, ("FAIL", f"{type(exc).__name__}: {exc}")
    return name, ("ok", describe(answer if isinstance(answer, dict) else {}))
