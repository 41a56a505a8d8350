"""Every address an activity takes or reports is read and written the one way lkchaos has
(``lkchaos.settings.split_host_port`` / ``join_host_port``): an IPv6 host in brackets is
accepted, an address that reads two ways is refused with what to write, and what lkchaos
writes back can be read again."""

from __future__ import annotations

import pytest
from chaoslib.exceptions import ActivityFailed

from lkchaos.settings import Settings, split_host_port
from lkchaos.toxiproxy.probes import _check_latency_args, listener_address
from lkchaos.validate.checks import caddy
from lkchaos.values import check_address


@pytest.mark.parametrize("good", ["127.0.0.1:8474", "[::1]:8474", "[fd00::5]:53",
                                  "toxiproxy:8474"])
def test_an_address_argument_takes_ipv6_in_brackets(good: str) -> None:
    assert check_address("address", good) == good
    _check_latency_args("agent_livekit", 3, "/", good, 2.0, None)


@pytest.mark.parametrize("bad", ["fd00::5:6379", "127.0.0.1", "[::1]", "host:port", "", 8474])
def test_an_address_argument_that_is_not_host_port_is_refused(bad: object) -> None:
    with pytest.raises(ActivityFailed, match="address must be host:port"):
        check_address("address", bad)


def test_the_dns_and_tls_probes_refuse_an_ambiguous_address_before_anything_runs() -> None:
    from lkchaos.dns.probes import resolve_names
    from lkchaos.tls.probes import _check

    with pytest.raises(ActivityFailed, match="server must be host:port.*fd00::5:53"):
        resolve_names(names=["lk.chaos.test"], server="fd00::5:53")
    _check("lk.chaos.test", "[::1]:443", 2.0)
    with pytest.raises(ActivityFailed, match="address must be host:port"):
        _check("lk.chaos.test", "fd00::5:443", 2.0)


def test_a_listener_on_every_ipv6_address_is_reached_on_its_port() -> None:
    assert listener_address("[::]:17880") == "127.0.0.1:17880"
    assert listener_address("0.0.0.0:18000") == "127.0.0.1:18000"
    with pytest.raises(ActivityFailed, match="pass address"):
        listener_address("nowhere")


def test_the_proxys_plain_http_port_of_an_ipv6_proxy_reads_back() -> None:
    settings = Settings(tls_address="[fd00::5]:443", state_dir="/nonexistent-state")
    address = caddy.http_address(settings)
    assert address == "[fd00::5]:80"
    assert split_host_port(address, None) == ("fd00::5", 80)
