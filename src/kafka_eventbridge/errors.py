"""The bridge's error hierarchy.

Three kinds of failure drive everything the pipeline does (DESIGN.md, "Semantics"):

* :class:`RecordError`: this record can never be delivered (bad bytes, a mapping that
  fails for it, an entry the API would refuse). It goes to the dead-letter topic.
* :class:`FatalError`: the bridge itself cannot work (wrong credentials, a missing bus,
  an unwritable dead-letter topic). It stops without committing anything unresolved.
* :class:`ConfigError`: refused at start, before anything is consumed.

Retryable failures are not exceptions here: the publisher reports them as outcomes and
the retry queue schedules them again.
"""

from __future__ import annotations

from enum import StrEnum


class Stage(StrEnum):
    """Where in the pipeline a record failed: the ``bridge.error.stage`` header."""

    DECODE = "decode"
    MAP = "map"
    VALIDATE = "validate"
    PUBLISH = "publish"
    RETRIES_EXHAUSTED = "retries-exhausted"


class BridgeError(Exception):
    """Base class of every error the bridge raises on purpose."""


class ConfigError(BridgeError):
    """Bad configuration, with one readable line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class RecordError(BridgeError):
    """A single record that cannot become an accepted entry: dead-letter it."""

    def __init__(self, stage: Stage, code: str, message: str) -> None:
        super().__init__(f"{stage}: {code}: {message}")
        self.stage = stage
        self.code = code
        self.message = message


class FatalError(BridgeError):
    """The bridge cannot continue; the process exits non-zero and Kubernetes restarts it."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
