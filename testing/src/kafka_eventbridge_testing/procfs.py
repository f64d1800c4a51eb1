"""A process's children, from /proc: the bridge runs its crt HTTP side as a child process, and
what is measured of the bridge (CPU, peak RSS) counts them too."""

from __future__ import annotations

from pathlib import Path


def children(pid: int) -> list[int]:
    """The process ids whose parent is ``pid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def children_status_kib(pid: int, name: str) -> int:
    """The sum of a ``kB`` field of ``/proc/<child>/status`` (``VmHWM``, ``VmRSS``) over
    ``pid``'s children; a child gone meanwhile counts 0."""
    total = 0
    for child in children(pid):
        try:
            for line in Path(f"/proc/{child}/status").read_text().splitlines():
                if line.startswith(f"{name}:"):
                    total += int(line.split()[1])
                    break
        except OSError:
            continue
    return total
