# syntax=docker/dockerfile:1
#
# kafka-eventbridge container image.
#
# Two stages: `build` installs the locked runtime dependencies and the project into a
# virtualenv; the final stage is a plain slim Python image that receives only that
# virtualenv. No compiler, no build backend, no pip and no dev dependency reach it.
#
# scripts/check-dockerfile.sh lints this file and replays the build stage's COPY/RUN steps
# on the host (no container engine needed): keep the build stage to ARG, ENV, WORKDIR,
# COPY and RUN so the replay stays exact.
#
#   docker build -t kafka-eventbridge .
#   docker run --rm --read-only -e BRIDGE_KAFKA_BOOTSTRAP_SERVERS=... kafka-eventbridge

# Both stages must use the same interpreter at the same path: the virtualenv points at it.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# Where the virtualenv lives, identical in both stages (its scripts' shebangs name it).
ARG VENV=/opt/kafka-eventbridge

FROM ${PYTHON_IMAGE} AS build
ARG VENV
ENV VIRTUAL_ENV=${VENV} \
    PATH=${VENV}/bin:${PATH} \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src

RUN python -m venv "${VIRTUAL_ENV}"

# Dependencies first, in their own layer: it is rebuilt only when the lock changes.
# Hashes are required and only wheels are accepted, so nothing is compiled from source.
# Regenerate the lock after changing dependencies in pyproject.toml:
#   uv pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes --extra otel -o requirements.lock
COPY requirements.lock ./
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --require-hashes --only-binary=:all: --no-deps --no-compile -r requirements.lock

# The project itself. --no-deps: every dependency must come from the lock, and `pip check`
# fails the build if the lock misses one. pip and setuptools then leave the virtualenv:
# nothing needs them at run time. Bytecode is compiled last, for every module left, with
# unchecked hashes: the image is immutable and its root filesystem is read-only at run
# time, so Python never needs to (and never could) rewrite a .pyc file.
COPY pyproject.toml README.md ./
COPY src/ ./src/
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --no-deps --no-compile . \
    && pip check \
    && pip uninstall --yes --quiet pip setuptools \
    && python -m compileall -q -j 0 --invalidation-mode unchecked-hash "${VIRTUAL_ENV}"


FROM ${PYTHON_IMAGE}
ARG VENV
LABEL org.opencontainers.image.title="kafka-eventbridge" \
      org.opencontainers.image.description="At-least-once bridge from Apache Kafka topics to Amazon EventBridge" \
      org.opencontainers.image.licenses="Apache-2.0"

# Root owns the application files; the process cannot modify them.
COPY --from=build ${VENV} ${VENV}

ENV PATH=${VENV}/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# A numeric user, so Kubernetes can verify runAsNonRoot without reading /etc/passwd.
# The daemon writes nothing to disk; run it with a read-only root filesystem (and a
# writable /tmp if a library ever needs scratch space).
USER 10001:10001

# /metrics, /healthz and /readyz (BRIDGE_HTTP_PORT).
EXPOSE 8080

# Exec form: the daemon is PID 1 and receives SIGTERM itself, then drains and commits.
ENTRYPOINT ["kafka-eventbridge"]
CMD ["run"]
