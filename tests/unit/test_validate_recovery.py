"""The disaster-recovery checks: a real backup of the LiveKit fixture's Redis restored into a
scratch redis-server, and the history items on a real SQLite run history."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import redis

from lkchaos.history import open_history
from lkchaos.settings import Settings
from lkchaos.validate.checks import recovery
from lkchaos.validate.model import CHECKS, Context
from tests.unit.test_history import variant
from tests.unit.test_validate_livekit import Local, local, no_engine  # noqa: F401


def _scratch_servers() -> list[str]:
    """Processes whose command line names a backup's temporary folder."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if b"lkchaos-validate-backup-" in cmdline.read_bytes():
                found.append(cmdline.parent.name)
        except OSError:  # the process ended meanwhile
            continue
    return found


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="apt-get install redis-server")
def test_backup_restores_livekit_keys(
    local: Local, monkeypatch: pytest.MonkeyPatch  # noqa: F811
) -> None:
    started: list[list[str]] = []
    real = subprocess.Popen

    def popen(argv: list[str], **kwargs: Any) -> Any:
        started.append(list(argv))
        return real(argv, **kwargs)

    monkeypatch.setattr(recovery.subprocess, "Popen", popen)
    server = redis.Redis(port=local.redis_port, socket_timeout=2)
    server.hset("room_participants:customer-room", "someone", b"\x01")
    try:
        ctx = Context(local.settings(), timeout_s=10.0)
        taken = CHECKS["dr.redis-data-backup"](ctx)
        restored = CHECKS["dr.backup-restoration-tested"](ctx)
        # Nothing registered as a replica (Sentinel would list it for good).
        assert server.info("replication")["connected_slaves"] == 0
    finally:
        server.delete("room_participants:customer-room")
        server.close()
    assert taken.status == "pass", taken.evidence
    assert taken.data["bytes"] > 0 and taken.data["keys"] >= 3
    assert taken.data["keys_taken"] >= taken.data["keys"]
    assert restored.status == "pass", restored.evidence
    assert restored.data["missing"] == [] and restored.data["fields"] >= 2
    assert "restored into a scratch redis-server" in restored.evidence
    assert _scratch_servers() == []
    # The scratch server listens on a Unix socket in the backup's private folder, on no TCP
    # port: a port chosen free could be another server's by the time it binds.
    (argv,) = started
    assert argv[argv.index("--port") + 1] == "0"
    socket_path = Path(argv[argv.index("--unixsocket") + 1])
    assert socket_path.parent == Path(argv[argv.index("--dir") + 1])
    assert socket_path.parent.name.startswith("lkchaos-validate-backup-")


def test_the_runs_own_rooms_are_left_out_of_the_comparison() -> None:
    # The run's other checks make and remove rooms (some under fixed names) while the backup
    # is taken: the backup may miss one that the snapshots before and after it both list.
    snapshot = {
        "rooms": {"customer-room", "lkchaos-validate-room-b"},
        "room_internal": {"customer-room", "lkchaos-validate-room-b"},
        "room_participants:customer-room": {"someone"},
        "room_participants:lkchaos-validate-room-b": {"lkchaos-validate-listener"},
        "agent_dispatch:lkchaos-validate-media-1a2b": set(),
        "nodes": {"ND_1"},
    }
    assert recovery.deployments_data(snapshot) == {
        "rooms": {"customer-room"}, "room_internal": {"customer-room"},
        "room_participants:customer-room": {"someone"}, "nodes": {"ND_1"},
    }  # fmt: skip


def test_snapshot_lists_hash_fields(local: Local) -> None:  # noqa: F811
    server = redis.Redis(port=local.redis_port, socket_timeout=2)
    try:
        found = recovery.livekit_snapshot(server)
    finally:
        server.close()
    assert "nodes" in found and len(found["nodes"]) == 1
    assert found["livekit_version"] == set()


