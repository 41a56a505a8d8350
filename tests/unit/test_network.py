"""Network faults without Docker: rule construction, validation, the netem/iptables choice,
parsing what the sidecar prints, and the actions' order (ledger first) on a fake engine."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
from chaoslib.exceptions import ActivityFailed

from lkchaos.network import actions, rules, sidecar
from lkchaos.safety import ledger
from lkchaos.verify import NotInEffect

NO_NETEM_PROBE = """\
dev lo qdisc noqueue 0: root refcnt 2
dev eth0 qdisc noqueue 0: root refcnt 2
netem no Error: Specified qdisc kind is unknown.
"""
NETEM_PROBE = """\
dev lo qdisc noqueue 0: root refcnt 2
dev eth0 qdisc noqueue 0: root refcnt 2
netem yes
"""
#: What a clear printed on this project's engine (iptables 1.8.9, nf_tables).
CLEARED = """\
rule filter [316:40448] -A INPUT ! -i lo -p udp -m multiport --ports 7882,3478,30000:30100 \
-m statistic --mode random --probability 0.29999999981 -m comment \
--comment "lkchaos:4536a4ee363a:loss" -j DROP
rule mangle [9:30896] -A POSTROUTING ! -o lo -p tcp -m multiport --ports 8000 -m comment \
--comment "lkchaos:155797af951e:bandwidth" -j CLASSIFY --set-class 4c4b:0002
qdisc eth0 qdisc htb 4c4b: root refcnt 3 r2q 10 default 0x1 direct_packets_stat 0
qdisc eth0  Sent 32078 bytes 25 pkt (dropped 0, overlimits 0 requeues 0)
qdisc eth0  backlog 0b 0p requeues 0
"""


# --- validation ---------------------------------------------------------------------------


def test_default_media_ports_become_one_multiport_list() -> None:
    assert rules.parse_ports(None, rules.MEDIA_PORTS) == {"udp": "7882,3478,30000:30100"}


def test_port_forms() -> None:
    parsed = rules.parse_ports(["8000", 7881, "30000:30010/UDP", "7882/udp", "7882/udp"], ())
    assert parsed == {"tcp": "8000,7881", "udp": "8000,7881,30000:30010,7882"}
    assert rules.describe_ports({"udp": "7882,30000:30100"}) == ["7882/udp", "30000-30100/udp"]


@pytest.mark.parametrize(
    ("ports", "message"),
    [
        ("7882", "non-empty list"),
        ([], "non-empty list"),
        (["0"], "1..65535"),
        (["70000/udp"], "1..65535"),
        (["200-100/udp"], "low before high"),
        (["7882/sctp"], "bad port"),
        ([True], "bad port"),
        ([f"{p}/udp" for p in range(1000, 1016)], "at most 15"),
    ],
)
def test_bad_ports_are_refused(ports: Any, message: str) -> None:
    with pytest.raises(rules.RuleError, match=message):
        rules.parse_ports(ports, ())


def test_udp_block_refuses_tcp_ports() -> None:
    with pytest.raises(rules.RuleError, match="must be UDP"):
        rules.parse_ports(["7881"], (), udp_only=True)


@pytest.mark.parametrize("percent", [-1, 100.5, "20", None, True, float("nan")])
def test_percent_outside_0_to_100_is_refused(percent: Any) -> None:
    with pytest.raises(rules.RuleError, match="from 0 to 100"):
        rules.check_percent(percent)


@pytest.mark.parametrize("rate", [0, -5, 1.5, "64", True, float("inf"), float("nan")])
def test_non_positive_or_fractional_rate_is_refused(rate: Any) -> None:
    with pytest.raises(rules.RuleError, match="above 0"):
        rules.check_rate(rate)


def test_unknown_direction_is_refused() -> None:
    with pytest.raises(rules.RuleError, match="unknown direction 'sideways'"):
        rules.check_direction("sideways")


# --- rules --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("direction", "chains"),
    [("both", ["INPUT -s", "OUTPUT -d"]), ("ingress", ["INPUT -s"]), ("egress", ["OUTPUT -d"])],
)
def test_partition_rules(direction: str, chains: list[str]) -> None:
    made = rules.partition_rules(["172.29.77.41"], direction, "lkchaos:ab12:partition")
    assert [r.spec.split(" 172")[0].removeprefix("-I ") for r in made] == chains
    assert all(r.table == "filter" and r.spec.endswith("-j DROP") for r in made)
    assert all("--comment lkchaos:ab12:partition" in r.spec for r in made)


def test_random_loss_uses_statistic_and_spares_loopback() -> None:
    made = rules.drop_rules({"udp": "7882"}, 12.5, "lkchaos:ab12:loss")
    assert [r.spec for r in made] == [
        "-I INPUT ! -i lo -p udp -m multiport --ports 7882 -m statistic --mode random "
        "--probability 0.125 -m comment --comment lkchaos:ab12:loss -j DROP",
        "-I OUTPUT ! -o lo -p udp -m multiport --ports 7882 -m statistic --mode random "
        "--probability 0.125 -m comment --comment lkchaos:ab12:loss -j DROP",
    ]


def test_full_loss_drops_without_statistic() -> None:
    made = rules.drop_rules({"udp": "7882"}, 100, "lkchaos:ab12:udp-block", chains=("INPUT",))
    assert len(made) == 1 and "statistic" not in made[0].spec


def test_comment_needs_a_known_kind_and_a_hex_id() -> None:
    assert rules.comment("3f2a9c0d1b2e", "loss") == "lkchaos:3f2a9c0d1b2e:loss"
    with pytest.raises(rules.RuleError):
        rules.comment("x y", "loss")
    with pytest.raises(rules.RuleError):
        rules.comment("ab", "delay")


def test_bandwidth_classes() -> None:
    every = rules.htb_commands("eth0", 256, only_classified=False)
    assert every[0] == "tc qdisc add dev eth0 root handle 4c4b: htb default 2"
    assert "rate 256kbit ceil 256kbit" in every[2]
    some = rules.htb_commands("eth0", 256, only_classified=True)
    assert some[0].endswith("htb default 1")
    (classify,) = rules.classify_rules({"tcp": "8000"}, "4c4b:2", "lkchaos:ab12:bandwidth")
    assert classify.table == "mangle" and classify.spec.endswith("-j CLASSIFY --set-class 4c4b:2")


def test_apply_script_restores_each_table_at_once() -> None:
    loss = rules.drop_rules({"udp": "7882"}, 50, "lkchaos:ab12:loss")
    mark = rules.classify_rules({"udp": "7882"}, "4c4c:4", "lkchaos:ab12:loss")
    script = rules.apply_script([*loss, *mark], ["tc qdisc add dev eth0 root handle 4c4c: prio"])
    restores = [line for line in script.splitlines() if "iptables-restore" in line]
    assert len(restores) == 2
    words = shlex.split(restores[0].split("|")[0])
    assert words[:3] == ["printf", "%s\\n", "*filter"] and words[-1] == "COMMIT"
    assert words[3:-1] == [rule.spec for rule in loss]
    assert "tc qdisc add dev eth0 root handle 4c4c: prio || exit 5" in script


def test_clear_pattern_matches_only_the_kinds_asked_for() -> None:
    pattern = re.compile(rules._kind_pattern(["partition"]))
    assert pattern.search('-A INPUT -s 10.0.0.1/32 -m comment --comment "lkchaos:ab12:partition" '
                          "-j DROP")  # fmt: skip
    assert pattern.search("--comment lkchaos:ab12:partition")
    assert not pattern.search('--comment "lkchaos:ab12:loss" -j DROP')
    assert not pattern.search('--comment "mine:ab12:partition" -j DROP')


def test_heal_partition_touches_no_qdisc() -> None:
    assert "tc qdisc del" not in rules.clear_script(["partition"])
    full = rules.clear_script()
    assert "tc qdisc del" in full and all(h in full for h in ("4c4b", "4c4c", "4c4e"))
    assert "iptables-restore" not in rules.clear_script(delete=False)


def test_parse_cleared_reads_counters() -> None:
    found = rules.parse_cleared(CLEARED)
    loss, mark = found["rules"]
    assert (loss["table"], loss["chain"], loss["packets"], loss["bytes"]) == (
        "filter", "INPUT", 316, 40448)  # fmt: skip
    assert (loss["fault_id"], loss["kind"]) == ("4536a4ee363a", "loss")
    assert (mark["table"], mark["kind"]) == ("mangle", "bandwidth")
    (qdisc,) = found["qdiscs"]
    assert qdisc["device"] == "eth0" and qdisc["qdisc"].startswith("htb 4c4b:")
    assert (qdisc["packets"], qdisc["dropped"]) == (25, 0)


# --- the netem / iptables choice ----------------------------------------------------------


def test_probe_is_parsed() -> None:
    probe = rules.parse_probe(NO_NETEM_PROBE)
    assert probe.devices == ["eth0"] and probe.roots == {"lo": "0", "eth0": "0"}
    assert not probe.netem and "unknown" in probe.netem_error


def test_no_netem_means_iptables() -> None:
    mechanism, reason = rules.choose_loss_mechanism(rules.parse_probe(NO_NETEM_PROBE))
    assert mechanism == "iptables" and "no netem" in reason


def test_netem_where_the_kernel_has_it() -> None:
    assert rules.choose_loss_mechanism(rules.parse_probe(NETEM_PROBE))[0] == "netem"
    again = NETEM_PROBE.replace("eth0 qdisc noqueue 0:", "eth0 qdisc prio 4c4c:")
    assert rules.choose_loss_mechanism(rules.parse_probe(again))[0] == "netem"


@pytest.mark.parametrize("root", ["htb 4c4b:", "fq_codel 8001:"])
def test_a_taken_root_qdisc_means_iptables(root: str) -> None:
    probe = rules.parse_probe(NETEM_PROBE.replace("eth0 qdisc noqueue 0:", f"eth0 qdisc {root}"))
    mechanism, reason = rules.choose_loss_mechanism(probe)
    assert mechanism == "iptables" and "eth0" in reason


def test_bandwidth_never_replaces_a_foreign_or_netem_root() -> None:
    assert rules.check_bandwidth_roots(rules.parse_probe(NETEM_PROBE)) is None
    foreign = NETEM_PROBE.replace("eth0 qdisc noqueue 0:", "eth0 qdisc fq 8001:")
    assert "will not replace" in str(rules.check_bandwidth_roots(rules.parse_probe(foreign)))
    netem = NETEM_PROBE.replace("eth0 qdisc noqueue 0:", "eth0 qdisc prio 4c4c:")
    assert "clear it first" in str(rules.check_bandwidth_roots(rules.parse_probe(netem)))


# --- actions ------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_engine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    monkeypatch.setenv("LKCHAOS_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("LKCHAOS_ROOT", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: actions.partition("prober", ["whisper"]), "test harness"),
        (lambda: actions.block_udp("prober"), "test harness"),
        (lambda: actions.partition("agent", "whisper"), "non-empty list"),  # type: ignore[arg-type]
        (lambda: actions.partition("agent", ["agent"]), "from itself"),
        (lambda: actions.partition("agent", ["whisper"], "up"), "unknown direction"),
        (lambda: actions.media_packet_loss("livekit-2", 150), "from 0 to 100"),
        (lambda: actions.limit_bandwidth("agent", 0), "above 0"),
        (lambda: actions.block_udp("livekit-1", ["7881/tcp"]), "must be UDP"),
    ],
)
def test_bad_arguments_are_refused_before_the_engine_is_asked(call: Any, message: str) -> None:
    with pytest.raises(ActivityFailed, match=message):
        call()


def test_engine_down_is_an_activity_failure_and_records_nothing(no_engine: Path) -> None:
    with pytest.raises(ActivityFailed, match="cannot reach the Docker engine"):
        actions.media_packet_loss("livekit-2", 10)
    assert ledger.pending(no_engine) == []


class FakeContainer:
    def __init__(self, name: str, status: str = "running") -> None:
        self.name, self.id, self.status = name, f"id-{name}", status

    def reload(self) -> None:
        pass


class FakeEngine:
    """Stands in for Docker and the sidecar; remembers what ran and what the ledger held."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, state: Path, probe: str) -> None:
        self.state, self.probe = state, probe
        self.scripts: list[str] = []
        self.ledger_at_apply: list[str] = []
        services = ["livekit-2", "whisper", "agent", "prober"]
        self.containers = {s: FakeContainer(s) for s in services}
        monkeypatch.setattr(actions, "docker_client", lambda: self)
        monkeypatch.setattr(actions, "runtime_containers", lambda client, settings: self.containers)
        monkeypatch.setattr(sidecar, "ensure_image", lambda client: sidecar.IMAGE)
        monkeypatch.setattr(sidecar, "image_present", lambda client: True)
        monkeypatch.setattr(sidecar, "addresses", lambda c: ["172.29.77.41"])
        monkeypatch.setattr(sidecar, "run", self.run)

    def close(self) -> None:
        pass

    def run(self, client: Any, target: Any, script: str, timeout: float = 0) -> str:
        self.scripts.append(script)
        if script == rules.PROBE_SCRIPT:
            return self.probe
        self.ledger_at_apply = [f.kind for f in ledger.pending(self.state)]
        if not self.kernel_keeps and rules.VERIFY_MARKER in script:
            return rules.VERIFY_MARKER + "\n"
        return listing(script)

    kernel_keeps = True  # False: the kernel takes the commands but lists nothing afterwards


