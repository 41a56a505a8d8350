"""kill_primary and restore_old_primary: finding the primary's container whatever Sentinel
announces, direct Redis, and the restore's defaults, with fake containers and Redis."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
from chaoslib.exceptions import ActivityFailed

from lkchaos.docker import actions as docker_actions
from lkchaos.redis import actions, nodes
from lkchaos.redis import client as redis_client
from lkchaos.safety import ledger
from lkchaos.settings import Settings


class FakeContainer:
    """What the Docker SDK gives: a name and the engine's inspect data in ``attrs``."""

    def __init__(self, name: str, hostname: str, ip: str, aliases: tuple[str, ...] = (),
                 ipv6: str = "", dns_names: tuple[str, ...] = ()) -> None:  # fmt: skip
        self.name = name
        self.reloads = 0
        self.attrs: dict[str, Any] = {
            "Name": f"/{name}",
            "Config": {"Hostname": hostname, "Domainname": ""},
            "NetworkSettings": {"IPAddress": "", "Networks": {"backend": {
                "Aliases": list(aliases), "DNSNames": list(dns_names), "IPAddress": ip,
                "GlobalIPv6Address": ipv6}}},
        }  # fmt: skip

    def reload(self) -> None:
        self.reloads += 1


def containers() -> dict[str, FakeContainer]:
    """Runtime name -> container, as a target by label would list them."""
    return {
        "cache-a": FakeContainer("prod-cache-a-1", "c0ffee000001", "172.20.0.5",
                                 aliases=("cache-a", "redis-main"), ipv6="fd00::5"),
        "cache-b": FakeContainer("prod-cache-b-1", "cache-b.host", "172.20.0.6",
                                 dns_names=("prod-cache-b-1", "cache-b-dns")),
        "livekit": FakeContainer("prod-livekit-1", "lk", "172.20.0.9", aliases=("redis-x",)),
    }


ROLES = {"redis_primary": ("cache-a",), "redis_replica": ("cache-b",),
         "livekit_node": ("livekit",)}  # fmt: skip


@pytest.mark.parametrize(("host", "name", "kind"), [
    ("cache-a", "cache-a", "runtime name"),
    ("prod-cache-a-1", "cache-a", "container name"),
    ("PROD-CACHE-B-1", "cache-b", "container name"),
    ("c0ffee000001", "cache-a", "hostname"),
    ("cache-b.host", "cache-b", "hostname"),
    ("redis-main", "cache-a", "network alias"),
    ("cache-b-dns", "cache-b", "network alias"),
    ("172.20.0.6", "cache-b", "IP address"),
    ("fd00:0::5", "cache-a", "IP address"),
])  # fmt: skip
def test_an_announced_host_matches_one_identity(host: str, name: str, kind: str) -> None:
    found = containers()
    assert nodes.find(host, found) == [(name, kind)]


def test_unrelated_hosts_match_nothing() -> None:
    for host in ("172.20.0.7", "cache", "redis-primary", "10.0.0.5", "fd00::6"):
        assert nodes.find(host, containers()) == []


def test_candidates_are_the_redis_roles_only() -> None:
    settings = Settings(roles={**ROLES, "redis_replica": ("cache-b", "cache-c")})
    assert nodes.candidates(settings) == ["cache-a", "cache-b", "cache-c"]


def test_describe_lists_what_was_looked_at() -> None:
    text = nodes.describe({"cache-b": containers()["cache-b"]})
    assert text.startswith("cache-b (container name prod-cache-b-1; hostname cache-b.host")
    assert "IP address 172.20.0.6" in text


