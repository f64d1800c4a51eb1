"""``make bench``: ceilings, the bridge end to end, slow endpoints, memory, latency, side by side.

Everything runs on this machine in one go, against one broker and one stand-in EventBridge, so
the ratios compare like with like. The stand-in, each bridge and each ceiling run in processes of
their own; the orchestrator only watches. Sizes are the issue's by default; ``--scale`` (or
``BENCH_SCALE``) shrinks them for a quick look, ``--only`` picks scenarios, ``--set`` changes a
bridge setting for every bridge run (to compare settings), ``--profile`` samples each bridge
with py-spy. See docs/performance.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks.bridge import BridgeRunError, RunResult, pin_to, run_bridge
from benchmarks.latency import run_latency
from benchmarks.report import Goal, median_of, render
from benchmarks.workload import DLQ_TOPIC, preload, unique
from kafka_eventbridge.settings import PipelineSettings
from kafka_eventbridge_testing.brokers import KafkaBroker, create_broker
from kafka_eventbridge_testing.fake_eventbridge import (
    EventLoop,
    FakeEventBridgeClient,
    FakeEventBridgeProcess,
)

RESULTS = Path(__file__).parent / "results"
SCENARIOS = ("ceilings", "e2e", "slow", "rss", "latency")
E2E_RECORDS = 200_000
RSS_BACKLOGS = (100_000, 2_000_000)
SLOW_LATENCY_MS = 50.0
SLOW_IN_FLIGHT = (16, 64, 256)
# The bare boto3 loop the bridge is compared with: 16 threads sharing one client.
BARE_THREADS = 16
# Entries per CPU-second of the bridge before the crt path (docs/performance.md, 2026-11-26).
BEFORE_PER_CPU_S = 28_000
BOTO3_PATH = {"BRIDGE_EVENTBRIDGE_HTTP_CLIENT": "boto3"}
LATENCY_SECONDS = 30.0
BATCH = 20
DEFAULT_IN_FLIGHT = int(PipelineSettings.model_fields["max_in_flight_requests"].default)

log = logging.getLogger("benchmarks")


@dataclass
class Options:
    scale: float
    repeat: int
    broker: str
    output: Path
    only: tuple[str, ...]
    overrides: dict[str, str]
    profile: bool
    pinned: bool
    latency_seconds: float
    latency_rate: float | None
    stand_in_loop: EventLoop

    @property
    def in_flight(self) -> int:
        return int(self.overrides.get("BRIDGE_MAX_IN_FLIGHT_REQUESTS", DEFAULT_IN_FLIGHT))

    def records(self, full: int) -> int:
        return max(BATCH * 100, round(full * self.scale / BATCH) * BATCH)


@dataclass
class Bench:
    options: Options
    broker: KafkaBroker
    stand_in_url: str
    logs: Path
    peers: dict[str, int] = field(default_factory=dict)
    scenarios: list[dict[str, Any]] = field(default_factory=list)
    latency: dict[str, Any] | None = None
    preloads: dict[str, float] = field(default_factory=dict)

    @property
    def control(self) -> FakeEventBridgeClient:
        return FakeEventBridgeClient(self.stand_in_url)

    def scenario(self, key: str, title: str, unit: str = "entries") -> dict[str, Any]:
        entry: dict[str, Any] = {"key": key, "title": title, "unit": unit, "runs": []}
        self.scenarios.append(entry)
        return entry

    def find(self, key: str) -> dict[str, Any] | None:
        return next((s for s in self.scenarios if s["key"] == key), None)

    def _log(self, name: str) -> Path:
        return self.logs / f"{name}-{len(list(self.logs.iterdir()))}.log"

    def bridge(
        self,
        topic: str,
        records: int,
        name: str,
        cpu: int | None = None,
        extra: dict[str, str] | None = None,
        **overrides: str,
    ) -> dict[str, Any]:
        settings = {**self.options.overrides, **(extra or {}), **overrides}
        log_path = self._log(name)
        profile = log_path.with_suffix(".pyspy.txt") if self.options.profile else None
        try:
            result: RunResult = run_bridge(
                self.broker,
                topic,
                records,
                self.stand_in_url,
                overrides=settings,
                log=log_path,
                profile=profile,
                peers=self.peers,
                cpu=cpu,
            )
        except BridgeRunError as exc:
            print(f"  {name}: FAILED: {exc}", flush=True)
            return {"error": str(exc), "log": log_path.name}
        run = {**result.to_json(), "log": log_path.name, "settings": settings, "cpu": cpu}
        print(
            f"  {name}: {result.entries_per_s:,.0f} entries/s, "
            f"{result.peak_rss_bytes / 2**20:.0f} MB peak RSS, "
            f"{result.entries_per_cpu_s:,.0f} entries per CPU-s, load {result.load_average:.2f}",
            flush=True,
        )
        return run

    def ceiling(self, args: list[str], name: str, cpu: int | None = None) -> dict[str, Any]:
        command = [sys.executable, "-m", "benchmarks.ceilings", *args]
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            check=False,
            preexec_fn=None if cpu is None else pin_to(cpu),
        )
        if done.returncode != 0:
            print(f"  {name}: FAILED\n{done.stderr[-2000:]}", flush=True)
            return {"error": done.stderr[-2000:]}
        run: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
        count_key = "entries" if "entries" in run else "records"
        if run.get("cpu_seconds"):
            run[f"{count_key}_per_cpu_s"] = round(run[count_key] / run["cpu_seconds"], 1)
        run["load_average_1m"] = round(os.getloadavg()[0], 2)
        rate = run.get("entries_per_s") or run.get("records_per_s")
        print(f"  {name}: {rate:,.0f}/s, load {run['load_average_1m']:.2f}", flush=True)
        return run

    def consume_ceiling(self, topic: str, records: int) -> dict[str, Any]:
        args = ["consume", "--bootstrap", self.broker.bootstrap_servers, "--topic", topic]
        return self.ceiling([*args, "--count", str(records), "--group", unique("raw")], "consume")

    # -- scenarios ----------------------------------------------------------------------

    def topic(self, records: int) -> str:
        topic = unique(f"bench-{records}")
        print(f"preloading {records:,} records into {topic} (12 partitions)", flush=True)
        seconds = preload(self.broker, topic, records)
        self.preloads[topic] = round(seconds, 2)
        print(f"  {records / seconds:,.0f} records/s", flush=True)
        return topic

    def ceilings_and_e2e(self, topic: str, records: int) -> None:
        """Interleaved repeats, so drifting contention hits every contender alike."""
        threads = self.options.in_flight
        contenders: list[tuple[dict[str, Any], Callable[[], dict[str, Any]]]] = []
        calls = ["--endpoint", self.stand_in_url, "--threads", str(BARE_THREADS)]
        calls += ["--calls", str(records // BATCH)]
        if "ceilings" in self.options.only:
            scenario = self.scenario(
                "boto3", f"ceiling: bare boto3 loop, boto3 defaults, {BARE_THREADS} thr"
            )
            contenders.append((scenario, partial(self.ceiling, ["boto3", *calls], "boto3 loop")))
            scenario = self.scenario("consume", "ceiling: raw confluent-kafka consume", "records")
            contenders.append((scenario, partial(self.consume_ceiling, topic, records)))
        if "e2e" in self.options.only:
            scenario = self.scenario(
                "e2e", f"bridge end to end, crt path, defaults ({threads} in flight)"
            )
            contenders.append((scenario, partial(self.bridge, topic, records, "bridge")))
            scenario = self.scenario(
                "e2e-boto3", f"bridge end to end, boto3 path ({threads} in flight)"
            )
            boto3_path = partial(self.bridge, topic, records, "bridge-boto3", extra=BOTO3_PATH)
            contenders.append((scenario, boto3_path))
        if self.options.pinned and {"ceilings", "e2e"} <= set(self.options.only):
            # The same pair with each process held on one CPU: see docs/performance.md (GIL).
            cpu = max(os.sched_getaffinity(0))
            scenario = self.scenario("boto3-pinned", "ceiling: bare boto3 loop, defaults, 1 CPU")
            pinned = partial(self.ceiling, ["boto3", *calls], "boto3 loop, 1 CPU", cpu)
            contenders.append((scenario, pinned))
            scenario = self.scenario("e2e-pinned", "bridge end to end, defaults, 1 CPU")
            contenders.append((scenario, partial(self.bridge, topic, records, "bridge-1cpu", cpu)))
        for attempt in range(self.options.repeat):
            print(f"round {attempt + 1}/{self.options.repeat}", flush=True)
            for scenario, run in contenders:
                scenario["runs"].append(run())

    def slow_endpoint(self, topic: str, records: int) -> None:
        self.control.update_faults(latency_ms=SLOW_LATENCY_MS)
        try:
            scenarios = {
                (n, ""): self.scenario(f"slow-{n}", f"bridge, 50 ms endpoint, {n} in flight")
                for n in SLOW_IN_FLIGHT
            }
            scenarios[(64, "boto3")] = self.scenario(
                "slow-boto3-64", "bridge, boto3 path, 50 ms endpoint, 64 in flight"
            )
            for attempt in range(self.options.repeat):
                print(f"50 ms endpoint, round {attempt + 1}/{self.options.repeat}", flush=True)
                for (n, path), scenario in scenarios.items():
                    settings = {"BRIDGE_MAX_IN_FLIGHT_REQUESTS": str(n)}
                    if path:
                        settings |= BOTO3_PATH
                    name = f"slow-{path}{'-' if path else ''}{n}"
                    scenario["runs"].append(self.bridge(topic, records, name, extra=settings))
        finally:
            self.control.update_faults(latency_ms=0.0)

    def rss(self) -> None:
        for backlog in RSS_BACKLOGS:
            records = self.options.records(backlog)
            topic = self.topic(records)
            scenario = self.scenario(f"rss-{backlog}", f"bridge, {records:,} record backlog")
            scenario["runs"].append(self.bridge(topic, records, f"rss-{records}"))

    def measure_latency(self) -> None:
        rate = self.options.latency_rate
        if rate is None:
            e2e = self.find("e2e")
            best = median_of(e2e["runs"], "entries_per_s") if e2e else None
            rate = best / 2 if best else 10_000.0
        seconds = max(15.0, self.options.latency_seconds * min(self.options.scale, 1.0))
        print(f"latency at {rate:,.0f} records/s for {seconds:.0f}s", flush=True)
        try:
            with FakeEventBridgeProcess(store="times") as keeping:
                self.latency = run_latency(
                    self.broker,
                    keeping.url,
                    rate=rate,
                    seconds=seconds,
                    overrides=self.options.overrides,
                    log=self._log("latency"),
                )
        except BridgeRunError as exc:
            print(f"  latency: FAILED: {exc}", flush=True)
            return
        print(
            f"  p50 {self.latency['p50_ms']} ms, p99 {self.latency['p99_ms']} ms "
            f"({self.latency['measured']:,} entries)",
            flush=True,
        )

    def run(self) -> None:
        only = self.options.only
        if {"ceilings", "e2e", "slow"} & set(only):
            records = self.options.records(E2E_RECORDS)
            topic = self.topic(records)
            if {"ceilings", "e2e"} & set(only):
                self.ceilings_and_e2e(topic, records)
            if "slow" in only:
                self.slow_endpoint(topic, records)
        if "rss" in only:
            self.rss()
        if "latency" in only:
            self.measure_latency()

    # -- verdicts -------------------------------------------------------------------------

    def _runs(self, key: str) -> list[dict[str, Any]]:
        scenario = self.find(key)
        return scenario["runs"] if scenario else []

    def _median(self, key: str, field_name: str = "entries_per_s") -> float | None:
        return median_of(self._runs(key), field_name)

    def goals(self) -> list[Goal]:
        goals = []
        bare, e2e = self._median("boto3"), self._median("e2e")
        ratio = e2e / bare if e2e and bare else None
        name = f"bridge end to end / bare boto3 loop ({BARE_THREADS} threads)"
        goals.append(Goal(name, ratio, 2.0, "x"))
        per_cpu = self._median("e2e", "entries_per_cpu_s")
        name = f"bridge entries per CPU-s / before the crt path ({BEFORE_PER_CPU_S:,})"
        goals.append(Goal(name, per_cpu / BEFORE_PER_CPU_S if per_cpu else None, 2.0, "x"))
        boto3_path = self._median("e2e-boto3")
        if boto3_path and bare:
            # No target: the plain path's standing, so the gain of the crt path is visible.
            name = "  for comparison: the boto3 path / bare boto3 loop"
            goals.append(Goal(name, boto3_path / bare, 0.0, "x", info=True))
        bare_1, e2e_1 = self._median("boto3-pinned"), self._median("e2e-pinned")
        if bare_1 and e2e_1:
            goals.append(Goal("the same, each process on 1 CPU", e2e_1 / bare_1, 2.0, "x"))
        for n in SLOW_IN_FLIGHT:
            slow = self._median(f"slow-{n}")
            if slow is None:
                continue
            bound = min(e2e or float("inf"), n * BATCH / (SLOW_LATENCY_MS / 1000))
            goals.append(
                Goal(
                    f"50 ms endpoint, {n} in flight / min(CPU ceiling, {n}x20/0.05s)",
                    slow / bound,
                    0.9,
                    "x",
                )
            )
            # What the window allows with the calls as long as they were (the stand-in's
            # 50 ms, its own delays on these shared cores, the HTTP process's hand-offs):
            # below 1, slots stood empty while records waited. Each run against its own calls.
            runs = [r for r in self._runs(f"slow-{n}") if r.get("mean_call_ms")]
            if runs:
                call_ms = median_of(runs, "mean_call_ms")
                kept = statistics.median(
                    r["entries_per_s"] * r["mean_call_ms"] / 1000 / (n * BATCH) for r in runs
                )
                name = f"  the same / ({n}x20 / its calls' mean time, {call_ms:.1f} ms)"
                goals.append(Goal(name, kept, 0.0, "x", info=True))
        for backlog in RSS_BACKLOGS:
            peak = self._median(f"rss-{backlog}", "peak_rss_mb")
            if peak is not None:
                goals.append(
                    Goal(
                        f"peak RSS, {backlog:,} record backlog (scaled)",
                        peak,
                        200,
                        "MB",
                        higher_is_better=False,
                    )
                )
        if self.latency:
            goals.append(
                Goal(
                    "p99 produce→accepted at half the max rate",
                    self.latency["p99_ms"],
                    100,
                    "ms",
                    higher_is_better=False,
                )
            )
        return goals

    def results(self) -> dict[str, Any]:
        return {
            "scenarios": self.scenarios,
            "latency": self.latency,
            "preload_seconds": self.preloads,
        }


def _parse_overrides(items: Sequence[str]) -> dict[str, str]:
    overrides = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.startswith("BRIDGE_"):
            raise SystemExit(f"--set takes BRIDGE_NAME=value, got {item!r}")
        overrides[name] = value
    return overrides


def parse_args(argv: Sequence[str] | None) -> Options:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument(
        "--scale",
        type=float,
        default=float(os.environ.get("BENCH_SCALE", "1")),
        help="multiply record counts and durations (env BENCH_SCALE; default 1 = the issue's)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=int(os.environ.get("BENCH_REPEAT", "3")),
        help="runs of each throughput scenario; the table shows medians (default 3)",
    )
    parser.add_argument(
        "--broker",
        choices=["apache", "embedded"],
        default=os.environ.get("BENCH_BROKER", "apache"),
        help="Apache Kafka (KRaft, needs Java) or the embedded Tansu broker (default apache)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=Path(os.environ.get("BENCH_OUTPUT", RESULTS / f"bench-{stamp}.json")),
        help="JSON results file (env BENCH_OUTPUT; default benchmarks/results/bench-<time>.json)",
    )
    parser.add_argument(
        "--only",
        default=",".join(SCENARIOS),
        help=f"comma list of scenarios to run, of {','.join(SCENARIOS)}",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="BRIDGE_NAME=VALUE",
        help="a bridge setting for every bridge run (repeatable)",
    )
    parser.add_argument("--profile", action="store_true", help="py-spy every bridge run")
    parser.add_argument(
        "--no-pinned",
        action="store_true",
        help="skip the bare loop and bridge runs held on one CPU",
    )
    parser.add_argument(
        "--stand-in-loop",
        choices=[loop.value for loop in EventLoop],
        default=EventLoop.UVLOOP.value,
        help="the stand-in's event loop (default uvloop; asyncio to see what it costs the peers)",
    )
    parser.add_argument("--latency-seconds", type=float, default=LATENCY_SECONDS)
    parser.add_argument(
        "--latency-rate", type=float, help="records/s for the latency run (default: half of e2e)"
    )
    args = parser.parse_args(argv)
    only = tuple(s.strip() for s in args.only.split(",") if s.strip())
    unknown = set(only) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    return Options(
        scale=args.scale,
        repeat=max(1, args.repeat),
        broker=args.broker,
        output=args.output,
        only=only,
        overrides=_parse_overrides(args.overrides),
        profile=args.profile,
        pinned=not args.no_pinned,
        latency_seconds=args.latency_seconds,
        latency_rate=args.latency_rate,
        stand_in_loop=EventLoop(args.stand_in_loop),
    )


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    logging.getLogger("benchmarks.librdkafka").setLevel(logging.ERROR)
    logging.getLogger("kafka_eventbridge").setLevel(logging.ERROR)
    options = parse_args(argv)
    options.output.parent.mkdir(parents=True, exist_ok=True)
    logs = options.output.with_suffix("")
    logs.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    print(f"starting the {options.broker} broker and the stand-in EventBridge", flush=True)
    with (
        create_broker(options.broker) as broker,
        FakeEventBridgeProcess(store="counts", event_loop=options.stand_in_loop) as fake,
    ):
        broker.create_topic(DLQ_TOPIC, 1)
        bench = Bench(options, broker, fake.url, logs, peers=_peer_pids(broker, fake))
        bench.run()
    goals = bench.goals()
    results = {
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "broker": options.broker,
        "scale": options.scale,
        "repeat": options.repeat,
        "in_flight_default": DEFAULT_IN_FLIGHT,
        "overrides": options.overrides,
        "stand_in_loop": str(options.stand_in_loop),
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg()[0],
            "python": sys.version.split()[0],
        },
        "wall_seconds": round(time.monotonic() - started, 1),
        **bench.results(),
        "goals": [g.to_json() for g in goals],
    }
    table = render(results, goals)
    print("\n" + table)
    results["table"] = table.splitlines()
    options.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nresults: {_shown(options.output)}; logs: {_shown(logs)}/")
    return 0


def _peer_pids(broker: KafkaBroker, fake: FakeEventBridgeProcess) -> dict[str, int]:
    """The stand-in's and the broker's process ids, to report the CPU they use."""
    pids = {}
    process = getattr(fake, "_process", None)
    if process is not None:
        pids["stand_in"] = int(process.pid)
    if broker.pid is not None:
        pids["broker"] = broker.pid
    return pids


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    sys.exit(main())
