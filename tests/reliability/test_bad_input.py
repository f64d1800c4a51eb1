"""The bad-input catalogue: every kind of bad record or bad setting, and what becomes of it.

One table, :data:`CASES`. A record case is either dead-lettered, with the right
``bridge.error.stage`` and code and a message a person can act on, or delivered (bad-looking
but valid). A setting case is refused at start: exit code 2, one readable line naming the
variable (or the route and field), no traceback. No case may crash the bridge or stall its
partition: a good record follows every bad one, and it must be delivered and the offset
committed past both.

All record cases go through two bridge processes started once for the module (one per value
format), on one single-partition topic each, so the table costs one run, not one per row.
Each row still finds its own dead letter, by the ``case`` header the dead letter keeps.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import orjson
import pytest
from confluent_kafka import Message, Producer

from kafka_eventbridge_testing.brokers import KafkaBroker
from kafka_eventbridge_testing.fake_eventbridge import FAIL_MARKER, FakeEventBridge
from tests.integration.support import (
    PARTNER_SOURCE,
    BridgeProcess,
    bridge_env,
    committed,
    headers_of,
    read_all,
    unique,
    wait_until,
)
from tests.reliability.harness import delivered_ids

pytestmark = pytest.mark.reliability

Expect = Literal["dead-letter", "delivered", "refused"]
HUGE_HEADERS = tuple((f"x-blob-{n}", bytes([65 + n]) * 100_000) for n in range(8))


def _json(**fields: object) -> bytes:
    return orjson.dumps({"type": "order.created", **fields})


@dataclass(frozen=True)
class Case:
    """One row of the catalogue."""

    name: str
    expect: Expect
    value: bytes | None = b""
    headers: tuple[tuple[str, bytes], ...] = ()
    stage: str = ""
    code: str = ""
    says: tuple[str, ...] = ()  # words the error message (or the refusal) must contain
    text: bool = False  # through the bridge with BRIDGE_VALUE_FORMAT=string
    env: Mapping[str, str | None] = field(default_factory=dict)  # refused: None unsets
    route: str | None = None  # refused: a mapping file with this route


def dead(
    name: str,
    value: bytes | None,
    stage: str,
    code: str,
    *says: str,
    headers: tuple[tuple[str, bytes], ...] = (),
    text: bool = False,
) -> Case:
    """A record that must be dead-lettered at ``stage`` with ``code``."""
    return Case(name, "dead-letter", value, headers, stage, code, says, text)


def refused(name: str, *says: str, route: str | None = None, **env: str | None) -> Case:
    """Settings (``None`` unsets a variable) or a route that must be refused at start."""
    return Case(name, "refused", says=says, env=env, route=route)


CASES = [
    dead("invalid JSON", b"{not json", "decode", "InvalidJson", "not JSON"),
    dead("empty value", b"", "decode", "InvalidJson", "not JSON"),
    dead("JSON with non-UTF-8 bytes", b'{"id": "\xff"}', "decode", "InvalidJson", "UTF-8"),
    dead("JSON array", b"[1, 2, 3]", "validate", "DetailNotObject", "JSON object", "array"),
    dead("JSON number", b"42", "validate", "DetailNotObject", "JSON object", "number"),
    dead("JSON string", b'"order"', "validate", "DetailNotObject", "JSON object", "string"),
    dead("tombstone (null value)", None, "decode", "Tombstone", "tombstone"),
    dead(
        "entry over the size limit",
        _json(id="big", blob="x" * 300_000),
        "validate",
        "EntryTooLarge",
        "limit 262144",
    ),
    dead(
        "DetailType over 128 characters",
        _json(id="long", type="t" * 129),
        "validate",
        "DetailTypeTooLong",
        "129 characters",
        "128",
    ),
    dead(
        "mapped field missing (detail_type null)",
        orjson.dumps({"id": "nokind"}),
        "map",
        "InvalidDetailType",
        "detail_type",
        "null",
        headers=(("strict", b"yes"),),
    ),
    dead(
        "resources not a list",
        _json(id="r1", resources="arn:aws:s3:::bucket"),
        "map",
        "InvalidResources",
        "list of strings",
    ),
    dead(
        "resources with a number",
        _json(id="r2", resources=["arn:aws:s3:::bucket", 7]),
        "map",
        "InvalidResources",
        "strings",
        "number",
    ),
    dead(
        "resource over 2048 characters",
        _json(id="r3", resources=["a" * 3000]),
        "validate",
        "ResourceTooLong",
        "2048",
    ),
    dead("unparseable time", _json(id="t1", time="next tuesday"), "map", "InvalidTime", "RFC 3339"),
    dead("time of the wrong type", _json(id="t2", time={"at": 1}), "map", "InvalidTime", "object"),
    dead(
        "huge headers on a bad record",
        b"{not json",
        "decode",
        "InvalidJson",
        "not JSON",
        headers=HUGE_HEADERS,
    ),
    dead(
        "permanent entry error from EventBridge",
        _json(id="perm", **{FAIL_MARKER: "MalformedDetail"}),
        "publish",
        "MalformedDetail",
        "permanent failure",  # the service's own ErrorMessage, passed on
    ),
    dead("non-UTF-8 bytes", b"\xff\xfe\x00 bad", "decode", "InvalidUtf8", "UTF-8", text=True),
    Case("huge headers on a good record", "delivered", _json(id="huge-ok"), headers=HUGE_HEADERS),
    refused(
        "JMESPath syntax error in a route",
        "route 1",
        "detail_type",
        route="detail_type: 'value.[type'",
    ),
    refused(
        "JMESPath syntax error in BRIDGE_MAP_DETAIL_TYPE",
        "BRIDGE_MAP_DETAIL_TYPE",
        "invalid JMESPath",
        BRIDGE_MAP_DETAIL_TYPE="value.[type",
    ),
    refused("port out of range", "BRIDGE_HTTP_PORT", "65535", BRIDGE_HTTP_PORT="70000"),
    refused("port not a number", "BRIDGE_HTTP_PORT", "integer", BRIDGE_HTTP_PORT="eighty"),
    refused("unknown API", "BRIDGE_EVENTBRIDGE_API", "partner", BRIDGE_EVENTBRIDGE_API="rest"),
    refused("unknown value format", "BRIDGE_VALUE_FORMAT", "json", BRIDGE_VALUE_FORMAT="xml"),
    refused("unknown tombstone policy", "BRIDGE_TOMBSTONES", "skip", BRIDGE_TOMBSTONES="drop"),
    refused("negative buffer size", "BRIDGE_MAX_BUFFERED_BYTES", BRIDGE_MAX_BUFFERED_BYTES="-1"),
    refused(
        "negative entry size limit",
        "BRIDGE_EVENTBRIDGE_PARTNER_MAX_BYTES",
        BRIDGE_EVENTBRIDGE_PARTNER_MAX_BYTES="-1",
    ),
    refused(
        "zero requests in flight",
        "BRIDGE_MAX_IN_FLIGHT_REQUESTS",
        BRIDGE_MAX_IN_FLIGHT_REQUESTS="0",
    ),
    refused("negative linger", "BRIDGE_BATCH_LINGER_MS", BRIDGE_BATCH_LINGER_MS="-5"),
    refused("no topics", "BRIDGE_KAFKA_TOPICS", BRIDGE_KAFKA_TOPICS=""),
    refused(
        "auto commit switched on",
        "BRIDGE_KAFKA_ENABLE_AUTO_COMMIT",
        "false",
        BRIDGE_KAFKA_ENABLE_AUTO_COMMIT="true",
    ),
    refused(
        "mapping file missing",
        "BRIDGE_MAPPING_FILE",
        "no such file",
        BRIDGE_MAPPING_FILE="/nonexistent/mapping.yaml",
        BRIDGE_MAP_SOURCE=None,
    ),
]


# --------------------------------------------------------------------------- one run for all


@dataclass
class Run:
    """What the two bridges did with the record cases."""

    dead_letters: dict[str, Message]  # by the ``case`` header
    delivered: set[str]
    committed: dict[str, int]  # by topic
    topics: dict[bool, str]  # text format? -> topic
    exit_codes: dict[bool, int]
    logs: dict[bool, str]


ROUTES = """\
routes:
  - topics: ["{topic}"]
    when: "headers.strict"
    source: "'{source}'"
    detail_type: "value.kind"
  - topics: ["{topic}"]
    source: "'{source}'"
    detail_type: "value.type || topic"
    resources: "value.resources"
    time: "value.time || timestamp"