# --- the actions, with the backends faked ------------------------------------------------


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Sentinel announces ``world["master"]``; the runtime holds ``containers()``; kills and
    starts are recorded (the kill also in the ledger, as kill_service does)."""
    state: dict[str, Any] = {
        "settings": Settings(roles=ROLES, state_dir=str(tmp_path), runtime="docker-label",
                             runtime_label="prod.role", redis_address_map={
                                 "172.20.0.6:7001": "127.0.0.1:27001"}),
        "master": ("172.20.0.6", 7001), "replicas": [], "containers": containers(),
        "killed": [], "started": [], "sessions": 0, "info": {}, "commands": [],
        "refuse": False,
    }  # fmt: skip

    @contextmanager
    def session() -> Iterator[object]:
        state["sessions"] += 1
        yield object()

    def kill(service: str, signal: str, configuration: Any, secrets: Any) -> dict[str, Any]:
        state["killed"].append(service)
        ledger.record(tmp_path, ledger.Fault("stopped", service, "lkchaos.docker.actions",
                                             "start_service", {"service": service}))
        return {"service": service, "signal": signal}

    def start(service: str, configuration: Any = None, secrets: Any = None) -> dict[str, Any]:
        state["started"].append(service)
        ledger.forget(tmp_path, "stopped", service)
        return {"service": service, "before": "exited"}

    class FakeNode:
        def __init__(self, address: tuple[str, int]) -> None:
            self.address = address

        def __enter__(self) -> FakeNode:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def info(self, section: str) -> dict[str, Any]:
            return dict(state["info"].get(self.address, {"role": "slave",
                                                         "master_link_status": "down"}))

        def execute_command(self, *args: str) -> None:
            state["commands"].append((self.address, *args))
            if state["refuse"]:
                raise redis.ResponseError("ERR unknown command 'REPLICAOF'")
            state["info"][self.address] = {"role": "slave", "master_link_status": "up"}

    def node(settings: Settings, host: str, port: int, **kw: Any) -> FakeNode:
        return FakeNode(settings.map_redis_address(host, port))

    monkeypatch.setattr(Settings, "load", classmethod(lambda cls, c=None, s=None:
                                                      state["settings"]))
    monkeypatch.setattr(actions, "docker_session", session)
    monkeypatch.setattr(actions, "runtime_containers", lambda d, s: state["containers"])
    monkeypatch.setattr(redis_client, "master_address", lambda s, t=2.0: (
        s.redis_primary_address.split(":")[0], int(s.redis_primary_address.split(":")[1]))
        if not s.sentinel_addresses else state["master"])
    monkeypatch.setattr(redis_client, "sentinel_replicas", lambda s, t=2.0: state["replicas"])
    monkeypatch.setattr(redis_client, "node", node)
    monkeypatch.setattr(docker_actions, "kill_service", kill)
    monkeypatch.setattr(docker_actions, "start_service", start)
    monkeypatch.setattr("time.sleep", lambda s: None)
    yield state


def test_kill_primary_finds_the_container_sentinel_announces_by_ip(world: dict[str, Any]) -> None:
    result = actions.kill_primary()
    assert world["killed"] == ["cache-b"]
    assert result["killed"] == "cache-b" and result["role"] == "redis_replica"
    assert result["matched_by"] == "IP address" and result["master_before"] == "172.20.0.6:7001"
    assert all(c.reloads == 1 for n, c in world["containers"].items() if n != "livekit")


def test_kill_primary_refuses_when_no_container_matches(world: dict[str, Any]) -> None:
    world["master"] = ("redis-x", 6379)  # the LiveKit container's alias: not a candidate
    with pytest.raises(ActivityFailed) as caught:
        actions.kill_primary()
    message = str(caught.value)
    assert "announces the primary at redis-x:6379" in message
    assert "cache-a (" in message and "cache-b (" in message and "prod-livekit-1" not in message
    assert world["killed"] == []


def test_kill_primary_refuses_an_ambiguous_host(world: dict[str, Any]) -> None:
    world["containers"]["cache-b"].attrs["NetworkSettings"]["Networks"]["backend"][
        "Aliases"] = ["redis-main"]
    world["master"] = ("redis-main", 6379)
    with pytest.raises(ActivityFailed, match=r"several containers answer to 'redis-main': "
                       r"cache-a \(network alias\), cache-b \(network alias\)"):
        actions.kill_primary()
    assert world["killed"] == []


def test_kill_primary_without_sentinel_kills_the_primary_role(world: dict[str, Any]) -> None:
    world["settings"] = Settings(roles=ROLES, state_dir=world["settings"].state_dir,
                                 sentinel_addresses=(), redis_primary_address="10.1.1.1:6390")
    result = actions.kill_primary(signal="SIGTERM")
    assert world["killed"] == ["cache-a"] and world["sessions"] == 0
    assert result["master_before"] == "10.1.1.1:6390" and "without Sentinel" in result["matched_by"]


def test_restore_defaults_to_the_node_the_last_kill_stopped(world: dict[str, Any]) -> None:
    actions.kill_primary()  # Sentinel named cache-b (a replica promoted earlier)
    world["master"] = ("172.20.0.5", 6379)  # Sentinel has promoted cache-a since
    world["replicas"] = [{"ip": "172.20.0.6", "port": 7001, "flags": "slave"}]
    world["info"][("127.0.0.1", 27001)] = {"role": "slave", "master_link_status": "up"}
    result = actions.restore_old_primary()
    assert world["started"] == ["cache-b"]
    assert result["service"] == "cache-b" and result["role"] == "slave"
    assert result["address"] == "172.20.0.6:7001" and result["master"] == "172.20.0.5:6379"


def test_restore_prefers_this_runs_kill(world: dict[str, Any], tmp_path: Path) -> None:
    ledger.record(tmp_path, ledger.Fault("stopped", "cache-a", "lkchaos.docker.actions",
                                         "start_service", {"service": "cache-a"},
                                         run_id="this-run"))
    ledger.record(tmp_path, ledger.Fault("stopped", "cache-b", "lkchaos.docker.actions",
                                         "start_service", {"service": "cache-b"},
                                         run_id="an-older-run"))
    ledger.begin_run("test", run_id="this-run")
    try:
        assert actions.last_killed(world["settings"]) == "cache-a"
    finally:
        ledger.end_run()
    assert actions.last_killed(world["settings"]) == "cache-b"


def _back_as_a_second_primary(world: dict[str, Any]) -> None:
    """cache-b (127.0.0.1:27001 from here) was killed as the primary and comes back saying it
    is one, while Sentinel has promoted cache-a since."""
    actions.kill_primary()
    world["master"] = ("172.20.0.5", 6379)
    world["replicas"] = [{"ip": "172.20.0.6", "port": 7001, "flags": "slave"}]
    world["info"][("127.0.0.1", 27001)] = {"role": "master"}


def test_an_old_primary_back_as_a_primary_is_pointed_at_sentinels(world: dict[str, Any]) -> None:
    _back_as_a_second_primary(world)
    result = actions.restore_old_primary(wait_s=1)
    # Sent once, to the node that came back, naming the primary as Sentinel announces it.
    assert world["commands"] == [(("127.0.0.1", 27001), "REPLICAOF", "172.20.0.5", "6379")]
    assert result["role"] == "slave" and result["replicaof"] == "172.20.0.5:6379"


def test_without_reconfigure_the_old_primary_is_left_to_sentinel(world: dict[str, Any]) -> None:
    _back_as_a_second_primary(world)
    with pytest.raises(ActivityFailed, match=r"not replicating after 0.01 s \(role master"):
        actions.restore_old_primary(wait_s=0.01, reconfigure=False)
    assert world["commands"] == []


def test_a_refused_replicaof_is_left_to_sentinel_and_said(world: dict[str, Any]) -> None:
    _back_as_a_second_primary(world)
    world["refuse"] = True
    with pytest.raises(ActivityFailed, match=r"REPLICAOF refused \(ERR unknown command "
                       r"'REPLICAOF'\): left to Sentinel"):
        actions.restore_old_primary(wait_s=0.01)
    assert len(world["commands"]) == 1  # asked once, not again and again


def test_reconfigure_must_be_a_boolean(world: dict[str, Any]) -> None:
    with pytest.raises(ActivityFailed, match="reconfigure must be true or false, not 'yes'"):
        actions.restore_old_primary(reconfigure="yes")  # type: ignore[arg-type]
    assert world["started"] == []


def test_restore_without_a_recorded_kill_starts_the_primary_role(world: dict[str, Any]) -> None:
    ledger.record(world["settings"].state_dir, ledger.Fault(
        "stopped", "livekit", "lkchaos.docker.actions", "start_service", {"service": "livekit"}))
    world["master"] = ("cache-a", 6379)  # announced by runtime name, and it is master again
    world["info"][("cache-a", 6379)] = {"role": "master"}
    result = actions.restore_old_primary(wait_s=1)
    assert world["started"] == ["cache-a"] and result["role"] == "master"
    assert world["commands"] == [] and result["replicaof"] is None  # it is Sentinel's primary


def test_restore_accepts_a_role_member(world: dict[str, Any]) -> None:
    world["master"] = ("172.20.0.5", 6379)
    world["replicas"] = [{"ip": "172.20.0.6", "port": 7001, "flags": "slave"}]
    world["info"][("127.0.0.1", 27001)] = {"role": "slave", "master_link_status": "up"}
    assert actions.restore_old_primary(service="redis_replica:1")["service"] == "cache-b"


def test_restore_times_out_saying_what_it_saw(world: dict[str, Any]) -> None:
    world["master"] = ("172.20.0.5", 6379)
    world["replicas"] = [{"ip": "172.20.0.6", "port": 7001, "flags": "s_down,slave"}]
    with pytest.raises(ActivityFailed, match=r"cache-b is running but not replicating after "
                       r"0.01 s \(role slave, address 172.20.0.6:7001"):
        actions.restore_old_primary(service="cache-b", wait_s=0.01)


def test_restore_without_sentinel_waits_for_the_node_to_serve(world: dict[str, Any]) -> None:
    world["settings"] = Settings(roles={**ROLES, "redis_replica": ("cache-b",)},
                                 state_dir=world["settings"].state_dir, sentinel_addresses=(),
                                 redis_address_map={}, redis_primary_address="127.0.0.1:6390",
                                 redis_replica_addresses=("127.0.0.1:6391",))  # fmt: skip
    world["info"][("127.0.0.1", 6391)] = {"role": "slave", "master_link_status": "up"}
    result = actions.restore_old_primary(service="cache-b", wait_s=1)
    assert result["address"] == "127.0.0.1:6391" and result["role"] == "slave"
    world["info"][("127.0.0.1", 6390)] = {"role": "master"}
    assert actions.restore_old_primary(wait_s=1)["address"] == "127.0.0.1:6390"
    assert world["commands"] == []  # without Sentinel, no node is told what to replicate


def test_sentinel_actions_refuse_direct_redis(world: dict[str, Any]) -> None:
    world["settings"] = Settings(sentinel_addresses=(), redis_primary_address="127.0.0.1:6390")
    with pytest.raises(ActivityFailed, match="needs Redis Sentinel"):
        actions.sentinel_failover(wait_s=1)
