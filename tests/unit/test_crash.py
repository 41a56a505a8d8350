"""crash_service kills the main process by its host PID and reports whether the runtime healed
it; a fake engine stands for Docker, a fake sidecar for the host-PID kill."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from chaoslib.exceptions import ActivityFailed

from lkchaos.docker import actions
from lkchaos.network import sidecar
from lkchaos.safety import ledger
from lkchaos.verify import NotInEffect

REAL_RUN = sidecar.run


class Container:
    """A running container whose process, once killed, exits or (``heals``) is started again
    by the engine with a new start time and a restart count one higher."""

    def __init__(self, policy: str = "no", heals: bool = False, dies: bool = True) -> None:
        self.name, self.id, self.client = "agent", "c0ffee", object()
        self.heals, self.dies = heals, dies
        self.attrs: dict[str, Any] = {
            "State": {"Status": "running", "StartedAt": "t0", "Pid": 4242},
            "RestartCount": 0,
            "HostConfig": {"RestartPolicy": {"Name": policy}},
        }
        self.labels = {"com.docker.compose.service": "agent"}

    def reload(self) -> None:
        pass

    def killed(self) -> None:
        if not self.dies:
            return
        if self.heals:
            self.attrs["State"].update(Status="running", StartedAt="t1", Pid=4343)
            self.attrs["RestartCount"] += 1
        else:
            self.attrs["State"].update(Status="exited", Pid=0, ExitCode=137)

    def kill(self, signal: str) -> None:  # docker kill: never used by a crash
        raise AssertionError("crash_service must not use docker kill")


@pytest.fixture
def state(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("LKCHAOS_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("LKCHAOS_ROOT", str(tmp_path))
    monkeypatch.setenv("LKCHAOS_VERIFY_S", "0.3")
    return tmp_path


def _engine(monkeypatch: pytest.MonkeyPatch, container: Container) -> list[tuple[str, Any]]:
    runs: list[tuple[str, Any]] = []

    def run(client: Any, target: Any, script: str, timeout: float = 30.0,
            options: sidecar.Options = sidecar.NETWORK) -> str:  # fmt: skip
        runs.append((script, options))
        container.killed()
        return ""

    monkeypatch.setattr(actions, "docker_session", lambda: contextlib.nullcontext(None))
    monkeypatch.setattr(actions, "runtime_containers", lambda client, s: {"agent": container})
    monkeypatch.setattr(sidecar, "ensure_image", lambda client: sidecar.IMAGE)
    monkeypatch.setattr(sidecar, "run", run)
    return runs


def test_the_kill_comes_from_the_host_pid_namespace(monkeypatch: pytest.MonkeyPatch,
                                                    state: Path) -> None:  # fmt: skip
    runs = _engine(monkeypatch, Container())
    actions.crash_service("agent", signal="term")
    [(script, options)] = runs
    assert script.endswith("; kill -s TERM 4242") and "/proc/4242/cgroup" in script
    kwargs = sidecar.create_kwargs(Container(), options)
    assert kwargs["pid_mode"] == "host" and kwargs["network_mode"] == "none"
    assert "cap_add" not in kwargs


def test_a_crash_under_restart_no_stays_down_with_start_service_as_undo(
    monkeypatch: pytest.MonkeyPatch, state: Path
) -> None:
    _engine(monkeypatch, Container(policy="no"))
    result = actions.crash_service("agent")
    assert (result["before"], result["after"], result["restart_policy"]) == (
        "running", "exited", "no")
    assert (result["restarted"], result["healed_s"], result["pid"]) == (False, None, 4242)
    assert [(f.kind, f.undo_func) for f in ledger.pending(state)] == [("stopped",
                                                                        "start_service")]


def test_a_crash_healed_by_the_policy_says_so(monkeypatch: pytest.MonkeyPatch,
                                              state: Path) -> None:  # fmt: skip
    _engine(monkeypatch, Container(policy="unless-stopped", heals=True))
    result = actions.crash_service("agent")
    assert result["after"] == "running" and result["restarted"] is True
    assert isinstance(result["healed_s"], float) and result["healed_s"] >= 0
    assert (result["restart_count_before"], result["restart_count_after"]) == (0, 1)


def test_a_process_that_survives_fails_and_stays_in_the_ledger(
    monkeypatch: pytest.MonkeyPatch, state: Path
) -> None:
    _engine(monkeypatch, Container(dies=False))
    with pytest.raises(NotInEffect, match="the crash .SIGKILL. of agent"):
        actions.crash_service("agent")
    assert [f.undo_func for f in ledger.pending(state)] == ["start_service"]


def test_a_stopped_service_is_refused_and_nothing_recorded(monkeypatch: pytest.MonkeyPatch,
                                                           state: Path) -> None:  # fmt: skip
    container = Container()
    container.attrs["State"].update(Status="exited", Pid=0)
    runs = _engine(monkeypatch, container)
    with pytest.raises(ActivityFailed, match="agent is exited, not running: nothing to crash"):
        actions.crash_service("agent")
    assert runs == [] and ledger.pending(state) == []


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"service": "agent", "signal": "SIGHUP"}, "'SIGHUP' is not allowed"),
    ({"service": "-rf"}, "service must name a role"),
    ({"service": "voice_prober"}, "lkchaos's own test harness"),
])  # fmt: skip
def test_bad_arguments_are_refused_before_the_engine(
    monkeypatch: pytest.MonkeyPatch, state: Path, kwargs: dict[str, Any], message: str
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(ActivityFailed, match=message):
        actions.crash_service(**kwargs)
    assert ledger.pending(state) == []


def test_the_preflight_check_knows_crash_service() -> None:
    from lkchaos import preflight

    problems = preflight.check_call("lkchaos.docker.actions", "crash_service",
                                    {"service": "agent", "signal": "SIGUSR1"})
    assert [p.argument for p in problems] == ["signal"]
    assert preflight.check_call("lkchaos.docker.actions", "crash_service",
                                {"service": "agent"}) == []


def test_the_pid_is_read_after_the_image_is_ready(monkeypatch: pytest.MonkeyPatch,
                                                 state: Path) -> None:  # fmt: skip
    container = Container()
    runs = _engine(monkeypatch, container)

    def build(client: Any) -> str:  # the service restarts while the image builds
        container.attrs["State"].update(StartedAt="t1", Pid=5151)
        return sidecar.IMAGE

    monkeypatch.setattr(sidecar, "ensure_image", build)
    result = actions.crash_service("agent")
    [(script, _)] = runs
    assert script.endswith("kill -s KILL 5151") and result["pid"] == 5151


def _sh(script: str) -> int:
    return subprocess.run(["sh", "-c", script], capture_output=True, timeout=30).returncode


@pytest.mark.skipif(not Path("/proc/self/cgroup").is_file(), reason="needs Linux /proc")
def test_the_crash_script_kills_only_a_process_of_the_container() -> None:
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        # a process that is not the container's (its cgroup does not name the id) lives on
        status = _sh(actions._crash_script(victim.pid, "f" * 64, "SIGKILL"))
        assert status == actions.STALE_PID and victim.poll() is None
        # one whose cgroup names it is killed (here: a text of its own cgroup file)
        own = Path(f"/proc/{victim.pid}/cgroup").read_text().splitlines()[0]
        assert _sh(actions._crash_script(victim.pid, own, "SIGKILL")) == 0
        assert victim.wait(timeout=10) == -9
    finally:
        if victim.poll() is None:
            os.kill(victim.pid, 9)
            victim.wait(timeout=10)


def test_a_pid_taken_by_another_process_is_not_killed(monkeypatch: pytest.MonkeyPatch,
                                                     state: Path) -> None:  # fmt: skip
    class Sidecar:  # the engine's answer when the script found the PID outside the cgroup
        def start(self) -> None:
            pass

        def wait(self, timeout: float) -> dict[str, int]:
            return {"StatusCode": actions.STALE_PID}

        def logs(self, stdout: bool, stderr: bool) -> bytes:
            return b""

        def remove(self, force: bool) -> None:
            pass

    class Client:
        containers = type("Containers", (), {"create": lambda self, *a, **k: Sidecar()})()

    container = Container()
    container.client = Client()
    _engine(monkeypatch, container)
    monkeypatch.setattr(sidecar, "run", REAL_RUN)
    with pytest.raises(ActivityFailed, match=r"the process changed before the kill .PID 4242"
                       r".*nothing was killed"):
        actions.crash_service("agent")
    assert container.attrs["State"]["Status"] == "running"
