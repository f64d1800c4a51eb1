"""``kafka-eventbridge map``: the entries sample records become, without a cluster."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kafka_eventbridge.cli import main

SOURCE = "aws.partner/acme.com/orders"
MAPPING = f"""
routes:
  - topics: ["orders"]
    filter: "value.status != 'draft'"
    source: "'{SOURCE}'"
    detail_type: "value.type || 'order.event'"
    resources: "[value.customer_arn]"
"""


@pytest.fixture(autouse=True)
def _no_bridge_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("BRIDGE_"):
            monkeypatch.delenv(name)


@pytest.fixture
def mapping_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "mapping.yaml"
    path.write_text(MAPPING, encoding="utf-8")
    monkeypatch.setenv("BRIDGE_MAPPING_FILE", str(path))
    return path


def samples(tmp_path: Path, *lines: Any) -> Path:
    path = tmp_path / "samples.jsonl"
    text = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines)
    path.write_text(text + "\n", encoding="utf-8")
    return path


def run_map(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[Any], str]:
    """Exit code, the printed JSON lines, and standard error."""
    with pytest.raises(SystemExit) as exited:
        main(["map", *args])
    out, err = capsys.readouterr()
    code = exited.value.code
    assert isinstance(code, int)
    return code, [json.loads(line) for line in out.splitlines()], err


ORDER = {
    "topic": "orders",
    "partition": 2,
    "offset": 40,
    "timestamp": 1767225600123,
    "key": "customer-7",
    "value": {"type": "order.created", "customer_arn": "arn:aws:iam::1:user/c", "n": "Zoë"},
}


@pytest.mark.usefixtures("mapping_file")
def test_prints_the_entry_each_record_becomes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, (line,), err = run_map(capsys, str(samples(tmp_path, ORDER)))

    assert code == 0
    assert err == ""
    detail = '{"type":"order.created","customer_arn":"arn:aws:iam::1:user/c","n":"Zoë"}'
    assert line == {
        "record": {"topic": "orders", "partition": 2, "offset": 40},
        "entry": {
            "Source": SOURCE,
            "DetailType": "order.created",
            "Detail": detail,
            "Resources": ["arn:aws:iam::1:user/c"],
            "Time": "2026-01-01T00:00:00.123Z",
        },
        "size": 14 + len(SOURCE) + len("order.created") + len(detail.encode()) + 21,
    }


@pytest.mark.usefixtures("mapping_file")
def test_skipped_dead_lettered_and_unreadable_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = samples(
        tmp_path,
        {"topic": "orders", "value": {"status": "draft"}},
        {"topic": "orders"},  # no value: a tombstone, skipped by default
        {"topic": "orders", "value": [1, 2]},
        {"topic": "orders", "value_text": "not json"},
        {"topic": "payments", "value": {}},
        "this is not JSON",
        "",
        {"topic": "orders", "value_base64": "eyJ0eXBlIjoiYiJ9"},  # {"type":"b"}
    )

    code, lines, _ = run_map(capsys, str(path))

    assert code == 0
    assert lines[0] == {
        "record": {"topic": "orders", "partition": 0, "offset": 0},
        "skipped": "filtered or tombstone",
    }
    assert lines[1]["skipped"] == "filtered or tombstone"
    assert [(line["dead_letter"]["stage"], line["dead_letter"]["code"]) for line in lines[2:5]] == [
        ("validate", "DetailNotObject"),
        ("decode", "InvalidJson"),
        ("map", "NoRoute"),
    ]
    assert lines[2]["record"] == {"topic": "orders", "partition": 0, "offset": 2}
    assert lines[5]["error"].startswith("line 6: not a sample record: ")
    assert lines[6]["entry"]["DetailType"] == "b"
    assert lines[6]["record"]["offset"] == 7  # offsets count lines, blank ones too
    assert len(lines) == 7


@pytest.mark.usefixtures("mapping_file")
@pytest.mark.parametrize(
    ("sample", "expected"),
    [
        ({"topic": "orders", "value": {"type": "a"}}, 0),
        ({"topic": "orders", "value": {"status": "draft"}}, 0),  # skipped is not a failure
        ({"topic": "orders", "value": "text"}, 1),
        ('{"no": "topic"}', 1),
    ],
    ids=["entry", "skipped", "dead-letter", "unreadable"],
)
def test_strict_exits_1_when_a_record_would_fail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], sample: Any, expected: int
) -> None:
    path = str(samples(tmp_path, sample))

    assert run_map(capsys, "--strict", path)[0] == expected
    assert run_map(capsys, path)[0] == 0


@pytest.mark.usefixtures("mapping_file")
def test_reads_standard_input(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(ORDER) + "\n"))

    code, (line,), _ = run_map(capsys, "-")
    assert code == 0
    assert line["entry"]["DetailType"] == "order.created"


def test_shortcut_settings_and_events_api(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BRIDGE_EVENTBRIDGE_API", "events")
    monkeypatch.setenv("BRIDGE_EVENTBRIDGE_EVENT_BUS", "orders-bus")
    monkeypatch.setenv("BRIDGE_MAP_DETAIL", "{id: key, h: headers.h}")
    sample = {"topic": "anything", "key": "k1", "headers": {"h": "v"}}
    monkeypatch.setenv("BRIDGE_TOMBSTONES", "map")

    code, (line,), _ = run_map(capsys, str(samples(tmp_path, sample)))

    assert code == 0
    assert line["entry"] == {
        "Source": "kafka-eventbridge",
        "DetailType": "anything",
        "Detail": '{"id":"k1","h":"v"}',
        "EventBusName": "orders-bus",
    }


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"BRIDGE_EVENTBRIDGE_API": "rest"}, "BRIDGE_EVENTBRIDGE_API: Input should be"),
        ({"BRIDGE_VALUE_FORMAT": "yaml"}, "BRIDGE_VALUE_FORMAT: Input should be"),
        (
            {"BRIDGE_MAP_DETAIL": "value"},
            "BRIDGE_MAP_*: source is required for PutPartnerEvents (api=partner)",
        ),
        (
            {"BRIDGE_MAP_SOURCE": "'aws.partner/a.com/x'", "BRIDGE_MAP_DETAIL_TYPE": "value.["},
            "BRIDGE_MAP_DETAIL_TYPE: invalid JMESPath",
        ),
    ],
)
def test_bad_settings_exit_2_with_a_readable_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variables: dict[str, str],
    expected: str,
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)

    code, lines, err = run_map(capsys, str(samples(tmp_path, ORDER)))

    assert code == 2
    assert lines == []
    assert err.splitlines()[0] == "kafka-eventbridge: configuration refused:"
    assert any(line.strip().startswith(expected) for line in err.splitlines()[1:])
    assert "Traceback" not in err


def bridge_command(
    tmp_path: Path, variables: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    """The command as a user runs it, in a clean BRIDGE_* environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    env.update(variables)
    return subprocess.run(
        [sys.executable, "-m", "kafka_eventbridge", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_console_command_maps_samples(tmp_path: Path) -> None:
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(MAPPING, encoding="utf-8")
    path = samples(tmp_path, ORDER, {"topic": "orders", "value": 1})

    done = bridge_command(
        tmp_path, {"BRIDGE_MAPPING_FILE": str(mapping)}, "map", "--strict", str(path)
    )

    assert done.returncode == 1, done.stderr
    entry, dead = (json.loads(line) for line in done.stdout.splitlines())
    assert entry["entry"]["Source"] == SOURCE
    assert dead["dead_letter"]["code"] == "DetailNotObject"


def test_console_command_refuses_bad_settings_without_a_traceback(tmp_path: Path) -> None:
    done = bridge_command(
        tmp_path,
        {"BRIDGE_EVENTBRIDGE_API": "rest", "BRIDGE_EVENTBRIDGE_PARTNER_MAX_BYTES": "10"},
        "map",
        str(samples(tmp_path, ORDER)),
    )

    assert done.returncode == 2
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    problems = [line.strip() for line in done.stderr.splitlines()[1:]]
    assert [p.split(":")[0] for p in problems] == [
        "BRIDGE_EVENTBRIDGE_API",
        "BRIDGE_EVENTBRIDGE_PARTNER_MAX_BYTES",
    ]