def listing(script: str) -> str:
    """What the sidecar prints for a verified script: the marker, then the rules and root
    qdiscs the script added (as iptables-save -c and tc show them); "" for other scripts."""
    if rules.VERIFY_MARKER not in script:
        return ""
    lines = [rules.VERIFY_MARKER]
    for command in script.splitlines():
        if not command.startswith("printf ") or "iptables-restore" not in command:
            continue
        words = shlex.split(command.split("|", 1)[0])[2:]
        table = words[0].lstrip("*")
        for spec in words[1:-1]:
            chain, rest = spec.split(" ", 2)[1:]
            lines.append(f"rule {table} [0:0] -A {chain} {rest}")
    for device, handle in re.findall(r"tc qdisc add dev (\S+) root handle (\w+):", script):
        lines.append(f"qdisc {device} qdisc prio {handle}: root refcnt 2")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(("probe", "mechanism"), [(NO_NETEM_PROBE, "iptables"),
                                                  (NETEM_PROBE, "netem")])  # fmt: skip
def test_media_loss_follows_the_probe_and_records_first(
    monkeypatch: pytest.MonkeyPatch, no_engine: Path, probe: str, mechanism: str
) -> None:
    engine = FakeEngine(monkeypatch, no_engine, probe)
    result = actions.media_packet_loss("livekit-2", 20)
    assert result["mechanism"] == mechanism
    assert engine.ledger_at_apply == ["network-loss"]
    assert result["ports"] == ["7882/udp", "3478/udp", "30000-30100/udp"]
    applied = engine.scripts[-1]
    if mechanism == "netem":
        assert "netem loss 20%" in applied and "CLASSIFY --set-class 4c4c:4" in applied
        assert "-I OUTPUT" not in applied and "-I INPUT" in applied
    else:
        assert "tc qdisc add" not in applied and "--probability 0.2 " in applied
        assert result["qdiscs"] == []


