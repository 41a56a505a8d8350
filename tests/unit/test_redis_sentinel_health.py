"""Replicas and Sentinels count only when Sentinel sees them up: ``sentinel_master`` and the
``sentinel`` item of ``lkchaos stack status``, against Sentinel's answers as given and
against a real primary, replica and two Sentinels (``redis-server`` processes on loopback
ports) whose replica is stopped."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis

from lkchaos.redis import client, probes
from lkchaos.settings import Settings
from lkchaos.stack import health
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

DOWN_AFTER_MS = 1000

UP_REPLICA = {"ip": "10.0.0.12", "port": 6379, "flags": "slave", "role-reported": "slave",
              "master-link-status": "ok", "master-link-down-time": 0}  # fmt: skip
#: A stopped replica: Sentinel keeps its last INFO (link ok) and flags it down.
STOPPED_REPLICA = {**UP_REPLICA, "ip": "172.18.0.5", "flags": "slave,s_down,disconnected"}


# --- Sentinel's answers as given ------------------------------------------------------------


def test_a_replica_is_up_only_when_sentinel_sees_it_up_and_linked() -> None:
    assert client.replica_state(UP_REPLICA).up
    stopped = client.replica_state(STOPPED_REPLICA)
    assert not stopped.up and stopped.described() == "172.18.0.5:6379 s_down,disconnected"
    # RESP3 gives the flags as a set.
    assert not client.replica_state({**UP_REPLICA, "flags": {"slave", "o_down"}}).up
    syncing = client.replica_state({**UP_REPLICA, "master-link-status": "err",
                                    "master-link-down-time": 12000})  # fmt: skip
    assert syncing.described() == "10.0.0.12:6379 master link err (down 12 s)"
    old_primary = client.replica_state({**UP_REPLICA, "role-reported": "master"})
    assert old_primary.problems == ("reports role master",)
    assert client.sentinel_state({"ip": "10.0.0.31", "port": 26379,
                                  "flags": "sentinel,s_down"}).problems == ("s_down",)


def _answer(sentinel: str, replicas: list[dict[str, Any]] | None,
            peers: tuple[client.NodeState, ...] = (), host: str = "10.0.0.11",
            flags: str = "master") -> client.MasterInfo:  # fmt: skip
    return client.MasterInfo(
        sentinel=sentinel, host=host, port=6379, num_slaves=len(replicas or [1]),
        num_other_sentinels=2, flags=flags,
        replicas=None if replicas is None else tuple(client.replica_state(r) for r in replicas),
        peers=peers, view_problem="" if replicas is not None else "NOPERM sentinel|replicas")


@pytest.fixture
def answers(monkeypatch: pytest.MonkeyPatch) -> list[client.MasterInfo]:
    """What ``ask_sentinels`` returns, set by the test; Settings name three Sentinels."""
    found: list[client.MasterInfo] = []
    settings = Settings(sentinel_addresses=("s1:26379", "s2:26379", "s3:26379"),
                        sentinel_master="lk", redis_address_map={})  # fmt: skip
    monkeypatch.setattr(Settings, "load", classmethod(lambda cls, c=None, s=None: settings))
    monkeypatch.setattr(client, "ask_sentinels",
                        lambda s, timeout=client.TIMEOUT, views=False: list(found))
    return found


def test_a_known_replica_that_is_down_does_not_count(answers: list[client.MasterInfo]) -> None:
    answers += [_answer(s, [STOPPED_REPLICA]) for s in ("s1:26379", "s2:26379", "s3:26379")]
    state = probes.sentinel_master()
    assert state["ok"] is False and state["agree"] is True
    assert state["replicas"] == 0 and state["replicas_known"] == 1
    assert state["replicas_down"] == ["172.18.0.5:6379 s_down,disconnected"]
    assert state["reason"] == "1 replica known, 0 up: 172.18.0.5:6379 s_down,disconnected"


def test_one_replica_up_is_enough_and_the_down_one_is_named(
    answers: list[client.MasterInfo],
) -> None:
    answers += [_answer(s, [STOPPED_REPLICA, UP_REPLICA]) for s in ("s1:26379", "s2:26379")]
    state = probes.sentinel_master()
    assert state["ok"] is True and state["reason"] == ""
    assert (state["replicas"], state["replicas_known"]) == (1, 2)
    assert state["replicas_down"] == ["172.18.0.5:6379 s_down,disconnected"]
    assert state["sentinels"] == 2 and state["sentinels_down"] == ["s3:26379"]
    assert set(state) >= {"ok", "master", "masters", "agree", "sentinels", "replicas"}


def test_sentinels_that_are_down_do_not_count(answers: list[client.MasterInfo]) -> None:
    down_peer = client.sentinel_state({"ip": "10.0.0.32", "port": 26379,
                                       "flags": "sentinel,s_down,disconnected"})  # fmt: skip
    answers.append(_answer("s1:26379", [UP_REPLICA], peers=(down_peer,)))
    state = probes.sentinel_master()
    assert state["ok"] is False and state["sentinels"] == 1
    assert state["sentinels_down"] == ["s2:26379", "s3:26379"]
    assert state["sentinel_peers_down"] == ["10.0.0.32:26379 s_down,disconnected"]
    assert "1 Sentinel answered, at least 2 needed (s2:26379, s3:26379 did not)" in \
        state["reason"]  # fmt: skip


def test_unlisted_replicas_and_a_master_seen_down_are_not_ok(
    answers: list[client.MasterInfo],
) -> None:
    answers += [_answer("s1:26379", None), _answer("s2:26379", None)]
    state = probes.sentinel_master()
    assert state["ok"] is False and state["replicas"] == 0 and state["replicas_known"] == 1
    assert "Sentinel s1:26379 did not list the replicas (NOPERM" in state["reason"]
    answers[:] = [_answer(s, [UP_REPLICA], flags="master,s_down") for s in ("s1:26379", "s2:26379")]
    state = probes.sentinel_master()
    assert state["ok"] is False
    assert state["reason"] == "Sentinel s1:26379 sees the master 10.0.0.11:6379 s_down"


def _sentinel_check(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> health.Check:
    """The ``sentinel`` item of the cross-checks, the others' backends failing at once."""
    from lkchaos.dns import client as dns_client
    from lkchaos.toxiproxy import client as toxi_client

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise OSError("not reached in this test")

    monkeypatch.setattr(dns_client, "resolve", refuse)
    monkeypatch.setattr(toxi_client, "ToxiproxyClient", refuse)
    monkeypatch.setattr(client, "primary", refuse)
    return next(c for c in health.cross_checks(settings) if c.name == "sentinel")


