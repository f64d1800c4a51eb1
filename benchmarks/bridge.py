"""One bridge run: ``kafka-eventbridge run`` in its own process, watched from outside.

The run is timed by the stand-in's counters, polled over one keep-alive connection: from the
first poll that sees an accepted entry to the first that sees them all, so start-up and the
group join are not counted, and the entries counted are those accepted in between. Then it
waits for the group's committed offsets to cover the topic, reads the peak RSS (``VmHWM``) and
CPU time from ``/proc`` of the bridge and its child (the crt path's HTTP process), summed, and
stops it with SIGTERM (it must exit 0).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from benchmarks.workload import DLQ_TOPIC, PARTNER_SOURCE, committed_total, unique
from kafka_eventbridge_testing.brokers import KafkaBroker
from kafka_eventbridge_testing.procfs import children, children_status_kib

POLL_INTERVAL = 0.025
STALL_SECONDS = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class StandInStats:
    """The stand-in's ``entries_accepted``, over one keep-alive HTTP connection."""

    def __init__(self, url: str) -> None:
        parsed = urllib.parse.urlsplit(url)
        self._connection = http.client.HTTPConnection(parsed.hostname or "", parsed.port, timeout=5)

    def accepted(self) -> int:
        self._connection.request("GET", "/_control/stats")
        return int(json.loads(self._connection.getresponse().read())["entries_accepted"])

    def close(self) -> None:
        self._connection.close()


def pin_to(cpu: int) -> Callable[[], None]:
    """A pre-exec hook that keeps the child (all its threads) on one CPU."""
    return lambda: os.sched_setaffinity(0, {cpu})


def bridge_command() -> list[str]:
    """The console script of this interpreter's environment, as a user runs it."""
    script = Path(sys.executable).parent / "kafka-eventbridge"
    if script.exists():
        return [str(script), "run"]
    found = shutil.which("kafka-eventbridge")
    return [found, "run"] if found else [sys.executable, "-m", "kafka_eventbridge", "run"]


def bridge_env(
    broker: KafkaBroker, topic: str, endpoint: str, overrides: dict[str, str]
) -> dict[str, str]:
    """Default settings except what the scenario (or ``--set``) overrides."""
    return {
        "BRIDGE_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "BRIDGE_KAFKA_TOPICS": topic,
        "BRIDGE_KAFKA_GROUP_ID": unique("bench"),
        "BRIDGE_MAP_SOURCE": f"'{PARTNER_SOURCE}'",
        "BRIDGE_MAP_DETAIL_TYPE": "value.type || topic",
        "BRIDGE_DLQ_TOPIC": DLQ_TOPIC,
        "BRIDGE_HTTP_PORT": str(free_port()),
        # Quick group joins (the embedded broker holds a join for half the session timeout);
        # neither changes the throughput once assigned.
        "BRIDGE_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "BRIDGE_KAFKA_HEARTBEAT_INTERVAL_MS": "500",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        **overrides,
    }


def _proc_status(pid: int, key: str) -> int:
    """A ``kB`` field of /proc/<pid>/status, in bytes (0 if the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process and its children (the bridge is two processes on the crt path)."""
    return sum(cpu_seconds(p) for p in (pid, *children(pid)))


def tree_peak_rss(pid: int) -> int:
    """Peak RSS of a process plus its children's: pages they share are counted twice, so this
    overstates the memory they take together."""
    return _proc_status(pid, "VmHWM") + children_status_kib(pid, "VmHWM") * 1024


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, from /proc/<pid>/stat."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class RunResult:
    entries: int
    seconds: float
    entries_per_s: float
    peak_rss_bytes: int
    cpu_seconds: float
    committed: bool
    exit_code: int | None
    load_average: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def entries_per_cpu_s(self) -> float:
        return self.entries / self.cpu_seconds if self.cpu_seconds else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "entries": self.entries,
            "seconds": round(self.seconds, 3),
            "entries_per_s": round(self.entries_per_s, 1),
            "peak_rss_mb": round(self.peak_rss_bytes / 2**20, 1),
            "cpu_seconds": round(self.cpu_seconds, 2),
            "entries_per_cpu_s": round(self.entries_per_cpu_s, 1),
            "committed": self.committed,
            "exit_code": self.exit_code,
            "load_average_1m": round(self.load_average, 2),
            **self.extra,
        }