def test_partition_then_heal(monkeypatch: pytest.MonkeyPatch, no_engine: Path) -> None:
    engine = FakeEngine(monkeypatch, no_engine, NO_NETEM_PROBE)
    result = actions.partition("agent", ["whisper"], direction="egress")
    assert result["peers"] == {"whisper": ["172.29.77.41"]} and len(result["rules"]) == 1
    assert engine.ledger_at_apply == ["network-partition"]
    healed = actions.heal_partition("agent")
    assert healed["count"] == 0 and ledger.pending(no_engine) == []
    assert "tc qdisc del" not in engine.scripts[-1]


def test_unknown_peer_lists_services(monkeypatch: pytest.MonkeyPatch, no_engine: Path) -> None:
    FakeEngine(monkeypatch, no_engine, NO_NETEM_PROBE)
    with pytest.raises(ActivityFailed, match="no container 'ghost' among compose project "
                                             "'lkchaos'; there are: agent, livekit-2"):
        actions.partition("agent", ["ghost"])
    with pytest.raises(ActivityFailed, match="no container 'nope' among compose project "
                                             "'lkchaos'; there are: agent, livekit-2"):
        actions.block_udp("nope")
    # a role misspelt is read as a runtime name: the message says which role was meant
    with pytest.raises(ActivityFailed, match="no container 'agnet_worker' among compose "
                                             "project 'lkchaos' \\(did you mean the role "
                                             "agent_worker\\?\\); there are: agent"):
        actions.block_udp("agnet_worker")
    assert ledger.pending(no_engine) == []


