"""What every reliability scenario shares: records with ids, load, and an exact count.

The bridge promises "nothing lost, duplicates bounded". The only way to check that exactly is
to give every record an id, and then to compare the ids produced with the ids the stand-in
accepted and the ids the dead-letter topic holds. :class:`Tally` does that comparison and is
the one figure each scenario reports: a line on the terminal and a JSON line in the results
file (``BRIDGE_RELIABILITY_RESULTS``), from which ``docs/reliability.md`` is filled.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson
from confluent_kafka import KafkaException, Producer

from kafka_eventbridge_testing.brokers import KafkaBroker
from kafka_eventbridge_testing.fake_eventbridge import ReceivedEntry
from kafka_eventbridge_testing.procfs import children_status_kib
from tests.integration.conftest import Scenario
from tests.integration.support import committed, read_all, wait_until

ENV_RESULTS = "BRIDGE_RELIABILITY_RESULTS"
ENV_SEED = "BRIDGE_RELIABILITY_SEED"


class SeededRandom(random.Random):
    """A random generator that remembers its seed, so a scenario can report it for replay."""

    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        self.initial_seed = seed


def record_value(record_id: str) -> bytes:
    """A small JSON record that maps with the integration suite's settings."""
    return orjson.dumps({"id": record_id, "type": "order.created"})


# --------------------------------------------------------------------------- load


class LoadProducer(threading.Thread):
    """Produces up to ``total`` records with ids ``<prefix>-<n>`` at about ``rate`` a second.

    Runs beside the bridge so that crashes, faults and rebalances hit it while records keep
    arriving ("under load"), not only while it drains a backlog; :meth:`stop` ends it early
    when a scenario's length depends on the broker (group joins take longer on Tansu).
    Idempotent and acks=all, so the producer itself neither loses nor duplicates: every id is
    in the topic exactly once.
    """

    def __init__(
        self,
        broker: KafkaBroker,
        topic: str,
        prefix: str,
        total: int,
        rate: float,
    ) -> None:
        super().__init__(name=f"load-{prefix}", daemon=True)
        self.topic = topic
        self.ids = [f"{prefix}-{n}" for n in range(total)]
        self.rate = rate
        self.produced = 0
        self.error: BaseException | None = None
        self._stopping = threading.Event()
        self._producer = Producer(
            broker.client_config({"linger.ms": 20, "enable.idempotence": True, "acks": "all"})
        )

    def run(self) -> None:
        try:
            self._produce()
        except BaseException as exc:  # reported by finish(), in the test's thread
            self.error = exc

    def _produce(self) -> None:
        started = time.monotonic()
        chunk_size = max(int(self.rate / 20), 1)  # a chunk every 50 ms
        for start in range(0, len(self.ids), chunk_size):
            if self._stopping.is_set():
                break
            chunk = self.ids[start : start + chunk_size]
            for record_id in chunk:
                self._producer.produce(self.topic, record_value(record_id), key=record_id)
            self._producer.poll(0)
            self.produced += len(chunk)
            ahead = started + self.produced / self.rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        # A broker restart can hold acknowledgements for a while: wait for every one.
        left = self._producer.flush(120)
        if left:
            raise AssertionError(f"{left} records never acknowledged by the broker")

    def stop(self) -> None:
        """Produce nothing more (what is queued is still delivered)."""
        self._stopping.set()

    def finish(self, timeout: float = 180) -> list[str]:
        """Wait for the last acknowledgement; the ids produced, in order."""
        self.join(timeout)
        if self.error is not None:
            raise self.error
        assert not self.is_alive(), "the load producer did not finish"
        return self.ids[: self.produced]


# --------------------------------------------------------------------------- counting


class EntrySource(Protocol):
    """The stand-in in this process or in another one: both page through accepted entries."""

    def entries_page(self, since: int, limit: int | None) -> tuple[list[ReceivedEntry], int]: ...


def delivered_ids(fake: EntrySource, key: str = "id", page: int = 20_000) -> list[str]:
    """The id of every entry the stand-in accepted, duplicates included, in arrival order."""
    found: list[str] = []
    since = 0
    while True:
        entries, next_seq = fake.entries_page(since, page)
        found.extend(str(e.detail[key]) for e in entries if key in e.detail)
        if not entries or next_seq <= since + len(entries):
            return found
        since += len(entries)


