"""``kafka-eventbridge check``: is this configuration usable, before it runs for real?

Each check prints one line, ``ok``, ``warn`` or ``FAIL``, and says what it looked at.
Nothing is consumed, committed or published. Secrets are masked in the settings dump.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from typing import Any, TextIO
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, ClientError
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from kafka_eventbridge import aws, kafka_auth, targets
from kafka_eventbridge.consumer import consumer_config
from kafka_eventbridge.deadletter import DeadLetterProducer, producer_config
from kafka_eventbridge.errors import ConfigError, FatalError
from kafka_eventbridge.mapping import load_routes
from kafka_eventbridge.publisher import make_client
from kafka_eventbridge.settings import Settings
from kafka_eventbridge.tracing import build_tracing

Result = tuple[str, str]  # (status, detail)


def check_mapping(settings: Settings) -> Result:
    try:
        routes = load_routes(settings.mapping, settings.eventbridge.api, settings.kafka.topics)
    except ConfigError as exc:
        return "FAIL", "; ".join(exc.problems)
    return "ok", f"{len(routes)} route(s) compiled"


def check_kafka(settings: Settings) -> list[tuple[str, Result]]:
    config = consumer_config(settings.kafka, settings.kafka_properties.values)
    consumer_only = ("group.", "enable.auto.", "auto.", "partition.", "queued.", "fetch.")
    security_errors: list[KafkaError] = []

    def on_error(err: KafkaError) -> None:
        if kafka_auth.is_security_failure(err):
            security_errors.append(err)

    admin_config = {k: v for k, v in config.items() if not k.startswith(consumer_only)}
    admin_config.update({"logger": kafka_auth.client_logger(), "error_cb": on_error})
    try:
        metadata = AdminClient(admin_config).list_topics(timeout=10)
    except KafkaException as exc:
        reason = (
            kafka_auth.fatal_error(security_errors[0], "kafka").message
            if security_errors
            else str(exc)
        )
        return [("kafka brokers", ("FAIL", f"{settings.kafka.bootstrap_servers}: {reason}"))]
    results = [("kafka brokers", ("ok", f"{len(metadata.brokers)} broker(s) answered"))]
    existing = set(metadata.topics)
    for pattern in settings.kafka.topics:
        if pattern.startswith("^"):
            matched = [t for t in existing if re.search(pattern, t)]  # as librdkafka matches
            status = "ok" if matched else "warn"
            results.append((f"topics {pattern}", (status, f"{len(matched)} topic(s) match")))
        else:
            found = pattern in existing
            results.append(
                (
                    f"topic {pattern}",
                    ("ok" if found else "warn", "exists" if found else "not found"),
                )
            )
    results.append(_check_dead_letter_topic(settings, config))
    return results


def _check_dead_letter_topic(settings: Settings, config: dict[str, Any]) -> tuple[str, Result]:
    """The same look-up ``run`` makes at start (which lets the broker auto-create it)."""
    name = f"dead-letter topic {settings.dlq_topic}"
    producer = DeadLetterProducer(producer_config(config), settings.dlq_topic, _ignore)
    try:
        producer.check_topic()
    except FatalError as exc:
        return name, ("FAIL", exc.message)
    finally:
        producer.close(0)
    return name, ("ok", "exists")


def _ignore(*_args: object) -> None:
    """Nothing is produced by a check."""


def check_eventbridge(settings: Settings) -> list[tuple[str, Result]]:
    client = make_client(settings.eventbridge, 1)
    endpoint = str(getattr(getattr(client, "meta", None), "endpoint_url", ""))
    results = [check_credentials(settings)]
    parts = urlsplit(endpoint)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=5):
            pass
        results.append(("eventbridge endpoint", ("ok", f"{endpoint} reachable")))
    except OSError as exc:
        results.append(("eventbridge endpoint", ("FAIL", f"{endpoint}: {exc}")))
        return results
    if results[0][1][0] != "FAIL":
        results.extend(targets.check_targets(settings, client))
    return results


def check_credentials(settings: Settings) -> tuple[str, Result]:
    """The credentials resolve; with a role, it is assumed (so a refused AssumeRole shows)."""
    name = "aws credentials"
    try:
        credentials = aws.session(settings.aws).get_credentials()
        if credentials is None:
            return name, ("FAIL", "none found")
        credentials.get_frozen_credentials()
    except (BotoCoreError, ClientError) as exc:
        role = settings.aws.role_arn
        what = f"cannot assume {role}" if role else "cannot resolve them"
        return name, ("FAIL", f"{what}: {exc}")
    if settings.aws.role_arn:
        return name, ("ok", f"assumed {settings.aws.role_arn} ({credentials.method})")
    return name, ("ok", f"found ({credentials.method})")


def check_traces(settings: Settings) -> list[tuple[str, Result]]:
    """Traces as the ``OTEL_*`` variables set them up; one this build cannot export fails."""
    tracing = build_tracing(settings)
    try:
        return [("traces", ("ok", tracing.describe()))]
    finally:
        tracing.close()


def run_checks(settings: Settings, out: TextIO) -> bool:
    """Print the report; True when nothing failed."""
    print("settings:", file=out)
    for name, value in sorted(settings.redacted().items()):
        print(f"  {name}={value}", file=out)
    rows: list[tuple[str, Result]] = [("mapping", check_mapping(settings))]
    probes: list[Callable[[Settings], list[tuple[str, Result]]]] = [
        check_kafka,
        check_eventbridge,
        check_traces,
    ]
    for probe in probes:
        try:
            rows.extend(probe(settings))
        except ConfigError as exc:
            rows.append((probe.__name__.removeprefix("check_"), ("FAIL", "; ".join(exc.problems))))
    print("checks:", file=out)
    for name, (status, detail) in rows:
        print(f"  {status:<4} {name}: {detail}", file=out)
    failed = sum(status == "FAIL" for _, (status, _) in rows)
    print("result:", "usable" if not failed else f"{failed} check(s) failed", file=out)
    return not failed