class BridgeRunError(RuntimeError):
    """The bridge exited, stalled, or never finished."""


class BridgeProcess:
    """``kafka-eventbridge run`` with its output in ``log``; optionally sampled by py-spy."""

    def __init__(
        self, env: dict[str, str], log: Path, profile: Path | None = None, cpu: int | None = None
    ) -> None:
        self.env = env
        self.log = log
        self.profile = profile
        self.cpu = cpu
        self.process: subprocess.Popen[bytes] | None = None
        self._spy: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def group(self) -> str:
        return self.env["BRIDGE_KAFKA_GROUP_ID"]

    def start(self) -> BridgeProcess:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                bridge_command(),
                env={**os.environ, **self.env},
                stdout=out,
                stderr=out,
                preexec_fn=None if self.cpu is None else pin_to(self.cpu),  # noqa: PLW1509
            )
        if self.profile is not None:
            self._start_profiler(self.profile)
        return self

    def _start_profiler(self, output: Path) -> None:
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        with self.log.with_suffix(".py-spy.log").open("ab") as out:
            self._spy = subprocess.Popen(
                [
                    spy,
                    "record",
                    "--pid",
                    str(self.pid),
                    "--rate",
                    "250",
                    "--format",
                    "raw",
                    "--output",
                    str(output),
                    "--nonblocking",
                    "--gil",
                ],
                stdout=out,
                stderr=out,
            )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 60) -> int | None:
        """SIGTERM and wait; the exit code (None if it had to be killed)."""
        if self.process is None:
            return None
        code: int | None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            code = None
        if self._spy is not None:
            try:
                self._spy.wait(30)
            except subprocess.TimeoutExpired:
                self._spy.kill()
        return code


