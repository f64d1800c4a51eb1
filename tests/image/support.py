"""Running the image as users do: ``docker run`` with -e settings, read-only, host network."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any

from kafka_eventbridge_testing import free_port
from tests.integration.support import wait_until

#: How a user runs the image: its root file system read-only, a scratch /tmp, no privilege
#: escalation, every capability dropped, the host's network.
RUN_FLAGS = (
    "--read-only",
    "--tmpfs",
    "/tmp",
    "--security-opt",
    "no-new-privileges",
    "--cap-drop",
    "ALL",
    "--network",
    "host",
)


def docker(*args: str, timeout: float = 60, check: bool = True) -> str:
    """Run the docker CLI; its standard output (CalledProcessError when it fails)."""
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise subprocess.CalledProcessError(
            result.returncode, ["docker", *args], result.stdout, result.stderr
        )
    return result.stdout.strip()


def env_flags(env: dict[str, str]) -> list[str]:
    return [flag for key, value in env.items() for flag in ("-e", f"{key}={value}")]


def run_once(
    image: str,
    env: dict[str, str],
    *command: str,
    entrypoint: str | None = None,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """``docker run --rm`` to completion (``check``, ``--help``, a probe with ``entrypoint``)."""
    flags = ["--entrypoint", entrypoint] if entrypoint else []
    flags += ["--interactive"] if stdin is not None else []
    return subprocess.run(
        ["docker", "run", "--rm", *RUN_FLAGS, *flags, *env_flags(env), image, *command],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@dataclass
class BridgeContainer:
    """``kafka-eventbridge run`` in a detached container, its HTTP port on 127.0.0.1."""

    image: str
    env: dict[str, str]
    name: str = field(default_factory=lambda: f"kafka-eventbridge-test-{uuid.uuid4().hex[:8]}")
    port: int = field(default_factory=free_port)

    def start(self) -> BridgeContainer:
        # The host's network is shared: the HTTP endpoints listen on loopback only.
        env = {**self.env, "BRIDGE_HTTP_HOST": "127.0.0.1", "BRIDGE_HTTP_PORT": str(self.port)}
        docker(
            "run",
            "--detach",
            "--name",
            self.name,
            "--label",
            "kafka-eventbridge.test=image",
            *RUN_FLAGS,
            *env_flags(env),
            self.image,
        )
        return self

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = json.loads(
            docker("inspect", "--format", "{{json .State}}", self.name)
        )
        return state

    @property
    def running(self) -> bool:
        return bool(self.state().get("Running"))

    def exec(self, *command: str) -> str:
        return docker("exec", self.name, *command)

    def wait_ready(self, timeout: float = 60) -> None:
        def ready() -> bool:
            if not self.running:
                return True
            try:
                url = f"http://127.0.0.1:{self.port}/readyz"
                with urllib.request.urlopen(url, timeout=5) as response:
                    return int(response.status) == 200
            except (urllib.error.URLError, OSError):
                return False

        wait_until(ready, timeout, "the container's bridge ready")
        assert self.running, f"the container exited early:\n{self.logs()}"

    def stop(self, grace_s: float) -> tuple[int, float]:
        """``docker stop -t grace_s``: SIGTERM to PID 1, SIGKILL after the grace period.

        Returns the exit code and the seconds ``docker stop`` took.
        """
        began = time.monotonic()
        docker("stop", "--time", str(int(grace_s)), self.name, timeout=grace_s + 30)
        elapsed = time.monotonic() - began
        return int(self.state()["ExitCode"]), elapsed

    def logs(self) -> str:
        result = subprocess.run(
            ["docker", "logs", self.name], capture_output=True, text=True, timeout=30, check=False
        )
        return result.stdout + result.stderr

    def remove(self) -> None:
        docker("rm", "--force", "--volumes", self.name, check=False)
