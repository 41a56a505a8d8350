"""Addresses are split in one place (``split_host_port``): an IPv6 host in brackets comes back
without them, a bare IPv6 address is read only where it cannot be read two ways, and the
target's schema, Sentinel's address map, the Redis client and ``target check`` agree."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from lkchaos.errors import ConfigError
from lkchaos.settings import AddressError, Settings, join_host_port, split_host_port
from lkchaos.target import reach
from lkchaos.target.model import Target

MINIMAL = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "targets" / "minimal.yaml"


@pytest.mark.parametrize(("address", "default", "expected"), [
    ("[::1]:6379", None, ("::1", 6379)),
    ("[::1]:6379", 26379, ("::1", 6379)),
    ("[fd00::5]", 6379, ("fd00::5", 6379)),
    ("[fe80::1%eth0]:6379", None, ("fe80::1%eth0", 6379)),
    ("::1", 6379, ("::1", 6379)),                                      # no port can be read
    ("2001:db8:0:0:0:0:0:1", 53, ("2001:db8:0:0:0:0:0:1", 53)),        # eight groups: no port
    ("2001:db8:0:0:0:0:0:1:6379", None, ("2001:db8:0:0:0:0:0:1", 6379)),
    ("10.0.0.5:6380", None, ("10.0.0.5", 6380)),
    ("redis.internal", 6379, ("redis.internal", 6379)),
])  # fmt: skip
def test_addresses_split_without_brackets(address: str, default: int | None,
                                          expected: tuple[str, int]) -> None:
    assert split_host_port(address, default) == expected
    if default is not None:
        assert Settings.split_address(address, default) == expected


@pytest.mark.parametrize(("address", "default", "message"), [
    ("fd00::5:6379", 6379, r"ambiguous: write \[fd00::5\]:6379 for port 6379 of fd00::5, or "
                           r"\[fd00::5:6379\] for that address on port 6379"),
    ("::1:6379", None, r"ambiguous: write \[::1\]:6379 .* or \[::1:6379\]:PORT"),
    ("2001:db8:0:0:0:0:0:1", None, r"no port\): write \[2001:db8:0:0:0:0:0:1\]:PORT"),
    ("[::1", None, r"brackets hold an IPv6 address"),
    ("[redis]:6379", None, r"brackets hold an IPv6 address"),
    ("[::1]6379", None, r"write \[IPv6\]:port"),
    ("[::1]", None, r"write \[IPv6\]:port"),
    ("redis", None, r"not a host:port address \(no port\): write redis:PORT"),
    ("redis:abc", 6379, "not a number"),
    ("redis:0", 6379, r"port 0 is not a port \(1-65535\)"),
    (":6379", None, "no host"),
    ("", 6379, "empty address"),
])  # fmt: skip
def test_addresses_that_cannot_be_read_one_way_are_refused(address: str, default: int | None,
                                                          message: str) -> None:
    with pytest.raises(AddressError, match=message) as caught:
        split_host_port(address, default)
    assert isinstance(caught.value, ConfigError) and isinstance(caught.value, ValueError)


def test_join_puts_an_ipv6_host_in_brackets() -> None:
    assert join_host_port("::1", 6379) == "[::1]:6379"
    assert join_host_port("10.0.0.5", 6379) == "10.0.0.5:6379"
    assert split_host_port(join_host_port("fd00::5", 6379), None) == ("fd00::5", 6379)


def test_the_address_map_takes_bracketed_ipv6_both_ways() -> None:
    settings = Settings(redis_address_map={"[fd00::5]:6379": "[::1]:27379",
                                           "redis-a:6379": "10.0.0.1:7000"})  # fmt: skip
    # Sentinel announces an IPv6 host without brackets, in whatever spelling it uses.
    assert settings.map_redis_address("fd00::5", 6379) == ("::1", 27379)
    assert settings.map_redis_address("FD00:0::5", 6379) == ("::1", 27379)
    assert settings.map_redis_address("REDIS-A", 6379) == ("10.0.0.1", 7000)
    assert settings.map_redis_address("fd00::6", 6379) == ("fd00::6", 6379)


def test_a_malformed_address_in_the_map_is_refused_when_loading(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:  # fmt: skip
    monkeypatch.setenv("LKCHAOS_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("LKCHAOS_REDIS_ADDRESS_MAP", "redis-a:6379=fd00::5:6379")
    with pytest.raises(ConfigError, match="ambiguous"):
        Settings.load()


@pytest.mark.parametrize(("address", "problem"), [
    ("[::1]:6379", None),
    ("fd00::5:6379", "ambiguous"),
    ("[::1]", "write [IPv6]:port"),
    ("::1", "no port"),
])  # fmt: skip
def test_the_schema_reads_addresses_as_the_clients_do(address: str, problem: str | None) -> None:
    data = yaml.safe_load(MINIMAL.read_text())
    data["redis"]["direct"]["primary"] = address
    if problem is None:
        Target.model_validate(data)
        return
    with pytest.raises(ValidationError) as caught:
        Target.model_validate(data)
    assert problem in str(caught.value)


def test_target_check_connects_to_a_bracketed_ipv6_address() -> None:
    with socket.create_server(("::1", 0), family=socket.AF_INET6) as server:
        port = server.getsockname()[1]
        found = reach.tcp("redis", "redis primary", f"[::1]:{port}", timeout=1)
    assert found.ok, found.detail
    refused = reach.tcp("redis", "redis primary", "fd00::5:6379", timeout=1)
    assert not refused.ok and "ambiguous" in refused.detail
    assert reach._url_address("http://[::1]:7880/") == "[::1]:7880"
