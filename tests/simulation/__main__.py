"""Replay simulated schedules: ``python -m tests.simulation --seed N`` (one, verbosely) or
``--seeds FIRST COUNT`` (a range), with ``--mutant NAME`` to run a planted bug."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time

from tests.simulation.mutants import MUTANTS
from tests.simulation.world import Simulation, Violation


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.simulation")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--seed", type=int, help="replay one schedule")
    group.add_argument("--seeds", type=int, nargs=2, metavar=("FIRST", "COUNT"))
    parser.add_argument("--mutant", choices=sorted(MUTANTS), help="with a planted bug")
    args = parser.parse_args(argv)
    seeds = [args.seed] if args.seed is not None else range(args.seeds[0], sum(args.seeds))
    started = time.perf_counter()
    with MUTANTS[args.mutant]() if args.mutant else contextlib.nullcontext():
        for seed in seeds:
            try:
                sim = Simulation(seed).run()
            except Violation as exc:
                print(exc)
                return 1
            if args.seed is not None:
                print(describe(sim))
    print(f"{len(seeds)} schedules passed in {time.perf_counter() - started:.1f}s")
    return 0


def describe(sim: Simulation) -> str:
    truth = sim.truth
    lines = [
        f"seed {sim.seed}: {sim.steps} turns, {sim.clock.now:.1f}s virtual, "
        f"{sim.incarnation} incarnations"
    ]
    lines += [f"  {k}={v}" for k, v in sorted(sim.env.items()) if k.startswith("BRIDGE_")]
    for tp in sim.partitions:
        lines.append(
            f"  {tp}: {truth.end(tp)} records, {len(truth.accepted[tp])} accepted, "
            f"{len(truth.dead[tp])} dead-lettered, committed {truth.committed.get(tp, 0)}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
