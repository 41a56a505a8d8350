"""stall_primary and unstall_primary, remember_primary and primary_kept, against a real Redis
primary, its replica and a Sentinel (``redis-server`` processes on loopback ports, with AUTH,
Sentinel's failover threshold set to 2000 ms as in the reference stack)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from chaoslib.exceptions import ActivityFailed

from lkchaos.preflight.rules import RULES, Context
from lkchaos.redis import actions, probes
from lkchaos.safety import ledger
from lkchaos.settings import Settings
from tests.unit.test_redis_client import (
    MISSING,
    PASSWORD,
    SERVER,
    Server,
    _answers,
    _base,
    _start,
    _stop,
    free_port,
)

DOWN_AFTER_MS = 2000


def _client(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, password=PASSWORD, socket_timeout=5)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    """A primary, a replica and one Sentinel (quorum 1) watching them as ``stalltest``."""
    if SERVER is None:
        pytest.fail(MISSING)
    base = tmp_path_factory.mktemp("stall")
    auth = ["--requirepass", PASSWORD, "--masterauth", PASSWORD]
    p_port, r_port, s_port = free_port(), free_port(), free_port()
    primary = _start(base / "primary", [*_base(p_port), *auth], p_port,
                     lambda: _answers(p_port, PASSWORD))  # fmt: skip
    replica = _start(base / "replica", [*_base(r_port), *auth, "--replicaof", "127.0.0.1",
                                        str(p_port)], r_port,
                     lambda: _client(r_port).info("replication")["master_link_status"] == "up")
    folder = base / "sentinel"
    folder.mkdir()
    (folder / "sentinel.conf").write_text("\n".join([
        f"port {s_port}", "bind 127.0.0.1", f"dir {folder}",
        f"sentinel monitor stalltest 127.0.0.1 {p_port} 1",
        f"sentinel auth-pass stalltest {PASSWORD}",
        f"sentinel down-after-milliseconds stalltest {DOWN_AFTER_MS}",
        "sentinel failover-timeout stalltest 10000"]) + "\n")  # fmt: skip

    def sentinel_sees_replica() -> bool:
        with redis.Redis(host="127.0.0.1", port=s_port, socket_timeout=1) as s:
            return int(s.sentinel_master("stalltest")["num-slaves"]) >= 1

    sentinel = _start(folder, [str(folder / "sentinel.conf"), "--sentinel"], s_port,
                      sentinel_sees_replica)  # fmt: skip
    yield {"primary": primary, "replica": replica, "sentinel": sentinel}
    for server in (sentinel, replica, primary):
        _stop(server)


@pytest.fixture
def target(cluster: dict[str, Server], tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> Settings:  # fmt: skip
    settings = Settings(sentinel_addresses=(f"127.0.0.1:{cluster['sentinel'].port}",),
                        sentinel_master="stalltest", redis_password=PASSWORD,
                        redis_address_map={}, state_dir=str(tmp_path))  # fmt: skip
    monkeypatch.setattr(Settings, "load", classmethod(lambda cls, c=None, s=None: settings))
    return settings


def _master_port(settings: Settings) -> int:
    return int(probes.sentinel_master()["master"].rsplit(":", 1)[1])


def test_sentinels_threshold_is_read(target: Settings) -> None:
    assert actions.down_after_ms(target) == DOWN_AFTER_MS


def test_a_pause_reaching_the_threshold_is_refused_and_says_it(target: Settings) -> None:
    with pytest.raises(ActivityFailed, match="down-after-milliseconds .* is 2000 ms"):
        actions.stall_primary(pause_ms=2000, every_s=3, duration_s=1)
    assert ledger.pending(target.state_dir) == []


def test_a_stall_below_the_threshold_keeps_the_primary(target: Settings) -> None:
    port = _master_port(target)
    result = actions.stall_primary(pause_ms=1500, every_s=2, duration_s=5)
    assert result["primary"] == f"127.0.0.1:{port}"
    assert result["pauses"] == 3 and result["failed_pauses"] == []
    # three ticks in 5 s: two whole pauses, and a last one cut to the second that is left
    assert 3000 < result["paused_ms"] <= 4500
    assert result["threshold_ms"] == DOWN_AFTER_MS and result["unpaused"] is True
    assert result["same_primary"] is True and result["master_after"] == result["primary"]
    assert ledger.pending(target.state_dir) == []


def test_writes_wait_during_a_write_stall(target: Settings) -> None:
    """While a WRITE stall runs, a writer's SET is held (Redis counts it among its blocked
    clients) while reads go on; every SET completes once the stall is over."""
    port = _master_port(target)
    done: dict[str, Any] = {}
    stall = threading.Thread(target=lambda: done.update(actions.stall_primary(
        pause_ms=1500, every_s=2, duration_s=4, mode="write")))  # fmt: skip
    writes: list[bool] = []

    def write() -> None:
        with _client(port) as writer:
            while stall.is_alive():
                writes.append(bool(writer.set("stall-key", len(writes))))

    writer = threading.Thread(target=write)
    held = 0
    with _client(port) as watcher:
        stall.start()
        writer.start()
        while stall.is_alive():
            held = max(held, int(watcher.info("clients")["blocked_clients"]))
            time.sleep(0.01)
        stall.join(timeout=30)
        writer.join(timeout=30)
        assert watcher.get("stall-key") == str(len(writes) - 1).encode()
    assert held >= 1 and writes and all(writes)
    assert done["mode"] == "WRITE" and done["same_primary"] is True


def test_unstall_ends_a_write_pause_at_once_and_is_harmless_twice(target: Settings) -> None:
    port = _master_port(target)
    with _client(port) as node:
        node.client_pause(60_000, all=False)
        first = actions.unstall_primary(wait_s=5)
        assert node.set("after-unstall", "yes") is True  # would wait a minute if still paused
    assert first["nodes"][f"127.0.0.1:{port}"] is True
    assert len(first["nodes"]) == 2  # the replica is unpaused too
    assert all(v is True for v in actions.unstall_primary(wait_s=5)["nodes"].values())


def test_a_runner_killed_mid_stall_leaves_an_entry_recover_undoes(target: Settings) -> None:
    port = _master_port(target)
    where = f"127.0.0.1:{port}"
    ledger.record(target.state_dir, ledger.Fault(actions.STALL_KIND, where,
                                                 "lkchaos.redis.actions", "unstall_primary"))
    with _client(port) as node:
        node.client_pause(60_000, all=False)
        results = ledger.undo_all(target.state_dir)
        assert node.set("after-recover", "yes") is True
    assert [r["outcome"] for r in results] == ["undone"]
    assert ledger.pending(target.state_dir) == []


def test_primary_kept_sees_a_failover(target: Settings) -> None:
    assert probes.primary_kept(name="t", missing_ok=True) == {"ok": True, "compared": False}
    remembered = probes.remember_primary(name="t")
    same = probes.primary_kept(name="t")
    assert same["ok"] is True and same["master_now"] == remembered["master"]
    actions.sentinel_failover(wait_s=30)
    moved = probes.primary_kept(name="t")
    assert moved["ok"] is False and moved["master_now"] != remembered["master"]
    assert moved["epoch_now"] > moved["epoch_before"]


def test_primary_kept_without_a_remembered_primary_says_what_to_run(target: Settings) -> None:
    with pytest.raises(ActivityFailed, match="run remember_primary with name='nothing'"):
        probes.primary_kept(name="nothing")


# --- argument checks, the same for the action and its preflight ---------------------------


@pytest.mark.parametrize(("arguments", "message"), [
    ({"pause_ms": 0}, "pause_ms must be a whole number of milliseconds at least 1"),
    ({"pause_ms": 1.5}, "pause_ms must be a whole number"),
    ({"pause_ms": 2500, "every_s": 2}, "pause_ms (2500) must be shorter than every_s"),
    ({"every_s": 0}, "every_s must be a number of seconds above 0"),
    ({"duration_s": 7200}, "duration_s must be a number of seconds above 0 and at most 3600"),
    ({"mode": "READ"}, "mode must be ALL"),
])  # fmt: skip
def test_stall_arguments_are_refused_alike(arguments: dict[str, Any], message: str) -> None:
    full = {"pause_ms": 1500, "every_s": 2.0, "duration_s": 30.0, "mode": "ALL", **arguments}
    with pytest.raises(ActivityFailed) as refused:
        actions.stall_primary(**full)
    assert message in str(refused.value)
    rule = RULES["lkchaos.redis.actions.stall_primary"][0]
    with pytest.raises(ActivityFailed, match=refused.value.args[0].split("(")[0][:20]):
        rule.check(full, Context())


def test_names_of_remembered_primaries_are_checked() -> None:
    for func in ("remember_primary", "primary_kept"):
        with pytest.raises(ActivityFailed, match="name must be letters"):
            RULES[f"lkchaos.redis.probes.{func}"][0].check({"name": "../x"}, Context())


def test_the_primary_is_the_one_at_the_highest_epoch_any_sentinel_reports(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    """A Sentinel that has not heard of a failover yet must not hide it."""
    from contextlib import contextmanager

    from lkchaos.redis import client as redis_client
    from lkchaos.redis import probes as redis_probes

    answers = {"s1:26379": {"ip": "old-primary", "port": 6379, "config-epoch": 3},
               "s2:26379": {"ip": "new-primary", "port": 6379, "config-epoch": 4}}

    class Fake:
        def __init__(self, address: str) -> None:
            self.address = address

        def sentinel_master(self, name: str) -> dict[str, object]:
            return answers[self.address]

    @contextmanager
    def sentinel(address: str, access: object) -> Iterator[Fake]:
        yield Fake(address)

    monkeypatch.setattr(redis_client, "sentinel", sentinel)
    settings = Settings(sentinel_addresses=("s1:26379", "s2:26379"), state_dir=str(tmp_path))
    assert redis_probes._epoch(settings) == ("new-primary:6379", 4)