def test_rpo_follows_persistence(local: Local) -> None:  # noqa: F811
    ctx = Context(local.settings())
    assert CHECKS["dr.rpo-documented"](ctx).status == "fail"
    server = redis.Redis(port=local.redis_port, socket_timeout=2)
    try:
        server.config_set("save", "60 1")
        snapshots = CHECKS["dr.rpo-documented"](ctx)
        server.config_set("appendonly", "yes")
        aof = CHECKS["dr.rpo-documented"](ctx)
    finally:
        server.config_set("appendonly", "no")
        server.config_set("save", "")
        server.close()
    assert snapshots.status == "warn" and "RPO up to 60 s" in snapshots.evidence
    assert aof.status == "pass" and "RPO about 1 s" in aof.evidence


# --- the run history --------------------------------------------------------------------------


def _settings(state: Path) -> Settings:
    return Settings(state_dir=str(state), sentinel_addresses=())


#: The target the history items judge: the one in use (:func:`recovery.current_target`).
HERE = recovery.current_target()


def test_without_history_everything_is_manual(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LKCHAOS_HISTORY_URL", raising=False)
    ctx = Context(_settings(tmp_path))
    for item in ("dr.single-service-failure", "dr.network-partition-handling",
                 "dr.multiple-service-failure", "dr.rto-documented",
                 "dr.recovery-time-documented", "livekit.recovery-temporary-failures"):
        assert CHECKS[item](ctx).status == "manual", item
    assert not (tmp_path / "history.sqlite").exists()


def test_history_items(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LKCHAOS_HISTORY_URL", raising=False)
    base = dt.datetime(2026, 11, 1, 3, 0, tzinfo=dt.UTC)
    with open_history(f"sqlite:///{tmp_path / 'history.sqlite'}") as history:
        # An older run that held, then a newer one of the same experiment that failed.
        history.record_run(variant("agent-crash", "old", base, **{"caller-answered__rto_s": 12.5}),
                           experiment_path="experiments/livekit-node-loss.json", target=HERE)
        newer = variant("agent-crash", "new", base + dt.timedelta(days=1),
                        **{"caller-answered__rto_s": 40.0})
        newer["status"] = "failed"
        history.record_run(newer, experiment_path="experiments/livekit-node-loss.json",
                           target=HERE)
        history.record_run(variant("dns-failure", "dns", base),
                           experiment_path="experiments/dns-failure.json", target=HERE)
        # Newest of all, on another deployment sharing the history: it says nothing here.
        other = variant("agent-crash", "elsewhere", base + dt.timedelta(days=2),
                        **{"caller-answered__rto_s": 106.1})
        other["status"] = "completed"
        history.record_run(other, experiment_path="experiments/livekit-node-loss.json",
                           target="/srv/other-deployment/target.yaml")
    ctx = Context(_settings(tmp_path))
    single = CHECKS["dr.single-service-failure"](ctx)
    assert single.status == "fail" and "livekit-node-loss failed" in single.evidence
    network = CHECKS["dr.network-partition-handling"](ctx)
    assert network.status == "pass" and "dns-failure completed" in network.evidence
    assert CHECKS["dr.multiple-service-failure"](ctx).status == "manual"
    rto = CHECKS["dr.rto-documented"](ctx)
    assert rto.status == "pass" and rto.data["rto"]["livekit-node-loss"]["rto_s"] == 40.0
    assert "worst livekit-node-loss 40.0 s" in rto.evidence


def test_a_run_stopped_before_its_verdict_is_not_its_verdict(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LKCHAOS_HISTORY_URL", raising=False)
    base = dt.datetime(2026, 11, 1, 3, 0, tzinfo=dt.UTC)
    url = f"sqlite:///{tmp_path / 'history.sqlite'}"
    with open_history(url) as history:
        stopped = variant("dns-failure", "stopped", base + dt.timedelta(days=1))
        stopped["status"] = "interrupted"  # Ctrl-C, or refused before anything ran
        history.record_run(stopped, experiment_path="experiments/dns-failure.json",
                           target=HERE)
    found = CHECKS["dr.network-partition-handling"](Context(_settings(tmp_path)))
    assert found.status == "warn" and "stopped before its verdict" in found.evidence
    with open_history(url) as history:  # an older run that held: the latest verdict
        history.record_run(variant("dns-failure", "held", base),
                           experiment_path="experiments/dns-failure.json", target=HERE)
    found = CHECKS["dr.network-partition-handling"](Context(_settings(tmp_path)))
    assert found.status == "pass" and "dns-failure completed" in found.evidence