"""


@pytest.fixture(scope="module")
def run(kafka_broker: KafkaBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """Both bridges over every record case, run to the end once for the module."""
    workdir = tmp_path_factory.mktemp("bad-input")
    with FakeEventBridge() as fake:
        bridges = {text: _start(kafka_broker, fake, workdir, text) for text in (False, True)}
        try:
            sent = {text: _produce_cases(kafka_broker, b.env, text) for text, b in bridges.items()}
            dead_letters = _await_resolution(kafka_broker, bridges, sent)
            codes = {text: b.terminate() for text, b in bridges.items()}
            yield Run(
                dead_letters=dead_letters,
                delivered=set(delivered_ids(fake)),
                committed={
                    b.env["BRIDGE_KAFKA_TOPICS"]: _committed(kafka_broker, b.env)
                    for b in bridges.values()
                },
                topics={text: b.env["BRIDGE_KAFKA_TOPICS"] for text, b in bridges.items()},
                exit_codes=codes,
                logs={text: b.log() for text, b in bridges.items()},
            )
        finally:
            for process in bridges.values():
                if process.running:
                    process.kill()


def _start(broker: KafkaBroker, fake: FakeEventBridge, workdir: Path, text: bool) -> BridgeProcess:
    name, group = unique("bad-text" if text else "bad-json"), unique("group")
    broker.create_topic(name, 1)
    broker.create_topic(f"{group}.dlq", 1)
    env = bridge_env(broker, name, group, fake.url, BRIDGE_TOMBSTONES="dead-letter")
    if text:
        env.update(
            BRIDGE_VALUE_FORMAT="string",
            BRIDGE_MAP_DETAIL_TYPE="'text.line'",
            BRIDGE_MAP_DETAIL="{id: value}",
        )
    else:
        mapping = workdir / "routes.yaml"
        mapping.write_text(ROUTES.format(topic=name, source=PARTNER_SOURCE))
        del env["BRIDGE_MAP_SOURCE"], env["BRIDGE_MAP_DETAIL_TYPE"]
        env["BRIDGE_MAPPING_FILE"] = str(mapping)
    return BridgeProcess(env, workdir / f"{name}.log").start()


def _good(case: Case) -> bytes:
    record_id = f"after-{case.name}"
    return record_id.encode() if case.text else _json(id=record_id)


def _produce_cases(broker: KafkaBroker, env: Mapping[str, str], text: bool) -> int:
    """Each case's record, then a good one; returns how many records were sent."""
    producer = Producer(broker.client_config({"enable.idempotence": True, "linger.ms": 5}))
    topic = env["BRIDGE_KAFKA_TOPICS"]
    sent = 0
    for case in CASES:
        if case.expect == "refused" or case.text != text:
            continue
        headers: list[tuple[str, str | bytes | None]] = [("case", case.name.encode())]
        headers.extend(case.headers)
        producer.produce(topic, case.value, key=case.name.encode(), headers=headers)
        producer.produce(topic, _good(case), key=b"good")
        sent += 2
    assert producer.flush(30) == 0
    return sent


