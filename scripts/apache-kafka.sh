#!/usr/bin/env bash
# A single-node Apache Kafka 4.x (KRaft) on loopback, for CI, the demo, benchmarks and humans.
#
#   scripts/apache-kafka.sh fetch    # download the broker's jars once (Maven Central, via mvn)
#   scripts/apache-kafka.sh start    # start detached; prints the bootstrap servers (host:port)
#   scripts/apache-kafka.sh status   # prints the bootstrap servers; exit 3 when not running
#   scripts/apache-kafka.sh stop     # SIGTERM, then SIGKILL after 20 s
#
# start options: --port N (default: a free port), --partitions N, --no-auto-create,
# --keep-data (reuse the previous data instead of a fresh log dir), --kafka-version V;
# every command takes --state-dir DIR (default: $XDG_CACHE_HOME/kafka-eventbridge/run/apache).
# Environment: PYTHON (default: the repo's .venv, else python3), BRIDGE_TEST_KAFKA_VERSION.
#
# The logic lives in kafka_eventbridge_testing.brokers, which the test fixture uses too, so a
# broker started here is configured exactly like the one BRIDGE_TEST_KAFKA=apache starts.
# Needs Java 17+ and Maven on PATH. Example (CI):
#   bootstrap=$(scripts/apache-kafka.sh start)
#   BRIDGE_TEST_KAFKA=external BRIDGE_TEST_BOOTSTRAP_SERVERS=$bootstrap pytest -m integration
#   scripts/apache-kafka.sh stop
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
    if [[ -x "$root/.venv/bin/python" ]]; then
        python="$root/.venv/bin/python"
    else
        python="python3"
    fi
fi
export PYTHONPATH="$root/testing/src:$root/src${PYTHONPATH:+:$PYTHONPATH}"
exec "$python" -m kafka_eventbridge_testing.brokers --kind apache "$@"