def test_stopped_service_is_refused_but_clear_skips_it(
    monkeypatch: pytest.MonkeyPatch, no_engine: Path
) -> None:
    engine = FakeEngine(monkeypatch, no_engine, NO_NETEM_PROBE)
    engine.containers["whisper"].status = "exited"
    with pytest.raises(ActivityFailed, match="whisper is exited, not running"):
        actions.limit_bandwidth("whisper", 64)
    cleared = actions.clear_network_faults()
    assert cleared["skipped"] == ["whisper"] and cleared["count"] == 0
    assert len(engine.scripts) == 3  # agent, livekit-2, prober


def test_zero_percent_only_removes_an_earlier_loss(
    monkeypatch: pytest.MonkeyPatch, no_engine: Path
) -> None:
    engine = FakeEngine(monkeypatch, no_engine, NO_NETEM_PROBE)
    result = actions.media_packet_loss("livekit-2", 0)
    assert result["mechanism"] == "none" and result["rules"] == []
    assert "iptables-restore -w -n || exit 3" in engine.scripts[-1]
    assert ledger.pending(no_engine) == []


@pytest.mark.parametrize("call", [
    lambda: actions.block_udp("livekit-2"),
    lambda: actions.media_packet_loss("livekit-2", 20),
    lambda: actions.partition("agent", ["whisper"]),
])  # fmt: skip
def test_a_fault_the_kernel_does_not_list_fails_and_stays_in_the_ledger(
    monkeypatch: pytest.MonkeyPatch, no_engine: Path, call: Any
) -> None:
    engine = FakeEngine(monkeypatch, no_engine, NETEM_PROBE)
    engine.kernel_keeps = False
    with pytest.raises(NotInEffect, match="the kernel lists 0 of its"):
        call()
    # partition does not replace earlier rules, so its entry stays for recovery to clear;
    # the others have already been taken back
    assert [f.kind for f in ledger.pending(no_engine)] in ([], ["network-partition"])