def dead_lettered_ids(
    broker: KafkaBroker, dlq: str, *, expected: int = 0, timeout: float = 3
) -> list[str]:
    """Ids of the records in the dead-letter topic (values kept byte for byte).

    With ``expected`` 0 this waits ``timeout`` seconds to show that nothing arrives.
    """
    ids = []
    for message in read_all(broker, dlq, expected=max(expected, 1), timeout=timeout):
        value = message.value()
        try:
            ids.append(str(orjson.loads(value or b"null")["id"]))
        except (orjson.JSONDecodeError, TypeError, KeyError):
            ids.append(f"<unparsed dead letter at {message.offset()}>")
    return ids


@dataclass(frozen=True)
class Tally:
    """One scenario's figures.

    ``lost`` counts produced ids found neither at the stand-in nor in the dead-letter topic;
    ``duplicates`` counts extra deliveries of an id (a crash or a revoke redelivers what was
    published but not yet committed).
    """

    scenario: str
    broker: str
    records: int
    delivered: int
    dead_lettered: int
    lost: int
    duplicates: int
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        extra = "".join(f", {k} {v}" for k, v in self.extra.items())
        return (
            f"[{self.broker}] {self.scenario}: records {self.records}, delivered "
            f"{self.delivered}, dead-lettered {self.dead_lettered}, lost {self.lost}, duplicates "
            f"{self.duplicates}, {self.seconds:.1f} s{extra}"
        )


def tally(
    scenario: str,
    broker: KafkaBroker,
    produced: Sequence[str],
    delivered: Iterable[str],
    dead: Iterable[str] = (),
    *,
    seconds: float,
    **extra: Any,
) -> Tally:
    """Compare ids produced with ids delivered and dead-lettered."""
    counts = Counter(delivered)
    dead_set = set(dead)
    lost = sum(1 for record_id in produced if record_id not in counts and record_id not in dead_set)
    return Tally(
        scenario=scenario,
        broker=str(broker.kind),
        records=len(produced),
        delivered=len(counts),
        dead_lettered=len(dead_set),
        lost=lost,
        duplicates=sum(n - 1 for n in counts.values()),
        seconds=round(seconds, 1),
        extra=extra,
    )


def wait_all_committed(
    scenario: Scenario,
    topic: str,
    partitions: int,
    count: int,
    timeout: float = 180,
    what: str = "every record committed",
) -> None:
    """Until the group's committed offsets on ``topic`` add up to ``count`` records."""
    wait_until(
        lambda: (
            offsets_sum(committed_when_ready(scenario.broker, scenario.group, topic, partitions))
            == count
        ),
        timeout,
        what,
        interval=1,
    )


class Results:
    """Appends each tally to the results file and keeps it for the terminal summary."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: list[str] = []

    def report(self, figures: Tally) -> Tally:
        line = figures.line()
        self.lines.append(line)
        print(line)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        row = {**asdict(figures), "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        with self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(row, sort_keys=True) + "\n")
        return figures

    def count(
        self,
        name: str,
        scenario: Scenario,
        produced: Sequence[str],
        started: float,
        **extra: Any,
    ) -> Tally:
        """Report the tally of a scenario against the stand-in and the dead-letter topic
        of ``scenario``, ``started`` being when its clock (``time.monotonic()``) started."""
        return self.report(
            tally(
                name,
                scenario.broker,
                produced,
                delivered_ids(scenario.fake),
                dead_lettered_ids(scenario.broker, scenario.dlq),
                seconds=time.monotonic() - started,
                **extra,
            )
        )


# --------------------------------------------------------------------------- processes


def peak_rss_mb(pid: int) -> float:
    """The bridge's peak resident set (VmHWM) plus its HTTP process's (the crt path's child):
    the kernel keeps each high-water mark, so one read at the end covers the whole run, with no
    sampling gaps. Pages the two share count twice: this overstates, never understates."""
    return (_status_kib(pid, "VmHWM") + children_status_kib(pid, "VmHWM")) / 1024


def rss_mb(pid: int) -> float:
    return (_status_kib(pid, "VmRSS") + children_status_kib(pid, "VmRSS")) / 1024


def _status_kib(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {name} in /proc/{pid}/status")


def offsets_sum(marks: Mapping[int, int]) -> int:
    return sum(marks.values())


def committed_when_ready(
    broker: KafkaBroker, group: str, topic: str, partitions: int, timeout: float = 30
) -> dict[int, int]:
    """``committed``, retried while a freshly started broker still loads its group
    coordinator (NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return committed(broker, group, topic, partitions)
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
