"""The ``kafka-eventbridge`` command: run, check, map.

Exit codes: 0 done, 1 a fatal error at run time (or a failed check), 2 bad configuration.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from types import FrameType
from typing import Any, TextIO

import orjson

from kafka_eventbridge import __version__
from kafka_eventbridge.errors import ConfigError, FatalError, RecordError
from kafka_eventbridge.records import SourceRecord
from kafka_eventbridge.settings import load_mapping_settings, load_settings, unknown_variables

EXIT_FATAL = 1
EXIT_CONFIG = 2

log = logging.getLogger("kafka_eventbridge")


def _config_problem(exc: ConfigError) -> int:
    print("kafka-eventbridge: configuration refused:", file=sys.stderr)
    for problem in exc.problems:
        print(f"  {problem}", file=sys.stderr)
    return EXIT_CONFIG


# -- run -----------------------------------------------------------------------------------


def cmd_run(_args: argparse.Namespace) -> int:
    from kafka_eventbridge.app import Bridge, tune_garbage_collector
    from kafka_eventbridge.telemetry import Health, HttpServer, Metrics, configure_logging

    try:
        settings = load_settings()
        configure_logging(settings.telemetry.log_format, settings.telemetry.log_level)
        metrics = Metrics()
        health = Health(settings.telemetry.health_stall_seconds)
        bridge = Bridge(settings, metrics=metrics, health=health)
    except ConfigError as exc:
        return _config_problem(exc)
    for name in unknown_variables(os.environ):
        log.warning("unknown setting ignored: %s", name)
    telemetry = settings.telemetry
    try:
        http = HttpServer(telemetry.http_host, telemetry.http_port, metrics, health)
    except OSError as exc:
        return _config_problem(ConfigError([f"BRIDGE_HTTP_PORT: cannot listen: {exc}"]))
    http.start()
    _install_signal_handlers(bridge.stop)
    log.info(
        "starting",
        extra={
            "version": __version__,
            "api": settings.eventbridge.api.value,
            "topics": settings.kafka.topics,
            "group": settings.kafka.group_id,
            "dlq_topic": settings.dlq_topic,
            "http_port": http.port,
        },
    )
    tune_garbage_collector()
    code = bridge.run()
    http.stop()
    if bridge.consumer.abandoned:
        # librdkafka's threads still run the close that never returned: exit without the C
        # exit handlers, since OpenSSL's would free what those threads are using.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _install_signal_handlers(stop: Any) -> None:
    def handler(signum: int, _frame: FrameType | None) -> None:
        if getattr(handler, "seen", False):
            # A second signal: the operator does not want to wait for the drain.
            os._exit(128 + signum)
        handler.seen = True  # type: ignore[attr-defined]
        log.info("signal received, draining", extra={"signal": signal.Signals(signum).name})
        stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


# -- map -----------------------------------------------------------------------------------


def _sample_records(stream: TextIO) -> Iterator[tuple[int, SourceRecord | str]]:
    for number, line in enumerate(stream, 1):
        if not line.strip():
            continue
        try:
            yield number, _sample_record(orjson.loads(line), number)
        except (orjson.JSONDecodeError, ValueError, TypeError) as exc:
            yield number, f"line {number}: not a sample record: {exc}"


def _sample_record(sample: Any, number: int) -> SourceRecord:
    if not isinstance(sample, dict) or not isinstance(sample.get("topic"), str):
        raise ValueError('each line must be a JSON object with at least "topic"')
    if "value" in sample:
        value: bytes | None = orjson.dumps(sample["value"])
    elif "value_text" in sample:
        value = str(sample["value_text"]).encode()
    elif "value_base64" in sample:
        value = base64.b64decode(sample["value_base64"])
    else:
        value = None
    key = sample.get("key")
    if "key_base64" in sample:
        key = base64.b64decode(sample["key_base64"])  # e.g. an Avro key in wire format
    headers = sample.get("headers") or {}
    if not isinstance(headers, dict):
        raise ValueError('"headers" must be a JSON object of name: value')
    return SourceRecord(
        topic=sample["topic"],
        partition=int(sample.get("partition", 0)),
        offset=int(sample.get("offset", number - 1)),
        timestamp=sample.get("timestamp"),
        key=key if key is None or isinstance(key, bytes) else str(key).encode(),
        value=value,
        headers=[(str(k), None if v is None else str(v).encode()) for k, v in headers.items()],
    )


def cmd_map(args: argparse.Namespace) -> int:
    from kafka_eventbridge.mapping import Mapper, load_routes
    from kafka_eventbridge.schemas import build_decoders

    try:
        mapping, eventbridge = load_mapping_settings()
        routes = load_routes(mapping, eventbridge.api, [])
        decoders = build_decoders(mapping)
    except ConfigError as exc:
        return _config_problem(exc)
    mapper = Mapper(
        routes,
        api=eventbridge.api,
        max_bytes=eventbridge.max_bytes,
        value_format=mapping.value_format,
        tombstones=mapping.tombstones,
        event_bus=eventbridge.event_bus or "default",
        **decoders,
    )
    try:
        stream = sys.stdin if args.file in (None, "-") else open(args.file, encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        print(f"kafka-eventbridge map: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return EXIT_FATAL
    failures = 0
    with stream:
        for _number, record in _sample_records(stream):
            result = _map_one(mapper, record)
            failures += "entry" not in result and "skipped" not in result
            print(json.dumps(result, ensure_ascii=False))
    return EXIT_FATAL if args.strict and failures else 0


def _map_one(mapper: Any, record: SourceRecord | str) -> dict[str, Any]:
    if isinstance(record, str):
        return {"error": record}
    where = {"topic": record.topic, "partition": record.partition, "offset": record.offset}
    try:
        entry = mapper.map(record)
    except RecordError as exc:
        return {
            "record": where,
            "dead_letter": {"stage": str(exc.stage), "code": exc.code, "message": exc.message},
        }
    if entry is None:
        return {"record": where, "skipped": "filtered or tombstone"}
    shown = entry.request()
    if "Time" in shown:
        shown["Time"] = shown["Time"].isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {"record": where, "entry": shown, "size": entry.size}


# -- check ---------------------------------------------------------------------------------


def cmd_check(_args: argparse.Namespace) -> int:
    from kafka_eventbridge.checks import run_checks

    try:
        settings = load_settings()
    except ConfigError as exc:
        _config_problem(exc)
        return EXIT_FATAL
    return 0 if run_checks(settings, sys.stdout) else EXIT_FATAL


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kafka-eventbridge",
        description="Bridge Apache Kafka topics to Amazon EventBridge, at least once. "
        "Configured by BRIDGE_* environment variables (see README).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser(
        "run",
        help="run the bridge daemon",
        description="Consume the topics, publish entries, commit offsets behind them, "
        "dead-letter what cannot be delivered. Stops on SIGTERM/SIGINT after draining "
        "(exit 0); exits 1 on a fatal error, 2 on bad configuration.",
    )
    run.set_defaults(func=cmd_run)
    check = commands.add_parser(
        "check",
        help="validate settings and mapping, reach Kafka and EventBridge",
        description="Validate every setting and the mapping, connect to the brokers, look up "
        "the topics and the dead-letter topic, reach the EventBridge endpoint, and print a "
        "report. Exit 0 when everything is usable, 1 otherwise. Secrets are never printed.",
    )
    check.set_defaults(func=cmd_check)
    mapper = commands.add_parser(
        "map",
        help="show the entries sample records become (no cluster needed)",
        description='Read sample records as JSON lines ({"topic": ..., "key": ..., "headers": '
        '{...}, "value": <JSON>} or "value_text" / "value_base64" for raw values, '
        '"key_base64" for a raw key) and print, one JSON line each, the entry it becomes, that '
        "it is skipped, or why it would be dead-lettered. Uses the BRIDGE_MAPPING_FILE / "
        "BRIDGE_MAP_* settings, and BRIDGE_VALUE_FORMAT / BRIDGE_KEY_FORMAT (Schema Registry "
        "formats look schemas up at BRIDGE_SCHEMA_REGISTRY_URL).",
    )
    mapper.add_argument("file", nargs="?", help="JSON lines file (default: standard input)")
    mapper.add_argument(
        "--strict", action="store_true", help="exit 1 if any record would be dead-lettered"
    )
    mapper.set_defaults(func=cmd_map)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        code = int(args.func(args))
    except FatalError as exc:
        print(f"kafka-eventbridge: fatal: {exc.code}: {exc.message}", file=sys.stderr)
        code = EXIT_FATAL
    sys.exit(code)
