"""The Redis items on a Redis that refuses admin commands, as a managed one does (ElastiCache
and Memorystore rename or remove CONFIG) or as an ACL user without ``@admin``/``@dangerous``
is refused them: each item whose command is refused is ``manual``, saying why and what a
person must confirm, never an ``error``. Real ``redis-server`` processes on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from lkchaos.settings import Settings
from lkchaos.validate.checks import redis as redis_checks
from lkchaos.validate.model import CHECKS, Context, Finding
from tests.unit.test_redis_client import MISSING, SERVER, Server, _base, _start, _stop, free_port

USER, PASSWORD = "livekit", "managed-pass-for-tests"


def run(item: str, settings: Settings) -> Finding:
    return CHECKS[item](Context(settings, timeout_s=5.0))


def _ready(port: int, **auth: str) -> bool:
    with redis.Redis(host="127.0.0.1", port=port, socket_timeout=1, **auth) as r:
        return bool(r.ping())


def _server(folder: Path, extra: list[str], **auth: str) -> Server:
    if SERVER is None:
        pytest.fail(MISSING)
    port = free_port()
    return _start(folder, [*_base(port), *extra], port, lambda: _ready(port, **auth))


@pytest.fixture(scope="module")
def no_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """CONFIG removed (``rename-command CONFIG ""``), as ElastiCache and Memorystore do."""
    server = _server(tmp_path_factory.mktemp("no-config"), ["--rename-command", "CONFIG", ""])
    yield server
    _stop(server)


@pytest.fixture(scope="module")
def no_admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The default user off; LiveKit's user may not run admin or dangerous commands."""
    server = _server(tmp_path_factory.mktemp("no-admin"),
                     ["--user", "default", "off", "--user", USER, "on", f">{PASSWORD}", "~*",
                      "&*", "+@all", "-@admin", "-@dangerous"],
                     username=USER, password=PASSWORD)  # fmt: skip
    yield server
    _stop(server)


def direct(server: Server, **changes: object) -> Settings:
    values: dict[str, object] = {"sentinel_addresses": (), "redis_address_map": {},
                                 "redis_primary_address": f"127.0.0.1:{server.port}",
                                 "livekit_node_urls": ()}  # fmt: skip
    values.update(changes)
    return Settings(**values)  # type: ignore[arg-type]


def test_persistence_without_config_reads_info(no_config: Server) -> None:
    found = run("redis.data-persistence-configured", direct(no_config))
    # _base starts it with appendonly no and no save schedule: INFO cannot show the schedule
    assert found.status == "manual", found
    assert "CONFIG is refused here (unknown command" in found.evidence
    assert "ElastiCache" in found.evidence and "AOF off" in found.evidence
    assert "Confirm that RDB snapshots or AOF are on" in found.evidence
    assert redis_checks.refused(redis.ResponseError("unknown command 'CONFIG', with args"))
    assert redis_checks.refused(redis.exceptions.NoPermissionError("no permissions"))
    assert not redis_checks.refused(redis.ResponseError("WRONGTYPE Operation"))


def test_persistence_with_aof_on_passes_through_info(tmp_path: Path) -> None:
    server = _server(tmp_path, ["--rename-command", "CONFIG", "", "--appendonly", "yes"])
    try:
        found = run("redis.data-persistence-configured", direct(server))
    finally:
        _stop(server)
    assert found.status == "pass" and found.evidence.startswith("AOF is on (INFO persistence")


def test_items_refused_their_admin_commands_are_manual(no_admin: Server) -> None:
    settings = direct(no_admin, redis_username=USER, redis_password=PASSWORD)
    for item, what in (("redis.data-persistence-configured", "persistence cannot be read"),
                       ("redis.redis-connection-successful", "answered PING in"),
                       ("redis.memory-usage-reasonable", "memory use cannot be read"),
                       ("redis.clustering-working", "replication cannot be read")):
        found = run(item, settings)
        assert found.status == "manual", (item, found)
        assert what in found.evidence and "Confirm" in found.evidence, found.evidence
        assert "-@admin" in found.evidence and "no permissions" in found.data["refused"]
    # what the user may run still runs
    assert run("redis.key-expiration-working", settings).status == "pass"
