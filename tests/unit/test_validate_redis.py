"""The Redis checks against real redis-servers on loopback: the LiveKit fixture's plain one,
and a password-protected primary with a replica and a Sentinel (``redis-server
--sentinel``)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from lkchaos.settings import Settings
from lkchaos.validate.checks import redis as redis_checks
from lkchaos.validate.model import CHECKS, Context, Finding
from tests.unit.livekit_dev import free_port
from tests.unit.test_validate_livekit import Local, local, no_engine  # noqa: F401

PASSWORD = "validate-redis-password-0123"


def run(item: str, ctx: Context) -> Finding:
    return CHECKS[item](ctx)


@dataclass
class Replicated:
    primary: int
    replica: int
    sentinel: int
    processes: dict[str, subprocess.Popen[bytes]]

    def settings(self, **changes: object) -> Settings:
        values: dict[str, object] = {
            "sentinel_addresses": (f"127.0.0.1:{self.sentinel}",), "sentinel_master": "vm",
            "redis_address_map": {}, "redis_password": PASSWORD, "livekit_node_urls": (),
        }  # fmt: skip
        values.update(changes)
        return Settings(**values)  # type: ignore[arg-type]


def _client(port: int) -> redis.Redis:
    return redis.Redis(port=port, password=PASSWORD, socket_timeout=2, decode_responses=True)


@pytest.fixture(scope="module")
def replicated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicated]:
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("no redis-server on PATH: apt-get install redis-server")
    folder: Path = tmp_path_factory.mktemp("replicated")
    primary, replica, sentinel = free_port(), free_port(), free_port()
    auth = ["--requirepass", PASSWORD, "--masterauth", PASSWORD, "--bind", "127.0.0.1",
            "--save", ""]  # fmt: skip
    (folder / "sentinel.conf").write_text(
        f"port {sentinel}\nbind 127.0.0.1\nsentinel monitor vm 127.0.0.1 {primary} 1\n"
        f"sentinel auth-pass vm {PASSWORD}\nsentinel down-after-milliseconds vm 5000\n")
    processes = {
        "primary": subprocess.Popen([server, "--port", str(primary), "--dir", str(folder),
                                     "--appendonly", "yes", "--dbfilename", "p.rdb", *auth],
                                    stdout=subprocess.DEVNULL),  # fmt: skip
        "replica": subprocess.Popen([server, "--port", str(replica), "--dir", str(folder),
                                     "--dbfilename", "r.rdb", "--appendonly", "no",
                                     "--replicaof", "127.0.0.1", str(primary), *auth],
                                    stdout=subprocess.DEVNULL),  # fmt: skip
    }
    time.sleep(0.3)
    processes["sentinel"] = subprocess.Popen([server, str(folder / "sentinel.conf"),
                                              "--sentinel"], stdout=subprocess.DEVNULL)
    data, sentinels = _client(primary), redis.Redis(port=sentinel, socket_timeout=2,
                                                   decode_responses=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                info: dict[str, Any] = data.info("replication")
                master: Any = sentinels.sentinel_master("vm")
                if (info.get("connected_slaves") == 1 and int(master.get("num-slaves", 0)) == 1
                        and str(info.get("slave0", {}).get("state")) == "online"):  # fmt: skip
                    break
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the replicated Redis did not come up")
            time.sleep(0.2)
        yield Replicated(primary, replica, sentinel, processes)
    finally:
        data.close()
        sentinels.close()
        for process in processes.values():
            process.terminate()
            process.wait(timeout=10)


# --- connectivity ---------------------------------------------------------------------------


def test_connection_finds_the_primary_through_sentinel(replicated: Replicated) -> None:
    found = run("redis.redis-connection-successful", Context(replicated.settings()))
    assert found.status == "pass" and found.data["role"] == "master"
    assert found.data["address"] == f"127.0.0.1:{replicated.primary}"


def test_authentication(replicated: Replicated, local: Local) -> None:  # noqa: F811
    with_password = run("redis.authentication-working", Context(replicated.settings()))
    assert with_password.status == "pass" and "refused a client without" in with_password.evidence
    wrong = run("redis.authentication-working",
                Context(replicated.settings(redis_password="not-the-password")))
    assert wrong.status == "error" and "refused the default user" in wrong.evidence
    assert "not-the-password" not in wrong.evidence
    plain = run("redis.authentication-working", Context(local.settings()))
    assert plain.status == "n/a" and "no password" in plain.evidence


def test_persistence(replicated: Replicated, local: Local) -> None:  # noqa: F811
    aof = run("redis.data-persistence-configured", Context(replicated.settings()))
    assert aof.status == "pass" and "appendonly yes" in aof.evidence
    none = run("redis.data-persistence-configured", Context(local.settings()))
    assert none.status == "fail" and "no persistence" in none.evidence


def test_memory_against_maxmemory(local: Local) -> None:  # noqa: F811
    ctx = Context(local.settings())
    unlimited = run("redis.memory-usage-reasonable", ctx)
    assert unlimited.status == "pass" and "no maxmemory set" in unlimited.evidence
    server = redis.Redis(port=local.redis_port, socket_timeout=2)
    used = int(server.info("memory")["used_memory"])
    server.config_set("maxmemory", int(used * 1.05))
    try:
        tight = run("redis.memory-usage-reasonable", ctx)
    finally:
        server.config_set("maxmemory", 0)
        server.close()
    assert tight.status == "warn" and "of maxmemory" in tight.evidence


def test_key_expiry_and_pub_sub_leave_nothing(local: Local) -> None:  # noqa: F811
    ctx = Context(local.settings())
    expiry = run("redis.key-expiration-working", ctx)
    assert expiry.status == "pass", expiry.evidence
    assert 0 < expiry.data["ttl_ms"] <= 1000
    assert run("redis.pub-sub-functionality", ctx).status == "pass"
    server = redis.Redis(port=local.redis_port, socket_timeout=2)
    assert list(server.scan_iter(match=f"{redis_checks.SCRATCH}*")) == []
    server.close()


def test_replication_and_sentinel_quorum(replicated: Replicated, local: Local) -> None:  # noqa: F811
    found = run("redis.clustering-working", Context(replicated.settings()))
    assert found.status == "pass", found.evidence
    assert found.data["sentinels"][f"127.0.0.1:{replicated.sentinel}"].startswith("OK")
    single = run("redis.clustering-working", Context(local.settings()))
    assert single.status == "n/a"


def test_a_replica_still_syncing_is_waited_for_then_named(replicated: Replicated,
                                                         tmp_path: Path) -> None:
    """A replica attached while the primary delays its full sync (diskless, 4 s) is in
    ``wait_bgsave``: a check with no time to wait fails and names it; one with time passes
    once it is online."""
    server = shutil.which("redis-server")
    assert server is not None
    primary = _client(replicated.primary)
    primary.config_set("repl-diskless-sync", "yes")
    primary.config_set("repl-diskless-sync-delay", "4")
    late = free_port()
    process = subprocess.Popen([server, "--port", str(late), "--dir", str(tmp_path),
                                "--appendonly", "no", "--replicaof", "127.0.0.1",
                                str(replicated.primary), "--requirepass", PASSWORD,
                                "--masterauth", PASSWORD, "--bind", "127.0.0.1", "--save", ""],
                               stdout=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while primary.info("replication").get("connected_slaves") != 2:
            assert time.monotonic() < deadline, "the second replica never connected"
            time.sleep(0.1)
        hurried = run("redis.clustering-working", Context(replicated.settings(), timeout_s=3))
        assert hurried.status == "fail", hurried.evidence
        assert f"127.0.0.1:{late} wait_bgsave" in hurried.evidence
        patient = run("redis.clustering-working", Context(replicated.settings(), timeout_s=20))
        assert patient.status == "pass", patient.evidence
        assert len(patient.data["replicas"]) == 2 and patient.data["waited_s"] > 0
    finally:
        process.terminate()
        process.wait(timeout=10)
        primary.config_set("repl-diskless-sync-delay", "0")
        deadline = time.monotonic() + 10
        while primary.info("replication").get("connected_slaves") != 1:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        primary.close()


def test_a_lost_replica_fails_clustering(replicated: Replicated) -> None:
    """Last in the module: it stops the replica."""
    replicated.processes["replica"].terminate()
    replicated.processes["replica"].wait(timeout=10)
    deadline = time.monotonic() + 10
    primary = _client(replicated.primary)
    while primary.info("replication").get("connected_slaves"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    primary.close()
    found = run("redis.clustering-working", Context(replicated.settings()))
    assert found.status == "fail" and "0 replica(s) online" in found.evidence


# --- LiveKit's state -------------------------------------------------------------------------


def test_livekit_state_session_and_cleanup(local: Local) -> None:  # noqa: F811
    ctx = Context(local.settings(), timeout_s=15.0)
    synced = run("redis.room-state-synchronized", ctx)
    assert synced.status == "pass", synced.evidence
    session = run("redis.session-data-stored", ctx)
    assert session.status == "pass", session.evidence
    assert session.data["identities"] == ["lkchaos-validate-listener", "lkchaos-validate-speaker"]
    cleanup = run("redis.data-cleanup-disconnect", ctx)
    assert cleanup.status == "pass" and cleanup.data["left"] == []
    assert run("redis.stale-data-accumulation", ctx).status == "pass"
    events = run("redis.events-published-subscribed", ctx)
    assert events.status == "pass" and events.data["subscribed"] > 0


def test_orphaned_room_data_is_stale(local: Local) -> None:  # noqa: F811
    server = redis.Redis(port=local.redis_port, socket_timeout=2)
    server.hset("room_participants:lkchaos-test-ghost", "someone", b"")
    try:
        found = run("redis.stale-data-accumulation", Context(local.settings(), timeout_s=15.0))
    finally:
        server.delete("room_participants:lkchaos-test-ghost")
        server.close()
    assert found.status == "fail"
    assert "orphan_participants lkchaos-test-ghost" in found.evidence


def test_this_runs_own_rooms_in_flight_are_not_the_deployments(local: Local) -> None:  # noqa: F811
    """A room of the run itself (``lkchaos-validate-*``) is joined and left while the state
    is read: its transient mismatches are not the deployment's."""
    server = redis.Redis(port=local.redis_port, socket_timeout=2)
    key = "room_participants:lkchaos-validate-in-flight"
    server.hset(key, "someone", b"")
    try:
        ctx = Context(local.settings(), timeout_s=15.0)
        stale = run("redis.stale-data-accumulation", ctx)
        synced = run("redis.room-state-synchronized", ctx)
    finally:
        server.delete(key)
        server.close()
    assert stale.status == "pass", stale.evidence
    assert synced.status == "pass", synced.evidence
