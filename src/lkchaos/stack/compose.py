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
from lkchaos.errors import CommandFailed, PrerequisiteError, StackError
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


#: The label Compose gives each container: the compose file(s) it was started from.
CONFIG_FILES_LABEL = "com.docker.compose.project.config_files"


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
        # (COMPOSE_BAKE off too: Compose 2.40 otherwise warns, on every build, that Bake needs
        # BuildKit, then builds the classic way anyway.)
        return {
            "DOCKER_BUILDKIT": "0",
            "COMPOSE_DOCKER_CLI_BUILD": "0",
            "COMPOSE_BAKE": "false",
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

    def other_checkout(self, client: Any) -> str | None:
        """The compose file this project's containers were started from when it is not this
        checkout's (another clone of lkchaos runs the stack), else None. From the label
        Compose puts on every container (``com.docker.compose.project.config_files``)."""
        mine = str(self.paths.compose_file.resolve())
        for container in self.containers(client).values():
            files = str((container.labels or {}).get(CONFIG_FILES_LABEL) or "")
            if files and mine not in (f.strip() for f in files.split(",")):
                return files
        return None

    def refuse_other_checkout(self, client: Any, command: str) -> None:
        """Raise :class:`StackError` when :meth:`other_checkout` finds one: its keys,
        run lock, fault ledger and history are in that checkout's state folder, so runs from
        here would not see its runs (nor undo its faults)."""
        other = self.other_checkout(client)
        if other is None:
            return
        raise StackError(
            f"the reference stack (compose project {self.project!r}) was started from another "
            f"checkout ({other}); its keys, run lock and fault ledger are in that checkout's "
            f"state folder, so runs from here would not see its runs nor undo its faults. Use "
            f"that checkout, or bring the stack down there (`lkchaos stack down`), or "
            f"`lkchaos stack {command} --take-over` here (its containers are "
            f"{'removed' if command == 'down' else 'replaced'})")

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