def _await_resolution(
    broker: KafkaBroker,
    bridges: Mapping[bool, BridgeProcess],
    sent: Mapping[bool, int],
) -> dict[str, Message]:
    """Wait until each bridge committed past its last record; the dead letters by case."""
    for text, process in bridges.items():
        _await_commit(broker, process, sent[text])
    found: dict[str, Message] = {}
    for text, process in bridges.items():
        expected = sum(1 for c in CASES if c.expect == "dead-letter" and c.text == text)
        dlq = f"{process.env['BRIDGE_KAFKA_GROUP_ID']}.dlq"
        for message in read_all(broker, dlq, expected=expected, timeout=5):
            name = headers_of(message).get("case") or b"?"
            found[name.decode()] = message
    return found


def _await_commit(broker: KafkaBroker, process: BridgeProcess, records: int) -> None:
    wait_until(
        lambda: _committed(broker, process.env) == records or not process.running,
        90,
        "every record case resolved and committed",
        interval=1,
    )


def _committed(broker: KafkaBroker, env: Mapping[str, str]) -> int:
    return committed(broker, env["BRIDGE_KAFKA_GROUP_ID"], env["BRIDGE_KAFKA_TOPICS"], 1)[0]


# --------------------------------------------------------------------------- the table


@pytest.mark.timeout(180)
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_bad_input(case: Case, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    if case.expect == "refused":
        _check_refused(case, tmp_path)
        return
    run: Run = request.getfixturevalue("run")
    assert run.exit_codes[case.text] == 0, "the bridge must survive every bad record"
    assert "Traceback" not in run.logs[case.text]
    if case.expect == "delivered":
        assert orjson.loads(case.value or b"{}")["id"] in run.delivered
        assert case.name not in run.dead_letters
    else:
        _check_dead_letter(case, run)
    # Not stalled: the good record after it went out, and the commit passed both.
    assert f"after-{case.name}" in run.delivered
    assert run.committed[run.topics[case.text]] == sum(
        2 for c in CASES if c.expect != "refused" and c.text == case.text
    )


def _check_dead_letter(case: Case, run: Run) -> None:
    message = run.dead_letters.get(case.name)
    assert message is not None, f"no dead letter for {case.name!r}"
    headers = headers_of(message)
    assert headers["bridge.error.stage"] == case.stage.encode()
    assert headers["bridge.error.code"] == case.code.encode()
    text = (headers["bridge.error.message"] or b"").decode("utf-8")
    assert 0 < len(text) <= 1000 and "Traceback" not in text, text
    for word in case.says:
        assert word.lower() in text.lower(), f"{text!r} should mention {word!r}"
    assert message.value() == case.value  # byte for byte, a tombstone stays null
    for name, value in case.headers:
        assert headers[name] == value  # original headers kept, however large
    offset = int(headers["bridge.source.offset"] or b"-1")
    assert run.committed[run.topics[case.text]] > offset + 1


def _check_refused(case: Case, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    env.update(
        BRIDGE_KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9",  # never reached: refused before
        BRIDGE_KAFKA_TOPICS="orders",
        BRIDGE_MAP_SOURCE=f"'{PARTNER_SOURCE}'",
        BRIDGE_HTTP_PORT="0",
        AWS_REGION="us-east-1",
    )
    if case.route is not None:
        mapping = tmp_path / "routes.yaml"
        route = f"routes:\n  - topics: [orders]\n    source: \"'{PARTNER_SOURCE}'\"\n"
        mapping.write_text(f"{route}    {case.route}\n")
        env["BRIDGE_MAPPING_FILE"] = str(mapping)
        del env["BRIDGE_MAP_SOURCE"]
    for name, value in case.env.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "kafka_eventbridge", "run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output
    assert "configuration refused" in output
    problem = [line for line in output.splitlines() if all(w in line for w in case.says)]
    assert problem, f"no line naming {case.says} in:\n{output}"
    assert time.monotonic() - started < 30


# --------------------------------------------------------------------------- a record too big


def test_a_dead_letter_too_large_for_the_dead_letter_producer_does_not_crash_the_bridge(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    """A record the topic accepts but the dead-letter producer cannot write.

    Topics often allow records over 1 MB (``max.message.bytes``); such a record can never be
    an EventBridge entry, so it must be dead-lettered, and librdkafka's producer refuses
    messages over its ``message.max.bytes`` (1,000,000 by default) at ``produce()`` time. The
    bridge must then either dead-letter it anyway or stop as DESIGN.md says of an unwritable
    dead-letter topic: exit 1 with one clear line, nothing unresolved committed. It must not
    die of an unhandled exception with a traceback (Kubernetes would restart it into the
    same crash, with no readable reason).
    """
    name, group = unique("large"), unique("group")
    kafka_broker.create_topic(name, 1, {"max.message.bytes": "4194304"})
    kafka_broker.create_topic(f"{group}.dlq", 1, {"max.message.bytes": "4194304"})
    big = _json(id="huge", blob="x" * 1_500_000)
    producer = Producer(kafka_broker.client_config({"message.max.bytes": 4_000_000}))
    for value in (_json(id="before"), big, _json(id="after")):
        producer.produce(name, value)
    assert producer.flush(30) == 0

    with FakeEventBridge() as fake:
        env = bridge_env(kafka_broker, name, group, fake.url)
        process = BridgeProcess(env, tmp_path / "bridge.log").start()
        try:
            code = process.wait(60)
        except subprocess.TimeoutExpired:
            code = None  # still running: it must have dead-lettered the record
        log = process.log()
        if code is None:
            wait_until(lambda: _committed(kafka_broker, env) == 3, 30, "commit past all three")
            assert process.terminate() == 0
        elif process.running:
            process.kill()
    assert "Traceback" not in log, log[-4000:]
    if code is not None:
        assert code == 1
        assert _committed(kafka_broker, env) <= 1  # nothing at or after the big record
        errors = [line for line in process.log_lines() if line.get("level") == "error"]
        assert len(errors) == 1 and f"{group}.dlq" in errors[0]["message"], errors