def test_a_removal_that_leaves_rules_fails(
    monkeypatch: pytest.MonkeyPatch, no_engine: Path
) -> None:
    FakeEngine(monkeypatch, no_engine, NO_NETEM_PROBE)
    actions.block_udp("livekit-2")

    def stubborn(client: Any, target: Any, script: str, timeout: float = 0) -> str:
        left = "rule filter [3:120] -A INPUT -p udp --comment lkchaos:abc123:udp-block -j DROP"
        return f"{rules.VERIFY_MARKER}\n{left}\n"

    monkeypatch.setattr(sidecar, "run", stubborn)
    with pytest.raises(ActivityFailed, match="stayed in .*after their removal"):
        actions.clear_network_faults("livekit-2")
    assert [f.kind for f in ledger.pending(no_engine)] == ["network-udp-block"]


def test_a_failed_apply_is_taken_back(monkeypatch: pytest.MonkeyPatch, no_engine: Path) -> None:
    engine = FakeEngine(monkeypatch, no_engine, NO_NETEM_PROBE)

    def failing(client: Any, target: Any, script: str, timeout: float = 0) -> str:
        engine.scripts.append(script)
        if "iptables-restore -w -n || exit 6" in script:
            raise sidecar.SidecarError("iptables-restore: line 2 failed")
        return listing(script)

    monkeypatch.setattr(sidecar, "run", failing)
    with pytest.raises(ActivityFailed, match="network-udp-block on livekit-2 not applied"):
        actions.block_udp("livekit-2")
    assert engine.scripts[-1] == rules.verified(rules.clear_script(["udp-block"]), ["udp-block"])
    assert ledger.pending(no_engine) == []


