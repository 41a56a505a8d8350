"""The one way lkchaos drives ``docker compose`` for the reference stack (the engine itself is
reached through :func:`lkchaos.docker.client.docker_client`, re-exported here).

Every call has a timeout. Failures raise :class:`~lkchaos.errors.CommandFailed` or
:class:`~lkchaos.errors.PrerequisiteError` with a hint saying what to do.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lkchaos.docker.client import DOCKER_API_VERSION, DOCKER_TIMEOUT, docker_client
from lkchaos.errors import CommandFailed, PrerequisiteError
from lkchaos.stack import layout
from lkchaos.stack.layout import StackPaths

__all__ = ["DOCKER_API_VERSION", "DOCKER_TIMEOUT", "Compose", "docker_client", "run"]



def run(
    argv: Sequence[str],
    timeout: float,
    env: dict[str, str] | None = None,
    hint: str = "",
    capture: bool = True,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command; raise CommandFailed (with its output) on a non-zero exit or a timeout."""
    if shutil.which(argv[0]) is None:
        raise PrerequisiteError(f"`{argv[0]}` is not installed or not on PATH. {hint}".strip())
    try:
        proc = subprocess.run(
            list(argv),
            env={**os.environ, **(env or {})},
            timeout=timeout,
            cwd=cwd,
            text=True,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.STDOUT if capture else None,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.output if isinstance(exc.output, str) else ""
        raise CommandFailed(argv, -1, out, f"timed out after {timeout:.0f} s. {hint}") from exc
    if proc.returncode != 0:
        raise CommandFailed(argv, proc.returncode, proc.stdout or "", hint)
    return proc


@dataclass(frozen=True)
class Compose:
    """``docker compose`` bound to the reference stack's project, file and env file."""

    paths: StackPaths
    project: str = layout.PROJECT

    def argv(self, *args: str) -> list[str]:
        base = ["docker", "compose", "-p", self.project, "-f", str(self.paths.compose_file)]
        if self.paths.env_file.is_file():
            base += ["--env-file", str(self.paths.env_file)]
        return [*base, *args]

    def env(self) -> dict[str, str]:
        # The classic builder: no buildx needed, and FROM uses local images without pulling.
        return {
            "DOCKER_BUILDKIT": "0",
            "COMPOSE_DOCKER_CLI_BUILD": "0",
            "LKCHAOS_STATE_DIR": str(self.paths.state_dir.resolve()),
        }

    def run(
        self, *args: str, timeout: float = 120.0, capture: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return run(
            self.argv(*args),
            timeout=timeout,
            env=self.env(),
            capture=capture,
            hint="Is the Docker engine running and Compose v2 installed "
            "(`docker compose version`)?",
        )

    def popen(self, *args: str) -> subprocess.Popen[str]:
        """Start a compose command without waiting; its output is collected for errors."""
        return subprocess.Popen(
            self.argv(*args),
            env={**os.environ, **self.env()},
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

    def containers(self, client: Any) -> dict[str, Any]:
        """This project's containers (any state) keyed by compose service name."""
        from lkchaos.docker.client import project_containers

        return project_containers(client, self.project)

    def stale_services(self, client: Any) -> list[str]:
        """Services whose container runs an older image than the one their tag names now."""
        from docker.errors import ImageNotFound

        stale = []
        for service, container in self.containers(client).items():
            tag = container.attrs.get("Config", {}).get("Image", "")
            try:
                current = client.images.get(tag).id
            except ImageNotFound:
                continue
            if container.attrs.get("Image") != current:
                stale.append(service)
        return sorted(stale)

    def logs(self, client: Any, service: str, tail: int = 20) -> str:
        container = self.containers(client).get(service)
        if container is None:
            return ""
        raw = container.logs(tail=tail, stdout=True, stderr=True)
        return raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
