"""Rendering of the stack's configs and state: pure functions plus the files they write."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import yaml

from lkchaos.errors import ConfigError
from lkchaos.stack import layout, render
from lkchaos.stack.render import StackConfig


@pytest.fixture
def cfg() -> StackConfig:
    return StackConfig(net_prefix="10.123.45")


def test_livekit_config_uses_sentinel_and_never_holds_keys(cfg: StackConfig) -> None:
    config = yaml.safe_load(render.livekit_yaml(cfg))
    assert "keys" not in config and "key_file" not in config
    assert "address" not in config["redis"]
    assert config["redis"]["sentinel_master_name"] == layout.SENTINEL_MASTER
    assert config["redis"]["sentinel_addresses"] == [
        "sentinel-1:26379", "sentinel-2:26379", "sentinel-3:26379"
    ]
    assert config["prometheus"]["port"] == 6789


def test_livekit_config_reaches_nothing_outside_the_stack(cfg: StackConfig) -> None:
    config = yaml.safe_load(render.livekit_yaml(cfg))
    assert config["rtc"]["use_external_ip"] is False
    assert config["rtc"]["stun_servers"] == ["10.123.45.11:3478"]
    turn = config["turn"]
    assert turn["enabled"] is True and turn["domain"] == "turn.chaos.test"
    assert turn["cert_file"].endswith("turn.chaos.test.crt")


def test_caddyfile_routes_each_name_with_the_stack_certificates(cfg: StackConfig) -> None:
    text = render.caddyfile(cfg)
    assert "reverse_proxy livekit-1:7880 livekit-2:7880" in text
    assert "tls /certs/lk.chaos.test.crt /certs/lk.chaos.test.key" in text
    assert "tls /certs/whip.chaos.test.crt /certs/whip.chaos.test.key" in text
    assert "health_uri /" in text
    assert "auto_https disable_certs" in text  # never ACME


def test_dnsmasq_forwards_nothing_and_answers_the_domain(cfg: StackConfig) -> None:
    conf = render.dnsmasq_conf(cfg)
    assert "no-resolv" in conf.splitlines()
    assert not any(line.startswith("server=") for line in conf.splitlines())
    assert "local=/chaos.test/" in conf
    hosts = dict(reversed(line.split()) for line in render.dns_hosts(cfg).splitlines())
    assert hosts["lk.chaos.test"] == "10.123.45.10"
    assert hosts["whip.chaos.test"] == "10.123.45.10"
    assert hosts["turn.chaos.test"] == "10.123.45.11"


def test_sentinel_quorum_and_quick_failover() -> None:
    conf = render.sentinel_conf(StackConfig())
    assert "sentinel monitor lkchaos redis-primary 6379 2" in conf
    assert "sentinel down-after-milliseconds lkchaos 2000" in conf
    assert "sentinel resolve-hostnames yes" in conf


def test_toxiproxy_links_match_the_layout() -> None:
    proxies = json.loads(render.toxiproxy_json())
    assert {p["name"]: p["upstream"] for p in proxies} == {
        name: upstream for name, (_, upstream) in layout.TOXIPROXY_LINKS.items()
    }
    assert all(p["listen"].startswith("0.0.0.0:") and p["enabled"] for p in proxies)


@pytest.mark.parametrize("prefix", ["172.29", "172.29.77.0", "300.1.1", "a.b.c", ""])
def test_bad_network_prefix_is_refused(monkeypatch: pytest.MonkeyPatch, prefix: str) -> None:
    monkeypatch.setenv("LKCHAOS_NET_PREFIX", prefix)
    with pytest.raises(ConfigError, match="LKCHAOS_NET_PREFIX"):
        StackConfig.from_env()


def test_unknown_service_address_names_the_known_ones(cfg: StackConfig) -> None:
    with pytest.raises(ConfigError, match="known services: agent, caddy"):
        cfg.address("nginx")


def test_write_state_generates_keys_once_and_keeps_them(tmp_path: Path, cfg: StackConfig) -> None:
    first = render.write_state(tmp_path, cfg)
    second = render.write_state(tmp_path, cfg)
    assert first["LIVEKIT_API_KEY"] == second["LIVEKIT_API_KEY"]
    assert first["LIVEKIT_API_SECRET"] == second["LIVEKIT_API_SECRET"]
    assert len(first["LIVEKIT_API_SECRET"]) >= 32
    env_file = tmp_path / "stack.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert render.read_env_file(env_file)["LKCHAOS_NET_PREFIX"] == "10.123.45"
    for name in render.render_configs(cfg):
        assert (tmp_path / "config" / name).is_file()
    for name in ("ca.crt", "lk.chaos.test.crt", "turn.chaos.test.key", "whip.chaos.test.crt"):
        assert (tmp_path / "certs" / name).is_file()


def test_malformed_env_file_says_where(tmp_path: Path) -> None:
    env_file = tmp_path / "stack.env"
    env_file.write_text("LIVEKIT_API_KEY=abc\nthis line is wrong\n")
    with pytest.raises(ConfigError, match=r"stack.env:2: expected KEY=VALUE"):
        render.read_env_file(env_file)
