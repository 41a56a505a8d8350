"""The preflight check: every bad experiment of tests/bad_experiments is rejected, naming the
activity and the argument; every experiment of experiments/ passes; nothing is touched."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from chaoslib.exceptions import InterruptExecution, InvalidActivity
from chaoslib.experiment import ensure_experiment_is_valid
from click.testing import CliRunner

from lkchaos import preflight
from lkchaos.cli import main
from lkchaos.errors import StackError
from lkchaos.stack import layout

ROOT = Path(__file__).resolve().parents[2]
BAD = ROOT / "tests" / "bad_experiments"
EXPECTED: dict[str, dict[str, Any]] = json.loads((BAD / "expected.json").read_text())
EXPERIMENTS = sorted((ROOT / "experiments").glob("*.json"))
HOSTS = {"lk.chaos.test", "whip.chaos.test", "turn.chaos.test"}


class FakeContainer:
    def __init__(self, service: str, project: str) -> None:
        self.name = f"{project}-{service}-1"
        self.labels = {"com.docker.compose.project": project,
                       "com.docker.compose.service": service}
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the preflight check called container.{name}")


class FakeContainers:
    def __init__(self, containers: list[FakeContainer]) -> None:
        self.all = containers

    def list(self, all: bool = False, filters: dict[str, str] | None = None) -> list[Any]:
        wanted = (filters or {}).get("label", "")
        return [c for c in self.all
                if not wanted or wanted.endswith("=" + c.labels["com.docker.compose.project"])]


class FakeDocker:
    """A Docker client that lists the reference stack and one container of another project;
    any other call fails the test."""

    def __init__(self) -> None:
        self.containers = FakeContainers(
            [FakeContainer(s, layout.PROJECT) for s in layout.SERVICES]
            + [FakeContainer("other-app-db", "otherapp")]
        )

    def close(self) -> None:
        pass


class FakeToxiproxy:
    def __init__(self, settings: Any) -> None:
        pass

    def __enter__(self) -> FakeToxiproxy:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def proxies(self) -> dict[str, Any]:
        return {"agent_livekit": {}, "agent_whisper": {}, "agent_mcp": {}, "livekit_hooks": {}}


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    from lkchaos.dns import client as dns
    from lkchaos.tls import rotation

    class Hosts:
        def read_text(self) -> str:
            return "".join(f"172.29.77.10 {name}\n" for name in sorted(HOSTS))

    monkeypatch.setattr(dns, "resolver", lambda client, settings: type(
        "R", (), {"hosts": Hosts()})())
    monkeypatch.setattr(rotation, "served_names", lambda client, settings: {
        "lk.chaos.test", "whip.chaos.test"})
    return {"docker_client": FakeDocker, "toxiproxy_client": FakeToxiproxy}


def test_the_corpus_is_large_enough() -> None:
    assert len(EXPECTED) >= 30
    assert {p.name for p in BAD.iterdir()} - {"expected.json", "README.md"} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED), ids=str)
def test_every_bad_experiment_is_rejected(name: str, fakes: dict[str, Any]) -> None:
    expected = EXPECTED[name]
    path = BAD / name
    if expected["level"] == "file":
        with pytest.raises(preflight.ExperimentFileError) as caught:
            preflight.load_file(path)
        assert caught.value.line == expected["line"]
        assert f"{path}:{expected['line']}" in str(caught.value)
        assert expected["contains"] in str(caught.value)
        return
    problems = preflight.check_file(path, offline=expected["level"] == "offline", **fakes)
    assert problems, f"{name} passed the check"
    hits = [p for p in problems if p.activity == expected["activity"]
            and p.phase == expected["phase"] and p.argument == expected["argument"]]
    assert hits, f"no problem names {expected}: {[str(p) for p in problems]}"
    assert any(expected["contains"] in str(p) for p in hits), [str(p) for p in hits]


@pytest.mark.parametrize("name", sorted(n for n, e in EXPECTED.items()
                                        if e["level"] == "deployment"), ids=str)
def test_deployment_problems_need_the_deployment(name: str, fakes: dict[str, Any]) -> None:
    assert preflight.check_file(BAD / name, offline=True, **fakes) == []


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_the_shipped_experiments_pass(path: Path, fakes: dict[str, Any]) -> None:
    assert preflight.check_file(path, offline=True) == []
    assert preflight.check_file(path, **fakes) == []


def test_an_unreachable_deployment_is_a_problem() -> None:
    def down() -> Any:
        raise StackError("cannot reach the Docker engine: no socket")

    problems = preflight.check_file(BAD / "unknown-service.json", docker_client=down)
    assert [p.phase for p in problems] == ["deployment"]
    assert "cannot read the Docker engine" in str(problems[0])
    assert "no socket" in str(problems[0])


def test_configuration_substitution_is_resolved(monkeypatch: pytest.MonkeyPatch) -> None:
    experiment = preflight.load_file(BAD / "unresolved-variable.json")
    experiment["configuration"] = {"link_latency_ms": {"type": "env", "key": "LKCHAOS_T_LAT"}}
    monkeypatch.setenv("LKCHAOS_T_LAT", "-3")
    experiment["configuration"]["link_latency_ms"]["env_var_type"] = "int"
    problems = preflight.check_experiment(experiment, deployment=False)
    assert [(p.argument, p.value) for p in problems] == [("latency_ms", -3)]
    monkeypatch.setenv("LKCHAOS_T_LAT", "250")
    assert preflight.check_experiment(experiment, deployment=False) == []


def test_a_value_from_the_secrets_is_masked() -> None:
    experiment = preflight.load_file(BAD / "unresolved-variable.json")
    experiment["secrets"] = {"links": {"link_latency_ms": "-7"}}
    problems = preflight.check_experiment(experiment, deployment=False)
    assert [p.value for p in preflight.errors(problems)] == ["***"]
    assert "-7" not in str(preflight.errors(problems)[0])
    # written inline in the experiment: a warning, which does not stop the run
    assert [(p.level, p.argument) for p in problems if p.level != "error"] == [
        ("warning", "secrets.links.link_latency_ms")]


def test_a_required_argument_left_out_is_named_without_a_value() -> None:
    experiment = {"version": "1.0.0", "title": "t", "description": "d",
                  "steady-state-hypothesis": {"title": "s", "probes": []},
                  "method": [{"type": "action", "name": "swap", "provider": {
                      "type": "python", "module": "lkchaos.tls.actions",
                      "func": "swap_certificate", "arguments": {"days": 3}}}]}  # fmt: skip
    [problem] = preflight.errors(preflight.check_experiment(experiment, deployment=False))
    assert str(problem) == ("method activity 'swap' (lkchaos.tls.actions.swap_certificate), "
                            "argument 'kind': missing: swap_certificate needs kind")


def test_every_problem_is_listed_not_only_the_first() -> None:
    experiment = preflight.load_file(BAD / "negative-latency.json")
    experiment["method"][0]["provider"]["arguments"].update(stream="sideways", toxicity=2)
    experiment["method"].append(preflight.load_file(BAD / "harness-kill.json")["method"][0])
    problems = preflight.check_experiment(experiment, deployment=False)
    assert {(p.activity, p.argument) for p in problems} == {
        ("slow-link", "latency_ms"), ("slow-link", "stream"), ("slow-link", "toxicity"),
        ("kill-prober", "service")}


def test_check_or_raise_interrupts_with_every_problem(fakes: dict[str, Any],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from lkchaos.preflight import deployment

    real = deployment.read
    monkeypatch.setattr(deployment, "read", lambda s, w, d=None, t=None: real(
        s, w, fakes["docker_client"], fakes["toxiproxy_client"]))
    experiment = preflight.load_file(BAD / "unknown-proxy.json")
    with pytest.raises(InterruptExecution, match="no proxy named 'agent_redis'"):
        preflight.check_or_raise(experiment, {}, {})
    preflight.check_or_raise(preflight.load_file(EXPERIMENTS[0]), {}, {})


def test_chaos_validate_takes_part(monkeypatch: pytest.MonkeyPatch) -> None:
    module = type(sys)("lkchaos_test_control")
    module.validate_control = preflight.validate_for_toolkit  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "lkchaos_test_control", module)
    experiment = preflight.load_file(BAD / "loss-over-100.json")
    experiment["controls"] = [{"name": "check", "provider": {
        "type": "python", "module": "lkchaos_test_control"}}]
    with pytest.raises(InvalidActivity, match="'lose-media'.*'percent' = 150"):
        ensure_experiment_is_valid(experiment)
    preflight.validate_for_toolkit({"name": "outside a validation"})  # nothing to find


def test_cli_check(fakes: dict[str, Any], tmp_path: Path) -> None:
    runner = CliRunner()
    good = runner.invoke(main, ["check", "--offline", *map(str, EXPERIMENTS)])
    assert good.exit_code == 0, good.output
    bad = runner.invoke(main, ["check", "--offline", str(BAD / "negative-latency.json"),
                               str(BAD / "malformed-trailing-comma.json"), str(EXPERIMENTS[0])])
    assert bad.exit_code == 2
    assert "'slow-link'" in bad.output and "latency_ms" in bad.output
    assert "malformed-trailing-comma.json:5: not valid JSON" in bad.output


def test_the_preflight_imports_no_activity_module_until_a_rule_needs_it() -> None:
    """A `chaos run` loads the safety control and the preflight at its start: the checkers of
    activities the experiment does not use (and the rtc SDK, numpy, the LiveKit API, Redis
    and Docker clients behind them) must not be imported for it."""
    heavy = ("numpy", "livekit.rtc", "livekit.api", "aiohttp", "redis", "docker",
             "lkchaos.tls.actions", "lkchaos.voice.held")
    code = ("import sys, lkchaos.preflight, lkchaos.safety.control\n"
            f"print([m for m in {heavy!r} if m in sys.modules])\n"
            "from lkchaos.preflight import rules\n"
            "print(rules.tls_actions._check.__module__)\n")  # imported when first read
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)  # fmt: skip
    assert done.stdout.splitlines() == ["[]", "lkchaos.tls.actions"], done.stdout + done.stderr
