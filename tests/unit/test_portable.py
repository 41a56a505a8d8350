"""Portable activities: roles resolve through the target, containers are found by the
target's runtime, and no activity module reaches the reference stack's own code."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path
from typing import Any

import pytest
from chaoslib.exceptions import ActivityFailed

from lkchaos import roles
from lkchaos.docker.client import describe_runtime, runtime_containers
from lkchaos.settings import Settings
from lkchaos.stack import layout
from lkchaos.target.needs import catalogue

SRC = Path(__file__).resolve().parents[2] / "src"


def _module_file(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except ModuleNotFoundError:  # ``lkchaos.x.module.NAME``: a name, not a module
        return None
    return Path(spec.origin) if spec and spec.origin and spec.origin.endswith(".py") else None


def _imports(name: str) -> set[str]:
    """Every lkchaos module ``name`` imports, at its top or inside a function, with the
    packages whose ``__init__`` those imports run."""
    path = _module_file(name)
    assert path is not None, name
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for target in targets:
            if target.split(".")[0] != "lkchaos" or _module_file(target) is None:
                continue
            parts = target.split(".")
            found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return {module for module in found if _module_file(module) is not None}


def _closure(start: set[str]) -> dict[str, str]:
    """Every module reachable from ``start`` -> the module that first imported it."""
    seen: dict[str, str] = {name: "" for name in start}
    todo = list(start)
    while todo:
        name = todo.pop()
        for imported in _imports(name):
            if imported not in seen:
                seen[imported] = name
                todo.append(imported)
    return seen


def test_no_activity_module_reaches_the_reference_stack_code() -> None:
    activities = {entry.rpartition(".")[0] for entry in catalogue()}
    assert {"lkchaos.docker.actions", "lkchaos.network.actions", "lkchaos.redis.actions",
            "lkchaos.tls.actions", "lkchaos.dns.actions"} <= activities  # fmt: skip
    # The validation probe runs every check module it finds at run time (pkgutil), which no
    # import statement shows: they count as imported by it.
    checks = Path(_module_file("lkchaos.validate.checks") or "").parent
    activities |= {f"lkchaos.validate.checks.{p.stem}" for p in checks.glob("*.py")
                   if p.stem != "__init__"}  # fmt: skip
    reached = _closure(activities)
    bad = {module: via for module, via in reached.items() if module.startswith("lkchaos.stack")}
    chains = []
    for module in sorted(bad):
        chain = [module]
        while reached.get(chain[-1]):
            chain.append(reached[chain[-1]])
        chains.append(" <- ".join(chain))
    assert not bad, "activity modules import the reference stack's code:\n" + "\n".join(chains)


def test_the_import_walk_sees_a_function_level_import(tmp_path: Path) -> None:
    # The walk must see imports inside functions: the rule holds for lazy imports too.
    assert "lkchaos.stack.layout" in _imports("lkchaos.stack.compose")
    assert "lkchaos.docker.client" in _imports("lkchaos.stack.compose")


def test_default_settings_are_the_reference_stacks_published_ports() -> None:
    defaults = Settings()
    local = "127.0.0.1"
    assert defaults.livekit_node_urls == (
        f"http://{local}:{layout.host_port('livekit_1_http')}",
        f"http://{local}:{layout.host_port('livekit_2_http')}")
    assert defaults.sentinel_addresses == tuple(
        f"{local}:{layout.host_port(f'sentinel_{i}')}" for i in (1, 2, 3))
    assert defaults.redis_address_map == {
        "redis-primary:6379": f"{local}:{layout.host_port('redis_primary')}",
        "redis-replica:6379": f"{local}:{layout.host_port('redis_replica')}"}
    assert defaults.toxiproxy_url == f"http://{local}:{layout.host_port('toxiproxy_api')}"
    assert defaults.dns_server == f"{local}:{layout.host_port('dns')}"
    assert defaults.tls_address == f"{local}:{layout.host_port('caddy_https')}"
    assert defaults.voice_prober_url == f"http://{local}:{layout.host_port('prober')}"
    assert (defaults.domain, defaults.compose_project, defaults.sentinel_master) == (
        layout.DOMAIN, layout.PROJECT, layout.SENTINEL_MASTER)
    assert set(defaults.toxiproxy_links.values()) == set(layout.TOXIPROXY_LINKS)
    mapped = {name for members in defaults.roles.values() for name in members}
    assert mapped == set(layout.SERVICES)


# --- roles ------------------------------------------------------------------------------------

ONE_NODE = Settings(roles={"livekit_node": ("lk-server",), "agent_worker": ("voice-agent",),
                           "voice_prober": ("probe",)})  # fmt: skip


@pytest.mark.parametrize(("value", "expected"), [
    ("agent_worker", ["agent"]),
    ("livekit_node", ["livekit-1", "livekit-2"]),
    ("livekit_node:2", ["livekit-2"]),
    ("livekit_node:1", ["livekit-1"]),
    ("agent", ["agent"]),  # a runtime name is taken as it is
    ("my_service", ["my_service"]),  # not a role: a runtime name
])
def test_roles_resolve_on_the_reference(value: str, expected: list[str]) -> None:
    assert roles.resolve(Settings(), value) == expected


def test_roles_resolve_through_another_target() -> None:
    assert roles.resolve(ONE_NODE, "agent_worker") == ["voice-agent"]
    assert roles.resolve_one(ONE_NODE, "livekit_node") == "lk-server"
    assert roles.harness(ONE_NODE) == frozenset({"probe"})
    assert roles.role_of(ONE_NODE, "voice-agent") == "agent_worker"
    assert roles.role_of(ONE_NODE, "nginx") is None


def test_a_position_past_the_last_member_is_refused() -> None:
    with pytest.raises(ActivityFailed, match=r"has 1 livekit_node \(lk-server\), so "
                                             r"livekit_node:2 does not exist"):  # fmt: skip
        roles.resolve(ONE_NODE, "livekit_node:2")


def test_an_unmapped_role_says_what_to_add() -> None:
    with pytest.raises(ActivityFailed, match=r"maps no tool_server; add `roles: "
                                             r"\{tool_server: NAME\}`"):  # fmt: skip
        roles.resolve(ONE_NODE, "tool_server")


def test_an_ambiguous_role_names_the_positions() -> None:
    with pytest.raises(ActivityFailed, match="name one of livekit_node:1, livekit_node:2"):
        roles.resolve_one(Settings(), "livekit_node")


def test_an_unknown_role_with_a_position_is_not_a_role() -> None:
    assert roles.parse("livekit_nodes:2") is None
    assert roles.parse("livekit_node:2") == ("livekit_node", 2)


# --- runtimes ---------------------------------------------------------------------------------

class FakeContainer:
    def __init__(self, name: str, labels: dict[str, str]) -> None:
        self.name = name
        self.labels = labels


class FakeContainers:
    def __init__(self, containers: list[FakeContainer]) -> None:
        self.all = containers
        self.filters: list[dict[str, str]] = []

    def list(self, all: bool, filters: dict[str, str]) -> list[FakeContainer]:
        assert all
        self.filters.append(filters)
        found = self.all
        if "label" in filters:
            key, _, value = filters["label"].partition("=")
            found = [c for c in found if key in c.labels and (not value or c.labels[key] == value)]
        return found


class FakeClient:
    def __init__(self, containers: list[FakeContainer]) -> None:
        self.containers = FakeContainers(containers)


ENGINE = [
    FakeContainer("lkchaos-agent-1", {"com.docker.compose.project": "lkchaos",
                                      "com.docker.compose.service": "agent"}),
    FakeContainer("voice-agent", {"role": "agent"}),
    FakeContainer("lk-server", {}),
    FakeContainer("migrations", {"role": "db-migrate"}),
    FakeContainer("someone-elses", {}),
]


def _names(settings: Settings) -> dict[str, str]:
    found: dict[str, Any] = runtime_containers(FakeClient(ENGINE), settings)
    return {key: container.name for key, container in found.items()}


def test_compose_runtime_is_the_projects_services() -> None:
    assert _names(Settings()) == {"agent": "lkchaos-agent-1"}
    assert describe_runtime(Settings()) == "compose project 'lkchaos'"


def test_docker_by_name_lists_only_containers_the_target_maps() -> None:
    settings = Settings(runtime="docker-name", compose_project="",
                        roles={"agent_worker": ("voice-agent",), "livekit_node": ("lk-server",)})
    assert _names(settings) == {"voice-agent": "voice-agent", "lk-server": "lk-server"}


def test_docker_by_label_keys_containers_by_the_labels_value() -> None:
    settings = Settings(runtime="docker-label", runtime_label="role", compose_project="")
    assert _names(settings) == {"agent": "voice-agent", "db-migrate": "migrations"}
    assert describe_runtime(settings) == "docker containers by label 'role'"


# --- the preflight and target check judge roles against the target in use -------------------

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = ROOT / "tests" / "fixtures" / "targets" / "minimal.yaml"


def _experiment(*method: dict[str, Any]) -> dict[str, Any]:
    return {"title": "t", "description": "d", "method": list(method)}


def _call(name: str, module: str, func: str, **arguments: Any) -> dict[str, Any]:
    kind = "probe" if module.endswith(".probes") else "action"
    return {"type": kind, "name": name,
            "provider": {"type": "python", "module": module, "func": func,
                         "arguments": arguments}}  # fmt: skip


def _problems(experiment: dict[str, Any], target: Path) -> list[str]:
    from lkchaos import preflight

    found = preflight.check_experiment(experiment, {"lkchaos_target": str(target)}, {},
                                       deployment=False)  # fmt: skip
    return [str(problem) for problem in preflight.errors(found)]


@pytest.mark.parametrize(("call", "expected"), [
    (_call("cut", "lkchaos.network.actions", "partition", service="agent_worker",
           peers=["tool_server"]), "the target maps no tool_server"),
    (_call("cut", "lkchaos.network.actions", "partition", service="livekit_node:1",
           peers=["livekit_node"]), "cannot be partitioned from itself"),
    (_call("look", "lkchaos.docker.probes", "services_health", services=["livekit_node:7"]),
     "the target has 1 livekit_node (lk-server), so livekit_node:7 does not exist"),
    (_call("look", "lkchaos.docker.probes", "service_health", service="speech_to_text"),
     "the target maps no speech_to_text"),
    (_call("down", "lkchaos.dns.actions", "stop_resolver"),
     "the target cannot run it: it needs a resolver lkchaos may fault"),
    (_call("fail", "lkchaos.redis.actions", "sentinel_failover"),
     "the target cannot run it: it needs Redis Sentinel"),
    (_call("kill", "lkchaos.docker.actions", "kill_service", service="agent_wroker:1"),
     "unknown role 'agent_wroker' (did you mean agent_worker:1?)"),
    (_call("kill", "lkchaos.docker.actions", "kill_service", service="livekit_node:0"),
     "positions start at 1"),
])
def test_the_preflight_refuses_what_the_target_cannot_do(call: dict[str, Any],
                                                         expected: str) -> None:
    problems = _problems(_experiment(call), MINIMAL)
    assert any(expected in problem for problem in problems), problems


def test_a_link_role_the_target_does_not_map_is_refused(tmp_path: Path) -> None:
    text = (ROOT / "stack" / "targets" / "reference.yaml").read_text()
    target = tmp_path / "t.yaml"
    target.write_text(text.replace("    agent_tool_server: agent_mcp\n", ""))
    call = _call("slow", "lkchaos.toxiproxy.actions", "add_latency", proxy="agent_tool_server",
                 latency_ms=100)
    problems = _problems(_experiment(call), target)
    assert any("proxy 'agent_tool_server' is a link role the target does not map" in problem
               for problem in problems), problems  # fmt: skip
    ok = _call("slow", "lkchaos.toxiproxy.actions", "add_latency", proxy="agent_livekit",
               latency_ms=100)
    assert _problems(_experiment(ok), target) == []


def test_target_check_and_the_preflight_agree() -> None:
    # What the preflight refuses on the target, target check says does not apply, and why.
    from lkchaos.target import applies
    from lkchaos.target.load import load_target

    harness = _call("kill", "lkchaos.docker.actions", "kill_service", service="voice_prober")
    both = _call("back", "lkchaos.docker.actions", "start_service", service="livekit_node")
    loaded = load_target(ROOT / "stack" / "targets" / "reference.yaml")
    found = applies.describe(applies.reasons(_experiment(harness, both), loaded))
    assert found == [
        "service 'voice_prober' is lkchaos's own test harness, not a target (kill)",
        "service 'livekit_node' stands for 2 components (livekit-1, livekit-2): name one of "
        "livekit_node:1, livekit_node:2 (back)"]


def test_a_role_whose_container_is_missing_stops_only_the_activities_naming_it() -> None:
    # roles.agent_worker misspelt ('agnet'): the Redis and DNS activities still apply.
    from lkchaos.target import applies
    from lkchaos.target.load import load_target

    loaded = load_target(ROOT / "stack" / "targets" / "reference.yaml")
    missing = {"agent_worker": "no 'agnet' in compose project 'lkchaos': start it, or correct "
                               "roles.agent_worker"}
    crash = _call("crash", "lkchaos.docker.actions", "crash_service", service="agent_worker")
    by_name = _call("look", "lkchaos.docker.probes", "services_health",
                    services=["redis-primary", "agent"])
    redis = _call("stop", "lkchaos.docker.actions", "stop_service", service="redis_replica")
    found = applies.describe(applies.reasons(_experiment(crash, by_name, redis), loaded,
                                             missing_roles=missing))
    assert found == [f"role agent_worker: {missing['agent_worker']} (crash, look)"]
    assert applies.reasons(_experiment(redis), loaded, missing_roles=missing) == {}


def test_an_undo_by_runtime_name_finds_that_container() -> None:
    # A container named like the role it plays: its ledger entry says "sentinel".
    settings = Settings(roles={"sentinel": ("sentinel", "sentinel-b")})
    assert roles.resolve_one(settings, "sentinel") == "sentinel"
    assert roles.resolve(settings, "sentinel") == ["sentinel", "sentinel-b"]


def test_a_fault_is_undone_only_from_the_target_it_was_made_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    # Two deployments may share one state folder: recovering one must not act on the other.
    import lkchaos.docker.actions as docker_actions
    from lkchaos.safety import ledger

    undone: list[str] = []
    monkeypatch.setattr(docker_actions, "start_service",
                        lambda service, configuration=None: undone.append(service))
    monkeypatch.setitem(ledger._deployment, "path", "")

    def fault(target: str) -> ledger.Fault:
        return ledger.Fault("stopped", target, "lkchaos.docker.actions", "start_service",
                            {"service": target})  # fmt: skip

    ledger.note_deployment("/srv/a.yaml")
    ledger.record(tmp_path, fault("agent"))
    ledger.note_deployment("/srv/b.yaml")
    ledger.record(tmp_path, fault("voice-agent"))
    assert ledger.forget(tmp_path, "stopped", "agent") == 0  # not b's fault to forget
    report = ledger.undo_all(tmp_path)
    assert undone == ["voice-agent"]
    assert [r["outcome"] for r in report] == [
        "undone", "left alone: made on the target /srv/a.yaml; run `lkchaos recover "
        "--target /srv/a.yaml`"]
    assert ledger.pending(tmp_path) == []  # none left on b, the target in use
    assert [f.target for f in ledger.pending(tmp_path, every_target=True)] == ["agent"]
    ledger.note_deployment("/srv/a.yaml")
    assert [f.target for f in ledger.pending(tmp_path)] == ["agent"]
    assert [r["outcome"] for r in ledger.undo_all(tmp_path)] == ["undone"]
    assert undone == ["voice-agent", "agent"] and ledger.pending(tmp_path) == []


def test_replicas_of_one_runtime_name_are_all_listed_and_one_is_chosen() -> None:
    from lkchaos.docker.client import runtime_replicas

    scaled = [FakeContainer(f"lkchaos-agent-{i}", {"com.docker.compose.project": "lkchaos",
                                                   "com.docker.compose.service": "agent"})
              for i in (2, 1, 3)]  # fmt: skip
    client = FakeClient(scaled)
    assert [(name, c.name) for name, c in runtime_replicas(client, Settings())] == [
        ("agent", "lkchaos-agent-1"), ("agent", "lkchaos-agent-2"), ("agent", "lkchaos-agent-3")]
    # A fault and its undo act on the same replica: always the first by container name.
    assert runtime_containers(client, Settings())["agent"].name == "lkchaos-agent-1"