@dataclass
class Window:
    """From the first poll that saw an accepted entry to the first that saw them all."""

    seconds: float
    entries: int
    cpu_seconds: float
    peers_cpu_seconds: dict[str, float]  # CPU the stand-in and the broker used meanwhile
    thread_cpu_seconds: dict[str, float]  # the bridge's CPU by thread group


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of a process's threads, grouped: the main thread, librdkafka's, the rest,
    and its child processes (the crt path's HTTP process).

    The rest are Python threads (publisher workers, the HTTP server): Python does not name
    OS threads, librdkafka does (``rdk:...``).
    """
    groups: dict[str, float] = {"main": 0.0, "librdkafka": 0.0, "other threads": 0.0}
    groups["child processes"] = sum(cpu_seconds(child) for child in children(pid))
    ticks = os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            name = (task / "comm").read_text().strip()
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        seconds = (int(fields[11]) + int(fields[12])) / ticks
        group = "main" if task.name == str(pid) else "other threads"
        groups["librdkafka" if name.startswith("rdk:") else group] += seconds
    return groups


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs since boot, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _cpu_of(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds of each peer process, and ``machine`` busy ticks (for the busy share)."""
    busy, total = _machine_ticks()
    return {**{name: cpu_seconds(pid) for name, pid in pids.items()}, "_busy": busy, "_all": total}


def wait_for_entries(
    stats: StandInStats,
    bridge: BridgeProcess,
    start: int,
    target: int,
    *,
    timeout: float,
    peers: dict[str, int],
) -> Window:
    """Poll until the stand-in has accepted ``target`` entries more than ``start``."""
    first: tuple[float, int, float, dict[str, float]] | None = None
    threads: dict[str, float] = {}
    target += start
    last_change, last_count = time.monotonic(), -1
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        count = stats.accepted()
        now = time.monotonic()
        if count > start and first is None:
            first = (now, count, tree_cpu_seconds(bridge.pid), _cpu_of(peers))
            threads = thread_cpu(bridge.pid)
        if count >= target and first is not None:
            peers_cpu = {k: v - first[3][k] for k, v in _cpu_of(peers).items()}
            # Share of all cores busy (anyone's), a measure of contention in the window.
            peers_cpu["machine_busy"] = peers_cpu.pop("_busy") / max(peers_cpu.pop("_all"), 1)
            cpu = tree_cpu_seconds(bridge.pid) - first[2]
            by_thread = {k: v - threads.get(k, 0.0) for k, v in thread_cpu(bridge.pid).items()}
            return Window(now - first[0], count - first[1], cpu, peers_cpu, by_thread)
        if count != last_count:
            last_change, last_count = now, count
        elif now - last_change > STALL_SECONDS:
            raise BridgeRunError(f"no progress for {STALL_SECONDS:.0f}s at {count}/{target}")
        if not bridge.running:
            raise BridgeRunError(f"bridge exited at {count}/{target}:\n{bridge.tail()}")
        time.sleep(POLL_INTERVAL)
    raise BridgeRunError(f"timed out at {last_count}/{target}")


def publish_calls(port: str) -> tuple[int, float]:
    """Publish calls the bridge has ended and the seconds they took, all outcomes, from its own
    ``publish_duration_seconds`` histogram (each call from the loop handing it over to its
    answer arriving: the round trip, plus the HTTP process's hand-offs)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    calls, seconds = 0, 0.0
    for family in text_string_to_metric_families(text):
        if family.name != "kafka_eventbridge_publish_duration_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_count"):
                calls += int(sample.value)
            elif sample.name.endswith("_sum"):
                seconds += sample.value
    return calls, seconds


def wait_committed(broker: KafkaBroker, group: str, topic: str, target: int) -> bool:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if committed_total(broker, group, topic) >= target:
            return True
        time.sleep(0.5)
    return False


def run_bridge(
    broker: KafkaBroker,
    topic: str,
    records: int,
    stand_in_url: str,
    *,
    overrides: dict[str, str],
    log: Path,
    profile: Path | None = None,
    peers: dict[str, int] | None = None,
    cpu: int | None = None,
) -> RunResult:
    """Run the bridge over a preloaded topic until every record is accepted and committed."""
    env = bridge_env(broker, topic, stand_in_url, overrides)
    stats = StandInStats(stand_in_url)
    start_count = stats.accepted()
    bridge = BridgeProcess(env, log, profile, cpu).start()
    try:
        timeout = max(180.0, records / 1000)
        window = wait_for_entries(
            stats, bridge, start_count, records, timeout=timeout, peers=peers or {}
        )
        committed = wait_committed(broker, bridge.group, topic, records)
        peak = tree_peak_rss(bridge.pid)
        calls, call_seconds = publish_calls(env["BRIDGE_HTTP_PORT"])
    finally:
        code = bridge.stop()
        stats.close()
    return RunResult(
        entries=window.entries,
        seconds=window.seconds,
        entries_per_s=window.entries / window.seconds if window.seconds > 0 else 0.0,
        peak_rss_bytes=peak,
        cpu_seconds=window.cpu_seconds,
        committed=committed,
        exit_code=code,
        load_average=os.getloadavg()[0],
        extra={
            "peer_cpu_seconds": {
                k: round(v, 2) for k, v in window.peers_cpu_seconds.items() if k != "machine_busy"
            },
            "machine_busy": round(window.peers_cpu_seconds.get("machine_busy", 0.0), 3),
            "thread_cpu_seconds": {k: round(v, 2) for k, v in window.thread_cpu_seconds.items()},
            "calls": calls,
            "mean_call_ms": round(call_seconds / calls * 1000, 2) if calls else None,
        },
    )