def test_stack_status_does_not_count_a_replica_that_is_down(
    answers: list[client.MasterInfo], monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers += [_answer(s, [STOPPED_REPLICA]) for s in ("s1:26379", "s2:26379", "s3:26379")]
    check = _sentinel_check(Settings.load(), monkeypatch)
    assert check.ok is False
    assert check.detail == ("master 10.0.0.11:6379 per 3 Sentinel(s), 0 of 1 replica(s) up: "
                            "1 replica known, 0 up: 172.18.0.5:6379 s_down,disconnected")
    answers[:] = [_answer(s, [UP_REPLICA]) for s in ("s1:26379", "s2:26379", "s3:26379")]
    check = _sentinel_check(Settings.load(), monkeypatch)
    assert check.ok is True
    assert check.detail == "master 10.0.0.11:6379 per 3 Sentinel(s), 1 of 1 replica(s) up"


# --- A real primary, replica and two Sentinels ------------------------------------------------


def _client(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, password=PASSWORD, socket_timeout=2)


@contextmanager
def _watched(base: Path) -> Iterator[dict[str, Any]]:
    """A primary, its replica and two Sentinels (quorum 2) watching them as ``viewtest``,
    once each Sentinel sees the replica up."""
    auth = ["--requirepass", PASSWORD, "--masterauth", PASSWORD]
    p_port, r_port = free_port(), free_port()
    started: list[Server] = []
    try:
        started.append(_start(base / "primary", [*_base(p_port), *auth], p_port,
                              lambda: _answers(p_port, PASSWORD)))  # fmt: skip
        started.append(_start(
            base / "replica", [*_base(r_port), *auth, "--replicaof", "127.0.0.1", str(p_port)],
            r_port, lambda: _client(r_port).info("replication")["master_link_status"] == "up"))
        sentinels = []
        for name in ("s1", "s2"):
            port, folder = free_port(), base / name
            folder.mkdir()
            (folder / "sentinel.conf").write_text("\n".join([
                f"port {port}", "bind 127.0.0.1", f"dir {folder}",
                f"sentinel monitor viewtest 127.0.0.1 {p_port} 2",
                f"sentinel auth-pass viewtest {PASSWORD}",
                f"sentinel down-after-milliseconds viewtest {DOWN_AFTER_MS}"]) + "\n")  # fmt: skip

            def ready(port: int = port) -> bool:
                with redis.Redis(host="127.0.0.1", port=port, socket_timeout=1) as s:
                    listed: Any = s.sentinel_slaves("viewtest")
                    return any(client.replica_state(r).up for r in listed)
            started.append(_start(folder, [str(folder / "sentinel.conf"), "--sentinel"], port,
                                  ready))  # fmt: skip
            sentinels.append(port)
        yield {"primary": p_port, "replica": started[1], "sentinels": sentinels}
    finally:
        for server in reversed(started):
            if server.process.poll() is None:
                _stop(server)


def _until(condition: Any, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "Sentinel did not get there in time"
        time.sleep(0.2)


def test_a_stopped_replica_is_not_counted_against_real_sentinels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    if SERVER is None:
        pytest.fail(MISSING)
    with _watched(tmp_path) as stack:
        settings = Settings(
            sentinel_addresses=tuple(f"127.0.0.1:{p}" for p in stack["sentinels"]),
            sentinel_master="viewtest", redis_password=PASSWORD, redis_address_map={})
        monkeypatch.setattr(Settings, "load", classmethod(lambda cls, c=None, s=None: settings))
        replica = f"127.0.0.1:{stack['replica'].port}"

        state = probes.sentinel_master()
        assert state["ok"] is True, state["reason"]
        assert state["replicas"] == 1 and state["replicas_down"] == []
        assert state["master"] == f"127.0.0.1:{stack['primary']}"

        _stop(stack["replica"])

        def flagged() -> bool:
            seen = client.ask_sentinels(settings, views=True)
            return all("s_down" in r.flags for a in seen for r in a.replicas or ())

        _until(flagged, 10 * DOWN_AFTER_MS / 1000)
        state = probes.sentinel_master()
        assert state["ok"] is False and state["agree"] is True and state["sentinels"] == 2
        assert state["replicas"] == 0 and state["replicas_known"] == 1
        [down] = state["replicas_down"]
        assert down.startswith(f"{replica} s_down,disconnected")
        assert state["reason"] == f"1 replica known, 0 up: {down}"
        check = _sentinel_check(settings, monkeypatch)
        assert check.ok is False and f"0 of 1 replica(s) up: 1 replica known, 0 up: {replica}" \
            in check.detail  # fmt: skip


def test_target_check_names_a_sentinel_master_name_no_sentinel_monitors(tmp_path: Path) -> None:
    # A typo in redis.sentinel.master: every Sentinel answered TCP, so the target looked
    # reachable and every Redis experiment applied; its probes then found no master.
    from lkchaos.target import reach

    if SERVER is None:
        pytest.fail(MISSING)
    with _watched(tmp_path) as stack:
        addresses = tuple(f"127.0.0.1:{p}" for p in stack["sentinels"])

        def checks(name: str, password: str = PASSWORD) -> list[Any]:
            return reach.master_name_checks(Settings(
                sentinel_addresses=addresses, sentinel_master=name, redis_password=password,
                redis_address_map={}))

        right = checks("viewtest")
        assert [c.ok for c in right] == [True, True], right
        assert right[0].detail == f"monitored: 127.0.0.1:{stack['primary']}"
        wrong = checks("viewtset")
        assert [c.ok for c in wrong] == [False, False] and {c.component for c in wrong} == {
            "redis"}
        assert "this Sentinel monitors: viewtest" in wrong[0].detail
        assert "redis.sentinel.master" in wrong[0].detail
        assert "viewtset" in wrong[0].what
