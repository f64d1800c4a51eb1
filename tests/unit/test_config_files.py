"""The shipped configuration files stay true to the code."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from kafka_eventbridge.mapping import load_routes, read_mapping_file
from kafka_eventbridge.settings import (
    _GROUPS,
    KAFKA_PREFIX,
    NAMED_KAFKA_VARIABLES,
    PREFIX,
    Api,
    MappingSettings,
)

CONFIG = Path(__file__).parents[2] / "config"


def documented_variables() -> set[str]:
    text = (CONFIG / ".env.example").read_text()
    return set(re.findall(r"^#?(BRIDGE_[A-Z0-9_]+)=", text, flags=re.MULTILINE))


def setting_variables() -> set[str]:
    return {
        f"{model.model_config.get('env_prefix', PREFIX)}{name.upper()}"
        for model in _GROUPS.values()
        for name in model.model_fields
    }


def test_env_example_documents_every_setting() -> None:
    missing = setting_variables() - documented_variables()
    assert not missing, f"add to config/.env.example: {sorted(missing)}"


def test_env_example_names_no_setting_that_does_not_exist() -> None:
    # librdkafka pass-through examples (BRIDGE_KAFKA_<PROPERTY>) are allowed.
    extra = {
        name
        for name in documented_variables() - setting_variables()
        if not (name.startswith(KAFKA_PREFIX) and name not in NAMED_KAFKA_VARIABLES)
    }
    assert not extra, f"config/.env.example names unknown settings: {sorted(extra)}"


@pytest.mark.parametrize(
    ("file", "api"),
    [("partner-orders.yaml", Api.PARTNER), ("custom-bus.yaml", Api.EVENTS)],
)
def test_example_mappings_compile(file: str, api: Api) -> None:
    path = CONFIG / "mappings" / file
    assert read_mapping_file(path)
    routes = load_routes(MappingSettings(mapping_file=path), api, [])
    assert routes


def test_samples_map_with_the_partner_example() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kafka_eventbridge",
            "map",
            str(CONFIG / "mappings" / "samples.jsonl"),
        ],
        env={"BRIDGE_MAPPING_FILE": str(CONFIG / "mappings" / "partner-orders.yaml"), "PATH": ""},
        capture_output=True,
        text=True,
        check=True,
    )
    lines = result.stdout.splitlines()
    assert len(lines) == 4
    assert '"entry"' in lines[0] and '"skipped"' in lines[1] and '"dead_letter"' in lines[3]


def test_readme_documents_every_setting() -> None:
    readme = (CONFIG.parent / "README.md").read_text()
    missing = {name for name in setting_variables() if f"`{name}`" not in readme}
    assert not missing, f"add to README's settings: {sorted(missing)}"