def test_a_missing_sidecar_image_is_built_to_clear_a_recorded_fault(
    monkeypatch: pytest.MonkeyPatch, no_engine: Path
) -> None:
    engine = FakeEngine(monkeypatch, no_engine, NO_NETEM_PROBE)
    actions.block_udp("livekit-2")
    built: list[str] = []
    monkeypatch.setattr(sidecar, "image_present", lambda client: False)
    monkeypatch.setattr(sidecar, "ensure_image", lambda client: built.append("x") or "img")
    engine.scripts.clear()
    cleared = actions.clear_network_faults()
    assert built == ["x"]  # built once, for the service with an entry
    # before the build a service without an entry is skipped (nothing of ours can be there);
    # once the image is there, the others are cleared too
    assert cleared["skipped"] == ["agent"]
    assert len(engine.scripts) == 3 and "udp-block" in engine.scripts[0]
    assert ledger.pending(no_engine) == []


def test_an_entry_that_could_not_be_cleared_is_never_forgotten(
    monkeypatch: pytest.MonkeyPatch, no_engine: Path
) -> None:
    FakeEngine(monkeypatch, no_engine, NO_NETEM_PROBE)
    actions.block_udp("livekit-2")
    monkeypatch.setattr(sidecar, "image_present", lambda client: False)

    def no_build(client: Any) -> str:
        raise sidecar.SidecarError("building the network sidecar image failed: no base image")

    monkeypatch.setattr(sidecar, "ensure_image", no_build)
    with pytest.raises(ActivityFailed, match="no base image"):
        actions.clear_network_faults("livekit-2")
    with pytest.raises(ActivityFailed, match="no base image"):
        actions.clear_network_faults()
    assert [f.kind for f in ledger.pending(no_engine)] == ["network-udp-block"]


def test_an_entry_of_a_stopped_service_is_forgotten_without_the_image(
    monkeypatch: pytest.MonkeyPatch, no_engine: Path
) -> None:
    engine = FakeEngine(monkeypatch, no_engine, NO_NETEM_PROBE)
    actions.block_udp("livekit-2")
    engine.containers["livekit-2"].status = "exited"  # its namespace, and rules, are gone
    monkeypatch.setattr(sidecar, "image_present", lambda client: False)
    monkeypatch.setattr(sidecar, "ensure_image", lambda client: pytest.fail("no build needed"))
    cleared = actions.clear_network_faults()
    assert "livekit-2" in cleared["skipped"] and ledger.pending(no_engine) == []
