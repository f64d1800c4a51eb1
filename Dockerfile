# kafka-eventbridge container image.
#
# Two stages: `build` installs the locked runtime dependencies and the project into a
# virtualenv; the final stage is the same Python base that receives only that virtualenv.
# No compiler, no build backend and no dev dependency reach it, and no pip: the virtualenv
# loses its own in the build stage, and the final stage removes the base interpreter's (the
# official image ships one; the offline base has none).
#
# scripts/check-dockerfile.sh lints this file and replays the build stage's COPY/RUN steps
# on the host (no container engine needed): keep the build stage to ARG, ENV, WORKDIR,
# COPY and RUN so the replay stays exact. scripts/build-images.sh builds it for real.
#
#   docker build -t kafka-eventbridge .
#   docker run --rm --read-only -e BRIDGE_KAFKA_BOOTSTRAP_SERVERS=... kafka-eventbridge
#
# Offline (no registry): make image builds it on a local Debian base,
#   --build-arg PYTHON_IMAGE=<a base made by debootstrap> --network host

# Both stages must use the same interpreter at the same path: the virtualenv points at it.
# The default is pinned by digest (python:3.11-slim-bookworm), so a rebuild gets the same
# base; refresh it deliberately: docker buildx imagetools inspect python:3.11-slim-bookworm
ARG PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b
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
# Where the image comes from: the repository's URL and the commit it was built from
# (scripts/build-images.sh passes both; `docker build` without them leaves them empty).
ARG SOURCE=""
ARG REVISION=""
LABEL org.opencontainers.image.title="kafka-eventbridge" \
      org.opencontainers.image.description="At-least-once bridge from Apache Kafka topics to Amazon EventBridge" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.revision="${REVISION}"

# The base interpreter's installer goes: nothing in the image installs anything, and an
# image without pip cannot be changed from inside. A no-op on a base without pip.
RUN if python -m pip --version >/dev/null 2>&1; then \
        python -m pip uninstall --yes --quiet pip setuptools wheel; \
    fi

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
