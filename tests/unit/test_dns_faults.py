"""DNS faults and probes without the stack: hosts-file and configuration edits that undo
exactly, validation before anything is done, the actions against a fake dns container, and
the resolution probe against a small local DNS server."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chaoslib.exceptions import ActivityFailed

from lkchaos.dns import actions, probes
from lkchaos.dns import client as dnsc
from lkchaos.safety import ledger
from lkchaos.stack.render import StackConfig, dns_hosts, dnsmasq_conf
from lkchaos.verify import NotInEffect
from tests.unit.local_servers import LocalDNS

HOSTS = dns_hosts(StackConfig())
CONF = dnsmasq_conf(StackConfig())
LK = "lk.chaos.test"


def test_wrong_address_and_its_undoing() -> None:
    faulted = dnsc.hide(HOSTS, LK, "wrong_address", "192.0.2.1")
    assert dnsc.hosts_names(faulted)[LK] == ["192.0.2.1"]
    assert dnsc.hosts_names(faulted)["whip.chaos.test"] == ["172.29.77.10"]
    assert dnsc.hidden_names(faulted) == {LK}
    assert dnsc.unhide(faulted) == HOSTS
    assert dnsc.unhide(faulted, LK) == HOSTS
    assert dnsc.unhide(faulted, "whip.chaos.test") == faulted


def test_nxdomain_hides_the_name_only() -> None:
    faulted = dnsc.hide(HOSTS, LK, "nxdomain")
    assert LK not in dnsc.hosts_names(faulted)
    assert set(dnsc.hosts_names(faulted)) == set(dnsc.hosts_names(HOSTS)) - {LK}
    assert dnsc.known_names(faulted) == set(dnsc.hosts_names(HOSTS))
    assert dnsc.unhide(faulted) == HOSTS


def test_faults_on_one_name_replace_each_other_and_others_stack() -> None:
    once = dnsc.hide(HOSTS, LK, "wrong_address", "192.0.2.1")
    twice = dnsc.hide(once, LK, "wrong_address", "192.0.2.2")
    assert dnsc.hosts_names(twice)[LK] == ["192.0.2.2"]
    both = dnsc.hide(twice, "turn.chaos.test", "nxdomain")
    assert dnsc.hidden_names(both) == {LK, "turn.chaos.test"}
    assert dnsc.hosts_names(dnsc.unhide(both, LK))[LK] == ["172.29.77.10"]
    assert dnsc.unhide(both) == HOSTS


def test_a_line_with_several_names_keeps_the_others() -> None:
    text = "10.0.0.1 a.test b.test\n10.0.0.2 c.test\n"
    faulted = dnsc.hide(text, "a.test", "nxdomain")
    assert dnsc.hosts_names(faulted) == {"b.test": ["10.0.0.1"], "c.test": ["10.0.0.2"]}
    assert dnsc.unhide(faulted) == text


def test_servfail_block_in_the_configuration() -> None:
    edited = dnsc.add_servfail(CONF, LK)
    assert f"server=/{LK}/127.0.0.1#{dnsc.SERVFAIL_PORT}" in edited
    assert dnsc.add_servfail(edited, LK) == edited
    assert dnsc.servfail_names(edited) == {LK}
    both = dnsc.add_servfail(edited, "whip.chaos.test")
    assert dnsc.remove_servfail(both, "whip.chaos.test") == edited
    assert dnsc.remove_servfail(both) == CONF
    assert dnsc.servfail_names(CONF) == set()


class FakeDNS:
    labels = {"com.docker.compose.service": "dns"}
    name = "lkchaos-dns-1"

    def __init__(self, hosts: Path, conf: Path) -> None:
        self.attrs: dict[str, Any] = {"State": {"Status": "running"}, "Mounts": [
            {"Type": "bind", "Source": str(hosts), "Destination": dnsc.HOSTS_MOUNT},
            {"Type": "bind", "Source": str(conf), "Destination": dnsc.CONF_MOUNT},
        ]}
        self.calls: list[str] = []
        self.hosts, self.conf = hosts, conf
        self.served = hosts.read_text()  # what dnsmasq answers from: read at start and SIGHUP
        self.deaf = False  # True: SIGHUP is taken but the file is never re-read

    def _set(self, state: str) -> None:
        self.attrs["State"]["Status"] = state
        if state == "running":
            self.served = self.hosts.read_text()

    def answer(self, name: str, server: str, rdtype: str = "A",
               timeout: float = 0.5) -> dnsc.Answer:  # fmt: skip
        """What dnsmasq would answer now, from the hosts text it last read."""
        state = self.attrs["State"]["Status"]
        if state != "running":
            return dnsc.Answer(name, "TIMEOUT" if state == "paused" else "UNREACHABLE", (), 1.0)
        if name in dnsc.servfail_names(self.conf.read_text()):
            return dnsc.Answer(name, "SERVFAIL", (), 1.0)
        found = dnsc.hosts_names(self.served).get(name)
        if found is None:
            return dnsc.Answer(name, "NXDOMAIN", (), 1.0)
        wanted = [a for a in found if (":" in a) == (rdtype == "AAAA")]
        return dnsc.Answer(name, "NOERROR", tuple(wanted), 1.0)

    def reload(self) -> None:
        pass

    def kill(self, signal: str) -> None:
        self.calls.append(f"kill {signal}")
        if signal == "SIGHUP" and not self.deaf:
            self.served = self.hosts.read_text()

    def pause(self) -> None:
        self.calls.append("pause")
        self._set("paused")

    def unpause(self) -> None:
        self.calls.append("unpause")
        self._set("running")

    def stop(self, timeout: int) -> None:
        self.calls.append("stop")
        self._set("exited")

    def start(self) -> None:
        self.calls.append("start")
        self._set("running")

    def restart(self, timeout: int) -> None:
        self.calls.append("restart")
        self._set("running")

    def exec_run(self, cmd: list[str], **kwargs: Any) -> tuple[int | None, bytes]:
        self.calls.append(f"exec {cmd[0]}")
        return None, b""


class FakeDocker:
    def __init__(self, container: FakeDNS) -> None:
        self.containers = self
        self.container = container

    def list(self, **kwargs: Any) -> list[FakeDNS]:
        return [self.container]

    def close(self) -> None:
        pass


@pytest.fixture
def resolver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDNS]:
    monkeypatch.setenv("LKCHAOS_STATE_DIR", str(tmp_path / "state"))
    hosts, conf = tmp_path / "dns-hosts", tmp_path / "dnsmasq.conf"
    hosts.write_text(HOSTS)
    conf.write_text(CONF)
    fake = FakeDNS(hosts, conf)
    monkeypatch.setattr(actions, "docker_client", lambda: FakeDocker(fake))
    monkeypatch.setattr(dnsc, "wait_answering", lambda server, name, wait_s=15.0: 0.0)
    monkeypatch.setattr(dnsc, "lookup", fake.answer)
    yield fake


def files(fake: FakeDNS) -> tuple[str, str]:
    bound = {m["Destination"]: Path(m["Source"]) for m in fake.attrs["Mounts"]}
    return bound[dnsc.HOSTS_MOUNT].read_text(), bound[dnsc.CONF_MOUNT].read_text()


def pending(tmp_path: Path) -> list[tuple[str, str, str]]:
    return [(f.kind, f.target, f.undo_func) for f in ledger.pending(tmp_path / "state")]


def test_wrong_address_is_a_hosts_edit_and_a_sighup(resolver: FakeDNS, tmp_path: Path) -> None:
    done = actions.wrong_address(LK)
    assert done == {"name": LK, "fault": "wrong_address", "address": "192.0.2.1",
                    "before": ["172.29.77.10"], "reloaded": "sighup", "restart_s": None}
    hosts, conf = files(resolver)
    assert dnsc.hosts_names(hosts)[LK] == ["192.0.2.1"] and conf == CONF
    assert resolver.calls == ["kill SIGHUP"]
    assert pending(tmp_path) == [("dns_name", LK, "restore_name")]
    undone = actions.restore_name(LK)
    assert undone["restored"] == [LK] and undone["reloaded"] == "sighup"
    assert files(resolver) == (HOSTS, CONF)
    assert pending(tmp_path) == []
    assert actions.restore_name(LK)["restored"] == []


def test_nxdomain_then_servfail_then_restore(resolver: FakeDNS, tmp_path: Path) -> None:
    assert actions.nxdomain_name(LK.upper())["reloaded"] == "sighup"
    assert LK not in dnsc.hosts_names(files(resolver)[0])
    servfail = actions.servfail_name(LK)
    assert servfail["reloaded"] == "restart" and 0 <= servfail["restart_s"] < 1
    hosts, conf = files(resolver)
    assert LK not in dnsc.hosts_names(hosts) and dnsc.servfail_names(conf) == {LK}
    assert resolver.calls[-2:] == ["restart", "exec perl"]
    restored = actions.restore_name(LK)
    assert restored["reloaded"] == "restart"
    assert files(resolver) == (HOSTS, CONF)
    assert pending(tmp_path) == []


def test_a_resolver_that_never_rereads_its_file_fails_the_action(
    resolver: FakeDNS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LKCHAOS_VERIFY_S", "0.2")
    resolver.deaf = True
    with pytest.raises(NotInEffect, match="NXDOMAIN for lk.chaos.test.*last seen: NOERROR"):
        actions.nxdomain_name("lk.chaos.test")
    assert [kind for kind, _, _ in pending(tmp_path)] == ["dns_name"]  # recover undoes it


def test_a_resolver_that_restarts_without_the_servfail_rule_fails_the_action(
    resolver: FakeDNS, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LKCHAOS_VERIFY_S", "0.2")
    # dnsmasq came back from its restart still answering the name: the rule never took hold.
    monkeypatch.setattr(dnsc, "lookup", lambda name, server, rdtype="A", timeout=0.5:
                        dnsc.Answer(name, "NOERROR", ("10.0.0.1",), 1.0))  # fmt: skip
    with pytest.raises(NotInEffect, match="SERVFAIL for lk.chaos.test.*last seen: NOERROR"):
        actions.servfail_name("lk.chaos.test")
    assert [kind for kind, _, _ in pending(tmp_path)] == ["dns_name"]  # recover undoes it


def test_resolver_down_and_back(resolver: FakeDNS, tmp_path: Path) -> None:
    down = actions.stop_resolver()
    assert down["after"] == "paused"
    assert pending(tmp_path) == [("dns_down", "dns", "start_resolver")]
    with pytest.raises(ActivityFailed, match="paused, not running"):
        actions.nxdomain_name(LK)
    back = actions.start_resolver()
    assert (back["before"], back["after"]) == ("paused", "running")
    assert resolver.calls == ["pause", "unpause", "kill SIGHUP"]
    assert pending(tmp_path) == []
    assert actions.start_resolver()["before"] == "running"
    actions.stop_resolver(mode="stop")
    assert actions.start_resolver()["before"] == "exited"


def test_restore_dns_undoes_everything(resolver: FakeDNS, tmp_path: Path) -> None:
    actions.wrong_address("whip.chaos.test", "10.9.9.9")
    actions.servfail_name(LK)
    actions.stop_resolver()
    result = actions.restore_dns()
    assert result["restored"] == [LK, "whip.chaos.test"]
    assert result["resolver"]["before"] == "paused"
    assert files(resolver) == (HOSTS, CONF)
    assert pending(tmp_path) == []


def test_the_sweep_restores_files_left_behind(resolver: FakeDNS,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from lkchaos.settings import Settings

    actions.wrong_address(LK)
    actions.servfail_name("whip.chaos.test")
    monkeypatch.setattr(dnsc, "docker_client", lambda: FakeDocker(resolver))
    report = dnsc.sweep(Settings.load())
    assert [r["fault"] for r in report] == [f"DNS answers for {LK} altered",
                                            "DNS answers for whip.chaos.test altered"]
    assert files(resolver) == (HOSTS, CONF)
    assert dnsc.sweep(Settings.load()) == []


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: actions.wrong_address(LK, "not-an-ip"), "IPv4 or IPv6"),
        (lambda: actions.stop_resolver(mode="kill"), "mode must be one of"),
        (lambda: actions.restore_name(""), "name must be"),
    ],
)
def test_arguments_are_checked_before_docker(call: Any, message: str,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(actions, "docker_client", None)  # any use would fail differently
    with pytest.raises(ActivityFailed, match=message):
        call()


def test_unknown_names_are_refused_before_anything(resolver: FakeDNS, tmp_path: Path) -> None:
    with pytest.raises(ActivityFailed, match="not in the resolver's hosts file.*lk.chaos.test"):
        actions.nxdomain_name("nobody.chaos.test")
    assert resolver.calls == [] and pending(tmp_path) == []
    assert files(resolver) == (HOSTS, CONF)


def test_resolve_names_reports_rcodes_addresses_and_latency() -> None:
    server = LocalDNS({LK: "172.29.77.10", "whip.chaos.test": "192.0.2.1"}, {"slow.chaos.test"})
    conf = {"dns_server": server.address}
    ok = probes.resolve_names([LK], configuration=conf)
    assert ok["ok"] is True and ok["names"][LK]["addresses"] == ["172.29.77.10"]
    assert ok["names"][LK]["latency_ms"] < 1000
    found = probes.resolve_names(
        [LK, "whip.chaos.test", "nobody.chaos.test", "slow.chaos.test"],
        expected={"whip.chaos.test": ["172.29.77.10"]}, timeout=0.3, configuration=conf)
    assert found["ok"] is False
    assert found["rcodes"] == {LK: "NOERROR", "whip.chaos.test": "NOERROR",
                               "nobody.chaos.test": "NXDOMAIN", "slow.chaos.test": "TIMEOUT"}
    assert found["failed"] == ["whip.chaos.test", "nobody.chaos.test", "slow.chaos.test"]
    assert found["max_latency_ms"] >= 300
    server.close()


def test_a_resolver_named_by_host_name_is_asked_at_its_address() -> None:
    server = LocalDNS({LK: "172.29.77.10"}, set())
    port = server.address.rsplit(":", 1)[1]
    found = probes.resolve_names([LK], server=f"localhost:{port}")
    assert found["ok"] is True and found["names"][LK]["addresses"] == ["172.29.77.10"]
    server.close()
    # a name that does not resolve is a resolver that cannot be reached, not a crash
    gone = probes.resolve_names([LK], timeout=0.5, server="dns.down.invalid:53")
    assert gone["ok"] is False and gone["rcodes"][LK] == "UNREACHABLE"


def test_a_closed_port_is_a_timeout_not_an_error() -> None:
    """As documented: the port's ICMP error is not read, so a closed port is no answer."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{sock.getsockname()[1]}"
    found = probes.resolve_names([LK], timeout=0.5, server=address)
    assert found["ok"] is False and found["rcodes"][LK] == "TIMEOUT"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"names": []}, "list of 1 to"),
        ({"names": "lk.chaos.test"}, "list of 1 to"),
        ({"names": [LK], "rdtype": "MX"}, "rdtype must be"),
        ({"names": [LK], "timeout": 0}, "timeout must be more than 0"),
        ({"names": [LK], "expected": {"other.test": ["1.2.3.4"]}}, "not resolved"),
        ({"names": [LK], "expected": {LK: "1.2.3.4"}}, "lists of addresses"),
        ({"names": [LK], "server": "nowhere"}, "host:port"),
    ],
)
def test_resolve_names_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ActivityFailed, match=message):
        probes.resolve_names(**kwargs)
