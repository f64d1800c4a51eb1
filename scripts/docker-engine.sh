#!/usr/bin/env bash
# Make sure a Docker engine answers, installing and starting one where none does.
#
#   scripts/docker-engine.sh          # exit 0 once `docker info` answers; non-zero otherwise
#
# Where an engine already answers (Docker Desktop, a CI service, a previous run) it is used
# as it is. Otherwise, as root on Debian: Debian's docker.io package is installed if dockerd
# is missing, and dockerd is started in the background with its bridge disabled
# (--bridge=none, no iptables rules): every container of this project runs on the host
# network and listens on 127.0.0.1, so the engine needs no network of its own.
# The engine's output goes to ${XDG_CACHE_HOME:-~/.cache}/kafka-eventbridge/dockerd.log.
#
# It never skips: if no engine can be reached or started, it says why and fails, and so does
# everything that calls it (make image, the image tests, BRIDGE_TEST_KAFKA=docker in CI).
# Environment: DOCKER_ENGINE_WAIT seconds to wait for a started engine (default 60).
set -euo pipefail

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'docker-engine: %s\n' "$*" >&2; exit 1; }

cache="${XDG_CACHE_HOME:-${HOME}/.cache}/kafka-eventbridge"
wait_s="${DOCKER_ENGINE_WAIT:-60}"

answers() { docker info >/dev/null 2>&1; }

install_engine() {
  [[ "$(id -u)" == 0 ]] || die "no Docker engine answers and installing one needs root"
  command -v apt-get >/dev/null || die "no Docker engine answers and apt-get is missing (not Debian?)"
  log "installing Debian's docker.io"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends docker.io >/dev/null
}

start_engine() {
  command -v dockerd >/dev/null || install_engine
  command -v docker >/dev/null || die "dockerd is installed but the docker client is not"
  [[ "$(id -u)" == 0 ]] || die "no Docker engine answers and starting dockerd needs root"
  mkdir -p "${cache}"
  log "starting dockerd (--bridge=none, log: ${cache}/dockerd.log)"
  # setsid: the engine outlives this script and the CI step that started it.
  setsid dockerd --bridge=none --iptables=false --ip-masq=false \
    >>"${cache}/dockerd.log" 2>&1 </dev/null &
  local pid=$! deadline=$((SECONDS + wait_s))
  until answers; do
    if ! kill -0 "${pid}" 2>/dev/null; then
      tail -n 5 "${cache}/dockerd.log" >&2 || true
      die "dockerd exited before answering (log above)"
    fi
    if ((SECONDS >= deadline)); then
      tail -n 20 "${cache}/dockerd.log" >&2 || true
      die "dockerd did not answer within ${wait_s}s (log above)"
    fi
    sleep 1
  done
}

if answers; then
  log "Docker engine answers: $(docker version --format '{{.Server.Version}}')"
else
  start_engine
  log "Docker engine started: $(docker version --format '{{.Server.Version}}')"
fi
