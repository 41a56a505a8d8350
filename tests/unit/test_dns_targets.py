"""Resolver faults on targets other than the reference stack, without Docker: the resolver is
the ``resolver`` role's container, its hosts file the one its configuration names, and every
action is refused, before Docker is reached, on a target whose resolver lkchaos may not fault."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chaoslib.exceptions import ActivityFailed

from lkchaos.dns import actions
from lkchaos.dns import client as dnsc
from lkchaos.errors import ConfigError
from lkchaos.safety import ledger
from lkchaos.settings import Settings
from tests.unit.test_dns_faults import FakeDNS, FakeDocker
from tests.unit.test_tls_targets import target as tls_target

NAME = "rtc.example.org"
HOSTS = f"10.0.0.10 {NAME}\n10.0.0.11 node-1.example.org\n"
CONF = "no-resolv\n# the deployment's names\naddn-hosts=/etc/hosts.d/lk.hosts  # ours\n"
FAULTABLE = 'resolver: {kind: dnsmasq, address: "127.0.0.1:5353", may_fault: true}'


def target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, resolver: str = FAULTABLE,
           roles: str = "resolver: my-dnsmasq") -> None:
    tls_target(tmp_path, monkeypatch, reload="reload: none", roles=roles,
               extra=f"{resolver}\n" if resolver else "")


class MyDnsmasq(FakeDNS):
    """A dnsmasq container by name whose hosts file is in a bind-mounted folder."""

    name = "my-dnsmasq"
    labels: dict[str, str] = {}

    def __init__(self, folder: Path, conf: Path) -> None:
        super().__init__(folder / "lk.hosts", conf)
        self.attrs["Mounts"] = [
            {"Type": "bind", "Source": str(folder), "Destination": "/etc/hosts.d"},
            {"Type": "bind", "Source": str(conf), "Destination": dnsc.CONF_MOUNT},
            {"Type": "bind", "Source": "/nowhere", "Destination": dnsc.HOSTS_MOUNT},
        ]


@pytest.fixture
def mine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MyDnsmasq]:
    folder, conf = tmp_path / "hosts.d", tmp_path / "dnsmasq.conf"
    folder.mkdir()
    (folder / "lk.hosts").write_text(HOSTS)
    conf.write_text(CONF)
    fake = MyDnsmasq(folder, conf)
    monkeypatch.setattr(actions, "docker_client", lambda: FakeDocker(fake))
    monkeypatch.setattr(dnsc, "docker_client", lambda: FakeDocker(fake))
    monkeypatch.setattr(dnsc, "lookup", fake.answer)
    yield fake


def test_the_resolver_role_and_the_configured_hosts_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mine: MyDnsmasq
) -> None:
    target(tmp_path, monkeypatch)
    found = dnsc.resolver(FakeDocker(mine), Settings.load())
    assert (found.name, found.hosts, found.conf) == ("my-dnsmasq", mine.hosts, mine.conf)
    done = actions.wrong_address(NAME)
    assert done["before"] == ["10.0.0.10"] and done["reloaded"] == "sighup"
    assert dnsc.hosts_names(mine.hosts.read_text())[NAME] == ["192.0.2.1"]
    assert actions.stop_resolver()["service"] == "my-dnsmasq"
    assert [(f.kind, f.target) for f in ledger.pending(tmp_path / "state")] == [
        ("dns_name", NAME), ("dns_down", "my-dnsmasq")]
    actions.restore_dns()
    assert mine.hosts.read_text() == HOSTS and mine.conf.read_text() == CONF
    assert ledger.pending(tmp_path / "state") == []


def test_hosts_files_of_a_configuration() -> None:
    assert dnsc.hosts_files(CONF + "addn-hosts = /b\n#addn-hosts=/c\n") == [
        "/etc/hosts.d/lk.hosts", "/b"]


def test_no_bind_mounted_hosts_file_is_refused_naming_the_candidates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mine: MyDnsmasq
) -> None:
    target(tmp_path, monkeypatch)
    mine.attrs["Mounts"] = mine.attrs["Mounts"][1:]
    with pytest.raises(ActivityFailed, match="none of the resolver 'my-dnsmasq'.s hosts files "
                       r"\(/etc/hosts.d/lk.hosts, /etc/dnsmasq.d/hosts\) is bind-mounted"):
        actions.nxdomain_name(NAME)
    assert mine.calls == [] and ledger.pending(tmp_path / "state") == []


CALLS = [
    lambda: actions.stop_resolver(), lambda: actions.start_resolver(),
    lambda: actions.nxdomain_name(NAME), lambda: actions.wrong_address(NAME),
    lambda: actions.servfail_name(NAME), lambda: actions.restore_name(NAME),
    lambda: actions.restore_dns(),
]


@pytest.mark.parametrize(
    ("resolver", "roles", "message"),
    [
        ('resolver: {kind: dnsmasq, address: "127.0.0.1:5353"}', "resolver: my-dnsmasq",
         "the target's resolver has may_fault: false: lkchaos only asks it questions; set "
         "may_fault: true to allow DNS faults"),
        ("", "agent_worker: agent", "the target has no resolver"),
        (FAULTABLE, "agent_worker: agent", r"maps no resolver; add `roles: \{resolver: NAME\}`"),
    ],
)
@pytest.mark.parametrize("call", CALLS, ids=range(len(CALLS)))
def test_every_action_is_refused_before_docker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, resolver: str, roles: str, message: str,
    call: Any,
) -> None:
    target(tmp_path, monkeypatch, resolver, roles)

    def no_docker() -> Any:
        raise AssertionError("Docker was reached")

    monkeypatch.setattr(actions, "docker_client", no_docker)
    monkeypatch.setattr(dnsc, "docker_client", no_docker)
    with pytest.raises(ActivityFailed, match=message):
        call()
    assert ledger.pending(tmp_path / "state") == []


def test_the_sweep_leaves_an_unfaultable_resolver_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target(tmp_path, monkeypatch, 'resolver: {kind: dnsmasq, address: "127.0.0.1:5353"}')

    def no_docker() -> Any:
        raise AssertionError("Docker was reached")

    monkeypatch.setattr(dnsc, "docker_client", no_docker)
    assert dnsc.sweep(Settings.load()) == []
    with pytest.raises(ConfigError, match="may_fault: false"):
        dnsc.resolver(None, Settings.load())


def test_resolving_on_a_target_without_a_resolver_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lkchaos.dns import probes

    target(tmp_path, monkeypatch, "", "agent_worker: agent")
    with pytest.raises(ActivityFailed, match="the target has no resolver: add a resolver"):
        probes.resolve_names([NAME])


def test_the_default_names_are_the_deployments_own_not_the_reference_stacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lkchaos.dns import probes
    from tests.unit.test_tls_targets import TARGET

    asked: list[str] = []

    def lookup(name: str, server: str, rdtype: str = "A", timeout: float = 2.0) -> dnsc.Answer:
        asked.append(name)
        return dnsc.Answer(name, "NOERROR", ("10.0.0.10",), 0.5)

    monkeypatch.setattr(dnsc, "lookup", lookup)

    def deployment(url: str, names: str) -> None:
        path = tmp_path / "target.yaml"
        path.write_text(TARGET.format(kind="nginx", reload="reload: none", roles="",
                                      extra=f"{FAULTABLE}\n")
                        .replace("wss://rtc.example.org", url)
                        .replace("names: [rtc.example.org]", f"names: [{names}]"))  # fmt: skip
        monkeypatch.setenv("LKCHAOS_TARGET", str(path))

    # LiveKit is not lk.<domain>, and the deployment has no WHIP ingress.
    deployment("wss://livekit.example.org", "livekit.example.org, turn.example.org")
    result = probes.resolve_names()
    assert asked == ["livekit.example.org", "turn.example.org"]
    assert result["ok"] and sorted(result["names"]) == sorted(asked)
    # LiveKit by address: only the TLS proxy's names are asked.
    asked.clear()
    deployment("wss://203.0.113.10:7880", "rtc.example.org")
    probes.resolve_names()
    assert asked == ["rtc.example.org"]
