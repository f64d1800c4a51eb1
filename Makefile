# kafka-eventbridge: every command sets up what it needs (a virtualenv in .venv).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST := $(PY) -m pytest

.PHONY: help install demo test test-unit test-simulation test-integration test-kafka test-reliability \
	lint format typecheck bench check-chart check-dockerfile check-rules ci clean \
	image image-kafka test-image test-docker

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml testing/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet uv
	$(VENV)/bin/uv pip install --quiet --python $(PY) -e ".[dev]" -e ./testing
	touch $(STAMP)

install: $(STAMP) ## create .venv with the bridge, its test package (testing/) and dev tools

demo: $(STAMP) ## run the bridge against an embedded broker and a local EventBridge emulator
	$(VENV)/bin/kafka-eventbridge-demo

test: $(STAMP) ## unit, simulation and integration tests (embedded broker, stand-in and moto EventBridge)
	$(PYTEST) tests/unit tests/simulation tests/integration

test-unit: $(STAMP) ## unit tests only (no broker)
	$(PYTEST) tests/unit

test-simulation: $(STAMP) ## the loop over seeded random schedules (BRIDGE_SIM_SEED, BRIDGE_SIM_SCHEDULES)
	$(PYTEST) tests/simulation

test-integration: $(STAMP) ## integration tests on BRIDGE_TEST_KAFKA (default embedded)
	$(PYTEST) tests/integration

test-kafka: $(STAMP) ## integration tests against real Apache Kafka (fetched with Maven)
	BRIDGE_TEST_KAFKA=apache $(PYTEST) tests/integration

test-reliability: $(STAMP) ## fault and load scenarios (long)
	$(PYTEST) tests/reliability

lint: $(STAMP) ## ruff lint and format check
	$(VENV)/bin/ruff check src testing/src tests benchmarks
	$(VENV)/bin/ruff format --check src testing/src tests benchmarks

format: $(STAMP) ## apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix src testing/src tests benchmarks
	$(VENV)/bin/ruff format src testing/src tests benchmarks

typecheck: $(STAMP) ## mypy --strict
	$(VENV)/bin/mypy

bench: $(STAMP) ## side-by-side throughput, latency and memory benchmark
	$(PY) -m benchmarks.run

image: ## build the container image offline (Docker engine started if needed; local Debian base)
	bash scripts/build-images.sh bridge

image-kafka: $(STAMP) ## build the Apache Kafka image of BRIDGE_TEST_KAFKA=docker, offline
	bash scripts/build-images.sh kafka

test-image: $(STAMP) image ## run the built image as users do: delivery, dead letter, docker stop, check, contents
	$(PYTEST) tests/image

test-docker: image-kafka ## integration tests on Apache Kafka in a container (testcontainers)
	BRIDGE_TEST_KAFKA=docker $(PYTEST) tests/integration

check-chart: ## helm lint, helm template and offline schema validation of the chart
	bash scripts/check-chart.sh

check-dockerfile: $(STAMP) ## hadolint, and the image's install steps in a fresh virtualenv
	bash scripts/check-dockerfile.sh

check-rules: ## promtool checks of the alert rules and of a real scrape
	bash scripts/check-rules.sh

ci: ## what CI runs
	bash .ci/run

clean: ## remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
