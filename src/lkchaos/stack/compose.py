"""The one way lkchaos drives ``docker compose`` and reaches the Docker engine.

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

from lkchaos.errors import CommandFailed, PrerequisiteError, StackError
from lkchaos.stack import layout
from lkchaos.stack.layout import StackPaths

DOCKER_TIMEOUT = 10.0
#: Engine API version: Debian's engine (20.10) speaks up to 1.41, and newer engines accept it.
#: Naming it saves a round-trip and keeps the SDK from connecting before we ping.
DOCKER_API_VERSION = "1.41"


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


def docker_client(timeout: float = DOCKER_TIMEOUT) -> Any:
    """A Docker SDK client for the local engine, checked with a ping."""
    import docker
    from docker.errors import DockerException

    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if host.startswith("unix://") and not Path(host.removeprefix("unix://")).exists():
        raise StackError(
            f"cannot reach the Docker engine: no socket at {host}. Start it (e.g. `dockerd &` "
            "or `systemctl start docker`) and check that `docker info` answers."
        )
    client = None
    try:
        client = docker.from_env(version=DOCKER_API_VERSION, timeout=int(timeout))
        client.ping()
    except DockerException as exc:
        if client is not None:
            client.close()
        raise StackError(
            f"cannot reach the Docker engine ({exc}). Start it (e.g. `dockerd &` or "
            "`systemctl start docker`) and check that `docker info` answers."
        ) from exc
    return client


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
