"""Summarize a py-spy ``--format raw`` profile (collapsed stacks): where the samples went.

``python -m benchmarks.profile FILE [--top N] [--match TEXT]`` prints each function's share of
all samples, inclusive (anywhere on the stack) and self (the innermost frame), by thread
group: the main loop versus the publisher threads.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path


def _frames(stack: str) -> list[str]:
    """``func (path/file.py:12)`` frames as ``func (file.py)``, outermost first."""
    frames = []
    for frame in stack.split(";"):
        name, _, where = frame.partition(" (")
        file = where.split(":", 1)[0].rsplit("/", 1)[-1]
        frames.append(f"{name} ({file})" if file else name)
    return frames


def samples(path: Path) -> Iterator[tuple[list[str], int]]:
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            yield _frames(stack), int(count)


def summarize(path: Path, top: int = 40, match: str = "") -> str:
    total = 0
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    for frames, count in samples(path):
        if match and not any(match in f for f in frames):
            continue
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
        worker = any("_publish" in f or "_worker" in f for f in frames)
        threads["publisher threads" if worker else "main loop and others"] += count
    if not total:
        return "no samples"
    lines = [f"{total} samples"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in threads.most_common()]
    lines.append("inclusive")
    lines += [f"  {n / total:6.1%}  {name}" for name, n in inclusive.most_common(top)]
    lines.append("self")
    lines += [f"  {n / total:6.1%}  {name}" for name, n in own.most_common(top)]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile")
    parser.add_argument("file", type=Path)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--match", default="", help="only stacks with a frame containing this")
    args = parser.parse_args(argv)
    sys.stdout.write(summarize(args.file, args.top, args.match) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
