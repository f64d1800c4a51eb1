#!/bin/sh
# Write server.properties from KAFKA_* variables, format the KRaft log dir, exec the broker.
set -eu

config=/tmp/kafka-server.properties
: >"${config}"
# KAFKA_LISTENER_SECURITY_PROTOCOL_MAP -> listener.security.protocol.map; __ keeps an
# underscore and ___ makes a dash, as the apache/kafka image does. KAFKA_HEAP_OPTS and
# KAFKA_OPTS are JVM options, not properties.
env | while IFS='=' read -r name value; do
  case "${name}" in
    KAFKA_HEAP_OPTS | KAFKA_OPTS) ;;
    KAFKA_*)
      key="$(printf '%s' "${name#KAFKA_}" | tr 'A-Z' 'a-z' \
        | sed -e 's/___/-/g' -e 's/__/\x01/g' -e 's/_/./g' -e 's/\x01/_/g')"
      printf '%s=%s\n' "${key}" "${value}" >>"${config}"
      ;;
  esac
done
grep -q '^process\.roles=' "${config}" || {
  echo "start-kafka: KAFKA_PROCESS_ROLES (and the rest of a KRaft configuration) must be set" >&2
  exit 2
}

jvm="${KAFKA_HEAP_OPTS:--Xmx512m -Xms64m} ${KAFKA_OPTS:-} -XX:+ExitOnOutOfMemoryError"
jvm="${jvm} -Djava.awt.headless=true -Dlog4j2.configurationFile=/opt/kafka/log4j2.properties"

# KRaft refuses to start on an unformatted log dir; a formatted one is left as it is.
# shellcheck disable=SC2086 # ${jvm} is a word list on purpose
java ${jvm} -cp '/opt/kafka/libs/*' kafka.tools.StorageTool format --ignore-formatted \
  --cluster-id "${CLUSTER_ID:?CLUSTER_ID must be set (a KRaft cluster id)}" --config "${config}"
# exec: the broker is PID 1 and gets `docker stop`'s SIGTERM, then shuts down cleanly.
# shellcheck disable=SC2086
exec java ${jvm} -cp '/opt/kafka/libs/*' kafka.Kafka "${config}"
