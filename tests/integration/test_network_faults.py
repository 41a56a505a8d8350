"""Network faults on the live stack, measured from inside it: a partition stops TCP from the
agent to whisper, 100 % media loss on livekit-2 stops its STUN answers (and the rule counts the
dropped requests), the recovery sweep finds rules without a ledger entry. Every fault is
removed in ``finally``, and no lkchaos rule or qdisc is left afterwards."""

from __future__ import annotations

from typing import Any

from lkchaos.docker.client import project_containers
from lkchaos.network import actions, sidecar
from lkchaos.safety import ledger, recovery
from lkchaos.settings import Settings

#: A STUN Binding request (RFC 5389) to a LiveKit node's TURN port; True when it answers.
STUN = """
import os, socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1.0)
ok = False
for _ in range(3):
    tid = os.urandom(12)
    s.sendto(struct.pack("!HHI", 1, 0, 0x2112A442) + tid, ({host!r}, 3478))
    try:
        data = s.recv(2048)
    except OSError:
        continue
    if data[:2] == b"\\x01\\x01" and data[8:20] == tid:
        ok = True
        break
print(ok)
"""
TCP = """
import socket
try:
    socket.create_connection(({host!r}, {port}), timeout=2).close()
    print(True)
except OSError:
    print(False)
"""


def container(docker: Any, settings: Settings, service: str) -> Any:
    return project_containers(docker, settings.compose_project)[service]


def run_python(where: Any, code: str) -> bool:
    result = where.exec_run(["python", "-c", code])
    assert result.exit_code == 0, result.output
    return bool(result.output.decode().strip() == "True")


def address(docker: Any, settings: Settings, service: str) -> str:
    return sidecar.addresses(container(docker, settings, service))[0]


def assert_nothing_of_ours_left(docker: Any, settings: Settings, *services: str) -> None:
    for service in services:
        left = sidecar.clear(docker, container(docker, settings, service), delete=False)
        assert left == {"rules": [], "qdiscs": []}, (service, left)
    assert not [f for f in ledger.pending(settings.state_dir)
                if f.kind.startswith("network-") and f.target in services]  # fmt: skip


def test_partition_cuts_the_agent_from_whisper_until_healed(
    settings: Settings, docker: Any
) -> None:
    agent = container(docker, settings, "agent")
    whisper, mcp = address(docker, settings, "whisper"), address(docker, settings, "mcp")
    assert run_python(agent, TCP.format(host=whisper, port=8000))
    try:
        cut = actions.partition("agent", ["whisper"])
        assert cut["peers"] == {"whisper": [whisper]} and cut["mechanism"] == "iptables"
        assert len(cut["rules"]) == 2  # in and out
        assert any(f.kind == "network-partition" and f.target == "agent"
                   for f in ledger.pending(settings.state_dir))  # fmt: skip
        assert not run_python(agent, TCP.format(host=whisper, port=8000))
        assert run_python(agent, TCP.format(host=mcp, port=8100))  # only whisper is cut
    finally:
        healed = actions.heal_partition("agent")
    assert healed["count"] == 2
    assert sum(rule["packets"] for rule in healed["removed"]) >= 1  # the refused SYNs
    assert run_python(agent, TCP.format(host=whisper, port=8000))
    assert actions.heal_partition("agent")["count"] == 0  # idempotent
    assert_nothing_of_ours_left(docker, settings, "agent")


def test_full_media_loss_on_livekit_2_silences_its_udp(settings: Settings, docker: Any) -> None:
    agent = container(docker, settings, "agent")
    node = address(docker, settings, "livekit-2")
    assert run_python(agent, STUN.format(host=node))
    try:
        lost = actions.media_packet_loss("livekit-2", 100)
        assert lost["mechanism"] in ("netem", "iptables") and lost["reason"]
        assert not run_python(agent, STUN.format(host=node))
        assert run_python(agent, TCP.format(host=node, port=7880))  # signalling is untouched
    finally:
        cleared = actions.clear_network_faults("livekit-2")
    # Incoming packets go through the iptables rule with either mechanism: it counted the
    # three STUN requests it dropped.
    dropped = [r for r in cleared["removed"] if r["kind"] == "loss" and r["chain"] == "INPUT"]
    assert dropped and sum(r["packets"] for r in dropped) >= 3, cleared
    assert run_python(agent, STUN.format(host=node))
    assert_nothing_of_ours_left(docker, settings, "livekit-2")


def test_the_recovery_sweep_finds_rules_the_ledger_lost(settings: Settings, docker: Any) -> None:
    try:
        blocked = actions.block_udp("livekit-2")
        ledger.forget(settings.state_dir, "network-udp-block", "livekit-2")  # as after kill -9
        swept = recovery._sweep_network(settings)
    finally:
        actions.clear_network_faults("livekit-2")
    ours = [s for s in swept if blocked["fault_id"] in s["fault"]]
    assert len(ours) == 2 and all(s["outcome"] == "removed" for s in ours), swept
    assert_nothing_of_ours_left(docker, settings, "livekit-2")
